"""Host networks with attention slots and the official layouts they load (exporting them is
:mod:`attn_export.export`'s job).

``create_model("resnet18", attn="eca")`` builds a network by registry name (``list_models()``);
the cards live in :mod:`attn_export.models.registry` (torch-free).
"""

from __future__ import annotations

from typing import Any

from attn_export.errors import BlockConfigError
from attn_export.models.registry import MODELS, ModelCard, list_models, model_builder, model_card

__all__ = ["MODELS", "ModelCard", "count_parameters", "create_model", "list_models", "model_card"]


def builder_kwargs(name: str, **kwargs: Any) -> dict[str, Any]:
    """The card's builder arguments with the user's over them; fixed cards keep their block."""
    card = model_card(name)
    if card.fixed:
        fixed = {k: v for k, v in kwargs.items() if k in ("attn", "attn_name", "position")}
        wrong = {k: v for k, v in fixed.items()
                 if v != (card.attn if k == "attn" else card.kwargs.get(k, v))}
        if wrong:
            raise BlockConfigError(
                f"{name} is the published layout with {card.attn}; it takes no "
                f"{', '.join(f'{k}={v!r}' for k, v in wrong.items())}: use the plain host "
                f"({card.builder.split(':')[1]}) with --attn for another block"
            )
    merged = dict(card.kwargs)
    if card.attn is not None:
        merged["attn"] = card.attn
    for key, value in kwargs.items():
        if key == "attn_kwargs" and card.fixed:
            merged[key] = {**card.kwargs.get("attn_kwargs", {}), **value}
        else:
            merged[key] = value
    return merged


def create_model(name: str, **kwargs: Any):
    """Build network ``name`` with PyTorch's initialisation (load a checkpoint for real weights).

    Args:
        name: registry name (``list_models()``).
        **kwargs: the builder's arguments (``attn``, ``position``, ``num_classes``,
            ``attn_kwargs``, ...); unknown names raise.
    """
    import inspect

    builder = model_builder(name)
    args = builder_kwargs(name, **kwargs)
    accepted = set(inspect.signature(builder).parameters)
    unknown = sorted(set(args) - accepted)
    if unknown:
        raise BlockConfigError(f"{name}: unknown argument(s) {', '.join(unknown)}; it takes: "
                               f"{', '.join(sorted(accepted))}")
    return builder(**args)


def count_parameters(model) -> int:
    """Trainable and frozen parameters (not buffers), each shared tensor counted once."""
    return sum(p.numel() for p in model.parameters())
