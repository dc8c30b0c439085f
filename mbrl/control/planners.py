"""The planner registry: every planner built by name, from one table of settings.

    problem = simulator_problem(env, horizon=30, seed=0)        # or model_problem(model, ...)
    planner = build_planner("mppi", problem)                     # the registry's settings
    planner = build_planner("cem", problem, population=64)       # with settings changed
    planner = build_planner("cem", problem, config=CEMConfig())  # with a whole config

A `PlanningProblem` is what a planner plans through: the batched `dynamics` scored on the
task's reward (the sampling planners and MCTS), the action bounds, the horizon, the generator,
and for iLQR and DDP a `GradientProblem` (differentiable one-step dynamics and a quadratic
cost, `mbrl.control.goals`). `simulator_problem` and `model_problem` make both from an env or
a trained ensemble. Each planner's settings are its config dataclass (`CEMConfig`, ...) with
the registry's defaults over the dataclass's own, and the problem's horizon put in:

- CEM and iCEM sample 200 sequences for 4 iterations (a replan of a second or so on a
  laptop core through MuJoCo), and the number of their elites is one rule,
  `CEMConfig.num_elites`: a tenth of the population, at least one, unless `elites` is given;
- iCEM is CEM with Pinneri et al. (2020)'s coloured noise (beta 2.5), a population that decays
  by 1.25 an iteration and 30% of the elites kept;
- MPPI weighs samples by `softmax(return / (0.1 * spread of the returns))`, the same on any
  task's reward scale (a raw temperature suits one scale only);
- MCTS chooses among a grid of 3 actions a dimension and rolls 8 random rollouts out of each
  leaf to the end of the horizon;
- DDP is iLQR with the dynamics' second-order terms.

A new planner registers once (`register`) and is then known to the command line, PETS, the
logged data, the planner grid and the benchmarks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

import envs
from controllers import (
    CEM,
    MCTS,
    MPPI,
    CEMConfig,
    ILQRConfig,
    ILQRPlanner,
    MCTSConfig,
    MPPIConfig,
    Planner,
    RandomShooting,
    RandomShootingConfig,
)
from controllers.ilqr import CostFn, DynamicsFn, FinalCostFn
from controllers.policy_penalty import PolicyMean, PolicyProposal, Reward
from controllers.protocols import Dynamics, SequenceDynamics
from controllers.risk import Objective
from controllers.validation import ConfigError
from envs.dynamics import JointSpaceDynamics, SimulatorDynamics
from mbrl.control.goals import GOALS, QuadraticGoal
from mbrl.learning.latent_dynamics import LatentDynamics
from mbrl.learning.models import EnsembleDynamics
from mbrl.learning.propagation import ModelDynamics, Propagation
from mbrl.learning.solver_dynamics import ensemble_dynamics, reward_cost


@dataclass(frozen=True)
class GradientProblem:
    """What iLQR and DDP optimise: `x' = dynamics(x, u)` under `cost` and `final_cost`."""

    #: One differentiable step `x [dx], u [du] -> [dx]` (with `jacobians` where it has them).
    dynamics: DynamicsFn
    #: The running cost `(x, u, t) -> []`.
    cost: CostFn
    #: The cost at the end of the horizon `x -> []`.
    final_cost: FinalCostFn
    #: Where a plan without a warm start begins, `[H, du]` (None: zeros).
    initial_controls: torch.Tensor | None = None
    #: A policy's own action sequence from a state, `[dx] -> [1, H, du]`, where a plan
    #: without a warm start begins instead (None: no policy).
    proposal: Callable[[torch.Tensor], torch.Tensor] | None = None


@dataclass(frozen=True)
class PlanningProblem:
    """What a planner plans through, over what horizon, within what bounds."""

    #: Batched dynamics with the task's reward (sampling planners, MCTS), or None.
    dynamics: Dynamics | SequenceDynamics | None
    #: Lower action bounds `[du]`.
    action_low: torch.Tensor
    #: Upper action bounds `[du]`.
    action_high: torch.Tensor
    #: Plan length H, in control steps.
    horizon: int
    #: The planner's source of randomness.
    generator: torch.Generator
    #: The problem of the gradient-based planners, or None where there is none.
    gradient: GradientProblem | None = None
    #: Why there is no `gradient` problem (for the error of a planner that needs one).
    no_gradient_reason: str = "no differentiable dynamics and cost were given"
    #: A policy's own action sequences from a state, `[dx] -> [k, H, du]`, which CEM and iCEM
    #: join to their samples (None: no policy; iLQR's is `gradient.proposal`).
    proposal: Callable[[torch.Tensor], torch.Tensor] | None = None


Build = Callable[[Any, PlanningProblem], Planner]


@dataclass(frozen=True)
class PlannerSpec:
    """One registered planner."""

    #: The name it is built by.
    name: str
    #: Its settings' dataclass.
    config_type: type
    #: `build(config, problem) -> Planner`.
    build: Build
    #: One line on what it does.
    description: str
    #: The registry's settings over the dataclass's defaults.
    defaults: Mapping[str, Any] = field(default_factory=dict)
    #: Whether it needs `PlanningProblem.gradient` (iLQR, DDP) rather than `dynamics`.
    gradient_based: bool = False


_REGISTRY: dict[str, PlannerSpec] = {}


def register(spec: PlannerSpec) -> None:
    """Add `spec` to the registry under `spec.name`."""
    if spec.name in _REGISTRY:
        raise ValueError(f"planner {spec.name!r} is already registered")
    unknown = set(spec.defaults) - {f.name for f in dataclasses.fields(spec.config_type)}
    if unknown:
        raise ValueError(f"{spec.name}: defaults name no field of "
                         f"{spec.config_type.__name__}: {sorted(unknown)}")
    _REGISTRY[spec.name] = spec


def planner_names() -> tuple[str, ...]:
    """Every registered planner's name, in the order registered."""
    return tuple(_REGISTRY)


def planner_spec(name: str) -> PlannerSpec:
    """The spec registered as `name`.

    Raises:
        ConfigError: naming the planner and listing the registered ones.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError("planner", f"unknown planner {name!r}; registered: "
                          f"{', '.join(_REGISTRY)}") from None


def planner_config(name: str, horizon: int, /, **settings: Any) -> Any:
    """The settings of planner `name`: the registry's defaults, then `settings`, with
    `horizon` put in where the config has one.

    Raises:
        ConfigError: for an unknown planner (path `planner`); for a setting the planner does
            not have (listing those it has), or one out of range or of the wrong type (path:
            the setting's name).
    """
    spec = planner_spec(name)
    fields = {f.name for f in dataclasses.fields(spec.config_type)}
    unknown = sorted(set(settings) - fields)
    if unknown:
        raise ConfigError(unknown[0], f"{name} has no such setting; its settings: "
                          f"{', '.join(sorted(fields - {'horizon'}))}")
    if "horizon" in settings:
        raise ConfigError("horizon", "is the problem's horizon, not a planner setting")
    values = {**spec.defaults, **settings}
    if "horizon" in fields:
        values["horizon"] = horizon
    if "rollout_horizon" in fields:  # MCTS's rollouts reach the end of the horizon
        values.setdefault("rollout_horizon", horizon)
    return spec.config_type(**values)


def require_planner(config: Any) -> None:
    """Check the planner of a run's config (its fields `planner`, `horizon` and
    `planner_settings`) as `__post_init__` checks the rest.

    Raises:
        ConfigError: at `planner` for an unknown planner, at `planner_settings.<name>` for a
            setting it does not have or a value out of range.
    """
    try:
        planner_config(config.planner, config.horizon, **config.planner_settings)
    except ConfigError as error:
        raise error if error.path == "planner" else error.inside("planner_settings") from None


def build_planner(
    name: str, problem: PlanningProblem, /, config: Any | None = None, **settings: Any
) -> Planner:
    """Planner `name` on `problem`, with `config` (of its config type; its horizon must be
    the problem's) or the registry's settings changed by `settings`.

    Raises:
        ConfigError: for an unknown planner or setting, a config of another planner, or a
            planner the problem cannot serve (iLQR without a gradient problem).
    """
    spec = planner_spec(name)
    if config is None:
        try:
            config = planner_config(name, problem.horizon, **settings)
        except ConfigError as error:
            raise error if error.path == "planner" else error.inside("planner") from None
    elif settings:
        raise ConfigError("planner", f"{name}: give a config or settings, not both")
    elif not isinstance(config, spec.config_type):
        raise ConfigError("planner", f"{name} takes a {spec.config_type.__name__}, got "
                          f"{type(config).__name__}")
    elif getattr(config, "horizon", problem.horizon) != problem.horizon:
        raise ConfigError("planner.horizon", f"{getattr(config, 'horizon', None)} is not the "
                          f"problem's horizon ({problem.horizon})")
    if spec.gradient_based and problem.gradient is None:
        raise ConfigError("planner", f"{name} cannot plan this problem: "
                          f"{problem.no_gradient_reason}")
    if not spec.gradient_based and problem.dynamics is None:
        raise ConfigError("planner", f"{name} needs batched dynamics; this problem has none")
    return spec.build(config, problem)


# --------------------------------------------------------------------------- the problems


def gradient_unavailable(
    env: envs.RobotEnv, goal: QuadraticGoal | None = None, *, named: bool = True
) -> str | None:
    """Why iLQR and DDP cannot plan `env` through its simulator, or None if they can: they
    need MuJoCo's finite differences, a quadratic goal (`goal`, else `GOALS[env id]`) and the
    robot's torch map from joint state to observation. `named`: the reason names the env
    (else "this simulator", "this task", for a listing that names it already)."""
    simulator = f"{env.env_id}'s simulator" if named else "this simulator"
    task = env.env_id if named else "this task"
    if not env.env_id.startswith(("mujoco/", "dmc/")):
        return f"no derivatives of {simulator} (only MuJoCo's finite differences are wired)"
    if (goal or GOALS.get(env.env_id)) is None:
        return f"no quadratic goal is known for {task} (mbrl.control.goals.GOALS)"
    if env.joint_observation is None:
        return f"{task} has no torch map from its joint state to its observation"
    return None


def simulator_problem(
    env: envs.RobotEnv, horizon: int, seed: int, *, goal: QuadraticGoal | None = None,
    rollout_threads: int | None = None, policy: PolicyMean | None = None,
    reward: Reward | None = None,
) -> PlanningProblem:
    """Planning through `env`'s true simulator, from `env.get_state()` (a private copy of it,
    `envs.dynamics.SimulatorDynamics`). iLQR and DDP plan from the joint state
    (`envs.dynamics.joint_state`) through MuJoCo's finite-difference Jacobians, on the task's
    quadratic goal (`goal`, else `GOALS[env id]`) of its joint-state observation
    (`env.joint_observation`); where either is missing, they are not offered.

    `policy` (a student's mean action at observations `[B, do] -> [B, du]`) seeds the
    planners with its own actions rolled through the simulator (`PolicyProposal`). `reward`
    replaces the task's reward for the sampling planners and MCTS (PLATO's penalised one).
    """
    low, high = _bounds(env.task)
    goal = goal or GOALS.get(env.env_id)
    reason = gradient_unavailable(env, goal)
    gradient = None
    simulator = SimulatorDynamics(env, rollout_threads=rollout_threads, reward=reward)
    if reason is None:
        assert goal is not None and env.joint_observation is not None
        cost, final_cost = goal.costs(int(low.shape[0]), env.joint_observation)
        joint_space = JointSpaceDynamics(env, "control_step", centred=False)
        gradient = GradientProblem(
            joint_space, cost, final_cost,
            # A small push off the cost's stationary points (a pendulum hanging at rest).
            initial_controls=0.3 * high.expand(horizon, -1),
            proposal=None if policy is None else PolicyProposal(
                policy, lambda x, u: joint_space(x[0], u[0])[None], horizon,
                observe=env.joint_observation),
        )
    proposal = None if policy is None else PolicyProposal(
        policy, simulator.step, horizon,
        observe=lambda x: torch.from_numpy(simulator.observe(x.numpy())))
    return PlanningProblem(
        simulator, low, high, horizon, torch.Generator().manual_seed(seed), gradient,
        reason or "", proposal=proposal,
    )


def model_problem(
    model: EnsembleDynamics, task: envs.Task, horizon: int, generator: torch.Generator | int,
    *, env_id: str | None = None, particles: int | None = None,
    propagation: Propagation = Propagation.TS_INFINITY, goal: QuadraticGoal | None = None,
    objective: Objective = "mean", epsilon: float = 0.1, policy: PolicyMean | None = None,
) -> PlanningProblem:
    """Planning through a trained ensemble, from the observation: the sampling planners
    propagate `particles` (default: one per member) by `propagation` and score them on the
    task's reward; MCTS steps the members' mean; iLQR and DDP differentiate the members' mean
    prediction, on a quadratic goal (`goal`, else `GOALS[env_id]`) or, where none is known, on
    the task's negated reward. The particles and the planner draw from one `generator` (or
    one seeded with it). `policy` (a student's mean action at observations) seeds the
    planners with its own actions rolled through the members' mean (`PolicyProposal`).
    """
    low, high = _bounds(task)
    if isinstance(generator, int):
        generator = torch.Generator().manual_seed(generator)
    dynamics = ModelDynamics(model, task, particles or model.num_members, propagation,
                             generator, objective=objective, epsilon=epsilon)
    solver_dynamics = ensemble_dynamics(model)
    goal = goal or (GOALS.get(env_id) if env_id is not None else None)
    initial = 0.3 * high.expand(horizon, -1)
    proposal = None if policy is None else PolicyProposal(policy, dynamics.step, horizon)
    if goal is not None:
        cost, final_cost = goal.costs(int(low.shape[0]))
        gradient = GradientProblem(solver_dynamics, cost, final_cost, initial, proposal)
    else:
        gradient = GradientProblem(solver_dynamics, reward_cost(task, solver_dynamics),
                                   _no_final_cost, initial, proposal)
    return PlanningProblem(dynamics, low, high, horizon, generator, gradient,
                           proposal=proposal)


def latent_problem(
    dynamics: LatentDynamics, task: envs.Task, horizon: int, generator: torch.Generator
) -> PlanningProblem:
    """Planning in a latent model's space (PlaNet): from a filtered belief's features
    `[dh + ds]`, through the prior's mean, scored by the reward head. The sampling planners
    and MCTS plan it; iLQR and DDP are not offered (the reward head is no quadratic cost)."""
    low, high = _bounds(task)
    return PlanningProblem(dynamics, low, high, horizon, generator, None,
                           "a latent model has no quadratic cost of its state")


def _no_final_cost(x: torch.Tensor) -> torch.Tensor:
    return x.new_zeros(())


def _bounds(task: envs.Task) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.tensor(task.action_low, dtype=torch.float64),
            torch.tensor(task.action_high, dtype=torch.float64))


# --------------------------------------------------------------------------- the planners


def _sampling(kind: type[RandomShooting] | type[CEM] | type[MPPI]) -> Build:
    """The factory of a sampling planner class: its dynamics, bounds, config, generator."""

    def build(config: Any, problem: PlanningProblem) -> Planner:
        assert problem.dynamics is not None
        if kind is CEM:
            return CEM(problem.dynamics, problem.action_low, problem.action_high, config,
                       problem.generator, proposal=problem.proposal)
        if problem.proposal is not None:
            raise ConfigError("planner", f"{config_name(kind)} takes no policy proposals; "
                              "cem, icem, ilqr and ddp do")
        return kind(problem.dynamics, problem.action_low, problem.action_high, config,
                    problem.generator)

    return build


def config_name(kind: type) -> str:
    """The registry's name of a planner class, for messages."""
    return {RandomShooting: "random-shooting", MPPI: "mppi", CEM: "cem"}.get(kind, kind.__name__)


def _mcts(config: MCTSConfig, problem: PlanningProblem) -> Planner:
    assert problem.dynamics is not None
    if problem.proposal is not None:
        raise ConfigError("planner", "mcts takes no policy proposals; cem, icem, ilqr and "
                          "ddp do")
    return MCTS(problem.dynamics, problem.action_low, problem.action_high,  # type: ignore[arg-type]
                config, generator=problem.generator)


def _ilqr(config: ILQRConfig, problem: PlanningProblem) -> Planner:
    gradient = problem.gradient
    assert gradient is not None
    return ILQRPlanner(gradient.dynamics, gradient.cost, gradient.final_cost, problem.horizon,
                       problem.action_low, problem.action_high, config,
                       initial_controls=gradient.initial_controls, proposal=gradient.proposal)


register(PlannerSpec("random-shooting", RandomShootingConfig, _sampling(RandomShooting),
                     "the best of uniformly random action sequences"))
register(PlannerSpec("cem", CEMConfig, _sampling(CEM),
                     "the cross-entropy method: refit a Gaussian to the best sequences",
                     defaults={"population": 200, "iterations": 4}))
register(PlannerSpec("icem", CEMConfig, _sampling(CEM),
                     "iCEM: CEM with coloured noise, a decaying population and kept elites",
                     defaults={"population": 200, "iterations": 4, "noise_beta": 2.5,
                               "population_decay": 1.25, "keep_elites_fraction": 0.3}))
register(PlannerSpec("mppi", MPPIConfig, _sampling(MPPI),
                     "model-predictive path integral: a return-weighted mean of samples",
                     defaults={"temperature": 0.1, "normalize_returns": True}))
register(PlannerSpec("ilqr", ILQRConfig, _ilqr,
                     "iterative LQR on a quadratic cost, with feedback gains",
                     gradient_based=True))
register(PlannerSpec("ddp", ILQRConfig, _ilqr,
                     "differential dynamic programming: iLQR with second-order dynamics",
                     defaults={"second_order": True}, gradient_based=True))
register(PlannerSpec("mcts", MCTSConfig, _mcts,
                     "Monte Carlo tree search (UCT) over a grid of actions",
                     defaults={"grid_points": 3, "rollouts_per_leaf": 8}))
