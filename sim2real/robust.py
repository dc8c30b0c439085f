"""Robust planning: score each action sequence on K robots drawn from a randomisation range.

EPOpt (Rajeswaran et al. 2017, "EPOpt: Learning Robust Neural Network Policies Using Model
Ensembles") optimises the conditional value at risk of the return over sampled models: the
mean of the worst epsilon fraction. Here the same objective ranks a planner's candidates:

    draw K physics from the config's ranges (once, from the seed)
    for each candidate sequence U (N of them):
        R[k] = the return of U from the state on simulator copy k
        score(U) = mean over k of R    ("mean")
                 | min over k of R     ("worst")
                 | mean of the ceil(epsilon K) lowest R  ("cvar")

`RobustSimulatorDynamics` is a `SequenceDynamics` (`sequence_returns`), so CEM, iCEM, MPPI and
random shooting plan through it unchanged; its states are the nominal simulator's
`get_state()` vectors, which every copy takes (the physics scales are not part of the state).
Only the physics scales of the config are drawn: delays and noise act on the robot, not on a
planner's imagined rollouts. The same objectives over a learned ensemble's particles are
`ModelDynamics(objective=...)` (PETS's `risk`); both use `controllers.risk`.
"""

from __future__ import annotations

import numpy as np
import torch

import envs
from controllers.risk import Objective, aggregate_returns, check_objective
from envs.dynamics import SimulatorDynamics
from envs.wrappers import ActionRepeat
from sim2real.randomization import RandomizationConfig

__all__ = ["Objective", "RobustSimulatorDynamics", "aggregate_returns"]


class RobustSimulatorDynamics:
    """The returns of action sequences on K copies of `env`'s simulator with physics drawn
    from `randomization`, aggregated by `objective` (see the module docstring).

    Args:
        env: the robot planned for (its id and action repeat; states are its `get_state()`).
        randomization: the physics ranges to draw from (the other fields are ignored).
        copies: K.
        objective: "mean", "worst" or "cvar".
        epsilon: the fraction of the worst returns "cvar" averages.
        seed: seed of the K draws.
        rollout_threads: threads of each copy's batched rollouts (None: the CPUs).
    """

    def __init__(self, env: envs.RobotEnv, randomization: RandomizationConfig, copies: int,
                 objective: Objective = "cvar", epsilon: float = 0.1, seed: int = 0,
                 rollout_threads: int | None = None) -> None:
        if copies < 1:
            raise ValueError(f"copies must be >= 1, got {copies}")
        check_objective(objective, epsilon)
        rng = np.random.default_rng(seed)
        repeat = env.repeat if isinstance(env, ActionRepeat) else 1
        self.objective: Objective = objective
        self.epsilon = epsilon
        #: The physics of each copy.
        self.draws: list[dict[str, float]] = []
        self.copies: list[SimulatorDynamics] = []
        for _ in range(copies):
            draw = {name: value.draw(rng) for name, value in randomization.physics().items()}
            robot = envs.make(env.env_id, action_repeat=repeat)
            robot.set_physics_params(**draw)
            self.copies.append(SimulatorDynamics(robot, rollout_threads=rollout_threads))
            self.draws.append(draw)
            robot.close()
        self.task = self.copies[0].task
        self.state_dim = self.copies[0].state_dim

    def sequence_returns(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Scores `[N]` of sequences `[N, H, du]` from one state `[ds]`."""
        returns = torch.stack([copy.sequence_returns(state, actions) for copy in self.copies])
        return aggregate_returns(returns, self.objective, self.epsilon)

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Next states `[B, ds]` on the first copy (for planners that step one model)."""
        return self.copies[0].step(state, action)

    def reward(self, state: torch.Tensor, action: torch.Tensor,
               next_state: torch.Tensor) -> torch.Tensor:
        """The task's reward `[B]` (the same on every copy)."""
        return self.copies[0].reward(state, action, next_state)
