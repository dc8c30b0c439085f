"""iLQR and DDP known answers: one iteration solves a linear-quadratic problem exactly, the
derivatives agree with finite differences, and a pendulum swings up on an analytic model."""

from __future__ import annotations

import math
import time

import pytest
import torch

from controllers import MPC, ModelDivergedError, MPCConfig
from controllers.costs import QuadraticCost, QuadraticFinalCost
from controllers.ilqr import (
    ILQRConfig,
    ILQRPlanner,
    ILQRResult,
    _Derivatives,
    _derivatives,
    ilqr,
)
from controllers.lqr import solve_lqr

F64 = torch.float64
DT = 0.05


def pendulum(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """A damped pendulum, angle 0 hanging down, semi-implicit Euler: [theta, omega]."""
    omega = x[1] + DT * (-9.81 * torch.sin(x[0]) - 0.1 * x[1] + u[0])
    return torch.stack([x[0] + DT * omega, omega])


def swing_up_cost(x: torch.Tensor, u: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return 0.05 * u @ u + 0.1 * (1 + torch.cos(x[0]))


def swing_up_final_cost(x: torch.Tensor) -> torch.Tensor:
    return 50.0 * (1 + torch.cos(x[0])) + 5.0 * x[1] ** 2


def test_one_iteration_solves_a_linear_quadratic_problem_exactly() -> None:
    generator = torch.Generator().manual_seed(0)
    A = torch.eye(3, dtype=F64) + 0.1 * torch.randn(3, 3, generator=generator, dtype=F64)
    B = torch.randn(3, 2, generator=generator, dtype=F64)
    Q, R = torch.eye(3, dtype=F64), 0.5 * torch.eye(2, dtype=F64)
    Q_final = 10 * torch.eye(3, dtype=F64)
    x0, horizon = torch.tensor([1.0, -2.0, 0.5], dtype=F64), 20

    result = ilqr(
        lambda x, u: A @ x + B @ u,
        lambda x, u, t: 0.5 * x @ Q @ x + 0.5 * u @ R @ u,
        lambda x: 0.5 * x @ Q_final @ x,
        x0, torch.zeros(horizon, 2, dtype=F64), ILQRConfig(mu_init=0.0),
    )
    _, expected = solve_lqr(A, B, Q, R, Q_final, horizon).rollout(x0, A, B)
    assert result.cost_history[1] == pytest.approx(result.cost, rel=1e-12)  # nothing after it
    torch.testing.assert_close(result.controls, expected, rtol=1e-9, atol=1e-9)
    assert result.stop_reason in ("converged", "small_step")


def central_difference(fn, x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:  # type: ignore[no-untyped-def]
    columns = []
    for i in range(x.shape[0]):
        step = torch.zeros_like(x)
        step[i] = eps
        columns.append((fn(x + step) - fn(x - step)) / (2 * eps))
    return torch.stack(columns, dim=-1)


def test_derivatives_agree_with_finite_differences() -> None:
    generator = torch.Generator().manual_seed(1)
    states = torch.randn(4, 2, generator=generator, dtype=F64)
    controls = torch.randn(3, 1, generator=generator, dtype=F64)
    steps = torch.arange(3)
    d = _derivatives(pendulum, swing_up_cost, swing_up_final_cost, states, controls, steps,
                     second_order=True)
    for t in range(3):
        check_step(d, t, states[t], controls[t], steps[t])
    torch.testing.assert_close(d.lx[-1], central_difference(swing_up_final_cost, states[-1]))


def check_step(
    d: _Derivatives, t: int, x: torch.Tensor, u: torch.Tensor, step: torch.Tensor
) -> None:
    """Step t's derivatives against central differences of the functions (or of their
    exact first derivatives, for the second ones)."""
    loose = {"atol": 1e-6, "rtol": 1e-6}
    assert d.fxx is not None and d.fux is not None
    torch.testing.assert_close(d.fx[t], central_difference(lambda y: pendulum(y, u), x))
    torch.testing.assert_close(d.fu[t], central_difference(lambda v: pendulum(x, v), u))
    fx_at = torch.func.jacrev(pendulum)
    torch.testing.assert_close(d.fxx[t], central_difference(lambda y: fx_at(y, u), x), **loose)
    fu_at = torch.func.jacrev(pendulum, argnums=1)
    torch.testing.assert_close(d.fux[t], central_difference(lambda y: fu_at(y, u), x), **loose)
    torch.testing.assert_close(
        d.lx[t], central_difference(lambda y: swing_up_cost(y, u, step), x)
    )
    lx_at = torch.func.jacrev(swing_up_cost)
    torch.testing.assert_close(
        d.lxx[t], central_difference(lambda y: lx_at(y, u, step), x), **loose
    )


@pytest.fixture(scope="module")
def swing_ups() -> dict[bool, ILQRResult]:
    """iLQR (False) and DDP (True) from rest, 80 steps (4 s), a small push to start."""
    return {
        second_order: ilqr(
            pendulum, swing_up_cost, swing_up_final_cost, torch.zeros(2, dtype=F64),
            torch.full((80, 1), 0.1, dtype=F64), ILQRConfig(second_order=second_order),
        )
        for second_order in (False, True)
    }


@pytest.mark.parametrize("second_order", [False, True], ids=["ilqr", "ddp"])
def test_the_pendulum_swings_up_on_its_analytic_model(
    swing_ups: dict[bool, ILQRResult], second_order: bool
) -> None:
    result = swing_ups[second_order]
    theta, omega = result.states[-1]
    assert math.cos(float(theta)) < -0.99 and abs(float(omega)) < 0.2
    # Hanging still costs 0.2 x 80 + 100 = 116; the swing-up found costs 38.79 (both solvers).
    assert result.cost < 40.0, result.cost
    assert all(b <= a for a, b in zip(result.cost_history, result.cost_history[1:], strict=False))
    assert result.stop_reason == "converged"


def test_ddp_needs_no_more_iterations_than_ilqr_on_the_pendulum(
    swing_ups: dict[bool, ILQRResult],
) -> None:
    """Measured: iLQR 88 iterations, DDP 26, to the same cost."""
    assert swing_ups[True].iterations <= swing_ups[False].iterations
    assert swing_ups[True].cost <= swing_ups[False].cost * (1 + 1e-6)


def test_bad_input_is_named() -> None:
    x0, controls = torch.zeros(2, dtype=F64), torch.zeros(5, 1, dtype=F64)
    with pytest.raises(ValueError, match="controls"):
        ilqr(pendulum, swing_up_cost, swing_up_final_cost, x0, controls[0])
    with pytest.raises(ValueError, match="finite"):
        ilqr(pendulum, swing_up_cost, swing_up_final_cost, x0 * torch.nan, controls)

    def nan_slope(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return x + torch.sqrt(u - u)  # finite values, NaN derivative at u = 0

    with pytest.raises(ModelDivergedError, match="derivative fu"):
        ilqr(nan_slope, swing_up_cost, swing_up_final_cost, x0, controls)


def test_a_diverging_step_is_rejected_never_returned() -> None:
    """Dynamics that blow up for large controls: the full Newton step lands there, and the
    line search must back off rather than return an infinite cost."""

    def fragile(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return x + DT * u + torch.where(u.abs() > 0.5, torch.full_like(x, math.inf), 0 * x)

    result = ilqr(
        fragile, lambda x, u, t: 0.001 * u @ u, lambda x: 100 * ((x - 3) ** 2).sum(),
        torch.zeros(1, dtype=F64), torch.zeros(10, 1, dtype=F64),
    )
    assert math.isfinite(result.cost) and bool(torch.isfinite(result.states).all())
    assert result.cost < result.cost_history[0]


@pytest.mark.parametrize("second_order", [False, True], ids=["ilqr", "ddp"])
def test_control_limits_are_never_violated_and_the_pendulum_still_swings_up(
    second_order: bool,
) -> None:
    """|u| <= 3 against gravity's 9.81: the solver must pump energy, inside the limits, in
    every iterate's controls (measured: cost 36.55, iLQR 43 iterations, DDP 14)."""
    low, high = torch.tensor([-3.0], dtype=F64), torch.tensor([3.0], dtype=F64)
    result = ilqr(
        pendulum, swing_up_cost, swing_up_final_cost, torch.zeros(2, dtype=F64),
        torch.full((100, 1), 5.0, dtype=F64),  # outside the box: clipped before anything runs
        ILQRConfig(second_order=second_order), control_low=low, control_high=high,
    )
    assert bool((result.controls >= low).all() and (result.controls <= high).all())
    assert float(result.controls.abs().max()) == pytest.approx(3.0)  # the limit binds
    assert math.cos(float(result.states[-1, 0])) < -0.99
    assert result.cost < 40.0, result.cost


def test_control_limits_must_fit_the_controls() -> None:
    x0, controls = torch.zeros(2, dtype=F64), torch.zeros(5, 1, dtype=F64)
    one = torch.ones(1, dtype=F64)
    with pytest.raises(ValueError, match="both"):
        ilqr(pendulum, swing_up_cost, swing_up_final_cost, x0, controls, control_low=-one)
    with pytest.raises(ValueError, match=r"\[du=1\]"):
        ilqr(pendulum, swing_up_cost, swing_up_final_cost, x0, controls,
             control_low=-torch.ones(2, dtype=F64), control_high=torch.ones(2, dtype=F64))
    with pytest.raises(ValueError, match="low <= high"):
        ilqr(pendulum, swing_up_cost, swing_up_final_cost, x0, controls,
             control_low=one, control_high=-one)


def test_a_passed_deadline_allows_exactly_one_iteration() -> None:
    result = ilqr(
        pendulum, swing_up_cost, swing_up_final_cost, torch.zeros(2, dtype=F64),
        torch.full((40, 1), 0.1, dtype=F64), deadline=time.perf_counter() - 1.0,
    )
    assert result.iterations == 1 and result.stop_reason == "deadline"


def test_between_replans_mpc_plays_the_lqr_feedback_law() -> None:
    """On a linear-quadratic problem iLQR's gains are the LQR gains, so MPC that replans only
    every H steps must play exactly the time-varying LQR law `u = K_t x + k_t` at whatever
    states it meets, here after a push the plan did not foresee."""
    generator = torch.Generator().manual_seed(3)
    A = torch.eye(2, dtype=F64) + 0.1 * torch.randn(2, 2, generator=generator, dtype=F64)
    B = torch.randn(2, 1, generator=generator, dtype=F64)
    Q, R, Q_final = torch.eye(2, dtype=F64), torch.eye(1, dtype=F64), 10 * torch.eye(2, dtype=F64)
    horizon, big = 10, torch.full((1,), 1e6, dtype=F64)
    planner = ILQRPlanner(
        lambda x, u: A @ x + B @ u,
        lambda x, u, t: 0.5 * x @ Q @ x + 0.5 * u @ R @ u,
        lambda x: 0.5 * x @ Q_final @ x,
        horizon, -big, big, ILQRConfig(mu_init=0.0),
    )
    controller = MPC(planner, MPCConfig(replan_every=horizon))
    law = solve_lqr(A, B, Q, R, Q_final, horizon)
    x = torch.tensor([1.0, -1.0], dtype=F64)
    for t in range(horizon):
        u = controller.act(x)
        torch.testing.assert_close(u, law.gains[t] @ x + law.offsets[t], rtol=1e-8, atol=1e-8)
        x = A @ x + B @ u + (torch.tensor([0.3, 0.0], dtype=F64) if t == 2 else 0.0)
    assert controller.stats.replans == 1


def test_mpc_with_ilqr_swings_the_pendulum_up_inside_its_limits() -> None:
    """Receding horizon 3 s, replanning every 0.2 s with at most 5 iterations warm-started
    from the shifted plan; |u| <= 3 (measured: upright, cos -0.9999998, after 6 s)."""
    low, high = torch.tensor([-3.0], dtype=F64), torch.tensor([3.0], dtype=F64)
    planner = ILQRPlanner(pendulum, swing_up_cost, swing_up_final_cost, 60, low, high,
                          ILQRConfig(max_iterations=5))
    controller = MPC(planner, MPCConfig(replan_every=4))
    x = torch.tensor([0.1, 0.0], dtype=F64)  # at exactly 0 the swing-up has no preferred side
    played = []
    for _ in range(120):
        u = controller.act(x)
        played.append(u)
        x = pendulum(x, u)
    controls = torch.stack(played)
    assert bool((controls >= low).all() and (controls <= high).all())
    assert math.cos(float(x[0])) < -0.999 and abs(float(x[1])) < 0.1


class LinearWithJacobians:
    """x' = A x + B u, with its Jacobians given (as a simulator's finite differences are)."""

    def __init__(self, A: torch.Tensor, B: torch.Tensor) -> None:
        self.A, self.B, self.calls = A, B, 0

    def __call__(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.A @ x + self.B @ u

    def jacobians(self, xs: torch.Tensor, us: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        horizon = xs.shape[0]
        return self.A.expand(horizon, -1, -1), self.B.expand(horizon, -1, -1)


def test_dynamics_that_give_their_jacobians_are_differentiated_by_them() -> None:
    A = torch.tensor([[1.0, 0.1], [0.0, 1.0]], dtype=F64)
    B = torch.tensor([[0.0], [0.1]], dtype=F64)
    Q, R = torch.eye(2, dtype=F64), torch.eye(1, dtype=F64)
    dynamics = LinearWithJacobians(A, B)
    x0, horizon = torch.tensor([1.0, 0.0], dtype=F64), 15
    result = ilqr(dynamics, lambda x, u, t: 0.5 * x @ Q @ x + 0.5 * u @ R @ u,
                  lambda x: 0.5 * x @ Q @ x, x0, torch.zeros(horizon, 1, dtype=F64),
                  ILQRConfig(mu_init=0.0))
    _, expected = solve_lqr(A, B, Q, R, Q, horizon).rollout(x0, A, B)
    torch.testing.assert_close(result.controls, expected, rtol=1e-9, atol=1e-9)
    assert dynamics.calls >= 1


class PendulumWithJacobians:
    """The analytic pendulum, differentiated by its own `jacobians` (torch.func here, as a
    simulator's finite differences would be)."""

    def __call__(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return pendulum(x, u)

    def jacobians(self, xs: torch.Tensor, us: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fx, fu = torch.func.vmap(torch.func.jacrev(pendulum, argnums=(0, 1)))(xs, us)
        return fx, fu


def test_ddp_differences_the_jacobians_of_dynamics_that_give_only_those() -> None:
    generator = torch.Generator().manual_seed(3)
    states = torch.randn(6, 2, generator=generator, dtype=F64)
    controls = torch.randn(5, 1, generator=generator, dtype=F64)
    steps = torch.arange(5)
    exact = _derivatives(pendulum, swing_up_cost, swing_up_final_cost, states, controls, steps,
                         second_order=True)
    differenced = _derivatives(PendulumWithJacobians(), swing_up_cost, swing_up_final_cost,
                               states, controls, steps, second_order=True)
    for name in ("fxx", "fux", "fuu"):
        torch.testing.assert_close(getattr(differenced, name), getattr(exact, name),
                                   rtol=1e-6, atol=1e-7)


def test_a_cold_plan_has_its_own_settings_and_initial_guess() -> None:
    """The episode's first plan (no warm start) runs `cold_config` from `initial_controls`;
    replans run `config` from the shifted plan."""
    low, high = torch.tensor([-3.0], dtype=F64), torch.tensor([3.0], dtype=F64)
    planner = ILQRPlanner(
        pendulum, swing_up_cost, swing_up_final_cost, 20, low, high,
        ILQRConfig(max_iterations=1), ILQRConfig(max_iterations=4, cost_tolerance=0.0),
        initial_controls=torch.full((20, 1), 5.0, dtype=F64),  # clipped to the bound, 3
    )
    x0 = torch.tensor([0.0, 0.0], dtype=F64)  # hanging at rest: zero controls stay there
    cold = planner.plan(x0)
    assert cold.iterations == 4
    assert float(cold.actions.abs().max()) > 0.5  # it moved off the stationary start
    warm = planner.plan(x0, warm_start=cold.actions)
    assert warm.iterations == 1
    with pytest.raises(ValueError, match="shape"):
        ILQRPlanner(pendulum, swing_up_cost, swing_up_final_cost, 20, low, high,
                    initial_controls=torch.zeros(19, 1, dtype=F64))


def test_ddp_converges_from_rest_where_the_dynamics_curvature_makes_v_xx_indefinite() -> None:
    """From zero torque under a quadratic angle cost, every DDP backward pass used to fail at
    every mu (regularising V_xx); with mu I on Q_uu it reaches iLQR's optimum."""
    goal = torch.tensor([math.pi, 0.0], dtype=F64)
    cost = QuadraticCost(DT * torch.diag(torch.tensor([1.0, 0.1], dtype=F64)),
                         DT * torch.tensor([[0.01]], dtype=F64), goal)
    final = QuadraticFinalCost(torch.diag(torch.tensor([100.0, 10.0], dtype=F64)), goal)
    x0, start = torch.zeros(2, dtype=F64), torch.zeros(100, 1, dtype=F64)
    plain = ilqr(pendulum, cost, final, x0, start, ILQRConfig(cost_tolerance=1e-10))
    ddp = ilqr(pendulum, cost, final, x0, start,
               ILQRConfig(second_order=True, cost_tolerance=1e-10))
    assert ddp.stop_reason != "regularisation_exhausted"
    assert ddp.cost == pytest.approx(plain.cost, rel=1e-6)
