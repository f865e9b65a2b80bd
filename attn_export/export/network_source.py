"""The source of ``attn-export model``: a registered network or a user's ``FILE.py:FUNCTION``,
built (or loaded with its checkpoint), its blocks swapped for their deploy twins with the
difference each swap made, judged by the network rule (:mod:`attn_export.runtime.network_rule`).
"""

from __future__ import annotations

from pathlib import Path

from attn_export.errors import BlockConfigError, ShapeModeError
from attn_export.export.request import Clock, ExportRequest
from attn_export.export.sources import Built
from attn_export.export.stages import randomize_norm_statistics
from attn_export.export.user_file import is_user_spec, parse_user_spec
from attn_export.runtime.network_rule import JUDGED_AS_NETWORK


def label_of(spec: str) -> str:
    """The artefact stem: the registry name, or the user's function (file stem for ``build``)."""
    if not is_user_spec(spec):
        return spec
    path, func = parse_user_spec(spec)
    return path.stem if func == "build" else f"{path.stem}_{func}"


class NetworkSource:
    """A whole network; ``card`` is its registry card (None for a user's file)."""

    judged_as = JUDGED_AS_NETWORK

    def __init__(self) -> None:
        self.card = None

    def label(self, req: ExportRequest) -> str:
        return label_of(req.block)

    def resolve(self, req: ExportRequest) -> ExportRequest:
        """Defaults from the card; refuse what cannot work before anything is built."""
        from attn_export.models.registry import model_card

        self.card = None if is_user_spec(req.block) else model_card(req.block)
        if req.input_shape is None:
            size = self.card.test_size if self.card else (224, 224)
            req.input_shape = (1, 3, *size)
        self._check_shape(req)
        req.channels = req.input_shape[1]
        req.output_dir = Path(req.output_dir or Path("exports") / label_of(req.block))
        return req

    def _check_shape(self, req: ExportRequest) -> None:
        from attn_export.export.onnx_from_torch import check_opset, dynamic_dims

        check_opset(req.opset, req.exporter)
        dynamic_dims(req.dynamic)
        n, c, h, w = req.input_shape
        multiple = self.card.size_multiple if self.card else 1
        if c != 3 and self.card is not None:
            raise ShapeModeError(f"{req.block} takes 3-channel images, got --input-shape with {c}")
        if h % multiple or w % multiple:
            raise ShapeModeError(f"{req.block}: H and W must be multiples of {multiple} (its skip "
                                 f"connections join maps of strides up to {multiple}), got "
                                 f"{h}x{w}")
        if req.dynamic == "all" and multiple > 1:
            raise ShapeModeError(f"{req.block} cannot be validated with --dynamic all: its maps "
                                 f"must stay multiples of {multiple}; use --dynamic batch")

    def check(self, req: ExportRequest) -> None:
        from attn_export.runtime.inputs import load_user_inputs

        load_user_inputs(req.inputs, req.channels)  # unreadable or non-finite files, before work

    def build(self, req: ExportRequest, clock: Clock) -> Built:
        """Build, load the checkpoint (or seed the norm statistics), swap every block."""
        import numpy as np
        import torch

        from attn_export.models import count_parameters
        from attn_export.models.swap_report import deploy_with_report
        from attn_export.modules.recognise.mapping import resolve_map

        model, loaded = self.prepared(req, clock)
        example = torch.from_numpy(np.random.default_rng(req.seed).standard_normal(
            req.input_shape, dtype=np.float32))
        clock.say("swapping blocks for their deploy twins (to_deploy, checked on a real input)")
        deployed, swaps, network_diff = deploy_with_report(
            model, example, mapping=resolve_map(req.maps, model))
        task = self.card.task if self.card else "unknown"
        report = {
            "network": {
                "name": req.block, "task": task,
                "attn": req.attn or (self.card.attn if self.card else None), "sets": req.kwargs,
                "num_classes": req.num_classes, "parameters": count_parameters(deployed),
                "checkpoint": loaded.to_dict() if loaded else None,
            },
            "swaps": [s.to_dict() for s in swaps],
            "swap_network_max_abs_diff": network_diff,
        }
        return Built(deployed, report, drop=("variant", "kwargs"), swaps=swaps, task=task)

    def prepared(self, req: ExportRequest, clock: Clock):
        """The network before any swap, in eval mode: built, its checkpoint loaded (or its norm
        statistics seeded, since identity statistics hide bugs); and what was loaded."""
        from attn_export.models.checkpoints import load_network_checkpoint

        clock.say(f"building {req.block}")
        model = self._build_model(req)
        loaded = None
        if req.checkpoint is not None:
            clock.say(f"loading {req.checkpoint} ({req.layout} layout)")
            loaded = load_network_checkpoint(model, req.checkpoint, req.layout, req.block)
        else:
            randomize_norm_statistics(model, req.seed)
        return model.eval(), loaded

    def _build_model(self, req: ExportRequest):
        """The network with PyTorch's initialisation, seeded, before any checkpoint."""
        import torch

        from attn_export.export.user_file import build_user_model
        from attn_export.models import create_model

        kwargs = dict(req.kwargs)
        if req.num_classes is not None:
            kwargs["num_classes"] = req.num_classes
        torch.manual_seed(req.seed)
        if self.card is None:
            if req.attn is not None:
                raise BlockConfigError("--attn applies to registry networks; your builder "
                                       "decides its own blocks (pass them with --set if it takes "
                                       "them)")
            return build_user_model(req.block, **kwargs)
        return create_model(req.block, **self._split_sets(req, kwargs))

    def _split_sets(self, req: ExportRequest, kwargs: dict) -> dict:
        """``--set`` keys the builder takes go to it; the others are the block's arguments."""
        import inspect

        from attn_export.models.registry import model_builder

        accepted = set(inspect.signature(model_builder(req.block)).parameters)
        builder = {k: v for k, v in kwargs.items() if k in accepted}
        block = {k: v for k, v in kwargs.items() if k not in accepted}
        if req.attn is not None:
            builder["attn"] = req.attn
        if block:
            if builder.get("attn", self.card.attn) is None:
                raise BlockConfigError(f"{req.block}: --set {', '.join(block)} is not an "
                                       "argument of the network and there is no block to give "
                                       "it to (--attn)")
            builder["attn_kwargs"] = {**builder.get("attn_kwargs", {}), **block}
        return builder

    def metadata(self, req: ExportRequest) -> dict[str, str]:
        return {"attn_export.block": self.label(req), "attn_export.variant": req.variant,
                "attn_export.channels": str(req.channels)}
