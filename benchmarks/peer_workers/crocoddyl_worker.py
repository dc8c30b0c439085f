"""Runs Crocoddyl's solvers, and IPOPT on a direct transcription, inside their own virtual
environment (crocoddyl, pin, casadi from pip).

Started by benchmarks/peers_optimal_control.py as `python crocoddyl_worker.py PROBLEM_FILE
CONFIG_JSON` (the problem file is not used: each request carries its problem); reads one JSON
request a line on stdin and answers one JSON line on stdout:

- `{"op": "step", "problem": P, "states": [[...]], "controls": [[...]]}`: the next state of
  each row under Crocoddyl's running model (to check that both sides pose the same dynamics);
- `{"op": "solve", "problem": P, "solver": "DDP|FDDP|BoxDDP|BoxFDDP", "horizon": H,
  "bounded": b, "repeats": n, "max_iterations": m}`: `n` timed solves from zero controls (the
  states their rollout), then one more with a callback that records the cost after each
  iteration; answered with the controls, states, cost, iterations, the solve times and the
  cost history;
- `{"op": "ipopt", "problem": P, "horizon": H, "controls": [[...]] | null}`: the bounded
  problem as a multiple-shooting NLP solved by IPOPT (exact Hessians by CasADi), from zero
  controls or from the given ones.

A problem `P` is a pendulum (a point mass on a massless rod, one revolute joint about y) or a
cart-pole (a slider along x carrying a revolute joint about y), with the masses and inertias
the caller read from MuJoCo. Pinocchio models are built from those numbers, not parsed from
MJCF, so that both sides integrate the same rigid bodies. The dynamics are semi-implicit
(symplectic) Euler, Crocoddyl's `IntegratedActionModelEuler`, whose running cost is the
differential cost times dt: the weights sent are per step and divided by dt here.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import casadi  # type: ignore[import-not-found]  # only in the peer's venv
import crocoddyl  # type: ignore[import-not-found]
import numpy as np
import pinocchio  # type: ignore[import-not-found]


def pinocchio_model(problem: dict[str, Any]) -> Any:
    model = pinocchio.Model()
    model.gravity = pinocchio.Motion(np.array([0.0, 0.0, -problem["gravity"]]), np.zeros(3))
    if problem["kind"] == "pendulum":
        joint = model.addJoint(0, pinocchio.JointModelRY(), pinocchio.SE3.Identity(), "hinge")
        inertia = pinocchio.Inertia(problem["mass"], np.array([0.0, 0.0, -problem["length"]]),
                                    np.zeros((3, 3)))
        model.appendBodyToJoint(joint, inertia, pinocchio.SE3.Identity())
    else:
        cart = model.addJoint(0, pinocchio.JointModelPX(), pinocchio.SE3.Identity(), "slider")
        model.appendBodyToJoint(
            cart, pinocchio.Inertia(problem["cart_mass"], np.zeros(3), np.eye(3) * 1e-3),
            pinocchio.SE3.Identity())
        pole = model.addJoint(cart, pinocchio.JointModelRY(), pinocchio.SE3.Identity(), "hinge")
        model.appendBodyToJoint(
            pole, pinocchio.Inertia(problem["pole_mass"], np.array([0.0, 0.0, problem["pole_com"]]),
                                    np.diag(problem["pole_inertia"])),
            pinocchio.SE3.Identity())
    return model


def shooting_problem(problem: dict[str, Any], horizon: int, bounded: bool) -> Any:
    model = pinocchio_model(problem)
    state = crocoddyl.StateMultibody(model)
    actuation = crocoddyl.ActuationModelFull(state)
    nu, dt = actuation.nu, problem["dt"]
    goal = np.array(problem["goal"], dtype=float)
    control_weights = np.array(problem["R"], dtype=float) / dt
    if problem["kind"] == "cartpole":
        # ActuationModelFull adds a pole torque the robot lacks: priced out of use
        control_weights = np.array([control_weights[0], problem["unactuated_weight"]])

    def differential(state_weights: np.ndarray, with_control: bool) -> Any:
        costs = crocoddyl.CostModelSum(state, nu)
        costs.addCost("state", crocoddyl.CostModelResidual(
            state, crocoddyl.ActivationModelWeightedQuad(state_weights),
            crocoddyl.ResidualModelState(state, goal, nu)), 1.0)
        if with_control:
            costs.addCost("control", crocoddyl.CostModelResidual(
                state, crocoddyl.ActivationModelWeightedQuad(control_weights),
                crocoddyl.ResidualModelControl(state, nu)), 1.0)
        return crocoddyl.DifferentialActionModelFreeFwdDynamics(state, actuation, costs)

    running = crocoddyl.IntegratedActionModelEuler(
        differential(np.array(problem["Q"], dtype=float) / dt, True), dt)
    terminal = crocoddyl.IntegratedActionModelEuler(
        differential(np.array(problem["Q_final"], dtype=float), False), 0.0)
    if bounded:
        limit = problem["limit"]
        low, high = np.full(nu, -limit), np.full(nu, limit)
        if problem["kind"] == "cartpole":  # no torque on the pole
            low[1] = high[1] = 0.0
        running.u_lb, running.u_ub = low, high
    return crocoddyl.ShootingProblem(np.array(problem["x0"], dtype=float), [running] * horizon,
                                     terminal)


SOLVERS = {"DDP": "SolverDDP", "FDDP": "SolverFDDP", "BoxDDP": "SolverBoxDDP",
           "BoxFDDP": "SolverBoxFDDP"}


class CostRecorder(crocoddyl.CallbackAbstract):
    def __init__(self) -> None:
        crocoddyl.CallbackAbstract.__init__(self)
        self.costs: list[float] = []

    def __call__(self, solver: Any) -> None:
        self.costs.append(float(solver.cost))


def solve(request: dict[str, Any]) -> dict[str, Any]:
    problem, horizon = request["problem"], request["horizon"]
    nu = 1 if problem["kind"] == "pendulum" else 2
    times, solver = [], None
    for repeat in range(request["repeats"] + 1):
        shooting = shooting_problem(problem, horizon, request["bounded"])
        solver = getattr(crocoddyl, SOLVERS[request["solver"]])(shooting)
        us = [np.zeros(nu) for _ in range(horizon)]
        xs = shooting.rollout(us)
        recorder = None
        if repeat == request["repeats"]:  # the last, untimed: the cost after each iteration
            recorder = CostRecorder()
            solver.setCallbacks([recorder])
            initial = float(shooting.calc(xs, us))
        started = time.perf_counter()
        solver.solve(xs, us, request["max_iterations"], True)
        elapsed = time.perf_counter() - started
        if recorder is None:
            times.append(elapsed)
    assert solver is not None and recorder is not None
    return {
        "controls": np.array(solver.us).tolist(), "states": np.array(solver.xs).tolist(),
        "cost": float(solver.cost), "iterations": int(solver.iter), "solve_s": times,
        "cost_history": [initial, *recorder.costs],
    }


def step(request: dict[str, Any]) -> dict[str, Any]:
    shooting = shooting_problem(request["problem"], 1, False)
    model, data = shooting.runningModels[0], shooting.runningDatas[0]
    out = []
    for x, u in zip(request["states"], request["controls"], strict=True):
        model.calc(data, np.array(x, dtype=float), np.array(u, dtype=float))
        out.append(np.array(data.xnext).tolist())
    return {"next_states": out}


def casadi_dynamics(problem: dict[str, Any]) -> Any:
    """The same semi-implicit Euler step as a CasADi function of (x, u)."""
    dt, g = problem["dt"], problem["gravity"]
    if problem["kind"] == "pendulum":
        x, u = casadi.SX.sym("x", 2), casadi.SX.sym("u", 1)
        m, length = problem["mass"], problem["length"]
        acceleration = (u[0] - m * g * length * casadi.sin(x[0])) / (m * length**2)
        velocity = x[1] + dt * acceleration
        return casadi.Function("f", [x, u], [casadi.vertcat(x[0] + dt * velocity, velocity)])
    x, u = casadi.SX.sym("x", 4), casadi.SX.sym("u", 1)
    M, m, lc, inertia = (problem["cart_mass"], problem["pole_mass"], problem["pole_com"],
                         problem["pole_inertia"][1])
    theta, theta_dot = x[1], x[3]
    # Lagrange's equations of the cart and the pole (theta about +y, 0 upright).
    mass = casadi.vertcat(casadi.horzcat(M + m, m * lc * casadi.cos(theta)),
                          casadi.horzcat(m * lc * casadi.cos(theta), inertia + m * lc**2))
    forces = casadi.vertcat(u[0] + m * lc * casadi.sin(theta) * theta_dot**2,
                            m * g * lc * casadi.sin(theta))
    acceleration = casadi.solve(mass, forces)
    velocity = x[2:] + dt * acceleration
    return casadi.Function("f", [x, u], [casadi.vertcat(x[:2] + dt * velocity, velocity)])


def ipopt(request: dict[str, Any]) -> dict[str, Any]:
    problem, horizon = request["problem"], request["horizon"]
    f = casadi_dynamics(problem)
    nx = len(problem["x0"])
    Q, R, Q_final = (casadi.diag(casadi.DM(problem[k])) for k in ("Q", "R", "Q_final"))
    goal = casadi.DM(problem["goal"])
    opti = casadi.Opti()
    X, U = opti.variable(nx, horizon + 1), opti.variable(1, horizon)
    opti.subject_to(X[:, 0] == casadi.DM(problem["x0"]))
    objective = 0
    for t in range(horizon):
        opti.subject_to(X[:, t + 1] == f(X[:, t], U[:, t]))
        error = X[:, t] - goal
        objective += 0.5 * (error.T @ Q @ error + U[:, t].T @ R @ U[:, t])
    error = X[:, horizon] - goal
    objective += 0.5 * error.T @ Q_final @ error
    opti.minimize(objective)
    opti.subject_to(opti.bounded(-problem["limit"], U, problem["limit"]))
    start = np.zeros((1, horizon)) if request["controls"] is None else np.array(
        request["controls"], dtype=float).reshape(horizon, -1)[:, :1].T
    states = np.empty((nx, horizon + 1))
    states[:, 0] = problem["x0"]
    for t in range(horizon):
        states[:, t + 1] = np.array(f(states[:, t], start[:, t])).ravel()
    opti.set_initial(U, start)
    opti.set_initial(X, states)
    opti.solver("ipopt", {"print_time": False},
                {"tol": 1e-12, "acceptable_tol": 1e-12, "print_level": 0, "max_iter": 5000})
    started = time.perf_counter()
    solution = opti.solve()
    elapsed = time.perf_counter() - started
    stats = opti.stats()
    return {"controls": np.array(solution.value(U)).reshape(horizon, 1).tolist(),
            "cost": float(solution.value(objective)), "iterations": int(stats["iter_count"]),
            "solve_s": elapsed, "status": str(stats["return_status"])}


def main() -> None:
    # IPOPT prints its banner from C: answers go to a copy of stdout, anything else to stderr.
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    handlers = {"solve": solve, "step": step, "ipopt": ipopt}
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = handlers[request["op"]](request)
        except Exception as error:  # the caller names the request that failed
            answer = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps(answer), file=answers, flush=True)


if __name__ == "__main__":
    main()
