"""iLQR and DDP: trajectory optimisation by repeated local LQR around the current trajectory.

Problem (horizon `H`, states `[dx]`, controls `[du]`):

    minimise  sum_{t<H} cost(x_t, u_t, t) + final_cost(x_H)   s.t.  x_{t+1} = dynamics(x_t, u_t)

Each iteration linearises the dynamics and quadratises the cost along the current trajectory
(derivatives by `torch.func`, vmapped over the horizon), runs the backward pass for an affine
correction `du_t = k_t + K_t dx_t`, and rolls it out on the true dynamics with a backtracking
line search on the true cost (Li & Todorov 2004, "Iterative linear quadratic regulator design
for nonlinear biological movement systems"). DDP adds the dynamics' second-order terms
`V_x . f_xx` to the backward pass (Mayne 1966; Tassa, Erez & Todorov 2012, "Synthesis and
stabilization of complex behaviors through online trajectory optimization", whose
Levenberg-Marquardt schedule on `V_xx` this follows: `mu` grows by a factor that itself grows
while steps fail and shrinks back after successes). DDP puts `mu I` on `Q_uu` instead, as
Crocoddyl does. With the dynamics' curvature in `Q_xx` the value's Hessian can turn indefinite;
`V_xx + mu I` then makes it more negative as `mu` grows (from a cold pendulum start every
backward pass failed), and its gains stay finite, so a rejected step is not followed by a short
step along the gradient, which `Q_uu + mu I` gives in the limit.

The backward pass (with its box QPs) is one Numba-compiled kernel over float64 arrays, and the
forward pass is a Python loop over the horizon that calls only the dynamics: per-step Python
and NumPy calls, not arithmetic, were most of an iteration's time on small robots.

Stopping rules, checked after every iteration and reported in `ILQRResult.stop_reason`:

- `"converged"`: an accepted step lowered the cost by less than `cost_tolerance` (relative),
  or the backward pass predicts less than that for the full step;
- `"small_step"`: the feedforward step is below `step_tolerance` relative to the controls;
- `"regularisation_exhausted"`: `mu` passed `mu_max` (no descent step could be found);
- `"max_iterations"`.

A forward pass whose cost is NaN, infinite or not lower than the current one is rejected by
the line search, so the returned trajectory is always the best finite one found.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from numba import njit
from numpy.typing import NDArray
from torch.func import grad, hessian, jacfwd, jacrev, jvp, vmap

from controllers.box_qp import (
    NOT_POSITIVE_DEFINITE,
    box_qp_kernel,
    cholesky,
    cholesky_solve_into,
)
from controllers.protocols import ModelDivergedError, Plan
from controllers.sampling import initial_mean
from controllers.small_products import congruence, dot, times, transposed_product, transposed_times
from controllers.validation import (
    check_types,
    checked_bounds,
    checked_state,
    require,
    require_positive,
)

#: `dynamics(x [dx], u [du]) -> [dx]`, differentiable by torch.func, unless it also has
#: `jacobians(xs [H, dx], us [H, du]) -> (fx [H, dx, dx], fu [H, dx, du])`, which is then used
#: instead (e.g. MuJoCo's finite differences, `envs.dynamics.JointSpaceDynamics`). Dynamics
#: with a `step_array(x [dx], u [du]) -> [dx]` on float64 NumPy arrays (the same step without
#: torch) are stepped by it in the forward pass, and dynamics with an
#: `affine_policy_rollout(states, feedforward, gains, low, high)` run the forward pass with it
#: (`controllers.compiled.CompiledDynamics`: the whole rollout in compiled code).
DynamicsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: Step of the centred differences of a dynamics' own `jacobians` that give DDP its second
#: derivatives (the Jacobians themselves being finite differences with a much smaller step).
SECOND_DERIVATIVE_STEP = 1e-4
#: `cost(x [dx], u [du], t) -> []` (the running cost) and `final_cost(x [dx]) -> []`, torch
#: functions differentiated by torch.func, unless they carry their own `derivatives` (as the
#: quadratic costs of `controllers.costs` do), which are then used; a running cost's own
#: `values(xs [H, dx], us [H, du], steps [H]) -> [H]`, where given, prices a whole trajectory.
CostFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
FinalCostFn = Callable[[torch.Tensor], torch.Tensor]
Array = NDArray[np.float64]


@dataclass(frozen=True)
class ILQRConfig:
    """Settings of `ilqr`."""

    #: Iterations (backward and forward pass) at most.
    max_iterations: int = 100
    #: Stop when an accepted step lowers the cost by less than this fraction of it.
    cost_tolerance: float = 1e-7
    #: Stop when max_t |k_t| / (max_t |u_t| + 1) falls below this.
    step_tolerance: float = 1e-6
    #: Include the dynamics' second derivatives (DDP) rather than drop them (iLQR).
    second_order: bool = False
    #: Initial regularisation mu, added as mu I to V_xx' in Q_uu and Q_ux.
    mu_init: float = 1e-6
    #: mu below this is taken as 0.
    mu_min: float = 1e-6
    #: Give up when mu must exceed this.
    mu_max: float = 1e10
    #: Base factor of mu's schedule (Tassa et al. 2012 use 1.6).
    mu_factor: float = 1.6
    #: Line-search step sizes, tried in order.
    alphas: tuple[float, ...] = field(
        default_factory=lambda: tuple(10.0 ** (-0.5 * i) for i in range(11))
    )
    #: Accept a step whose actual decrease is at least this fraction of the predicted one.
    min_decrease_ratio: float = 1e-4

    def __post_init__(self) -> None:
        check_types(self)
        require_positive(self, "max_iterations")
        for name in ("cost_tolerance", "step_tolerance", "mu_init", "min_decrease_ratio"):
            require(self, name, getattr(self, name) >= 0, "must be >= 0")
        require(self, "mu_min", self.mu_min > 0, "must be > 0")
        require(self, "mu_max", self.mu_max >= self.mu_min, f"must be >= mu_min ({self.mu_min})")
        require(self, "mu_factor", self.mu_factor > 1, "must be > 1")
        require(self, "alphas", len(self.alphas) > 0 and all(0 < a <= 1 for a in self.alphas),
                "must be one or more step sizes in (0, 1]")


@dataclass(frozen=True)
class ILQRResult:
    """What `ilqr` returns."""

    #: Optimised states `[H+1, dx]` (`states[0]` is `x0`).
    states: torch.Tensor
    #: Optimised controls `[H, du]`.
    controls: torch.Tensor
    #: Feedback gains K `[H, du, dx]` of the last backward pass, for use between replans.
    gains: torch.Tensor
    #: Total cost of the returned trajectory.
    cost: float
    #: Cost after each iteration, the initial trajectory's first.
    cost_history: list[float]
    #: Seconds from the call's start to each entry of `cost_history`.
    times: list[float]
    #: Iterations run.
    iterations: int
    #: Which stopping rule ended the run (see the module docstring).
    stop_reason: str
    #: The regularisation mu at the end.
    mu: float


def ilqr(
    dynamics: DynamicsFn,
    cost: CostFn,
    final_cost: FinalCostFn,
    x0: torch.Tensor,
    controls: torch.Tensor,
    config: ILQRConfig = ILQRConfig(),
    control_low: torch.Tensor | None = None,
    control_high: torch.Tensor | None = None,
    deadline: float | None = None,
) -> ILQRResult:
    """Optimise `controls [H, du]` from `x0 [dx]` (iLQR, or DDP with `config.second_order`).

    With `control_low` / `control_high` (`[du]`, both or neither), every control stays inside
    them: the backward pass solves the box-constrained QP of Tassa, Mansard & Todorov (2014)
    for each step's correction and zeroes the gains of clamped dimensions; initial controls
    are clipped into the box. With a `deadline` (a `time.perf_counter()` time), it stops
    before an iteration that, as long as the slowest so far, would end past it
    (`stop_reason` "deadline"); the first iteration always runs.
    """
    if x0.ndim != 1 or controls.ndim != 2 or controls.shape[0] < 1:
        raise ValueError(
            f"x0 must be [dx] and controls [H >= 1, du], got {list(x0.shape)} and "
            f"{list(controls.shape)}"
        )
    if not bool(torch.isfinite(x0).all() and torch.isfinite(controls).all()):
        raise ValueError("x0 and the initial controls must be finite")
    call_started = time.perf_counter()
    limits = _check_limits(control_low, control_high, controls.shape[1])
    dtype, device = controls.dtype, controls.device
    bounds = None if limits is None else (_float64(limits[0]), _float64(limits[1]))
    horizon, du, dx = controls.shape[0], controls.shape[1], x0.shape[0]
    steps = torch.arange(horizon, device=device)
    # Iterates are NumPy float64 between passes; the derivatives see torch tensors.
    start = np.broadcast_to(_float64(x0), (horizon + 1, dx))
    u = _float64(controls) if bounds is None else np.clip(_float64(controls), *bounds)
    x, u, total = _forward_pass(
        dynamics, cost, final_cost, start, u, np.zeros((horizon, du)),
        np.zeros((horizon, du, dx)), 1.0, steps, None, dtype,
    )
    if not math.isfinite(total):
        raise ModelDivergedError(
            "iLQR: the initial controls give a NaN or infinite cost; the dynamics diverge from "
            "this state along them"
        )
    mu, delta = config.mu_init, 1.0
    history, times = [total], [time.perf_counter() - call_started]
    gains = np.zeros((horizon, du, dx))
    previous_offsets = np.zeros((horizon, du))  # warm starts of the box QPs
    stop_reason = "max_iterations"
    iterations = 0
    slowest_s, started = 0.0, time.perf_counter()
    while iterations < config.max_iterations:
        if iterations > 0:  # the previous iteration has just ended
            slowest_s = max(slowest_s, time.perf_counter() - started)
            if deadline is not None and time.perf_counter() + slowest_s > deadline:
                stop_reason = "deadline"
                break
        started = time.perf_counter()
        iterations += 1
        derivatives = _derivatives(
            dynamics, cost, final_cost, torch.from_numpy(x).to(dtype),
            torch.from_numpy(u).to(dtype), steps, config.second_order,
        )
        backward = None
        while backward is None:  # raise mu until the backward pass is positive definite
            backward = _backward_pass(derivatives, mu, u, bounds, previous_offsets)
            if backward is None:
                delta = max(config.mu_factor, delta * config.mu_factor)
                mu = max(config.mu_min, mu * delta)
                if mu > config.mu_max:
                    break
        if backward is None:
            stop_reason = "regularisation_exhausted"
            break
        offsets, gains, expected = backward
        previous_offsets = offsets
        step = float(np.abs(offsets).max()) / (float(np.abs(u).max()) + 1.0)
        if step < config.step_tolerance:
            stop_reason = "small_step"
            break
        if -(expected[0] + expected[1]) < config.cost_tolerance * max(abs(total), 1e-12):
            stop_reason = "converged"  # not even the full step is predicted to help
            break
        accepted = None
        for alpha in config.alphas:
            new_x, new_u, new_total = _forward_pass(
                dynamics, cost, final_cost, x, u, offsets, gains, alpha, steps, bounds, dtype
            )
            predicted = -(alpha * expected[0] + alpha**2 * expected[1])
            decrease = total - new_total
            if math.isfinite(new_total) and decrease > 0 and (
                predicted <= 0 or decrease / predicted >= config.min_decrease_ratio
            ):
                accepted = new_x, new_u, new_total
                break
        if accepted is None:  # no step size helped: regularise more and try again
            delta = max(config.mu_factor, delta * config.mu_factor)
            mu = max(config.mu_min, mu * delta)
            history.append(total)
            times.append(time.perf_counter() - call_started)
            if mu > config.mu_max:
                stop_reason = "regularisation_exhausted"
                break
            continue
        relative = (total - accepted[2]) / max(abs(total), 1e-12)
        x, u, total = accepted
        history.append(total)
        times.append(time.perf_counter() - call_started)
        delta = min(1.0 / config.mu_factor, delta / config.mu_factor)
        mu = mu * delta if mu * delta >= config.mu_min else 0.0
        if relative < config.cost_tolerance:
            stop_reason = "converged"
            break

    def tensor(a: Array) -> torch.Tensor:
        return torch.from_numpy(a).to(dtype=dtype, device=device)

    return ILQRResult(
        states=tensor(x), controls=tensor(u), gains=tensor(gains), cost=total,
        cost_history=history, times=times, iterations=iterations, stop_reason=stop_reason, mu=mu,
    )


class ILQRPlanner:
    """iLQR (or DDP) as a `Planner` for `MPC`, through differentiable dynamics.

    Each `plan(x0)` runs `ilqr` from the warm start (the previous plan shifted, which `MPC`
    passes) or, cold, from `initial_controls` with `cold_config` (an episode's first plan,
    which a robot at rest can afford to solve further than a replan), under the caller's
    deadline. The
    plan carries what `MPC` needs to close the loop between replans: `feedback_gains` K
    `[H, du, dx]` and `planned_states` `[H+1, dx]` (so the control played at step t is
    `u_t + K_t (x - x_t)`, clipped into the bounds). The gains are those of the
    last backward pass, taken about the trajectory before its accepted step: at convergence
    the two coincide.

    Args:
        dynamics, cost, final_cost: as for `ilqr`; states are what `MPC.act` receives.
        horizon: H.
        action_low, action_high: `[du]` control limits.
        config: `ILQRConfig` (`second_order=True`: DDP).
        cold_config: the settings of a plan without a warm start (None: `config`).
        initial_controls: `[H, du]`, where a plan without a warm start begins (None: zeros),
            clipped into the bounds. From a stationary point of the cost, such as a pendulum
            hanging at rest under a cost symmetric about the bottom, iLQR cannot move: a
            nonzero guess breaks the symmetry.
        proposal: `state [dx] -> [1, H, du]`, a policy's own action sequence from the state
            (`controllers.policy_penalty.PolicyProposal`); where given, a plan without a warm
            start begins there instead of at `initial_controls`.
    """

    def __init__(
        self,
        dynamics: DynamicsFn,
        cost: CostFn,
        final_cost: FinalCostFn,
        horizon: int,
        action_low: torch.Tensor,
        action_high: torch.Tensor,
        config: ILQRConfig = ILQRConfig(),
        cold_config: ILQRConfig | None = None,
        initial_controls: torch.Tensor | None = None,
        proposal: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        dtype = action_low.dtype if action_low.dtype.is_floating_point else torch.float64
        action_low, action_high = checked_bounds(action_low, action_high, dtype, strict=False)
        self.dynamics, self.cost, self.final_cost = dynamics, cost, final_cost
        self.horizon = horizon
        self.action_low, self.action_high = action_low, action_high
        self.config = config
        self.cold_config = config if cold_config is None else cold_config
        if initial_controls is None:
            initial_controls = torch.zeros(horizon, action_low.shape[0], dtype=action_low.dtype)
        self.initial_controls = initial_mean(action_low, action_high, horizon, initial_controls)
        self.proposal = proposal

    def plan(
        self, state: torch.Tensor, warm_start: torch.Tensor | None = None, *,
        deadline: float | None = None,
    ) -> Plan:
        """Optimise `[H, du]` controls from `state` `[dx]` (see the class docstring).

        Raises:
            ValueError: naming `state` or `warm_start` if it is not finite.
            ModelDivergedError: if the starting controls' rollout diverges.
        """
        state = checked_state(state, dim=getattr(self.dynamics, "state_dim", None))
        dtype = self.action_low.dtype
        config = self.config
        if warm_start is None:
            warm_start, config = self.initial_controls, self.cold_config
            if self.proposal is not None:  # a policy's own actions: start where it would go
                warm_start = initial_mean(self.action_low, self.action_high, self.horizon,
                                          self.proposal(state.to(dtype))[0])
        else:  # checked and clamped as the sampling planners do
            warm_start = initial_mean(self.action_low, self.action_high, self.horizon, warm_start)
        result = ilqr(
            self.dynamics, self.cost, self.final_cost, state.to(dtype), warm_start.to(dtype),
            config, self.action_low, self.action_high, deadline=deadline,
        )
        return Plan(
            actions=result.controls,
            expected_return=-result.cost,
            iterations=result.iterations,
            feedback_gains=result.gains,
            planned_states=result.states,
            info={"stop_reason": result.stop_reason},
        )

    def reset(self) -> None:
        """Nothing is carried between calls."""


@dataclass(frozen=True)
class _Derivatives:
    fx: torch.Tensor  # [H, dx, dx]
    fu: torch.Tensor  # [H, dx, du]
    lx: torch.Tensor  # [H+1, dx] (the last row: the final cost's)
    lu: torch.Tensor  # [H, du]
    lxx: torch.Tensor  # [H+1, dx, dx]
    luu: torch.Tensor  # [H, du, du]
    lux: torch.Tensor  # [H, du, dx]
    fxx: torch.Tensor | None  # [H, dx, dx, dx], DDP only
    fuu: torch.Tensor | None  # [H, dx, du, du]
    fux: torch.Tensor | None  # [H, dx, du, dx]


def _derivatives(
    dynamics: DynamicsFn, cost: CostFn, final_cost: FinalCostFn, states: torch.Tensor,
    controls: torch.Tensor, steps: torch.Tensor, second_order: bool,
) -> _Derivatives:
    """First (and for DDP second) derivatives along the trajectory, vmapped over time."""
    x, u = states[:-1], controls
    jacobians = getattr(dynamics, "jacobians", None)
    fxx = fuu = fux = None
    if jacobians is not None:  # the model's own derivatives (MuJoCo's finite differences)
        fx, fu = jacobians(x, u)
        if second_order:
            fxx, fux, fuu = _differenced_jacobians(jacobians, x, u)
    else:
        fx, fu = vmap(jacrev(dynamics, argnums=(0, 1)))(x, u)
        if second_order:
            (fxx, _), (fux, fuu) = vmap(
                jacfwd(jacrev(dynamics, argnums=(0, 1)), argnums=(0, 1))
            )(x, u)
    own_derivatives = getattr(cost, "derivatives", None)
    if own_derivatives is not None:  # a cost in closed form (`controllers.costs`)
        lx, lu, lxx, luu, lux = own_derivatives(x, u, steps)
    else:
        lx, lu, lxx, luu, lux = cost_derivatives(cost, x, u, steps)
    own_final_derivatives = getattr(final_cost, "derivatives", None)
    if own_final_derivatives is not None:
        final_x, final_xx = own_final_derivatives(states[-1])
    else:
        final_x, final_xx = jacrev(final_cost)(states[-1]), hessian(final_cost)(states[-1])
    result = _Derivatives(
        fx=fx, fu=fu, lx=torch.cat([lx, final_x[None]]), lu=lu,
        lxx=torch.cat([lxx, final_xx[None]]), luu=luu, lux=lux, fxx=fxx, fuu=fuu, fux=fux,
    )
    for name in ("fx", "fu", "lx", "lu", "lxx", "luu", "lux"):
        if not bool(torch.isfinite(getattr(result, name)).all()):
            raise ModelDivergedError(f"iLQR: the derivative {name} has NaN or infinite entries "
                                     "along the trajectory")
    return result


def _differenced_jacobians(
    jacobians: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    x: torch.Tensor, u: torch.Tensor, step: float = SECOND_DERIVATIVE_STEP,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`f_xx [H, dx, dx, dx]`, `f_ux [H, dx, du, dx]` and `f_uu [H, dx, du, du]` by centred
    differences of the dynamics' own Jacobians, all `2 (dx + du) H` points in one call,
    symmetrised in the two differentiated coordinates."""
    horizon, dx = x.shape
    z = torch.cat([x, u], dim=1)  # [H, n]
    n = z.shape[1]
    unit = torch.eye(n, dtype=z.dtype, device=z.device) * step
    points = torch.cat([(z[:, None] + unit).reshape(-1, n), (z[:, None] - unit).reshape(-1, n)])
    A, B = jacobians(points[:, :dx], points[:, dx:])
    J = torch.cat([A, B], dim=-1).reshape(2, horizon, n, dx, n)  # [+-, t, j, i, k]
    second = ((J[0] - J[1]) / (2 * step)).permute(0, 2, 3, 1)  # [t, i, k, j]: d2 f_i/dz_k dz_j
    second = (second + second.transpose(-1, -2)) / 2
    return second[:, :, :dx, :dx], second[:, :, dx:, :dx], second[:, :, dx:, dx:]


def cost_derivatives(
    cost: CostFn, x: torch.Tensor, u: torch.Tensor, steps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`l_x [H, dx]`, `l_u [H, du]`, `l_xx`, `l_uu`, `l_ux` of the running costs.

    The running costs' sum is separable in time, so the product of its Hessian with a unit
    vector repeated at every step is the same column of every step's Hessian: `dx + du`
    forward-over-reverse products (vmapped) give them all, several times faster than a
    vmapped per-step Hessian.
    """
    horizon, dx = x.shape
    z = torch.cat([x, u], dim=1)  # [H, n]
    n = z.shape[1]

    def running_total(z: torch.Tensor) -> torch.Tensor:
        return vmap(lambda z_t, t: cost(z_t[:dx], z_t[dx:], t))(z, steps).sum()

    def along(direction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gradient, column = jvp(grad(running_total), (z,), (direction,))[:2]
        return gradient, column

    basis = torch.eye(n, dtype=z.dtype, device=z.device)[:, None, :].expand(n, horizon, n)
    gradients, columns = vmap(along)(basis)  # [n, H, n] each; columns[i, t] = H_t e_i
    l_z, l_zz = gradients[0], columns.permute(1, 2, 0)
    return l_z[:, :dx], l_z[:, dx:], l_zz[:, :dx, :dx], l_zz[:, dx:, dx:], l_zz[:, dx:, :dx]


def _backward_pass(
    d: _Derivatives, mu: float, controls: Array, limits: tuple[Array, Array] | None,
    warm_offsets: Array,
) -> tuple[Array, Array, tuple[float, float]] | None:
    """Offsets k `[H, du]`, gains K `[H, du, dx]` and the expected decrease terms, or None
    where a regularised Q_uu is not positive definite (`_backward_kernel` on float64 arrays)."""
    fx, fu, lx, lu, lxx, luu, lux = (
        _contiguous(getattr(d, name)) for name in ("fx", "fu", "lx", "lu", "lxx", "luu", "lux")
    )
    horizon, dx, du = fu.shape
    second_order = d.fxx is not None and d.fuu is not None and d.fux is not None
    if second_order:
        fxx, fuu, fux = (_contiguous(d.fxx), _contiguous(d.fuu),  # type: ignore[arg-type]
                         _contiguous(d.fux))  # type: ignore[arg-type]
    else:  # never read
        fxx, fuu, fux = np.empty((0, 0, 0, 0)), np.empty((0, 0, 0, 0)), np.empty((0, 0, 0, 0))
    low, high = (np.full(du, -np.inf), np.full(du, np.inf)) if limits is None else limits
    offsets, gains = np.empty((horizon, du)), np.zeros((horizon, du, dx))
    expected = np.zeros(2)
    ok = _backward_kernel(
        fx, fu, lx, lu, lxx, luu, lux, second_order, fxx, fuu, fux, mu,
        np.ascontiguousarray(controls), limits is not None, low, high, warm_offsets, offsets,
        gains, expected,
    )
    return (offsets, gains, (float(expected[0]), float(expected[1]))) if ok else None


@njit(cache=True)
def _backward_kernel(
    fx: Array, fu: Array, lx: Array, lu: Array, lxx: Array, luu: Array, lux: Array,
    second_order: bool, fxx: Array, fuu: Array, fux: Array, mu: float, controls: Array,
    limited: bool, low: Array, high: Array, warm_offsets: Array, offsets: Array, gains: Array,
    expected: Array,
) -> bool:  # pragma: no cover - compiled; exercised through ilqr
    """The backward pass, from `t = H - 1` down to 0 (Tassa et al. 2012, eqs. 5-6 and 10-11;
    with `limited`, the box QP of Tassa et al. 2014 for `k_t` and zero gains on its clamped
    dimensions). Writes `offsets`, `gains` and `expected` = (sum k'Q_u, sum k'Q_uu k / 2);
    False where a regularised Q_uu is not positive definite."""
    horizon, dx, du = fu.shape
    V_x, V_xx = lx[horizon].copy(), lxx[horizon].copy()
    V_reg = np.empty((dx, dx))
    factor = np.zeros((du, du))
    free = np.empty(du, dtype=np.bool_)
    k, Q_uu_k = np.empty(du), np.empty(du)
    linear, quadratic = 0.0, 0.0
    for t in range(horizon - 1, -1, -1):
        A, B = fx[t], fu[t]
        Q_x = lx[t] + transposed_times(A, V_x)
        Q_u = lu[t] + transposed_times(B, V_x)
        Q_xx = lxx[t] + congruence(A, V_xx, A)
        V_reg[:] = V_xx
        if not second_order:  # DDP regularises Q_uu alone (below)
            for i in range(dx):
                V_reg[i, i] += mu
        Q_uu = luu[t] + congruence(B, V_reg, B)
        Q_ux = lux[t] + congruence(B, V_reg, A)
        if second_order:
            for i in range(dx):
                Q_xx += V_x[i] * fxx[t, i]
                Q_uu += V_x[i] * fuu[t, i]
                Q_ux += V_x[i] * fux[t, i]
            for i in range(du):
                Q_uu[i, i] += mu
        Q_uu = (Q_uu + Q_uu.T) / 2
        K = gains[t]
        if not limited:
            if not cholesky(Q_uu, factor):
                return False
            cholesky_solve_into(factor, -Q_u, k)
            column, solved = np.empty(du), np.empty(du)
            for j in range(dx):
                for i in range(du):
                    column[i] = -Q_ux[i, j]
                cholesky_solve_into(factor, column, solved)
                K[:, j] = solved
        else:  # the correction keeps u + k inside the box; clamped dimensions get no feedback
            code = box_qp_kernel(
                Q_uu, Q_u, low - controls[t], high - controls[t], warm_offsets[t], 100, 1e-10,
                1e-12, 0.1, 0.6, k, free, factor,
            )
            if code == NOT_POSITIVE_DEFINITE:
                return False
            index = np.flatnonzero(free)
            m = index.shape[0]
            if m > 0:
                column, solved = np.empty(m), np.empty(m)
                for j in range(dx):
                    for a in range(m):
                        column[a] = -Q_ux[index[a], j]
                    cholesky_solve_into(factor[:m, :m], column, solved)
                    for a in range(m):
                        K[index[a], j] = solved[a]
        offsets[t] = k
        Q_uu_k[:] = times(Q_uu, k)
        linear += dot(k, Q_u)
        quadratic += 0.5 * dot(k, Q_uu_k)
        # V_x = Q_x + K'Q_uu k + K'Q_u + Q_ux'k;  V_xx = Q_xx + K'Q_uu K + K'Q_ux + Q_ux'K
        V_x = Q_x + transposed_times(K, Q_uu_k) + transposed_times(K, Q_u) + (
            transposed_times(Q_ux, k))
        K_Q_ux = transposed_product(K, Q_ux)
        V_xx = Q_xx + congruence(K, Q_uu, K) + K_Q_ux + K_Q_ux.T
        V_xx = (V_xx + V_xx.T) / 2
    expected[0], expected[1] = linear, quadratic
    return True


def _forward_pass(
    dynamics: DynamicsFn, cost: CostFn, final_cost: FinalCostFn, states: Array,
    controls: Array, offsets: Array, gains: Array, alpha: float, steps: torch.Tensor,
    limits: tuple[Array, Array] | None, dtype: torch.dtype,
) -> tuple[Array, Array, float]:
    """The corrected controls `u_t + alpha k_t + K_t (x_t' - x_t)` (clipped into `limits`)
    rolled out on the true dynamics, and their cost (infinite if the rollout diverges)."""
    horizon = controls.shape[0]
    new_states, new_controls = np.empty_like(states), np.empty_like(controls)
    new_states[0] = states[0]
    x = new_states[0]
    feedforward = controls + alpha * offsets  # [H, du], the same sums as step by step
    limited = limits is not None
    low, high = limits if limits is not None else (np.empty(0), np.empty(0))

    def tensor(a: Array) -> torch.Tensor:
        t = torch.from_numpy(a)
        return t if dtype == torch.float64 else t.to(dtype)

    def through_torch(x: Array, u: Array) -> Array:
        return _float64(dynamics(tensor(x), tensor(u)))

    compiled_rollout = getattr(dynamics, "affine_policy_rollout", None)
    if compiled_rollout is not None:  # the whole loop below in compiled code
        new_states, new_controls = compiled_rollout(
            states, feedforward, gains, *(limits if limits is not None else (None, None)))
        if not np.isfinite(new_states).all():
            return new_states, new_controls, math.inf
        return new_states, new_controls, _trajectory_cost(
            cost, final_cost, new_states, new_controls, steps, dtype)
    step: Callable[[Array, Array], Array] = getattr(dynamics, "step_array", through_torch)
    with torch.no_grad():
        for t in range(horizon):
            u = feedforward[t] + gains[t] @ (x - states[t])
            if limited:
                u = np.minimum(np.maximum(u, low), high)
            new_controls[t] = u
            x = new_states[t + 1] = step(x, u)
            if not math.isfinite(x.sum()):  # NaN or infinity anywhere
                return new_states, new_controls, math.inf
        total = _trajectory_cost(cost, final_cost, new_states, new_controls, steps, dtype)
    return new_states, new_controls, total


def _trajectory_cost(
    cost: CostFn, final_cost: FinalCostFn, states: Array, controls: Array,
    steps: torch.Tensor, dtype: torch.dtype,
) -> float:
    """`sum_t cost(x_t, u_t, t) + final_cost(x_H)`, the running costs vmapped over time;
    infinite where not finite."""
    x, u = torch.from_numpy(states).to(dtype), torch.from_numpy(controls).to(dtype)
    batched = getattr(cost, "values", None)
    if batched is not None:  # a cost in closed form (`controllers.costs`) evaluates every step
        running_costs = batched(x[:-1], u, steps)
    else:

        def running(x_t: torch.Tensor, u_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return cost(x_t, u_t, t)  # vmap would otherwise take the repr of a cost object

        running_costs = vmap(running)(x[:-1], u, steps)
    total = float(running_costs.sum() + final_cost(x[-1]))
    return total if math.isfinite(total) else math.inf


def _float64(x: torch.Tensor) -> Array:
    x = x.detach()
    if x.dtype != torch.float64 or x.device.type != "cpu":
        x = x.to("cpu", torch.float64)
    return x.numpy()


def _contiguous(x: torch.Tensor) -> Array:
    """`x` as a C-contiguous float64 array: the one layout the compiled kernels are built for."""
    return np.ascontiguousarray(_float64(x))


def _check_limits(
    low: torch.Tensor | None, high: torch.Tensor | None, du: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    if low is None and high is None:
        return None
    if low is None or high is None:
        raise ValueError("give both control_low and control_high, or neither")
    if tuple(low.shape) != (du,) or tuple(high.shape) != (du,):
        raise ValueError(
            f"control limits must be [du={du}], got {list(low.shape)} and {list(high.shape)}"
        )
    finite = bool(torch.isfinite(low).all()) and bool(torch.isfinite(high).all())
    if not finite or not bool((low <= high).all()):
        raise ValueError(f"control limits must be finite with low <= high: {low} {high}")
    return low, high
