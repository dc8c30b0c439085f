"""`envs.rewards.tolerance` equals dm_control's numpy original (known answers by construction)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from dm_control.utils import rewards as dm_rewards

from envs.cartpole import CartpoleSwingupTask
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


def test_the_written_out_cartpole_reward_is_dm_controls_composition_of_tolerances() -> None:
    generator = torch.Generator().manual_seed(0)
    obs = 3 * torch.randn(1000, 5, generator=generator, dtype=torch.float64)
    next_obs = 3 * torch.randn(1000, 5, generator=generator, dtype=torch.float64)
    act = 1.5 * torch.randn(1000, 1, generator=generator, dtype=torch.float64)  # some |a| > 1
    upright = (next_obs[:, 1] + 1) / 2
    centered = (1 + tolerance(next_obs[:, 0], margin=2)) / 2
    small_control = (4 + tolerance(act[:, 0], margin=1, value_at_margin=0, sigmoid="quadratic")) / 5
    small_velocity = (1 + tolerance(next_obs[:, 4], margin=5)) / 2
    expected = upright * centered * small_control * small_velocity
    ours = CartpoleSwingupTask().reward(obs, act, next_obs)
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)
