"""`envs.rewards.tolerance` equals dm_control's numpy original (known answers by construction)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from dm_control.utils import rewards as dm_rewards

from envs.rewards import SIGMOIDS, tolerance

X = np.linspace(-4.0, 4.0, 161)


@pytest.mark.parametrize("sigmoid", SIGMOIDS)
@pytest.mark.parametrize("bounds", [(0.0, 0.0), (-1.0, 0.5), (1.2, math.inf), (-math.inf, 0.3)])
def test_tolerance_matches_dm_control(sigmoid: str, bounds: tuple[float, float]) -> None:
    value_at_margin = 0.0 if sigmoid in ("linear", "quadratic", "cosine") else 0.1
    for margin in (0.0, 0.7, 2.0):
        expected = dm_rewards.tolerance(
            X, bounds=bounds, margin=margin, sigmoid=sigmoid, value_at_margin=value_at_margin
        )
        ours = tolerance(
            torch.tensor(X), bounds=bounds, margin=margin, sigmoid=sigmoid,
            value_at_margin=value_at_margin,
        )
        np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=1e-12)


def test_gradient_is_finite_with_an_infinite_bound() -> None:
    x = torch.linspace(0.0, 3.0, 31, dtype=torch.float64, requires_grad=True)
    tolerance(x, bounds=(1.2, math.inf), margin=0.6).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert (x.grad[x.detach() > 1.2] == 0).all() and (x.grad[x.detach() < 1.2] > 0).all()


def test_bad_arguments_are_refused() -> None:
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="lower bound"):
        tolerance(x, bounds=(1.0, 0.0))
    with pytest.raises(ValueError, match="margin must be non-negative"):
        tolerance(x, margin=-1.0)
    with pytest.raises(ValueError, match="unknown sigmoid 'step'"):
        tolerance(x + 1, margin=1.0, sigmoid="step")
