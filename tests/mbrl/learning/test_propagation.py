"""Trajectory sampling propagates the particles it claims (PETS's TS1, TS-infinity, expectation)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from mbrl.learning.propagation import ModelDynamics, Propagation


@dataclass(frozen=True)
class Prediction:
    mean: torch.Tensor
    var: torch.Tensor | None


class AnalyticEnsemble:
    """Member e moves a 1-D point by (e + 1) * action; obs = [position, unused].

    Records, for every call, the positions each member was given: with unit actions a particle
    that stays on member e is at t * (e + 1) after t steps, so the positions tell whether a
    particle changed member.
    """

    def __init__(self, members: int, noise_var: float | None = None) -> None:
        self.members = members
        self.noise_var = noise_var
        self.seen: list[list[list[float]]] = []

    @property
    def num_members(self) -> int:
        return self.members

    def predict(self, obs: torch.Tensor, act: torch.Tensor) -> Prediction:
        assert obs.shape[0] == self.members and act.shape[0] == self.members
        self.seen.append([sorted(obs[e, :, 0].tolist()) for e in range(self.members)])
        speed = torch.arange(1, self.members + 1, dtype=obs.dtype).view(-1, 1)
        mean = obs.clone()
        mean[..., 0] = obs[..., 0] + speed * act[..., 0]
        var = None if self.noise_var is None else torch.full_like(mean, self.noise_var)
        if var is not None:
            var[..., 1] = 0.0  # the particle id stays exact
        return Prediction(mean, var)


class Position:
    """Reward: the position reached; never terminates."""

    def reward(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        return next_obs[..., 0]

    def terminated(
        self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor
    ) -> torch.Tensor:
        return torch.zeros(obs.shape[0], dtype=torch.bool)


def ones(candidates: int, horizon: int) -> torch.Tensor:
    return torch.ones(candidates, horizon, 1, dtype=torch.float64)


def test_ts_infinity_keeps_each_particle_on_one_member_spread_over_members() -> None:
    model = AnalyticEnsemble(members=2)
    dynamics = ModelDynamics(model, Position(), particles=4, propagation=Propagation.TS_INFINITY)
    returns = dynamics.sequence_returns(torch.zeros(2, dtype=torch.float64), ones(3, 3))
    # Per candidate: 2 particles on member 0 (positions 1, 2, 3: return 6) and 2 on member 1
    # (positions 2, 4, 6: return 12), so the mean return is 9 for every candidate.
    torch.testing.assert_close(returns, torch.full((3,), 9.0, dtype=torch.float64))
    # Step t: member 0 is given only particles at t, member 1 only particles at 2t, six each
    # (2 particles of each of the 3 candidates): no particle ever changed member.
    for t, (member_0, member_1) in enumerate(model.seen):
        assert member_0 == [float(t)] * 6 and member_1 == [2.0 * t] * 6


def test_ts1_redraws_members_every_step_and_stays_balanced() -> None:
    model = AnalyticEnsemble(members=2)
    dynamics = ModelDynamics(model, Position(), particles=4, propagation=Propagation.TS1,
                             generator=torch.Generator().manual_seed(3))
    dynamics.sequence_returns(torch.zeros(2, dtype=torch.float64), ones(3, 8))
    assert all(len(step[0]) == len(step[1]) == 6 for step in model.seen), "unbalanced members"
    # Redrawn members mix particles that have moved at different speeds.
    assert any(len(set(step[0])) > 1 for step in model.seen), "members were never redrawn"


def test_ts1_returns_follow_the_particles_own_draws() -> None:
    """With one step the return of every particle is its member's speed; the candidate's mean
    over its particles therefore lies in [1, 2] and averages 1.5 over all particles."""
    model = AnalyticEnsemble(members=2)
    dynamics = ModelDynamics(model, Position(), particles=4, propagation=Propagation.TS1,
                             generator=torch.Generator().manual_seed(0))
    returns = dynamics.sequence_returns(torch.zeros(2, dtype=torch.float64), ones(5, 1))
    assert returns.mean().item() == pytest.approx(1.5)
    assert ((returns >= 1) & (returns <= 2)).all()


def test_expectation_follows_the_members_mean() -> None:
    model = AnalyticEnsemble(members=2)
    dynamics = ModelDynamics(model, Position(), particles=1, propagation=Propagation.EXPECTATION)
    returns = dynamics.sequence_returns(torch.zeros(2, dtype=torch.float64), ones(2, 3))
    # Mean speed 1.5: positions 1.5, 3, 4.5.
    torch.testing.assert_close(returns, torch.full((2,), 9.0, dtype=torch.float64))
    next_obs = dynamics.step(torch.zeros(4, 2, dtype=torch.float64),
                             torch.ones(4, 1, dtype=torch.float64))
    torch.testing.assert_close(next_obs[:, 0], torch.full((4,), 1.5, dtype=torch.float64))


def test_probabilistic_members_sample_with_the_generator() -> None:
    def returns(seed: int) -> torch.Tensor:
        model = AnalyticEnsemble(members=2, noise_var=0.25)
        dynamics = ModelDynamics(model, Position(), particles=200,
                                 propagation=Propagation.TS_INFINITY,
                                 generator=torch.Generator().manual_seed(seed))
        return dynamics.sequence_returns(torch.zeros(2, dtype=torch.float64), ones(2, 1))

    torch.testing.assert_close(returns(1), returns(1))
    assert not torch.equal(returns(1), returns(2))
    # Mean over 200 particles of speed + N(0, 0.25): 1.5 within 4 standard errors.
    assert (returns(1) - 1.5).abs().max().item() < 4 * 0.5 / 200**0.5


def test_particle_counts_that_cannot_be_spread_are_refused() -> None:
    model = AnalyticEnsemble(members=5)
    with pytest.raises(ValueError, match=r"particles \(12\) must be a positive multiple"):
        ModelDynamics(model, Position(), particles=12)
    with pytest.raises(ValueError, match="one particle per candidate"):
        ModelDynamics(model, Position(), particles=5, propagation=Propagation.EXPECTATION)


def test_risk_averse_objectives_score_the_particles_worst_returns() -> None:
    # Member e moves (e + 1) a step: over 3 unit steps particle returns are 6 (e + 1) a, two
    # particles a member; candidate 0 pushes +1, candidate 1 pushes -1.
    actions = torch.stack([ones(1, 3)[0], -ones(1, 3)[0]])
    state = torch.zeros(2)

    def score(objective: str, epsilon: float = 0.1) -> list[float]:
        dynamics = ModelDynamics(AnalyticEnsemble(4), Position(), particles=8,
                                 objective=objective, epsilon=epsilon)  # type: ignore[arg-type]
        return dynamics.sequence_returns(state, actions).tolist()

    assert score("mean") == [15.0, -15.0]
    assert score("worst") == [6.0, -24.0]
    assert score("cvar", 0.5) == [9.0, -21.0]  # the 4 lowest of 8 particles
    assert score("cvar", 0.25) == [6.0, -24.0]
    with pytest.raises(ValueError, match="objective must be one of"):
        score("median")
