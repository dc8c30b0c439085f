"""The output contract of every planner and of MPC, tried with Hypothesis: random shapes, NaN and
infinity patterns in bounds, states, warm starts and models.

Whatever happens, one of three things, and only where it is due:
- a `ValueError` naming the argument at fault (`action_low`/`action_high`, `state`/`obs`,
  `warm_start`), raised exactly when that argument is not finite or has the wrong shape;
- `ModelDivergedError`, only from a model that diverges everywhere (and from iLQR, a local
  method, on one whose starting rollout or its derivatives meet NaN);
- a plan (or action) that is finite, of the right shape, and inside the bounds.
MPC never raises for a diverging model: it plays its safe fallback and counts it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controllers import (
    CEM,
    MCTS,
    MPC,
    MPPI,
    CEMConfig,
    ILQRConfig,
    ILQRPlanner,
    MCTSConfig,
    ModelDivergedError,
    MPCConfig,
    MPPIConfig,
    RandomShooting,
    RandomShootingConfig,
)

F64 = torch.float64
SPECIAL = (math.nan, math.inf, -math.inf)
#: How a test model behaves: finite everywhere, NaN for a band of 5% in the middle of the first
#: action's range (a search always finds finite rollouts around it), or NaN everywhere.
MODES = ("finite", "nan_region", "diverges")


class LinearModel:
    """x' = x + B u, reward -||x'||^2 - ||u||^2, with the divergence of `mode`; NaN for
    `u_0` inside `nan_band` in mode "nan_region"."""

    def __init__(
        self, B: torch.Tensor, mode: str, nan_band: tuple[float, float] = (0.0, 0.0)
    ) -> None:
        self.B, self.mode, self.nan_band = B, mode, nan_band
        self.state_dim = B.shape[0]

    def __call__(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """One state `[dx]` (iLQR's dynamics function)."""
        return self.step(x[None], u[None])[0]

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        nxt = state + action @ self.B.T.to(action.dtype)
        if self.mode == "diverges":
            return nxt * math.nan
        if self.mode == "nan_region":
            low, high = self.nan_band
            inside = (action[:, :1] > low) & (action[:, :1] < high)
            return torch.where(inside, nxt * math.nan, nxt)
        return nxt

    def reward(
        self, state: torch.Tensor, action: torch.Tensor, next_state: torch.Tensor
    ) -> torch.Tensor:
        return -(next_state**2).sum(-1) - (action**2).sum(-1)


@dataclass(frozen=True)
class Case:
    """One drawn problem."""

    planner: str
    dx: int
    du: int
    horizon: int
    low: list[float]
    high: list[float]
    state: list[float]
    warm_start: list[list[float]] | None
    mode: str
    seed: int


#: What a drawn case gets wrong, if anything.
FAULTS = ("none", "bounds", "state", "warm")


def vectors(n: int, special: bool, scale: float = 2.0) -> st.SearchStrategy[list[float]]:
    values = st.floats(-scale, scale)
    if special:
        values = st.one_of(values, st.sampled_from(SPECIAL))
    return st.lists(values, min_size=n, max_size=n)


def spoil(draw: st.DrawFn, values: list[float]) -> list[float]:
    """`values` with NaN or an infinity at one or more places."""
    spoilt = list(values)
    for _ in range(draw(st.integers(1, len(values)))):
        spoilt[draw(st.integers(0, len(values) - 1))] = draw(st.sampled_from(SPECIAL))
    return spoilt


@st.composite
def cases(draw: st.DrawFn, planner: str, fault: str) -> Case:
    dx, du, horizon = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 4))
    if fault in ("state", "warm"):
        fault += draw(st.sampled_from(["", "_shape"]))
    low = draw(vectors(du, special=False))
    high = [x + draw(st.sampled_from([0.25, 1.0, 3.0])) for x in low]
    if fault == "bounds":
        i = draw(st.integers(0, du - 1))
        kind = draw(st.sampled_from(["low", "high", "reversed", "equal"]))
        if kind == "low":
            low = spoil(draw, low)
        elif kind == "high":
            high = spoil(draw, high)
        else:
            high[i] = low[i] - 0.5 if kind == "reversed" else low[i]
    state = draw(vectors(dx + (fault == "state_shape"), special=False))
    if fault == "state":
        state = spoil(draw, state)
    warm_start = None
    if fault.startswith("warm") or draw(st.booleans()):
        rows = horizon + (fault == "warm_shape")
        warm_start = [draw(vectors(du, special=False, scale=4.0)) for _ in range(rows)]
        if fault == "warm":
            warm_start[draw(st.integers(0, rows - 1))] = spoil(draw, warm_start[0])
    return Case(planner, dx, du, horizon, low, high, state, warm_start,
                draw(st.sampled_from(MODES)), draw(st.integers(0, 2**16)))


def build(case: Case, model: LinearModel) -> object:
    low, high = torch.tensor(case.low, dtype=F64), torch.tensor(case.high, dtype=F64)
    generator = torch.Generator().manual_seed(case.seed)
    h = case.horizon
    if case.planner == "random_shooting":
        return RandomShooting(model, low, high, RandomShootingConfig(h, population=16), generator)
    if case.planner == "cem":
        return CEM(model, low, high, CEMConfig(h, population=16, elites=4, iterations=2),
                   generator)
    if case.planner == "icem":
        config = CEMConfig(h, population=16, elites=4, iterations=3, noise_beta=2.0,
                           keep_elites_fraction=0.5, population_decay=1.3, return_mean=True)
        return CEM(model, low, high, config, generator)
    if case.planner == "mppi":
        return MPPI(model, low, high, MPPIConfig(h, population=16, iterations=2), generator)
    if case.planner == "mcts":
        return MCTS(model, low, high, MCTSConfig(h, simulations=12, rollouts_per_leaf=2),
                    generator=generator)
    return ILQRPlanner(model, lambda x, u, t: (x**2).sum() + (u**2).sum(),
                       lambda x: (x**2).sum(), h, low, high, ILQRConfig(max_iterations=3))


def bad_bounds(case: Case) -> bool:
    strict = case.planner not in ("mcts", "ilqr")  # these two allow low == high
    pairs = list(zip(case.low, case.high, strict=True))
    not_finite = not all(math.isfinite(v) for pair in pairs for v in pair)
    return not_finite or any(lo > hi or (strict and lo == hi) for lo, hi in pairs)


def finite(values: list[float]) -> bool:
    return all(math.isfinite(v) for v in values)


def model_for(case: Case) -> LinearModel:
    B = torch.linspace(-1, 1, case.dx * case.du, dtype=F64).reshape(case.dx, case.du) + 0.5
    low, width = case.low[0], case.high[0] - case.low[0]
    band = (low + 0.475 * width, low + 0.525 * width)
    return LinearModel(B, case.mode, band if all(map(math.isfinite, band)) else (0.0, 0.0))


def check_plan_or_refusal(case: Case) -> None:
    model = model_for(case)
    if bad_bounds(case):
        with pytest.raises(ValueError, match=r"action_low|action_high"):
            build(case, model)
        return
    planner = build(case, model)
    state = torch.tensor(case.state, dtype=F64)
    warm = None if case.warm_start is None else torch.tensor(case.warm_start, dtype=F64)
    bad_state = len(case.state) != case.dx or not finite(case.state)
    bad_warm = case.warm_start is not None and (
        len(case.warm_start) != case.horizon or not all(finite(r) for r in case.warm_start))
    if bad_state or bad_warm:
        with pytest.raises(ValueError, match="state" if bad_state else "warm_start"):
            planner.plan(state, warm_start=warm)  # type: ignore[attr-defined]
        return
    try:
        plan = planner.plan(state, warm_start=warm)  # type: ignore[attr-defined]
    except ModelDivergedError as error:
        local = case.planner == "ilqr" and case.mode == "nan_region"
        assert case.mode == "diverges" or local, error
        return
    low, high = torch.tensor(case.low, dtype=F64), torch.tensor(case.high, dtype=F64)
    actions = plan.actions.to(F64)
    assert actions.shape == (case.horizon, case.du)
    assert bool(torch.isfinite(actions).all()), actions
    assert bool(((actions >= low) & (actions <= high)).all()), (actions, low, high)
    assert case.mode != "diverges", "a planner may not make up a plan on a diverging model"


def check_mpc(case: Case, observations: list[list[float]]) -> None:
    """MPC over the planner, fed a stream of observations, some of them bad."""
    if bad_bounds(case):
        return  # the planner's construction refuses them (checked above)
    model = model_for(case)
    replan_every = 1 if case.horizon == 1 else 2
    controller = MPC(build(case, model), MPCConfig(replan_every=replan_every))  # type: ignore[arg-type]
    low, high = torch.tensor(case.low, dtype=F64), torch.tensor(case.high, dtype=F64)
    for obs in observations:
        if len(obs) != case.dx or not finite(obs):
            with pytest.raises(ValueError, match="obs"):
                controller.act(torch.tensor(obs, dtype=F64))
            continue
        action = controller.act(torch.tensor(obs, dtype=F64)).to(F64)
        assert action.shape == (case.du,)
        assert bool(torch.isfinite(action).all()) and bool(
            ((action >= low) & (action <= high)).all()), (action, low, high)
    if case.mode == "diverges" and controller.stats.replans:
        assert controller.stats.diverged == controller.stats.replans


PLANNERS = ("random_shooting", "cem", "icem", "mppi", "mcts", "ilqr")
PROPERTY = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("planner", PLANNERS)
def test_every_planner_refuses_bad_input_by_name_or_returns_a_finite_plan_in_bounds(
    planner: str, fault: str
) -> None:
    @PROPERTY
    @given(cases(planner, fault))
    def check(case: Case) -> None:
        check_plan_or_refusal(case)

    check()


@pytest.mark.parametrize("planner", PLANNERS)
def test_mpc_acts_finite_and_in_bounds_whatever_the_observations_and_the_model(
    planner: str,
) -> None:
    @PROPERTY
    @given(cases(planner, "none"), st.data())
    def check(case: Case, data: st.DataObject) -> None:
        observations = [
            data.draw(vectors(data.draw(st.sampled_from([case.dx] * 4 + [case.dx + 1])),
                              special=data.draw(st.booleans())))
            for _ in range(5)
        ]
        check_mpc(case, observations)

    check()


def test_ilqr_mpc_refuses_a_nan_observation_between_replans_instead_of_acting_on_it() -> None:
    """The case that leaked NaN: the feedback correction `K (x - x_t)` between replans."""
    model = LinearModel(torch.tensor([[0.0], [1.0]], dtype=F64), "finite")
    low, high = torch.tensor([-1.0], dtype=F64), torch.tensor([1.0], dtype=F64)
    planner = ILQRPlanner(model, lambda x, u, t: (x**2).sum() + (u**2).sum(),
                          lambda x: (x**2).sum(), 5, low, high, ILQRConfig(max_iterations=2))
    controller = MPC(planner, MPCConfig(replan_every=3))
    first = controller.act(torch.tensor([0.3, -0.2], dtype=F64))
    assert controller.last_plan is not None and controller.last_plan.feedback_gains is not None
    with pytest.raises(ValueError, match="obs holds NaN"):
        controller.act(torch.tensor([math.nan, 0.0], dtype=F64))
    assert bool(torch.isfinite(first).all())
