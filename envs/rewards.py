"""Batched torch versions of the reward shapes the tasks use.

`tolerance` is dm_control's `rewards.tolerance` (Tassa et al. 2018, "DeepMind Control Suite"),
written for torch so planners can evaluate and differentiate the same rewards the simulator
pays; it returns the same values as the numpy original to float64 round-off.
"""

from __future__ import annotations

import math

import torch

SIGMOIDS = (
    "gaussian", "hyperbolic", "long_tail", "reciprocal", "cosine", "linear", "quadratic",
    "tanh_squared",
)


def _sigmoid(x: torch.Tensor, value_at_1: float, kind: str) -> torch.Tensor:
    """1 at `x == 0`, `value_at_1` at `x == 1`, falling in between; `x >= 0`."""
    if kind in ("cosine", "linear", "quadratic"):
        if not 0 <= value_at_1 < 1:
            raise ValueError(f"value_at_margin must be in [0, 1) for {kind}, got {value_at_1}")
    elif not 0 < value_at_1 < 1:
        raise ValueError(f"value_at_margin must be in (0, 1) for {kind}, got {value_at_1}")
    if kind == "gaussian":
        scale = math.sqrt(-2 * math.log(value_at_1))
        return torch.exp(-0.5 * (x * scale) ** 2)
    if kind == "hyperbolic":
        return 1 / torch.cosh(x * math.acosh(1 / value_at_1))
    if kind == "long_tail":
        return 1 / ((x * math.sqrt(1 / value_at_1 - 1)) ** 2 + 1)
    if kind == "reciprocal":
        return 1 / (x.abs() * (1 / value_at_1 - 1) + 1)
    if kind == "cosine":
        scaled = x * (math.acos(2 * value_at_1 - 1) / math.pi)
        return torch.where(scaled.abs() < 1, (1 + torch.cos(math.pi * scaled)) / 2, x.new_zeros(()))
    if kind == "linear":
        scaled = x * (1 - value_at_1)
        return torch.where(scaled.abs() < 1, 1 - scaled, x.new_zeros(()))
    if kind == "quadratic":
        scaled = x * math.sqrt(1 - value_at_1)
        return torch.where(scaled.abs() < 1, 1 - scaled**2, x.new_zeros(()))
    if kind == "tanh_squared":
        return 1 - torch.tanh(x * math.atanh(math.sqrt(1 - value_at_1))) ** 2
    raise ValueError(f"unknown sigmoid {kind!r}; known: {', '.join(SIGMOIDS)}")


def tolerance(
    x: torch.Tensor,
    bounds: tuple[float, float] = (0.0, 0.0),
    margin: float = 0.0,
    sigmoid: str = "gaussian",
    value_at_margin: float = 0.1,
) -> torch.Tensor:
    """1 where `lower <= x <= upper`, falling off with the distance outside; same shape as `x`.

    With `margin == 0` the result is the indicator of the bounds (not differentiable);
    otherwise it is `sigmoid(distance / margin)`, which equals `value_at_margin` at one margin.
    """
    lower, upper = bounds
    if lower > upper:
        raise ValueError(f"lower bound {lower} is above upper bound {upper}")
    if margin < 0:
        raise ValueError(f"margin must be non-negative, got {margin}")
    if lower == upper == 0 and margin > 0 and sigmoid != "linear":
        # The common "near zero" shape: every sigmoid but linear is even and 1 at 0, so this is
        # the general formula below in a third of the tensor operations (planners call it for
        # every particle at every step).
        return _sigmoid(x / margin, value_at_margin, sigmoid)
    in_bounds = (lower <= x) & (x <= upper)
    one = torch.ones((), dtype=x.dtype, device=x.device)
    if margin == 0:
        return torch.where(in_bounds, one, torch.zeros_like(one))
    distance = torch.where(x < lower, lower - x, x - upper)
    # Zero the in-bounds distances first: with an infinite bound they are -inf there, and the
    # sigmoid's gradient at -inf is NaN even where `torch.where` discards its value.
    distance = torch.where(in_bounds, torch.zeros_like(distance), distance) / margin
    return torch.where(in_bounds, one, _sigmoid(distance, value_at_margin, sigmoid))
