"""Trained-looking random weights for the block tests, so a reference/deploy comparison can fail.

Freshly built blocks hide mistakes: a BatchNorm with unit weight, zero bias and running statistics
(0, 1) is the identity, a gate whose logits are all near zero is a constant 0.5. ``randomize``
refills a module from a seeded RNG so that both sides of a comparison see weights, biases and
statistics that matter.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

Dist = float | tuple[float, float]
"""A float ``s`` draws from N(0, s); a pair ``(lo, hi)`` draws from U(lo, hi)."""

BN_DEFAULTS: Mapping[str, Dist] = {"running_var": (0.5, 2.0)}


def _fill(t: torch.Tensor, dist: Dist) -> None:
    if isinstance(dist, tuple):
        t.uniform_(*dist)
    else:
        t.normal_(0.0, dist)


def randomize(module: nn.Module, seed: int = 0, std: float = 0.5, *,
              bn: Mapping[str, Dist] | None = None, stats_last: bool = False) -> nn.Module:
    """Refill ``module`` in place from ``torch.manual_seed(seed)``; returns ``module.eval()``.

    Every parameter is drawn from N(0, ``std``), module by module in ``module.modules()`` order and
    each module's own parameters in registration order. A BatchNorm's tensors follow its own
    parameters: ``weight``, ``bias``, ``running_mean``, ``running_var``, each drawn from ``bn[name]``
    if given, else running_var from U(0.5, 2.0) and the rest from N(0, ``std``);
    ``num_batches_tracked`` is left alone. With ``stats_last`` every parameter is drawn first and
    the running statistics after them.

    The seed resets the global RNG, so a test's later ``torch.randn`` calls are seeded too.
    """
    dists = {**BN_DEFAULTS, **(bn or {})}
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            for name, p in m.named_parameters(recurse=False):
                _fill(p, dists.get(name, std) if _is_bn(m) else std)
            if _is_bn(m) and not stats_last:
                _fill_stats(m, dists, std)
        for m in module.modules() if stats_last else ():
            if _is_bn(m):
                _fill_stats(m, dists, std)
    return module.eval()


def _is_bn(m: nn.Module) -> bool:
    return isinstance(m, nn.modules.batchnorm._BatchNorm)


def _fill_stats(bn: nn.Module, dists: Mapping[str, Dist], std: float) -> None:
    if bn.running_mean is not None:
        _fill(bn.running_mean, dists.get("running_mean", std))
        _fill(bn.running_var, dists["running_var"])


def randomize_norms_and_biases(module: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine terms, conv/linear biases drawn, conv weights kept;
    a private generator, so the global RNG (and the tests' later inputs) is untouched."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g))
            elif getattr(m, "bias", None) is not None and isinstance(m, (nn.Conv2d, nn.Linear)):
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.5)
    return module


def assert_matches_float64(module, x, atol: float = 1e-5, rtol: float = 1e-5):
    """Run ``module`` on ``x`` and compare with the same module in float64: on flat maps (zero
    variance, zero norms) "finite" is not enough, the value must be the one the maths gives."""
    import copy

    import torch

    with torch.no_grad():
        got = module(x)
        expected = copy.deepcopy(module).double()(x.double())
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), expected, atol=atol, rtol=rtol)
    return got
