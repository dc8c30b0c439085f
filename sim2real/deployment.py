"""A controller on a robot's joint interface: what the ROS 2 node runs, without ROS.

`DeployedController` is any `Controller` with the robot's joint-state map in front of it (the
env's own `joint_observation`, one definition per robot in `envs`) and its gear behind it,
built from a trained run or from a planner on the simulator. `ControlLoop` is one control
period, as the node runs it:

    on each joint-state message:  the gate accepts it or logs why not (`CommandGate`)
    on each period, at time t (direct):
        state = the gate's fresh state (None: stale, none yet, or the e-stop latched)
        if state: action = controller.act(observe(state)); effort = gear * action
        command = the gate's verdict on the effort at the time planning ended: the effort
                  clamped into the bounds, or the safe command if the state went stale
                  meanwhile, the effort is not finite, or the e-stop was latched
        a period that took longer than the period is an overrun, counted

Planning takes time the robot does not wait for: a command computed from the state at t
reaches the actuators at t + the planning time (iLQR MPC on the MuJoCo cart-pole at 20 Hz:
20 to 30 ms), and the swing-up suffers (`tests/sim2real/test_deployment.py` measures it).
With a predictor of one period (the controller's own model), the loop compensates the delay
instead (Findeisen & Allgoewer 2004, computational delay):

    on each period, at time t (compensated):
        send the command planned during the last period (the gate's verdict on it, now)
        state = the gate's fresh state; predict its successor at t + period under the
        command just sent, and plan from it the command for the next period

so each command arrives at the period boundary it was planned for, one period after its
state, and the first period after a start or a gap sends the safe command.

MPC's own deadline (`MPCConfig.time_budget_ms`, the shifted-plan fallback when even one
iteration is late) keeps planning inside the period; `ControlLoop` counts what still runs
over. When control resumes after the safe command, the controller is reset, so an MPC does
not warm-start from a plan made before the gap.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

import envs
from controllers import MPC, MPCConfig
from controllers.protocols import Controller
from controllers.risk import OBJECTIVES, Objective
from controllers.validation import require
from envs.dynamics import joint_state, set_joint_state
from mbrl.algorithms.distill import load_student
from mbrl.algorithms.distill import make_env as make_distill_env
from mbrl.algorithms.pets import load_run, model_input, planning_controller, with_risk
from mbrl.config import from_dict
from mbrl.control.planners import build_planner, planner_spec, require_planner, simulator_problem
from mbrl.errors import RunDirError, UserError
from sim2real.randomization import RandomizationConfig
from sim2real.robust import RobustSimulatorDynamics
from sim2real.safety import Array, CommandGate, GatedCommand, SafetyConfig


@dataclass
class DeployedController:
    """A `Controller` and what it needs to act on a robot's joint states."""

    #: What acts: MPC over a planner, or a policy.
    controller: Controller
    #: The controller's input of a joint state `[positions, velocities]` `[2n]`.
    observe: Callable[[Array], Any]
    #: The robot as the controller knows it (joint interface, action bounds); with an action
    #: repeat, one `step` is one control period.
    env: envs.RobotEnv
    #: The control period the controller was made for, seconds.
    period_s: float
    #: What it is, in words (logged).
    description: str
    #: The controller's input one period later under an action `[du]`, with its own model
    #: (None: no model; the loop cannot compensate the planning delay).
    predict: Callable[[Any, Array], Any] | None = None

    def __post_init__(self) -> None:
        if self.env.joint_interface is None or self.env.joint_observation is None:
            raise UserError(f"{self.env.env_id} has no joint interface (named one-degree-of-"
                            "freedom joints and joint motors) or no joint-state observation "
                            "map, so it cannot be deployed on joint states")

    @property
    def rate_hz(self) -> float:
        return 1.0 / self.period_s


def default_budget_ms(period_s: float, compensate_delay: bool) -> float:
    """The planner's deadline: compensated, the plan is due at the next period (90% of it,
    the rest for the node); direct, the command is late by the planning time (75%)."""
    return 1000.0 * period_s * (0.9 if compensate_delay else 0.75)


def controller_from_run(run_dir: Path, plan_budget_ms: float | None = None, seed: int = 0,
                        compensate_delay: bool = True, risk: str | None = None,
                        risk_epsilon: float | None = None) -> DeployedController:
    """MPC through a `mbrl train pets` run's learned model, at the run's control period, with
    the run's planner and `plan_budget_ms` as its deadline (None: `default_budget_ms`); with
    `compensate_delay`, the ensemble's elites' mean predicts one period ahead. `risk` and
    `risk_epsilon` replace the run's scoring of particle returns (robust MPC across the
    ensemble's members).

    Raises:
        UserError: for a run directory that is not one, or a bad risk setting.
    """
    config, model = load_run(run_dir)
    config = with_risk(config, risk, risk_epsilon)
    period_s = envs.make(config.env_id, action_repeat=config.action_repeat).control_timestep
    budget = plan_budget_ms or default_budget_ms(period_s, compensate_delay)
    config = dataclasses.replace(
        config, mpc=dataclasses.replace(config.mpc, time_budget_ms=budget))
    env = envs.make(config.env_id, action_repeat=config.action_repeat)
    generator = torch.Generator().manual_seed(seed)
    observe_joints = env.joint_observation
    if observe_joints is None:
        raise UserError(f"{run_dir}: {config.env_id} has no joint-state observation map")

    def observe(joint_state: Array) -> torch.Tensor:
        obs = observe_joints(torch.from_numpy(np.asarray(joint_state, dtype=np.float64)))
        return model_input(obs.numpy())

    def predict(obs: torch.Tensor, action: Array) -> torch.Tensor:  # the elites' mean
        with torch.no_grad():
            act = torch.as_tensor(action, dtype=obs.dtype)[None]
            return model.predict(obs[None], act, elites_only=True).mean.mean(dim=0)[0]

    return DeployedController(
        planning_controller(model, env.task, config, generator), observe, env,
        env.control_timestep,
        f"{config.planner} MPC through the learned model of {run_dir} ({config.env_id}, "
        f"deadline {budget:g} ms)", predict if compensate_delay else None)


def controller_from_student(run_dir: Path) -> DeployedController:
    """A `mbrl distill` run's student, at the run's control period. A policy answers in
    microseconds, so there is no planning delay to compensate: each period's command is
    computed from that period's joint state.

    Raises:
        UserError: for a run directory without a usable student, or a robot without a
            joint-state observation map.
    """
    try:
        config, student = load_student(run_dir)
    except RunDirError as error:
        raise UserError(f"--controller {run_dir}: {error}") from None
    env = make_distill_env(config)
    observe_joints = env.joint_observation
    if observe_joints is None:
        raise UserError(f"{run_dir}: {config.env_id} has no joint-state observation map")

    def observe(joint_state: Array) -> Array:
        return observe_joints(torch.from_numpy(np.asarray(joint_state, dtype=np.float64))
                              ).numpy()

    return DeployedController(
        student, observe, env, env.control_timestep,
        f"{config.algorithm} student of {run_dir} ({config.env_id}, "
        f"{student.config.hidden_sizes} hidden)")


@dataclass(frozen=True)
class SimulatorMPCConfig:
    """MPC through the true simulator of the robot's env, for a deployment."""

    #: Registered env id of the robot.
    env_id: str = "mujoco/cartpole-swingup"
    #: The planner, by its name in the registry.
    planner: str = "ilqr"
    #: The planner's settings over the registry's.
    planner_settings: dict[str, Any] = field(default_factory=dict)
    #: Control periods per second; the period must be a whole number of the env's steps.
    rate_hz: float = 20.0
    #: Planning horizon, in control periods.
    horizon: int = 20
    #: The planner's deadline per replan, milliseconds (None: `default_budget_ms`).
    plan_budget_ms: float | None = None
    #: Plan one period ahead from the simulator's prediction (see `ControlLoop`).
    compensate_delay: bool = True
    #: Seed of the planner.
    seed: int = 0
    #: Threads the simulator's batched rollouts use (a controller on a robot's computer
    #: shares it with the drivers).
    rollout_threads: int = 1
    #: Robust MPC: plan across `copies` simulators whose physics are drawn from these
    #: ranges (`sim2real.randomization.RandomizationConfig` settings); None: the nominal one.
    robust: dict[str, Any] | None = None
    #: K, the simulator copies of robust MPC.
    copies: int = 4
    #: How robust MPC scores a plan's K returns: "mean", "worst" or "cvar" (EPOpt).
    risk: str = "cvar"
    #: The fraction of the worst copies "cvar" averages, in (0, 1].
    risk_epsilon: float = 0.25

    def __post_init__(self) -> None:
        require_planner(self)
        require(self, "rollout_threads", self.rollout_threads >= 1, "must be >= 1")
        require(self, "copies", self.copies >= 1, "must be >= 1")
        require(self, "risk", self.risk in OBJECTIVES, f"must be one of {list(OBJECTIVES)}")
        require(self, "risk_epsilon", 0.0 < self.risk_epsilon <= 1.0, "must be in (0, 1]")
        spec = planner_spec(self.planner)
        require(self, "planner", self.robust is None
                or not (spec.gradient_based or self.planner == "mcts"),
                "plans through one model; robust MPC takes a sampling planner (cem, icem, "
                "mppi, random-shooting)")


def controller_from_planner(config: SimulatorMPCConfig) -> DeployedController:
    """MPC with a registered planner through an exact copy of the robot's simulator, which
    the joint state is written into before each plan (MuJoCo-backed envs)."""
    base = envs.make(config.env_id)
    repeat = config_period_steps(config.rate_hz, base.control_timestep, config.env_id)
    env = envs.make(config.env_id, action_repeat=repeat, max_episode_steps=10**9)
    env.reset(seed=config.seed)
    budget = config.plan_budget_ms or default_budget_ms(1.0 / config.rate_hz,
                                                        config.compensate_delay)
    rollout_threads = config.rollout_threads if config.env_id.startswith("mujoco/") else None
    problem = simulator_problem(env, config.horizon, config.seed,
                                rollout_threads=rollout_threads)
    if config.robust is not None:
        ranges = from_dict(RandomizationConfig, config.robust)
        problem = dataclasses.replace(problem, dynamics=RobustSimulatorDynamics(
            env, ranges, config.copies, cast(Objective, config.risk), config.risk_epsilon,
            config.seed, rollout_threads))
    controller = MPC(build_planner(config.planner, problem, **config.planner_settings),
                     MPCConfig(time_budget_ms=budget))
    on_joints = planner_spec(config.planner).gradient_based  # iLQR and DDP: joint states

    def observe(x: Array) -> torch.Tensor:
        if on_joints:
            return torch.from_numpy(np.asarray(x, dtype=np.float64))
        set_joint_state(env, np.asarray(x, dtype=np.float64))
        return torch.from_numpy(env.get_state())  # the others plan on simulator states

    def predict(state: torch.Tensor, action: Array) -> torch.Tensor:
        if on_joints:
            set_joint_state(env, state.numpy())
        else:
            env.set_state(state.numpy())
        env.step(np.asarray(action, dtype=np.float64))
        return torch.from_numpy(joint_state(env) if on_joints else env.get_state())

    return DeployedController(
        controller, observe, env, env.control_timestep,
        f"{config.planner} MPC through the {config.env_id} simulator "
        + (f"across {config.copies} randomised copies ({config.risk}) " if config.robust else "")
        + f"(horizon {config.horizon}, deadline {budget:g} ms)",
        predict if config.compensate_delay else None)


def config_period_steps(rate_hz: float, env_step_s: float, env_id: str) -> int:
    """The env steps in one control period of `rate_hz`, or `UserError` if not whole."""
    steps = 1.0 / (rate_hz * env_step_s)
    if not math.isfinite(steps) or steps < 0.999 or abs(steps - round(steps)) > 1e-6:
        raise UserError(f"--rate {rate_hz:g}: the period {1000 / rate_hz:g} ms is not a whole "
                        f"number of {env_id}'s {1000 * env_step_s:g} ms steps")
    return round(steps)


@dataclass(frozen=True)
class Cycle:
    """One control period, as the node logs it."""

    #: When the period began, seconds (the loop's clock).
    tick_s: float
    #: When the command was decided, seconds.
    decided_s: float
    #: Stamp of the joint state the controller acted on (NaN: none).
    state_stamp_s: float
    #: The controller's time for this period, milliseconds (NaN: not asked).
    plan_ms: float
    #: The command sent `[n]`, efforts.
    command: tuple[float, ...]
    #: Whether it is the safe command, and why.
    safe: bool
    reason: str
    #: The period took longer than the period.
    overrun: bool

    def record(self) -> dict[str, Any]:
        """JSON-ready (NaN as null)."""
        return {key: (None if isinstance(value, float) and math.isnan(value) else value)
                for key, value in dataclasses.asdict(self).items()}


class ControlLoop:
    """`deployed` behind a `CommandGate` (see the module docstring).

    Args:
        deployed: the controller and its joint-state map.
        safety: the gate's settings; its period must be the controller's.
        clock: seconds on the clock joint-state stamps use (the node's ROS clock).
        compensate_delay: plan one period ahead with `deployed.predict` (see the module
            docstring); None: where the controller has a predictor.
    """

    def __init__(self, deployed: DeployedController, safety: SafetyConfig,
                 clock: Callable[[], float] = time.time,
                 compensate_delay: bool | None = None) -> None:
        if compensate_delay and deployed.predict is None:
            raise UserError(f"{deployed.description} has no model to predict with, so it "
                            "cannot compensate the planning delay")
        if abs(safety.period_s - deployed.period_s) > 1e-9:
            raise ValueError(f"safety period {safety.period_s} s differs from the controller's "
                             f"{deployed.period_s} s")
        interface = deployed.env.joint_interface
        assert interface is not None  # DeployedController checked it
        low, high = interface.effort_bounds(deployed.env.task)
        self.deployed = deployed
        self.interface = interface
        self.gate = CommandGate(interface.state_joints, interface.command_joints, low, high,
                                safety)
        self.clock = clock
        self._gear = np.asarray(interface.effort_per_action, dtype=np.float64)
        #: Guards the gate: joint states may arrive on another thread than the periods run on
        #: (the node takes them while the controller plans).
        self.lock = threading.RLock()
        self.compensates = (deployed.predict is not None if compensate_delay is None
                            else compensate_delay)
        self._controlling = False
        #: Compensated: the effort planned for the next period and its state's stamp.
        self._planned: tuple[Array, float] | None = None
        #: Periods that ran longer than the period.
        self.overruns = 0
        #: Periods so far.
        self.periods = 0

    def warm_up(self, repeats: int = 2) -> float:
        """Act a few times on the env's start state and reset the controller, so the first
        period on the robot does not pay for first-call set-up (allocations, lazy imports,
        a first iLQR solve took 1.5 s); returns the last act's milliseconds."""
        env = self.deployed.env
        env.reset(seed=0)
        state = joint_state(env)
        elapsed = math.nan
        for _ in range(repeats):
            started = time.perf_counter()
            self.deployed.controller.act(self.deployed.observe(state))
            elapsed = 1000.0 * (time.perf_counter() - started)
        self.deployed.controller.reset()
        return elapsed

    def on_joint_state(self, names: Sequence[str], positions: Sequence[float] | Array,
                       velocities: Sequence[float] | Array, stamp_s: float) -> bool:
        """Offer a joint-state message to the gate; whether it was accepted."""
        with self.lock:
            return self.gate.accept_state(names, positions, velocities, stamp_s,
                                          received_s=self.clock()) is not None

    def engage_estop(self) -> Array:
        """Latch the safe command; returns it, to send at once."""
        with self.lock:
            self.gate.engage_estop(self.clock())
            return self.gate.command(self.clock(), None).values

    def reset_estop(self) -> None:
        """Release a latched e-stop."""
        with self.lock:
            self.gate.reset_estop(self.clock())

    def tick(self, send: Callable[[Array], None] = lambda command: None) -> Cycle:
        """Run one control period now: `send` gets the command as soon as it is decided
        (compensated: at once, before planning the next; direct: when the plan is done);
        returns the period's record."""
        return self._tick_compensated(send) if self.compensates else self._tick_direct(send)

    def _act(self, controller_input: Any) -> tuple[Array, float]:
        """The controller's effort `[n]` for an input, and its milliseconds."""
        started = time.perf_counter()
        action = self.deployed.controller.act(controller_input)
        plan_ms = 1000.0 * (time.perf_counter() - started)
        return self._gear * action.detach().double().numpy().reshape(-1), plan_ms

    def _tick_compensated(self, send: Callable[[Array], None]) -> Cycle:
        planned, planned_from = self._planned if self._planned is not None else (None, math.nan)
        with self.lock:
            tick_s = self.clock()
            gated = self.gate.command(tick_s, planned)
            reading = self.gate.fresh_state(tick_s)
        send(gated.values)  # before planning: the period begins now
        plan_ms = math.nan
        self._planned = None
        if reading is not None:
            if not self._controlling:
                self.deployed.controller.reset()
            assert self.deployed.predict is not None
            now_action = gated.values / self._gear
            upcoming = self.deployed.predict(self.deployed.observe(reading.joint_state),
                                             now_action)
            effort, plan_ms = self._act(upcoming)
            self._planned = (effort, reading.stamp_s)
        self._controlling = reading is not None
        overrun = self.clock() - tick_s > self.deployed.period_s
        self.overruns += overrun
        self.periods += 1
        return Cycle(tick_s, tick_s, planned_from if not gated.safe else math.nan, plan_ms,
                     tuple(gated.values.tolist()), gated.safe,
                     gated.reason or ("" if planned is not None else "nothing planned yet"),
                     overrun)

    def _tick_direct(self, send: Callable[[Array], None]) -> Cycle:
        with self.lock:
            tick_s = self.clock()
            reading = self.gate.fresh_state(tick_s)
        proposed: Array | None = None
        plan_ms = math.nan
        if reading is not None:
            if not self._controlling:
                self.deployed.controller.reset()
            proposed, plan_ms = self._act(self.deployed.observe(reading.joint_state))
        with self.lock:
            decided_s = self.clock()
            gated: GatedCommand = self.gate.command(decided_s, proposed)
        send(gated.values)
        self._controlling = not gated.safe
        overrun = decided_s - tick_s > self.deployed.period_s
        self.overruns += overrun
        self.periods += 1
        return Cycle(tick_s, decided_s, math.nan if reading is None else reading.stamp_s,
                     plan_ms, tuple(gated.values.tolist()), gated.safe, gated.reason, overrun)

    def safe_command(self) -> Array:
        """The command to send when stopping."""
        with self.lock:
            return self.gate.command(self.clock(), None).values
