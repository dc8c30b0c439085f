"""`BulletEnv`: a PyBullet robot behind `RobotEnv`; the robots are `envs.kuka` (a KUKA iiwa
reaching for a point) and `envs.cartpole_bullet` (a cart-pole swing-up).

Both load a URDF of `pybullet_data` into a physics server of their own, in DIRECT mode (no GUI),
so several envs live side by side in one process; `close()` disconnects it. Bases are fixed and
there are no contacts (no self-collision; floors, backdrops and target markers are visual shapes
only), so the joint positions and velocities are the whole dynamic state.

One `step` is one `stepSimulation` call, which PyBullet splits into `n_substeps` physics steps
(`setPhysicsEngineParameter(fixedTimeStep=control_timestep, numSubSteps=n_substeps)`); the
commands (motor targets, joint torques) hold over the whole control step.

Exact state: `resetJointState` on every joint restores positions and velocities, and stepping
from there reproduces the original trajectory bit for bit, in the same env or another one:
the joint motors and joint-limit constraints carry no warm start from step to step that shows
(checked by the tests, with joints pressed against their limits too), and without contacts there
is no contact cache. So no `saveState` snapshot is needed and any state vector can be restored.

Joint friction is Coulomb friction, modelled per robot (see each class), and a PyBullet quirk
matters for it and for velocity servos: a motor's force limit becomes an impulse limit
`force * fixedTimeStep` that the solver applies at every substep, i.e. `n_substeps` times the
force. Motors are therefore given `force / n_substeps`, which makes the limit the force asked for.

Physics parameters scale the nominal model: `mass_scale` every moving link's mass and local
inertia diagonal; `friction_scale` the joints' Coulomb friction (and the links' lateral contact
friction, which only matters once something touches them); `damping_scale` the viscous joint
damping (`changeDynamics(jointDamping=...)`, a torque `-d * qdot`); `actuator_gain_scale` the
actuator's output per unit action (documented per robot).
"""

from __future__ import annotations

import abc
import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pybullet
import pybullet_data
from numpy.typing import NDArray

from envs.core import PHYSICS_PARAMS, Array, RobotEnv, Task

_GRAVITY = -9.81


@dataclass(frozen=True)
class Camera:
    """A fixed camera looking at `target` from `distance` metres (z up), angles in degrees."""

    target: tuple[float, float, float]
    distance: float
    yaw: float
    pitch: float
    fov: float = 60.0


class BulletEnv(RobotEnv):
    """A fixed-base URDF robot in a private PyBullet DIRECT server; see the module docstring.

    Subclasses implement `observe`, `_actuate` (send one control step's commands), `_reward`
    and `_reset`; tasks with variables of their own (a target) extend `_task_state` and
    `_set_task_state`. Every joint of the URDF is a degree of freedom of the state.
    """

    def __init__(
        self,
        env_id: str,
        task: Task,
        urdf: str,
        *,
        control_timestep: float,
        n_substeps: int,
        max_episode_steps: int,
        joint_damping: Sequence[float],
        joint_friction: Sequence[float],
        camera: Camera,
        render_mode: str | None = None,
    ) -> None:
        client = pybullet.connect(pybullet.DIRECT)
        if client < 0:
            raise RuntimeError(f"{env_id}: could not start a PyBullet DIRECT server")
        self._client: int = client
        self._n_substeps = int(n_substeps)
        path = os.path.join(pybullet_data.getDataPath(), urdf)
        self._robot: int = pybullet.loadURDF(path, useFixedBase=True, physicsClientId=client)
        n_joints = pybullet.getNumJoints(self._robot, physicsClientId=client)
        self._joints: list[int] = list(range(n_joints))
        if len(joint_damping) != n_joints or len(joint_friction) != n_joints:
            raise ValueError(f"{env_id}: {urdf} has {n_joints} joints; give as many coefficients")
        pybullet.setGravity(0.0, 0.0, _GRAVITY, physicsClientId=client)
        pybullet.setPhysicsEngineParameter(
            fixedTimeStep=control_timestep, numSubSteps=self._n_substeps, physicsClientId=client
        )
        # loadURDF gives every joint a velocity motor holding it still: switch them off.
        pybullet.setJointMotorControlArray(
            self._robot, self._joints, pybullet.VELOCITY_CONTROL, forces=[0.0] * n_joints,
            physicsClientId=client,
        )
        info = [
            pybullet.getDynamicsInfo(self._robot, j, physicsClientId=client) for j in self._joints
        ]
        #: Nominal link masses, `[n_joints]` (link j moves with joint j).
        self._nominal_mass = np.array([i[0] for i in info])
        #: Nominal local inertia diagonals, `[n_joints, 3]`.
        self._nominal_inertia = np.array([i[2] for i in info])
        #: Nominal lateral (contact) friction coefficients, `[n_joints]`.
        self._nominal_lateral_friction = np.array([i[1] for i in info])
        #: Nominal viscous joint damping (N m s/rad or N s/m), `[n_joints]`.
        self._nominal_damping = np.array(joint_damping, dtype=np.float64)
        #: Nominal Coulomb joint friction (N m or N), `[n_joints]`.
        self._nominal_friction = np.array(joint_friction, dtype=np.float64)
        #: Current Coulomb joint friction, `[n_joints]`, and actuator gain scale.
        self._joint_friction = self._nominal_friction.copy()
        self._gain = 1.0
        self._camera = camera
        self._view_matrix = pybullet.computeViewMatrixFromYawPitchRoll(
            cameraTargetPosition=camera.target, distance=camera.distance, yaw=camera.yaw,
            pitch=camera.pitch, roll=0.0, upAxisIndex=2, physicsClientId=client,
        )
        super().__init__(env_id, task, control_timestep, max_episode_steps, render_mode)
        self._apply_physics_params(dict.fromkeys(PHYSICS_PARAMS, 1.0))

    @property
    def client_id(self) -> int:
        """The id of this env's private PyBullet server, for `pybullet.*` queries."""
        return self._client

    @property
    def body_id(self) -> int:
        """The robot's body id in that server."""
        return self._robot

    @property
    def joint_indices(self) -> list[int]:
        """The robot's joints, in the order of the state's positions and velocities."""
        return list(self._joints)

    # ----------------------------------------------------------------- per-robot hooks
    @abc.abstractmethod
    def observe(self) -> Array:
        """The observation of the current simulator state, `[obs_dim]` float64."""

    @abc.abstractmethod
    def _actuate(self, action: Array) -> None:
        """Send the commands that hold over the next control step for a clipped action."""

    @abc.abstractmethod
    def _reward(self, obs: Array, action: Array) -> float:
        """The reward of arriving at `obs` under `action`, from PyBullet's numbers (no torch)."""

    def _terminated(self, obs: Array) -> bool:
        """Whether arriving at `obs` ends the episode. Default: never."""
        return False

    def _task_state(self) -> Array:
        """The task's own state variables (e.g. a target), `[k]` float64. Default: none."""
        return np.zeros(0)

    def _set_task_state(self, state: Array) -> None:
        """Restore the vector of `_task_state`."""

    def _configure_joint_friction(self) -> None:
        """Make the simulation apply `self._joint_friction`; called when it changes.

        Default: each joint's velocity motor, with target velocity 0 and force limit the
        friction, which is how PyBullet models joint Coulomb friction (stiction included).
        Robots whose motors actuate the joints override this.
        """
        pybullet.setJointMotorControlArray(
            self._robot, self._joints, pybullet.VELOCITY_CONTROL,
            targetVelocities=[0.0] * len(self._joints),
            forces=(self._joint_friction / self._n_substeps).tolist(),
            physicsClientId=self._client,
        )

    # ----------------------------------------------------------------- RobotEnv hooks
    def _step(self, action: Array) -> tuple[Array, float, bool]:
        self._actuate(action)
        pybullet.stepSimulation(physicsClientId=self._client)
        obs = self.observe()
        return obs, self._reward(obs, action), self._terminated(obs)

    def _joint_state(self) -> tuple[Array, Array]:
        """Joint positions and velocities, `[n_joints]` each."""
        states = pybullet.getJointStates(self._robot, self._joints, physicsClientId=self._client)
        return np.array([s[0] for s in states]), np.array([s[1] for s in states])

    def _reset_joints(self, positions: Array, velocities: Array) -> None:
        for j in self._joints:
            pybullet.resetJointState(
                self._robot, j, float(positions[j]), float(velocities[j]),
                physicsClientId=self._client,
            )

    def _get_state(self) -> Array:
        """`[joint positions (n), joint velocities (n), task state (k)]` float64."""
        q, v = self._joint_state()
        return np.concatenate([q, v, self._task_state()])

    def _set_state(self, state: Array) -> None:
        n = len(self._joints)
        self._reset_joints(state[:n], state[n : 2 * n])
        self._set_task_state(state[2 * n :])

    def _apply_physics_params(self, params: Mapping[str, float]) -> None:
        mass, damping = params["mass_scale"], params["damping_scale"]
        friction = params["friction_scale"]
        for j in self._joints:
            pybullet.changeDynamics(
                self._robot, j,
                mass=float(self._nominal_mass[j] * mass),
                localInertiaDiagonal=(self._nominal_inertia[j] * mass).tolist(),
                lateralFriction=float(self._nominal_lateral_friction[j] * friction),
                jointDamping=float(self._nominal_damping[j] * damping),
                physicsClientId=self._client,
            )
        self._joint_friction = self._nominal_friction * friction
        self._gain = params["actuator_gain_scale"]
        self._configure_joint_friction()

    def _render(self, width: int, height: int) -> NDArray[np.uint8]:
        projection = pybullet.computeProjectionMatrixFOV(
            fov=self._camera.fov, aspect=width / height, nearVal=0.05, farVal=50.0,
            physicsClientId=self._client,
        )
        _, _, rgba, _, _ = pybullet.getCameraImage(
            width, height, viewMatrix=self._view_matrix, projectionMatrix=projection,
            renderer=pybullet.ER_TINY_RENDERER, shadow=0, physicsClientId=self._client,
        )
        image = np.asarray(rgba, dtype=np.uint8).reshape(height, width, 4)
        return np.ascontiguousarray(image[:, :, :3])

    def close(self) -> None:
        """Disconnect the physics server; the env is unusable afterwards. Idempotent."""
        client = getattr(self, "_client", -1)
        if client >= 0:
            self._client = -1
            pybullet.disconnect(physicsClientId=client)

    def __del__(self) -> None:
        # Tests and planners build many envs without closing them: free their servers.
        with contextlib.suppress(Exception):
            self.close()
