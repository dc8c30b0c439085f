"""Logged transitions of a task, as a PETS user would have them, for fitting and judging models.

Chua et al. (2018), "Deep Reinforcement Learning in a Handful of Trials using Probabilistic
Dynamics Models" (PETS) fits its ensemble to a few uniformly random episodes and then to the
episodes of its own planner. Offline, without a model to plan with, the planner's episodes are
stood in for by an expert: MPC planning on the true simulator (`envs.dynamics.SimulatorDynamics`)
under a small wall-clock budget per replan, with Gaussian exploration noise on its actions
(clipped to the action bounds), so that the data covers the states a good controller visits and
some of their neighbourhood:

    for each random episode: uniformly random actions inside the bounds
    for each expert episode: MPC (CEM or MPPI on the true simulator) from the exact state,
                             plus N(0, (noise_std * range)^2) noise, clipped to the bounds
    every transition goes into one `ReplayBuffer`, random episodes first

Randomness is explicit: one seed fixes the episodes' initial states, the random actions, the
expert's noise and the planner's samples. The random episodes depend on the seed alone; the
expert's also on how many planner iterations fit into its budget on this machine (none of them
does with `expert_budget_ms=None`).

Shapes: `do` observation and `du` action dimension.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

import envs
from controllers import MPC, MPCConfig, Planner
from controllers.validation import check_types, require, require_positive
from mbrl.config import require_known_env
from mbrl.control.episodes import Agent, RandomAgent, rollout
from mbrl.control.planners import build_planner, simulator_problem
from mbrl.learning.data import ReplayBuffer

#: Planners the expert can use, by their names in the registry: the sampling planners whose
#: settings have a population and iterations.
EXPERT_PLANNERS = ("cem", "icem", "mppi")


class NoisyExpert:
    """A controller on the exact simulator state, with Gaussian noise on its actions.

    The expert is privileged: `act` ignores the observation and passes `env.get_state()` of
    the env being logged to `controller` (an `MPC` over `SimulatorDynamics`, say), then adds
    noise of standard deviation `noise_std * (high - low)` per action dimension from `rng` and
    clips the result into the bounds.
    """

    def __init__(
        self,
        env: envs.RobotEnv,
        controller: MPC,
        noise_std: float,
        rng: np.random.Generator,
    ) -> None:
        if not noise_std >= 0.0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        self.env, self.controller, self.rng = env, controller, rng
        self.low, self.high = env.task.action_low, env.task.action_high
        self.noise_scale = noise_std * (self.high - self.low)

    def reset(self) -> None:
        """Forget the controller's plan: a new episode."""
        self.controller.reset()

    def act(self, obs: np.ndarray) -> np.ndarray:
        """The expert's action `[du]` at the env's current state, noised and clipped."""
        action = self.controller.act(torch.from_numpy(self.env.get_state())).numpy()
        noise = self.rng.normal(size=action.shape) * self.noise_scale
        return np.clip(action + noise, self.low, self.high)


def log_episodes(
    env: envs.RobotEnv,
    policy: Agent,
    episodes: int,
    seed: int,
    buffer: ReplayBuffer | None = None,
) -> ReplayBuffer:
    """Run `policy` for `episodes` episodes of `env` and store every transition.

    Each episode resets `env` with a seed drawn from `numpy.random.default_rng(seed)`; each ends
    when the env terminates or truncates (its time limit). The action stored is the one the
    env applied (`env.check_action`, inside the bounds). Transitions are appended to `buffer`
    (a new one when None), which is returned.
    """
    if episodes < 0:
        raise ValueError(f"episodes must be >= 0, got {episodes}")
    task = env.task
    if buffer is None:
        buffer = ReplayBuffer(task.obs_dim, task.act_dim)
    reset_seeds = np.random.default_rng(seed).integers(2**31, size=episodes)
    for reset_seed in reset_seeds:
        rollout(env, policy, seed=int(reset_seed), buffer=buffer)
    return buffer


@dataclass(frozen=True)
class TaskDataConfig:
    """What `log_task_data` logs: a task, its episodes, and the expert that plays some of them.

    Each expert step costs up to `expert_budget_ms` (plus part of one iteration). Keep the
    budget above the time of one planner iteration (`expert_population * expert_horizon`
    simulated control steps): if even the first iteration of a replan overruns it, `MPC`
    plays the previous plan shifted in time instead, and the expert stops replanning. On a
    shared two-core machine one iteration of the defaults took about 15 ms on
    `mujoco/pendulum-swingup`, and the defaults swing it up; `mujoco/cartpole-swingup` at
    action repeat 2 costs about three times as much per control step.
    """

    #: Registered env id (`backend/task`).
    env_id: str
    #: Simulator steps per control step.
    action_repeat: int = 1
    #: Control steps per episode (the env's time limit is set to this many control steps).
    episode_steps: int = 100
    #: Episodes of uniformly random actions, logged first.
    random_episodes: int = 2
    #: Episodes of the noisy expert, logged after the random ones.
    expert_episodes: int = 4
    #: The expert's planner on the true simulator (the registry's), from `EXPERT_PLANNERS`.
    expert_planner: str = "cem"
    #: The expert's planning horizon, in control steps.
    expert_horizon: int = 30
    #: Action sequences the expert samples per planner iteration.
    expert_population: int = 32
    #: Planner iterations per replan at most (fewer if the budget runs out first).
    expert_iterations: int = 4
    #: Wall-clock budget of one replan in milliseconds (None: unlimited, and the data depends
    #: on the seed alone).
    expert_budget_ms: float | None = 60.0
    #: Standard deviation of the Gaussian noise on the expert's actions, as a fraction of each
    #: action's range (`high - low`).
    noise_std: float = 0.1

    def __post_init__(self) -> None:
        check_types(self)
        require_known_env(self)
        require_positive(self, "action_repeat", "episode_steps", "expert_horizon",
                         "expert_population", "expert_iterations")
        for name in ("random_episodes", "expert_episodes"):
            require(self, name, getattr(self, name) >= 0, "must be >= 0")
        require(self, "expert_planner", self.expert_planner in EXPERT_PLANNERS,
                f"must be one of {list(EXPERT_PLANNERS)}")
        require(self, "expert_budget_ms",
                self.expert_budget_ms is None or self.expert_budget_ms > 0, "must be > 0 or null")
        require(self, "noise_std", self.noise_std >= 0.0, "must be >= 0")

    def make_env(self) -> envs.RobotEnv:
        """The task's env with this action repeat, ending after `episode_steps` control steps."""
        return envs.make(
            self.env_id,
            action_repeat=self.action_repeat,
            max_episode_steps=self.episode_steps * self.action_repeat,
        )


def log_task_data(config: TaskDataConfig, seed: int) -> ReplayBuffer:
    """A task's logged data: `config.random_episodes` random episodes, then
    `config.expert_episodes` episodes of the noisy MPC expert on the true simulator.

    Episode indices `0 .. random_episodes - 1` of the buffer are the random ones. `seed` fixes
    everything random (see the module docstring); the random episodes do not depend on the
    expert's settings, so two configs that differ only there share them.
    """
    env = config.make_env()
    task = env.task
    random_seed, expert_seed = np.random.SeedSequence(seed).spawn(2)
    random_rng = np.random.default_rng(random_seed)
    expert_rng = np.random.default_rng(expert_seed)

    buffer = ReplayBuffer(task.obs_dim, task.act_dim)
    random_policy = RandomAgent(task.action_low, task.action_high, random_rng)
    log_episodes(env, random_policy, config.random_episodes, _draw_seed(random_rng), buffer)
    if config.expert_episodes == 0:
        return buffer

    planner = expert_planner(config, env, _draw_seed(expert_rng))
    controller = MPC(planner, MPCConfig(time_budget_ms=config.expert_budget_ms))
    expert = NoisyExpert(env, controller, config.noise_std, expert_rng)
    episodes_seed = _draw_seed(expert_rng)
    return log_episodes(env, expert, config.expert_episodes, episodes_seed, buffer)


def expert_planner(config: TaskDataConfig, env: envs.RobotEnv, seed: int) -> Planner:
    """The expert's planner, from the registry, through the true simulator of `env` (a
    private copy of it)."""
    return build_planner(
        config.expert_planner, simulator_problem(env, config.expert_horizon, seed),
        population=config.expert_population, iterations=config.expert_iterations,
    )


def _draw_seed(rng: np.random.Generator) -> int:
    """A fresh seed for a sub-component, drawn from `rng`."""
    return int(rng.integers(2**31))

