"""Selective Kernel Networks (Li, Wang, Hu, Yang; CVPR 2019, arXiv:1903.06586).

Reference follows timm ``timm/layers/selective_kernel.py`` ``SelectiveKernel``: the input is split
across the paths (``split_input``), each path a conv -> BN -> ReLU with its own receptive field (with
``keep_3x3`` a 5x5 path is a 3x3 conv with dilation 2), the paths are summed, globally averaged,
squeezed (``attn.fc_reduce`` -> BN -> ReLU) and expanded to one logit per path and channel
(``attn.fc_select``); a softmax over the paths weights their sum. Keys are timm's
(``paths.0.conv.weight``, ``paths.0.bn.*``, ``attn.fc_reduce.weight``, ``attn.bn.*``,
``attn.fc_select.weight``), so a timm checkpoint (skresnet, skresnext) loads with ``strict=True``.
Unlike timm, input and output widths are equal (an attention block keeps the map's shape) and the
stride, anti-aliasing and drop layers are left out.

The External-Attention-pytorch ``SKAttention`` layout loads through
``convert_state_dict("sk", sd, source="external_attention")``: see ``_from_external_attention``.
That code first normalised the path weights with ``nn.Softmax(dim=1)`` over a (paths, batch, C, 1,
1) stack, i.e. across the *batch* (each sample's weights depended on the other samples; with batch
1 every weight was 1 and the block returned the plain sum of its paths). Its issue #18 (July 2021)
moved the softmax to dim 0, the paths; the conversion reproduces the fixed code.

The deploy form sums the paths instead of stacking them into a 5-D tensor and reshapes the logits
with module constants and -1 instead of sizes read from ``x.shape`` (H11).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.base import AttentionBlock

StateDict = dict[str, torch.Tensor]


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None,
                   round_limit: float = 0.9) -> int:
    """Nearest multiple of ``divisor`` to ``v`` (at least ``min_value``), never below 90% of ``v``.

    timm's rule for attention widths; kept identical so ``rd_ratio``/``rd_divisor`` give timm's
    ``attn_channels``.
    """
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kernel_sizes(kernel_size: int | Sequence[int], keep_3x3: bool) -> tuple[int, ...]:
    sizes = (kernel_size, kernel_size) if _is_int(kernel_size) else tuple(kernel_size)
    smallest = 3 if keep_3x3 else 1
    if len(sizes) < 2 or not all(_is_int(k) and k >= smallest and k % 2 == 1 for k in sizes):
        raise BlockConfigError(
            f"sk: kernel_size must be an odd int or a list of >= 2 odd ints, each >= {smallest} "
            f"(keep_3x3={keep_3x3}; timm default [3, 5]), got {kernel_size!r}"
        )
    return sizes


def _geometry(
    channels: int, kernels: tuple[int, ...], keep_3x3: bool, split_input: bool, groups: int
) -> tuple[list[tuple[int, int]], int, int]:
    """(kernel, dilation) per path, input width per path and conv groups, as timm derives them."""
    n = len(kernels)
    if keep_3x3:  # a k x k receptive field as a 3x3 conv with dilation (k - 1) // 2
        paths = [(3, (k - 1) // 2) for k in kernels]
    else:
        paths = [(k, 1) for k in kernels]
    if split_input and channels % n:
        raise BlockConfigError(
            f"sk: split_input divides the {channels} input channels across {n} paths; use a "
            f"multiple of {n} or split_input=False"
        )
    in_path = channels // n if split_input else channels
    if not _is_int(groups) or groups < 1:
        raise BlockConfigError(f"sk: groups must be an integer >= 1, got {groups!r}")
    groups = min(channels, groups)
    if in_path % groups or channels % groups:
        raise BlockConfigError(
            f"sk: groups={groups} must divide each path's {in_path} input and {channels} output "
            "channels; choose a divisor of both"
        )
    return paths, in_path, groups


def _attn_width(channels: int, rd_ratio: float, rd_divisor: int, rd_channels: int | None) -> int:
    if rd_channels is not None:
        if not _is_int(rd_channels) or rd_channels < 1:
            raise BlockConfigError(f"sk: rd_channels must be an integer >= 1, got {rd_channels!r}")
        return rd_channels
    if not isinstance(rd_ratio, (int, float)) or isinstance(rd_ratio, bool) or rd_ratio <= 0:
        raise BlockConfigError(f"sk: rd_ratio must be a number > 0 (timm: 1/16), got {rd_ratio!r}")
    if not _is_int(rd_divisor) or rd_divisor < 1:
        raise BlockConfigError(f"sk: rd_divisor must be an integer >= 1 (timm: 8), got {rd_divisor!r}")
    return make_divisible(channels * rd_ratio, divisor=rd_divisor)


class ConvBnAct(nn.Module):
    """timm ``ConvNormAct`` as a path uses it: conv (no bias) -> BN -> ReLU (keys ``conv``, ``bn``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int,
                 groups: int) -> None:
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2  # timm get_padding at stride 1
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding,
                              dilation=dilation, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SelectiveKernelAttn(nn.Module):
    """timm's path-selection head: squeeze, expand to ``num_paths * channels`` logits."""

    def __init__(self, channels: int, num_paths: int, attn_channels: int) -> None:
        super().__init__()
        self.num_paths = num_paths
        self.fc_reduce = nn.Conv2d(channels, attn_channels, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(attn_channels)
        self.act = nn.ReLU(inplace=True)
        self.fc_select = nn.Conv2d(attn_channels, channels * num_paths, kernel_size=1, bias=False)

    def logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """(N, C, 1, 1) pooled sum of the paths -> (N, num_paths * C, 1, 1), path-major."""
        return self.fc_select(self.act(self.bn(self.fc_reduce(pooled))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.logits(x.sum(1).mean((2, 3), keepdim=True))
        b, c, h, w = x.shape
        return torch.softmax(x.view(b, self.num_paths, c // self.num_paths, h, w), dim=1)


class _SelectiveKernelBase(AttentionBlock):
    """Constructor shared by both forms (identical submodules and keys)."""

    def __init__(
        self,
        channels: int,
        kernel_size: int | Sequence[int] = (3, 5),
        rd_ratio: float = 1.0 / 16,
        rd_divisor: int = 8,
        rd_channels: int | None = None,
        keep_3x3: bool = True,
        split_input: bool = True,
        groups: int = 1,
    ) -> None:
        super().__init__(channels=channels, kernel_size=kernel_size, rd_ratio=rd_ratio,
                         rd_divisor=rd_divisor, rd_channels=rd_channels, keep_3x3=keep_3x3,
                         split_input=split_input, groups=groups)
        if not _is_int(channels) or channels < 1:
            raise BlockConfigError(f"sk: channels must be a positive integer, got {channels!r}")
        kernels = _kernel_sizes(kernel_size, bool(keep_3x3))
        paths, in_path, groups = _geometry(channels, kernels, bool(keep_3x3), bool(split_input),
                                           groups)
        self.num_paths = len(kernels)
        self.channels = channels
        self.split_input = bool(split_input)
        self.in_path = in_path
        self.paths = nn.ModuleList(
            [ConvBnAct(in_path, channels, k, d, groups) for k, d in paths]
        )
        width = _attn_width(channels, rd_ratio, rd_divisor, rd_channels)
        self.attn = SelectiveKernelAttn(channels, self.num_paths, width)


class SelectiveKernelReference(_SelectiveKernelBase):
    """timm's forward: stack the paths (N, P, C, H, W), view the logits with sizes from ``x``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.split_input:
            x_split = torch.split(x, self.in_path, 1)
            x_paths = [op(x_split[i]) for i, op in enumerate(self.paths)]
        else:
            x_paths = [op(x) for op in self.paths]
        x = torch.stack(x_paths, dim=1)
        return torch.sum(x * self.attn(x), dim=1)


class SelectiveKernel(_SelectiveKernelBase):
    """Export-safe SK: paths summed, not stacked; logits reshaped with constants and -1 (H11)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.split_input:
            inputs = torch.split(x, self.in_path, 1)
        else:
            inputs = [x] * self.num_paths
        paths = [op(inputs[i]) for i, op in enumerate(self.paths)]
        total = paths[0]
        for p in paths[1:]:
            total = total + p
        logits = self.attn.logits(total.mean((2, 3), keepdim=True))
        # H11: (N, P*C, 1, 1) -> (N, P, C) with module constants; softmax over the paths.
        weights = torch.softmax(logits.reshape(-1, self.num_paths, self.channels), dim=1)
        weights = weights.reshape(-1, self.num_paths * self.channels, 1, 1)
        per_path = torch.split(weights, self.channels, 1)
        out = paths[0] * per_path[0]
        for p, w in zip(paths[1:], per_path[1:]):
            out = out + p * w
        return out


def _count(sd: StateDict, pattern: str) -> int:
    regex = re.compile(pattern)
    return sum(1 for k in sd if regex.fullmatch(k))


def _from_external_attention(sd: StateDict) -> StateDict:
    """External-Attention-pytorch ``SKAttention`` -> timm layout, exactly equal in eval mode.

    Key map: ``convs.i.conv.weight`` -> ``paths.i.conv.weight``; its bias folds into
    ``paths.i.bn.running_mean`` (BN(y + b) with mean m is BN(y) with mean m - b, in eval and in
    training alike); ``convs.i.bn.*`` -> ``paths.i.bn.*``. SKAttention's head is ``fc`` (Linear with
    bias) -> ``fcs.i`` (Linear with bias) with no BN and no ReLU between; timm's is ``fc_reduce`` ->
    BN -> ReLU -> ``fc_select``, bias-free. The linear head is rebuilt exactly with
    ``2 * d + 1`` hidden channels: rows ``[W; -W; 0]`` in ``fc_reduce``, an identity BN whose bias
    is ``[b; -b; 1]``, and ``fc_select`` columns ``[V_i, -V_i, c_i]`` per path, since
    ``relu(z) - relu(-z) == z`` and the constant channel carries the ``fcs`` biases. The attention
    BN is an identity only with its running statistics, so the equality holds in eval mode.
    Build the block with the inferred kwargs (``load_pretrained`` does): ``keep_3x3=False``,
    ``split_input=False``, ``rd_channels=2 * d + 1``.
    """
    n = _count(sd, r"convs\.\d+\.conv\.weight")
    if n == 0:
        raise KeyError("convs.0.conv.weight")
    out: StateDict = {}
    for i in range(n):
        src, dst = f"convs.{i}.", f"paths.{i}."
        out[dst + "conv.weight"] = sd[src + "conv.weight"]
        bias = sd.get(src + "conv.bias")
        mean = sd[src + "bn.running_mean"]
        out[dst + "bn.running_mean"] = mean - bias if bias is not None else mean
        for name in ("weight", "bias", "running_var", "num_batches_tracked"):
            out[dst + "bn." + name] = sd[src + "bn." + name]
    out.update(_linear_head_as_timm(sd, n))
    return out


def _linear_head_as_timm(sd: StateDict, n: int) -> StateDict:
    w, b = sd["fc.weight"], sd["fc.bias"]  # (d, C), (d,)
    d, channels = w.shape
    eps = 1e-5  # BatchNorm2d default, used by both forms
    ones = torch.ones(2 * d + 1, dtype=w.dtype)
    scale = torch.full((2 * d,), math.sqrt(1.0 + eps), dtype=w.dtype)
    blocks = [
        torch.cat((sd[f"fcs.{i}.weight"], -sd[f"fcs.{i}.weight"], sd[f"fcs.{i}.bias"][:, None]), 1)
        for i in range(n)
    ]
    return {
        "attn.fc_reduce.weight": torch.cat((w, -w, torch.zeros(1, channels, dtype=w.dtype)))[
            :, :, None, None],
        "attn.bn.weight": torch.cat((scale, torch.ones(1, dtype=w.dtype))),
        "attn.bn.bias": torch.cat((b, -b, torch.ones(1, dtype=w.dtype))),
        "attn.bn.running_mean": torch.zeros(2 * d + 1, dtype=w.dtype),
        "attn.bn.running_var": ones,
        "attn.bn.num_batches_tracked": torch.tensor(0, dtype=torch.long),
        "attn.fc_select.weight": torch.cat(blocks, 0)[:, :, None, None],
    }


def _infer_sk(sd: StateDict) -> dict[str, object]:
    """Constructor kwargs a timm-layout state_dict determines.

    With every path 3x3 the dilations (hence kernel sizes) are not stored: timm's convention
    ``[3, 5, ...]`` with ``keep_3x3=True`` is assumed. When a path's input width is C / P it is
    read as ``split_input=True, groups=1`` (timm's default); a grouped, unsplit checkpoint with
    groups == P (e.g. SKAttention(group=4) with 4 kernels) looks the same: pass
    ``split_input=False, groups=...`` to override.
    """
    n = _count(sd, r"paths\.\d+\.conv\.weight")
    if n == 0:
        raise KeyError("paths.0.conv.weight")
    weights = [sd[f"paths.{i}.conv.weight"] for i in range(n)]
    channels, per_group = int(weights[0].shape[0]), int(weights[0].shape[1])
    sizes = tuple(int(w.shape[-1]) for w in weights)
    keep_3x3 = all(k == 3 for k in sizes)
    args: dict[str, object] = {
        "channels": channels,
        "kernel_size": tuple(3 + 2 * i for i in range(n)) if keep_3x3 else sizes,
        "keep_3x3": keep_3x3,
        "rd_channels": int(sd["attn.fc_reduce.weight"].shape[0]),
    }
    if per_group == channels:
        args.update(split_input=False, groups=1)
    elif channels % n == 0 and (channels // n) % per_group == 0:
        args.update(split_input=True, groups=(channels // n) // per_group)
    else:
        args.update(split_input=False, groups=channels // per_group)
    return args


SOURCES = {"sk": {"external_attention": _from_external_attention}}
HYPERPARAMS = {"sk": _infer_sk}
