"""The true simulator as batched dynamics for planners (MPC on the real physics, MCTS, iLQR).

`SimulatorDynamics` satisfies the planners' structural protocols (`step` + `reward`, and
`sequence_returns` for whole action sequences) with states that are `RobotEnv.get_state()`
vectors. It plans in a private copy of the env, so planning never disturbs the env that acts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import mujoco
import mujoco.rollout
import numpy as np
import torch

from envs.core import Array, RobotEnv
from envs.mujoco_physics import chain_substep_jacobians
from envs.registry import make
from envs.wrappers import ActionRepeat, RobotWrapper

_NO_TIME_LIMIT = 10**9
#: What `JointSpaceDynamics` keeps of the env's state besides qpos and qvel.
_REFERENCE_SPEC = mujoco.mjtState.mjSTATE_FULLPHYSICS


class SimulatorDynamics:
    """Exact dynamics: states are `get_state()` vectors `[ds]`, float64.

    Args:
        env: the env to mirror (its id, action repeat and physics parameters are copied).
        rollout_threads: threads of the batched rollouts of a `mujoco/` env (None: the CPUs
            this process may use; 1: on the calling thread, for a process that has one core).
        reward: a batched `(obs [B, do], act [B, du], next_obs [B, do]) -> [B]` scored
            instead of the task's reward (a reward with a penalty; under an action repeat it
            is scored on every simulator step, as the task's is); None: the task's.
    """

    def __init__(self, env: RobotEnv, rollout_threads: int | None = None,
                 reward: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
                 | None = None) -> None:
        if rollout_threads is not None and not env.env_id.startswith("mujoco/"):
            raise ValueError(f"rollout_threads applies to mujoco/ envs only, not {env.env_id}")
        self.env = _private_copy(env, rollout_threads)
        self.env.reset(seed=0)
        self.task = self.env.task
        self._reward = reward
        # MuJoCo backends roll out many sequences at once in C threads; others step in Python.
        # Under an action repeat the inner env rolls out every substep, so the return is exact.
        self._repeat = self.env.repeat if isinstance(self.env, ActionRepeat) else 1
        self._inner = self.env.inner if isinstance(self.env, ActionRepeat) else self.env
        self._batched_rollout = None if isinstance(self._inner, RobotWrapper) else getattr(
            self._inner, "rollout", None
        )
        #: Entries of a `get_state()` vector.
        self.state_dim = int(np.asarray(self.env.get_state()).shape[0])

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
        return (self._reward or self.task.reward)(obs, action.to(obs.dtype), next_obs)

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
        if self._reward is not None:  # the env's own reward is not the one asked for
            x = state.expand(a.shape[0], -1)
            returns_t = torch.zeros(a.shape[0], dtype=torch.float64)
            for u in torch.from_numpy(a).unbind(dim=1):
                x_next = self.step(x, u)
                returns_t += self.reward(x, u, x_next)
                x = x_next
            return returns_t
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
        reward = self._reward or task.reward
        rewards = reward(obs.reshape(n_obs), act.reshape(n_act), next_obs.reshape(n_obs))
        ended = task.terminated(obs.reshape(n_obs), act.reshape(n_act), next_obs.reshape(n_obs))
        rewards, ended = rewards.reshape(steps), ended.reshape(steps)
        # A step counts if no earlier step terminated.
        not_ended_before = torch.cat([torch.ones_like(ended[:, :1]), ~ended[:, :-1]], dim=1)
        alive = torch.cumprod(not_ended_before.to(rewards.dtype), dim=1)
        return (rewards * alive).sum(dim=1)


def simulator_state(env: RobotEnv) -> Array:
    """`env`'s state as a private copy (`make(id, action_repeat)`) takes it: the simulator's
    own state and the action repeat's step count, without the layers of other wrappers in
    between (a randomisation wrapper's); `env.get_state()` where there are none."""
    innermost: Any = env
    while isinstance(innermost, RobotWrapper):
        innermost = innermost.inner
    if not isinstance(env, ActionRepeat):
        return np.asarray(innermost.get_state())
    return np.concatenate([innermost.get_state(), env.get_state()[-1:]])


def _private_copy(env: RobotEnv, rollout_threads: int | None = None) -> RobotEnv:
    """A new env with `env`'s id, action repeat and physics parameters and no time limit, for
    planning without disturbing the env that acts."""
    repeat = env.repeat if isinstance(env, ActionRepeat) else 1
    threads: dict[str, Any] = {}
    if rollout_threads is not None:
        threads["rollout_threads"] = rollout_threads
    copy = make(env.env_id, action_repeat=repeat, max_episode_steps=_NO_TIME_LIMIT, **threads)
    copy.set_physics_params(**env.physics_params())
    return copy


def _numpy(x: Any) -> Array:
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype != torch.float64 or x.device.type != "cpu":
            x = x.to("cpu", torch.float64)
        return x.numpy()
    return np.asarray(x, dtype=np.float64)


class JointSpaceDynamics:
    """The `[qpos, qvel]` dynamics of a MuJoCo-backed env, for gradient-based solvers.

    `dynamics(x [2nv], u [du]) -> [2nv]` steps a private copy of the env's physics one control
    step from the joint state `x`: the control, clipped into the action bounds, is held for the
    step's `n` physics substeps (`env.control_timestep / timestep`, action repeat included),
    the solver's warm start is zero (so the step depends on `x` and `u` alone), and everything
    else (time, a reacher's target) is as in the env's state when this was built.

    `jacobians(xs [H, 2nv], us [H, du])` gives MuJoCo finite-difference Jacobians of the
    control step at each `(x_t, u_t)`, by one of two methods:

    - `"substeps"`: MuJoCo's own `mujoco.mjd_transitionFD` of each physics substep (centred
      differences by hand for RK4 models, which it does not support), chained along the
      step: `A = A_n ... A_1`, `B = sum_j A_n ... A_{j+1} B_j`.
    - `"control_step"`: differences of the whole control step, every perturbed step of the
      horizon simulated in one `mujoco.rollout` call, without a Python call per substep:
      several times faster, and what real-time MPC uses.

    The coordinates are `[qpos, qvel]` because every joint of the robots it accepts is a hinge
    or a slide (`nq == nv`, no actuator state). Everything calls MuJoCo directly on raw arrays,
    without the env's per-step bookkeeping: an iLQR iteration steps thousands of substeps.
    Float64 torch tensors in and out.

    Args:
        env: a MuJoCo-backed env (`dmc/...`, `mujoco/...`), optionally under an action repeat.
        finite_differences: `"substeps"` or `"control_step"` (see above).
        centred: centred differences (two perturbed steps per coordinate) rather than forward
            ones (one; error of order `eps` rather than `eps**2`).
        eps: the finite-difference step.
    """

    def __init__(
        self, env: RobotEnv, finite_differences: str = "substeps", centred: bool = True,
        eps: float = 1e-6,
    ) -> None:
        self.env = _private_copy(env)
        self.env.set_state(simulator_state(env))
        inner = self.env.inner if isinstance(self.env, ActionRepeat) else self.env
        model, data = getattr(inner, "_model", None), getattr(inner, "_data", None)
        if model is None or data is None:
            raise ValueError(f"{env.env_id} is not MuJoCo-backed: no joint-space dynamics")
        self._setup(
            model, data, round(self.env.control_timestep / model.opt.timestep),
            self.env.task.action_low, self.env.task.action_high, finite_differences, centred,
            eps, env.env_id,
        )

    @classmethod
    def of_model(
        cls, model: mujoco.MjModel, action_low: Array, action_high: Array, substeps: int = 1,
        finite_differences: str = "substeps", centred: bool = True, eps: float = 1e-6,
    ) -> JointSpaceDynamics:
        """The joint-space dynamics of a bare MuJoCo model (a model built outside the env
        registry, say from another MJCF file or with its damping edited): a control step is
        `substeps` physics steps; `action_low` / `action_high` `[nu]` clip the controls (may
        be infinite). The model is used as it is, with its own fresh `MjData`."""
        if substeps < 1:
            raise ValueError(f"substeps must be >= 1, got {substeps}")
        low, high = np.asarray(action_low, dtype=np.float64), np.asarray(action_high, np.float64)
        if low.shape != (model.nu,) or high.shape != (model.nu,) or not bool((low <= high).all()):
            raise ValueError(f"action bounds must be [nu={model.nu}] with low <= high, got "
                             f"{low.tolist()} and {high.tolist()}")
        dynamics = cls.__new__(cls)
        data = mujoco.MjData(model)
        mujoco.mj_forward(model, data)
        dynamics._setup(model, data, substeps, low, high, finite_differences, centred, eps,
                        "this model")
        return dynamics

    def _setup(
        self, model: mujoco.MjModel, data: mujoco.MjData, substeps: int, low: Array,
        high: Array, finite_differences: str, centred: bool, eps: float, name: str,
    ) -> None:
        if finite_differences not in ("substeps", "control_step"):
            raise ValueError(
                f"finite_differences must be 'substeps' or 'control_step', got "
                f"{finite_differences!r}"
            )
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        if model.nq != model.nv or model.na != 0:
            raise ValueError(
                f"{name} has ball or free joints or actuator states (nq={model.nq}, "
                f"nv={model.nv}, na={model.na}); joint-space dynamics need hinges and slides"
            )
        self._model, self._data, self._nq = model, data, model.nq
        self._substeps = substeps
        self._reference = np.empty(mujoco.mj_stateSize(model, _REFERENCE_SPEC))
        mujoco.mj_getState(model, data, self._reference, _REFERENCE_SPEC)
        self._low, self._high = low, high
        self._method, self._centred, self._eps = finite_differences, centred, eps
        self._rollout: tuple[mujoco.rollout.Rollout, list[mujoco.MjData]] | None = None
        self.state_dim = 2 * model.nq

    def __call__(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """The joint state `[2nv]` one control step after `x` `[2nv]` under `u` `[du]`."""
        return torch.from_numpy(self.step_array(_numpy(x), _numpy(u)))

    def step_array(self, x: Array, u: Array) -> Array:
        """`__call__` on float64 NumPy arrays, without torch: what iLQR's forward pass calls
        at every step of every line-search rollout."""
        self._go_to(x, u)
        mujoco.mj_step(self._model, self._data, self._substeps)
        data = self._data
        return np.concatenate([data.qpos, data.qvel])

    def jacobians(self, xs: torch.Tensor, us: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`A [H, 2nv, 2nv]` and `B [H, 2nv, du]` of one control step at each `(x_t, u_t)`."""
        states, controls = _numpy(xs), _numpy(us)
        if states.ndim != 2 or states.shape[1] != self.state_dim or controls.shape != (
            states.shape[0], self._low.shape[0]
        ):
            raise ValueError(
                f"need xs [H, {self.state_dim}] and us [H, {self._low.shape[0]}], got "
                f"{list(states.shape)} and {list(controls.shape)}"
            )
        if not (np.isfinite(states).all() and np.isfinite(controls).all()):
            raise ValueError("xs and us must be finite")
        if self._method == "substeps":
            A, B = self._substep_jacobians(states, controls)
        else:
            A, B = self._control_step_jacobians(states, controls)
        return torch.from_numpy(A), torch.from_numpy(B)

    def _substep_jacobians(self, states: Array, controls: Array) -> tuple[Array, Array]:
        horizon, nx, nu = states.shape[0], self.state_dim, self._model.nu
        A, B = np.empty((horizon, nx, nx)), np.empty((horizon, nx, nu))
        for t in range(horizon):
            self._go_to(states[t], controls[t])
            A[t], B[t] = chain_substep_jacobians(
                self._model, self._data, self._substeps, self._eps, self._centred
            )
        return A, B

    def _control_step_jacobians(self, states: Array, controls: Array) -> tuple[Array, Array]:
        horizon, nx = states.shape
        n = nx + self._low.shape[0]
        eps, low, high = self._eps, self._low, self._high
        u = np.clip(controls, low, high)
        # Perturbed controls stay inside the bounds, where MuJoCo would clamp them (as
        # `mjd_transitionFD` does): centred differences move their centre in by eps, forward
        # ones step down from the upper bound.
        if self._centred:
            centre = np.concatenate([states, np.clip(u, low + eps, high - eps)], axis=1)
            unit = np.eye(n) * eps
            rows = np.concatenate([centre[:, None] + unit, centre[:, None] - unit], axis=1)
            after = self._simulate(rows)  # [H, 2n, nx]
            jacobian = (after[:, :n] - after[:, n:]) / (2 * eps)
        else:
            steps = np.full((horizon, n), eps)
            steps[:, nx:] = np.where(u + eps > high, -eps, eps)
            point = np.concatenate([states, u], axis=1)
            perturbed = point[:, None] + steps[:, :, None] * np.eye(n)
            after = self._simulate(np.concatenate([perturbed, point[:, None]], axis=1))
            jacobian = (after[:, :n] - after[:, n:]) / steps[:, :, None]
        jacobian = jacobian.transpose(0, 2, 1)  # [H, nx, nx + nu]
        return np.ascontiguousarray(jacobian[:, :, :nx]), np.ascontiguousarray(jacobian[:, :, nx:])

    def _simulate(self, rows: Array) -> Array:
        """The joint states `[H, P, nx]` one control step after each row `(x, u)` of `rows`
        `[H, P, nx + nu]`, all in one `mujoco.rollout` call."""
        nx = self.state_dim
        flat = rows.reshape(-1, rows.shape[-1])
        initial = np.tile(self._reference, (flat.shape[0], 1))
        initial[:, 1 : 1 + nx] = flat[:, :nx]  # the spec's layout: time, qpos, qvel, ...
        control = np.repeat(flat[:, None, nx:], self._substeps, axis=1)  # held for n substeps
        pool, datas = self._rollout_workers()
        model = self._model
        trajectories, _ = pool.rollout(
            model, datas, initial, control, initial_warmstart=np.zeros((len(flat), model.nv)),
        )
        return trajectories[:, -1, 1 : 1 + nx].reshape(*rows.shape[:2], nx)

    def _rollout_workers(self) -> tuple[mujoco.rollout.Rollout, list[mujoco.MjData]]:
        if self._rollout is None:  # on the calling thread: one core
            self._rollout = mujoco.rollout.Rollout(nthread=0), [mujoco.MjData(self._model)]
        return self._rollout

    def _go_to(self, x: Array, u: Array) -> None:
        # Called for every step of every rollout: the cheapest checks that catch NaN.
        if x.shape != (self.state_dim,) or not math.isfinite(x.sum()):
            raise ValueError(f"joint state must be finite [{self.state_dim}], got {x}")
        if u.shape != self._low.shape or not math.isfinite(u.sum()):
            raise ValueError(f"control must be finite {list(self._low.shape)}, got {u}")
        data = self._data
        mujoco.mj_setState(self._model, data, self._reference, _REFERENCE_SPEC)
        data.qpos[:] = x[: self._nq]
        data.qvel[:] = x[self._nq :]
        data.qacc_warmstart[:] = 0.0
        data.ctrl[:] = np.minimum(np.maximum(u, self._low), self._high)


def joint_state(env: RobotEnv) -> Array:
    """The `[qpos, qvel]` `[2nv]` of a MuJoCo-backed env (see `JointSpaceDynamics`)."""
    data = _mujoco_data(env)
    return np.concatenate([data.qpos, data.qvel])


def set_joint_state(env: RobotEnv, x: Array) -> None:
    """Set a MuJoCo-backed env's `[qpos, qvel]` to `x` `[2nv]`, the rest of its state kept."""
    data = _mujoco_data(env)
    nq = data.qpos.shape[0]
    if np.shape(x) != (2 * nq,) or not np.isfinite(x).all():
        raise ValueError(f"joint state must be finite [{2 * nq}], got {x}")
    data.qpos[:], data.qvel[:] = x[:nq], x[nq:]
    env.set_state(env.get_state())  # recompute what depends on the joints


def _mujoco_data(env: RobotEnv) -> Any:
    inner = env
    while isinstance(inner, RobotWrapper):
        inner = inner.inner
    data = getattr(inner, "_data", None)
    if data is None:
        raise ValueError(f"{env.env_id} is not MuJoCo-backed: no joint state")
    return data
