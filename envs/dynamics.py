"""The true simulator as batched dynamics for planners (MPC on the real physics, MCTS, iLQR).

`SimulatorDynamics` satisfies the planners' structural protocols (`step` + `reward`, and
`sequence_returns` for whole action sequences) with states that are `RobotEnv.get_state()`
vectors. It plans in a private copy of the env, so planning never disturbs the env that acts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from envs.core import Array, RobotEnv
from envs.registry import make
from envs.wrappers import ActionRepeat, RobotWrapper

_NO_TIME_LIMIT = 10**9


class SimulatorDynamics:
    """Exact dynamics: states are `get_state()` vectors `[ds]`, float64.

    Args:
        env: the env to mirror (its id, action repeat and physics parameters are copied).
    """

    def __init__(self, env: RobotEnv) -> None:
        self.env = _private_copy(env)
        self.env.reset(seed=0)
        self.task = self.env.task
        # MuJoCo backends roll out many sequences at once in C threads; others step in Python.
        # Under an action repeat the inner env rolls out every substep, so the return is exact.
        self._repeat = self.env.repeat if isinstance(self.env, ActionRepeat) else 1
        self._inner = self.env.inner if isinstance(self.env, ActionRepeat) else self.env
        self._batched_rollout = None if isinstance(self._inner, RobotWrapper) else getattr(
            self._inner, "rollout", None
        )

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Next states `[B, ds]` of states `[B, ds]` under actions `[B, du]`."""
        states, actions = _numpy(state), _numpy(action)
        next_states = np.empty_like(states)
        for i in range(states.shape[0]):
            self.env.set_state(states[i])
            self.env.step(actions[i])
            next_states[i] = self.env.get_state()
        return torch.from_numpy(next_states)

    def reward(
        self, state: torch.Tensor, action: torch.Tensor, next_state: torch.Tensor
    ) -> torch.Tensor:
        """The task's reward `[B]` on the observations of the given states."""
        obs = torch.from_numpy(self.observe(_numpy(state)))
        next_obs = torch.from_numpy(self.observe(_numpy(next_state)))
        return self.task.reward(obs, action.to(obs.dtype), next_obs)

    def observe(self, states: Array) -> Array:
        """Observations `[B, do]` of states `[B, ds]`."""
        obs = []
        for s in states:
            self.env.set_state(s)
            obs.append(self.env.observe())
        return np.stack(obs)

    def sequence_returns(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The simulator's return `[N]` of each sequence `[N, H, du]` from one state `[ds]`.

        Rewards after a terminating step are not counted.
        """
        s, a = _numpy(state), _numpy(actions)
        if self._batched_rollout is not None:
            return self._batched_returns(s, a)
        returns = np.zeros(a.shape[0])
        for n in range(a.shape[0]):
            self.env.set_state(s)
            for t in range(a.shape[1]):
                _, reward, terminated, _, _ = self.env.step(a[n, t])
                returns[n] += reward
                if terminated:
                    break
        return torch.from_numpy(returns)

    def _batched_returns(self, state: Array, actions: Array) -> torch.Tensor:
        assert self._batched_rollout is not None
        # An ActionRepeat state is the inner state followed by the wrapper's step count.
        inner_state = state[:-1] if self._repeat > 1 else state
        substep_actions = np.repeat(actions, self._repeat, axis=1)  # [N, H*k, du]
        next_obs = torch.from_numpy(self._batched_rollout(inner_state, substep_actions))
        self._inner.set_state(inner_state)
        first = torch.from_numpy(self._inner.observe()).expand(actions.shape[0], 1, -1)
        obs = torch.cat([first, next_obs[:, :-1]], dim=1)
        task = self._inner.task
        act = torch.from_numpy(np.clip(substep_actions, task.action_low, task.action_high))
        n_obs, n_act = (-1, obs.shape[-1]), (-1, act.shape[-1])
        steps = substep_actions.shape[:2]
        rewards = task.reward(obs.reshape(n_obs), act.reshape(n_act), next_obs.reshape(n_obs))
        ended = task.terminated(obs.reshape(n_obs), act.reshape(n_act), next_obs.reshape(n_obs))
        rewards, ended = rewards.reshape(steps), ended.reshape(steps)
        # A step counts if no earlier step terminated.
        not_ended_before = torch.cat([torch.ones_like(ended[:, :1]), ~ended[:, :-1]], dim=1)
        alive = torch.cumprod(not_ended_before.to(rewards.dtype), dim=1)
        return (rewards * alive).sum(dim=1)


def _private_copy(env: RobotEnv) -> RobotEnv:
    """A new env with `env`'s id, action repeat and physics parameters and no time limit, for
    planning without disturbing the env that acts."""
    repeat = env.repeat if isinstance(env, ActionRepeat) else 1
    copy = make(env.env_id, action_repeat=repeat, max_episode_steps=_NO_TIME_LIMIT)
    copy.set_physics_params(**env.physics_params())
    return copy


def _numpy(x: Any) -> Array:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy().astype(np.float64, copy=False)
    return np.asarray(x, dtype=np.float64)


class JointSpaceDynamics:
    """The `[qpos, qvel]` dynamics of a MuJoCo-backed env, for gradient-based solvers.

    `dynamics(x [2nv], u [du]) -> [2nv]` steps a private copy of the env one control step from
    the joint state `x` (everything else, such as a reacher's target, as in the env's state when
    this was built); `jacobians(xs [H, 2nv], us [H, du])` gives MuJoCo's finite-difference
    Jacobians (`mujoco.mjd_transitionFD`, through `RobotEnv.linearize`) at each step. The
    coordinates are `[qpos, qvel]` because every joint of the robots it accepts is a hinge or a
    slide (`nq == nv`, no actuator state). Float64 torch tensors in and out.

    Args:
        env: a MuJoCo-backed env (`dmc/...`, `mujoco/...`), optionally under an action repeat.
    """

    def __init__(self, env: RobotEnv) -> None:
        self.env = _private_copy(env)
        self.env.set_state(env.get_state())
        inner = self.env.inner if isinstance(self.env, ActionRepeat) else self.env
        model, data = getattr(inner, "_model", None), getattr(inner, "_data", None)
        if model is None or data is None:
            raise ValueError(f"{env.env_id} is not MuJoCo-backed: no joint-space dynamics")
        if model.nq != model.nv or model.na != 0:
            raise ValueError(
                f"{env.env_id} has ball or free joints or actuator states (nq={model.nq}, "
                f"nv={model.nv}, na={model.na}); joint-space dynamics need hinges and slides"
            )
        self._data, self._nq = data, model.nq
        self._linearize = self.env.linearize  # type: ignore[attr-defined]  # MuJoCo envs have it
        self._reference = self.env.get_state()
        self.state_dim = 2 * model.nq

    def __call__(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """The joint state `[2nv]` one control step after `x` `[2nv]` under `u` `[du]`."""
        self._go_to(_numpy(x))
        self.env.step(_numpy(u))
        return torch.from_numpy(np.concatenate([self._data.qpos, self._data.qvel]))

    def jacobians(self, xs: torch.Tensor, us: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`A [H, 2nv, 2nv]` and `B [H, 2nv, du]` of one control step at each `(x_t, u_t)`."""
        A, B = [], []
        for x, u in zip(_numpy(xs), _numpy(us), strict=True):
            self._go_to(x)
            a, b = self._linearize(self.env.get_state(), u)
            A.append(a)
            B.append(b)
        return torch.from_numpy(np.stack(A)), torch.from_numpy(np.stack(B))

    def _go_to(self, x: Array) -> None:
        if x.shape != (self.state_dim,) or not np.isfinite(x).all():
            raise ValueError(f"joint state must be finite [{self.state_dim}], got {x}")
        self.env.set_state(self._reference)
        self._data.qpos[:] = x[: self._nq]
        self._data.qvel[:] = x[self._nq :]
        self.env.set_state(self.env.get_state())  # recompute what depends on qpos, qvel
