"""The iCEM options of `CEM`: colored noise, kept elites, a shrinking population, the mean.

Pinneri et al. (2020), "Sample-efficient Cross-Entropy Method for Real-time Planning". The
known answers: the noise's spectrum and variance, the exact size and content of every
population, and, with every option off, the very plans of the original CEM.
"""

from __future__ import annotations

import pytest
import torch

from controllers import CEM, CEMConfig, Plan, colored_noise, sequence_returns
from tests.controllers.analytic import (
    F64,
    HIGH,
    LOW,
    ORIGIN,
    PointMass,
    RecordingPointMass,
    shifted,
)


@pytest.mark.parametrize("horizon", [25, 32])
@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0, 3.0])
def test_colored_noise_has_the_power_law_spectrum_and_unit_variance(
    beta: float, horizon: int
) -> None:
    noise = colored_noise((4000, horizon, 3), beta, torch.Generator().manual_seed(0))
    assert noise.shape == (4000, horizon, 3) and noise.dtype == F64
    # Power at each frequency f_k = k / H, k >= 1 (f = 0 is clamped to the lowest frequency),
    # averaged over 12000 sequences: log power = -beta log f + c. The slope's estimate is
    # within 0.01 of -beta for these sizes; the tolerance is 0.05.
    power = (torch.fft.rfft(noise, dim=1).abs() ** 2).mean(dim=(0, 2))[1:]
    log_f = torch.log(torch.fft.rfftfreq(horizon, dtype=F64)[1:])
    design = torch.stack([log_f, torch.ones_like(log_f)], dim=1)
    slope = torch.linalg.lstsq(design, torch.log(power)[:, None]).solution[0, 0]
    assert float(slope) == pytest.approx(-beta, abs=0.05)
    # Variance 1 at every step of every action dimension: 4000 samples estimate it with a
    # standard deviation of 0.022, so every one of the H * 3 estimates is within 0.1.
    variance = noise.var(dim=0)
    assert float((variance - 1).abs().max()) < 0.1
    assert float(variance.mean()) == pytest.approx(1.0, abs=0.03)
    assert float(noise.mean().abs()) < 0.05


def test_colored_noise_with_beta_zero_is_exactly_white() -> None:
    white = colored_noise((7, 5, 2), 0.0, torch.Generator().manual_seed(3))
    assert torch.equal(white, torch.randn((7, 5, 2), generator=torch.Generator().manual_seed(3),
                                          dtype=F64))


def test_red_noise_is_smoother_than_white() -> None:
    def step_to_step_change(beta: float) -> float:
        noise = colored_noise((2000, 30, 1), beta, torch.Generator().manual_seed(0))
        return float(noise.diff(dim=1).pow(2).mean())

    # White: E (x_t+1 - x_t)^2 = 2. Red noise of the same variance moves far less per step.
    assert step_to_step_change(0.0) == pytest.approx(2.0, abs=0.05)
    assert step_to_step_change(2.0) < 0.5


def original_cem_plan(planner: CEM, state: torch.Tensor, warm_start: torch.Tensor | None) -> Plan:
    """CEM's `plan` before the iCEM options, verbatim, as the reference for the defaults."""
    cfg = planner.config
    shape = (cfg.horizon, planner.action_low.shape[0])
    if warm_start is None:
        mean = ((planner.action_low + planner.action_high) / 2).expand(shape).clone()
    else:
        mean = warm_start.to(torch.float64).clamp(planner.action_low, planner.action_high)
    std = (cfg.initial_std * (planner.action_high - planner.action_low)).expand(shape).clone()
    best_actions, best_return = mean, -torch.inf
    for _ in range(cfg.iterations):
        noise = torch.randn(
            (cfg.population, *shape), generator=planner.generator, dtype=torch.float64
        )
        samples = (mean + std * noise).clamp(planner.action_low, planner.action_high)
        returns = sequence_returns(planner.dynamics, state, samples)
        elite_returns, elite_index = torch.topk(returns, cfg.num_elites)
        elites = samples[elite_index]
        mean = cfg.momentum * mean + (1 - cfg.momentum) * elites.mean(dim=0)
        std = cfg.momentum * std + (1 - cfg.momentum) * elites.std(dim=0, unbiased=False)
        if float(elite_returns[0]) > best_return:
            best_return, best_actions = float(elite_returns[0]), elites[0]
    return Plan(actions=best_actions, expected_return=best_return)


def test_with_every_option_off_cem_plans_exactly_as_before() -> None:
    goal = torch.tensor([2.5, -1.5], dtype=F64)
    config = CEMConfig(horizon=4, population=60, elites=6, iterations=4)
    assert (config.noise_beta, config.keep_elites_fraction) == (0.0, 0.0)
    assert (config.population_decay, config.return_mean) == (1.0, False)
    new = CEM(PointMass(goal), LOW, HIGH, config, torch.Generator().manual_seed(4))
    old = CEM(PointMass(goal), LOW, HIGH, config, torch.Generator().manual_seed(4))
    warm = None
    for _ in range(3):  # a cold start, then replans warm-started as MPC does
        plan, reference = new.plan(ORIGIN, warm), original_cem_plan(old, ORIGIN, warm)
        assert torch.equal(plan.actions, reference.actions)
        assert plan.expected_return == reference.expected_return
        warm = shifted(plan.actions)


def top_rows(goal: torch.Tensor, batch: torch.Tensor, k: int) -> torch.Tensor:
    """The `k` best sequences of `batch` `[N, H, du]` on the point mass, best first."""
    returns = sequence_returns(PointMass(goal), ORIGIN, batch)
    return batch[torch.topk(returns, k).indices]


def test_the_population_shrinks_and_carries_the_elites_of_the_last_iteration() -> None:
    goal = torch.tensor([1.5, 0.5], dtype=F64)
    dynamics = RecordingPointMass(goal)
    config = CEMConfig(
        horizon=4, population=100, elites=10, iterations=5, keep_elites_fraction=0.3,
        population_decay=2.0,
    )
    CEM(dynamics, LOW, HIGH, config).plan(ORIGIN)
    # Fresh samples max(K, N / 2**i) = 100, 50, 25, 12, 10, plus 3 kept elites after the first.
    assert [len(batch) for batch in dynamics.batches] == [100, 53, 28, 15, 13]
    for previous, batch in zip(dynamics.batches, dynamics.batches[1:], strict=False):
        assert torch.equal(batch[-3:], top_rows(goal, previous, 3))


def icem_planner(dynamics: RecordingPointMass) -> CEM:
    config = CEMConfig(horizon=5, population=40, elites=10, iterations=3,
                       keep_elites_fraction=0.2, noise_beta=2.5)
    return CEM(dynamics, LOW, HIGH, config, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("steps_played", [1, 2])
def test_a_replan_that_continues_the_plan_starts_with_the_shifted_elites(
    steps_played: int,
) -> None:
    goal = torch.tensor([2.0, -1.0], dtype=F64)
    dynamics = RecordingPointMass(goal)
    planner = icem_planner(dynamics)
    plan = planner.plan(ORIGIN)
    kept = top_rows(goal, dynamics.batches[-1], 2)
    planner.plan(ORIGIN, warm_start=shifted(plan.actions, steps_played))
    first = dynamics.batches[3]
    assert len(first) == 42
    assert torch.equal(first[-2:], torch.stack([shifted(e, steps_played) for e in kept]))


def test_kept_elites_stay_within_one_chain_of_replans() -> None:
    dynamics = RecordingPointMass(torch.tensor([2.0, -1.0], dtype=F64))
    planner = icem_planner(dynamics)
    plan = planner.plan(ORIGIN)
    planner.plan(ORIGIN, warm_start=torch.zeros(5, 2, dtype=F64))  # not the plan shifted
    plan = planner.plan(ORIGIN)  # no warm start: a new chain
    planner.reset()
    plan = planner.plan(ORIGIN, warm_start=shifted(plan.actions))  # the chain, after a reset
    planner.plan(ORIGIN, warm_start=shifted(plan.actions))  # this one continues a chain
    first_of_each_call = [len(batch) for batch in dynamics.batches[::3]]
    assert first_of_each_call == [40, 40, 40, 40, 42]


def test_return_mean_returns_the_refitted_mean() -> None:
    goal = torch.tensor([0.4, -0.3], dtype=F64)
    dynamics = RecordingPointMass(goal)
    config = CEMConfig(horizon=3, population=50, elites=5, iterations=1, momentum=0.0,
                       return_mean=True)
    plan = CEM(dynamics, LOW, HIGH, config).plan(ORIGIN)
    elites = top_rows(goal, dynamics.batches[0], 5)
    assert torch.allclose(plan.actions, elites.mean(dim=0), rtol=0, atol=1e-15)
    returns = sequence_returns(PointMass(goal), ORIGIN, elites)
    assert plan.expected_return == pytest.approx(float(returns.mean()))


def test_bad_icem_options_are_refused() -> None:
    with pytest.raises(ValueError, match="noise_beta"):
        CEMConfig(noise_beta=-1.0)
    with pytest.raises(ValueError, match="keep_elites_fraction"):
        CEMConfig(keep_elites_fraction=1.5)
    with pytest.raises(ValueError, match="population_decay"):
        CEMConfig(population_decay=0.5)
