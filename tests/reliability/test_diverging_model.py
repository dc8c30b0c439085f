"""A learned ensemble with one member gone NaN: the planner says so by name, MPC plays its safe
fallback with a warning and counts it, and PETS writes the count into its metrics; nothing
passes a made-up constant on in silence."""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import pytest
import torch

import envs
import mbrl.algorithms.pets as pets
from controllers import ModelDivergedError
from mbrl.learning.models import EnsembleDynamics
from tests.mbrl.algorithms.test_pets import TINY


def poison(model: EnsembleDynamics, member: int) -> None:
    """Member `member`'s output weights become NaN (as after a diverged fit)."""
    with torch.no_grad():
        model.layers[-1].weight[member] = math.nan


def test_a_nan_member_makes_the_planner_raise_and_mpc_fall_back_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = envs.make(TINY.env_id, action_repeat=TINY.action_repeat)
    task = env.task
    model = EnsembleDynamics(task.obs_dim, task.act_dim, TINY.model,
                             generator=torch.Generator().manual_seed(0))
    poison(model, member=1)
    obs, _ = env.reset(seed=0)
    controller = pets.planning_controller(model, task, TINY, torch.Generator().manual_seed(0))
    with pytest.raises(ModelDivergedError, match="CEM: all 32 rollouts returned NaN"):
        controller.planner.plan(torch.as_tensor(obs))
    with caplog.at_level(logging.WARNING, logger="controllers.mpc"):
        actions = [controller.act(torch.as_tensor(obs).float()) for _ in range(3)]
    low, high = torch.tensor(task.action_low), torch.tensor(task.action_high)
    for action in actions:
        assert bool(torch.isfinite(action).all())
        assert bool(((action >= low) & (action <= high)).all())
    assert torch.equal(actions[0], controller.safe_action().to(actions[0].dtype))
    assert controller.stats.diverged == controller.stats.replans == 3
    warnings = [r for r in caplog.records if "rollouts returned NaN" in r.getMessage()]
    assert len(warnings) == 1 and "the safe plan" in warnings[0].getMessage()


def test_pets_counts_the_replans_a_diverged_ensemble_could_not_make(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fit = pets.fit_buffer

    def fit_then_diverge(model: EnsembleDynamics, *args: object, **kwargs: object) -> object:
        report = real_fit(model, *args, **kwargs)  # type: ignore[arg-type]
        poison(model, member=0)
        return report

    monkeypatch.setattr(pets, "fit_buffer", fit_then_diverge)
    rows = pets.train_pets(dataclasses.replace(TINY, episodes=2), tmp_path, resume=False)
    assert [r["diverged_replans"] for r in rows] == [0, TINY.episode_steps]
