"""Loading checkpoints trained with other people's code into our blocks.

Each block family module may define two plain dicts, read here by block name:

``SOURCES = {"cbam": {"official": fn, "timm": fn}}``
    ``fn(state_dict) -> state_dict`` rewrites a foreign layout into the reference layout (key
    renames, Linear <-> 1x1 conv reshapes, dropped or added biases, reordered inputs, eval-mode
    BatchNorm folded into the preceding conv).
``HYPERPARAMS = {"cbam": fn}``
    ``fn(state_dict) -> dict`` infers constructor kwargs (``channels`` included) from the tensors
    of a reference-layout state_dict, for those kwargs the tensors determine.

The helpers below (``fold_batchnorm``, ``reduction_for``, ``conv1x1_from_linear``) are shared by the
converters of every family.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attn_export.atomic import write_atomic
from attn_export.errors import BlockConfigError, CheckpointError
from attn_export.modules.registry import block_info
from attn_export.modules.state_dict import read_state_dict

StateDict = dict[str, Any]

BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def _family_table(name: str, table: str) -> Any:
    module = importlib.import_module(f"attn_export.modules.{block_info(name).family}")
    return getattr(module, table, {}).get(name, {})


def source_names(name: str) -> list[str]:
    """Layouts ``convert_state_dict`` accepts for block ``name``; ``reference`` is always one."""
    return ["reference", *sorted(_family_table(name, "SOURCES"))]


def _short_keys(sd: Mapping[str, Any]) -> str:
    keys = sorted(sd)
    return f"{', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}" if keys else "(none)"


def convert_state_dict(
    name: str, state_dict: Mapping[str, Any], source: str = "reference"
) -> StateDict:
    """Rewrite ``state_dict`` from layout ``source`` into block ``name``'s reference layout."""
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}  # DataParallel prefix
    if source == "reference":
        return sd
    converters: dict[str, Callable] = _family_table(name, "SOURCES")
    if source not in converters:
        raise CheckpointError(
            f"{name}: unknown checkpoint source {source!r}; expected one of "
            f"{', '.join(source_names(name))}"
        )
    try:
        return converters[source](sd)
    except KeyError as exc:
        raise CheckpointError(
            f"{name}: the state_dict does not look like the {source!r} layout (missing {exc}); "
            f"keys found: {_short_keys(sd)}"
        ) from None


def infer_hyperparams(name: str, state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor kwargs (``channels`` included) that a reference-layout state_dict determines."""
    infer = _family_table(name, "HYPERPARAMS")
    if not infer:
        return {}
    try:
        return dict(infer(state_dict))
    except (KeyError, IndexError) as exc:
        raise CheckpointError(
            f"{name}: cannot infer the block's arguments from the checkpoint (missing {exc}); "
            f"keys found: {_short_keys(state_dict)}"
        ) from None


# ----------------------------------------------------------------------------------------------
# Helpers for the converters.


def conv1x1_from_linear(weight: Any) -> Any:
    """A Linear weight ``(out, in)`` as the equal 1x1 conv weight ``(out, in, 1, 1)``."""
    return weight.reshape(weight.shape[0], weight.shape[1], 1, 1)


def linear_from_conv1x1(weight: Any) -> Any:
    """A 1x1 conv weight ``(out, in, 1, 1)`` as the equal Linear weight ``(out, in)``."""
    if tuple(weight.shape[2:]) != (1,) * (weight.dim() - 2):
        raise CheckpointError(
            f"expected a 1x1 convolution weight, found shape {tuple(weight.shape)}"
        )
    return weight.reshape(weight.shape[0], weight.shape[1])


def fold_batchnorm(
    weight: Any, bias: Any | None, bn: Mapping[str, Any], eps: float = 1e-5
) -> tuple[Any, Any]:
    """Fold an eval-mode BatchNorm that follows a conv (or Linear) into its weight and bias.

    ``bn(conv(x)) = conv'(x)`` exactly with the running statistics; what is lost is only the
    ability to keep training the BatchNorm (its batch statistics). ``eps`` is not stored in a
    state_dict: pass the one the source code builds its BatchNorm with (PyTorch's default 1e-5).
    """
    import torch

    gamma, beta, mean, var = (bn[k] for k in BN_KEYS)
    scale = gamma / torch.sqrt(var + eps)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    folded_w = weight * scale.reshape(shape)
    base = bias if bias is not None else torch.zeros_like(mean)
    return folded_w, (base - mean) * scale + beta


def batchnorm_params(sd: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The four eval-mode BatchNorm tensors stored under ``prefix`` (raises KeyError if absent)."""
    return {k: sd[f"{prefix}{k}"] for k in BN_KEYS}


def reduction_for(channels: int, hidden: int) -> int | float:
    """A reduction ``r`` with ``int(channels // r) == hidden`` (the rule of ``reduced_channels``).

    An int where one exists; otherwise a float (timm rounds ``channels * rd_ratio`` to a divisor,
    which an integer reduction cannot always reproduce, e.g. 40 channels -> 3 hidden needs 13).
    """
    if channels < 1 or hidden < 1:
        raise CheckpointError(f"bottleneck of {hidden} for {channels} channels is not a block")
    r = channels // hidden
    if r >= 1 and channels // r == hidden:
        return r
    return channels / (hidden + 0.5)  # floor(channels / r) = floor(hidden + 0.5) = hidden


# ----------------------------------------------------------------------------------------------
# Loading.


def _build(name: str, sd: Mapping[str, Any], variant: str, kwargs: Mapping[str, Any]):
    from attn_export.modules.factory import create_block

    args = {**infer_hyperparams(name, sd), **kwargs}
    if "channels" not in args:
        raise CheckpointError(f"{name}: pass channels=...; the checkpoint does not determine it")
    return create_block(name, args.pop("channels"), variant, **args)


def _fits(name: str, sd: Mapping[str, Any]) -> bool:
    """Whether ``sd`` (reference layout) loads strictly into the block its tensors describe."""
    try:
        block = _build(name, sd, "reference", {})
    except (CheckpointError, BlockConfigError, KeyError, IndexError, ValueError):
        return False
    expected = block.state_dict()
    return set(expected) == set(sd) and all(
        tuple(expected[k].shape) == tuple(getattr(sd[k], "shape", ())) for k in expected
    )


def guess_source(name: str, state_dict: Mapping[str, Any]) -> str | None:
    """The first layout (``source_names`` order) whose conversion fits the block exactly."""
    for source in source_names(name):
        try:
            sd = convert_state_dict(name, state_dict, source)
        except (CheckpointError, KeyError, ValueError, IndexError, AttributeError):
            continue
        if _fits(name, sd):
            return source
    return None


def load_pretrained(
    name: str,
    path_or_state_dict: str | Path | Mapping[str, Any],
    source: str = "reference",
    variant: str = "deploy",
    **kwargs: Any,
):
    """Build block ``name`` from a checkpoint, inferring hyper-parameters the tensors determine.

    Args:
        name: registry name.
        path_or_state_dict: a ``torch.save``d state_dict (or a dict holding one under
            ``state_dict``/``model``/``state_dict_ema``, ``module.`` prefixes dropped: see
            :func:`~attn_export.modules.state_dict.read_state_dict`), or the mapping itself.
        source: the layout it was saved in (see ``source_names``), or ``"auto"`` to pick the
            first layout that fits.
        variant: ``deploy`` or ``reference``.
        **kwargs: constructor kwargs the tensors do not determine (``num_heads`` of ``mhsa``);
            they win over inferred ones.

    Returns:
        The block in eval mode with the checkpoint's weights.
    """
    raw = read_state_dict(path_or_state_dict)
    source = _resolve_source(name, raw, source)
    sd = convert_state_dict(name, raw, source)
    try:
        block = _build(name, sd, variant, kwargs)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}{_hint(name, source, sd)}") from None
    missing, unexpected = _key_diff(block.state_dict(), sd)
    if missing or unexpected:
        raise _mismatch(name, source, sd, missing, unexpected)
    try:
        block.load_state_dict(sd, strict=True)
    except RuntimeError as exc:  # shape mismatches
        raise CheckpointError(f"{name}: {str(exc).splitlines()[-1].strip()}") from None
    return block.eval()


def _resolve_source(name: str, sd: Mapping[str, Any], source: str) -> str:
    if source != "auto":
        return source
    guess = guess_source(name, sd)
    if guess is None:
        raise CheckpointError(
            f"{name}: the checkpoint fits none of the layouts {', '.join(source_names(name))}; "
            f"keys found: {_short_keys(sd)}"
        )
    return guess


def _key_diff(expected: Mapping, found: Mapping) -> tuple[list[str], list[str]]:
    return sorted(set(expected) - set(found)), sorted(set(found) - set(expected))


def _hint(name: str, source: str, sd: Mapping[str, Any]) -> str:
    guess = guess_source(name, sd) if source == "reference" else None
    if guess and guess != "reference":
        return f"; it looks like the {guess!r} layout: pass source={guess!r}"
    return f"; sources for {name}: {', '.join(source_names(name))}"


def _mismatch(name, source, sd, missing=(), unexpected=()) -> CheckpointError:
    return CheckpointError(
        f"{name}: checkpoint does not fit the {source!r} layout: missing keys "
        f"{list(missing) or 'none'}, unexpected keys {list(unexpected) or 'none'}"
        f"{_hint(name, source, sd)}"
    )


# ----------------------------------------------------------------------------------------------
# Converting a file (``attn-export convert``).


@dataclass(frozen=True)
class ConvertedCheckpoint:
    """What ``convert_checkpoint`` wrote: the file, the layouts, and the block it builds."""

    path: Path
    block: str
    source: str
    kwargs: dict[str, Any]
    num_tensors: int


def convert_checkpoint(
    path: str | Path, block: str, source: str, out_path: str | Path
) -> ConvertedCheckpoint:
    """Convert a single block's checkpoint file from layout ``source`` to our reference layout.

    The converted state_dict is proven to load strictly into the block its tensors describe before
    anything is written, and it is written atomically (a temporary file in the target folder, then
    ``os.replace``), so ``out_path`` is either the old file or the complete new one.

    Args:
        path: a ``torch.save``d state_dict of the block alone (``state_dict``/``model``/EMA
            wrappers and a DataParallel ``module.`` prefix are accepted).
        block: registry name (``cbam``, ``se``, ...).
        source: the layout of ``path`` (see ``source_names``), or ``"auto"``.
        out_path: where to write the reference-layout state_dict (overwritten if present).
    """
    import torch

    raw = read_state_dict(path)
    source = _resolve_source(block, raw, source)
    sd = convert_state_dict(block, raw, source)
    built = load_pretrained(block, sd, source="reference", variant="reference")
    out = Path(out_path)
    if not out.parent.is_dir():
        raise CheckpointError(f"cannot write {out}: folder {out.parent} does not exist")
    # Clone so a converted view never drags its (larger) source storage into the file.
    tensors = {k: v.detach().clone().contiguous() for k, v in built.state_dict().items()}
    write_atomic(out, lambda tmp: torch.save(tensors, str(tmp)))
    return ConvertedCheckpoint(
        path=out, block=block, source=source, kwargs=dict(built.init_args),
        num_tensors=len(tensors),
    )
