"""PyBullet robots behind `RobotEnv`: a KUKA iiwa reaching for a point and a cart-pole swing-up.

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
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pybullet
import pybullet_data
import torch
from numpy.typing import NDArray

from envs.core import PHYSICS_PARAMS, Array, RobotEnv, Task
from envs.tasks import CartpoleSwingupTask, cartpole_swingup_reward

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


# ===================================================================== KUKA iiwa reach
class KukaReachTask(Task):
    """Reach a target with the end effector; dense reward.

    obs: `[joint positions (7), joint velocities (7), end effector (3), end effector - target
    (3)]` (20); act `[7]` in [-1, 1]. Reward `-||ee - target|| - action_cost * ||a||^2`.
    """

    def __init__(self, action_cost: float = 0.01) -> None:
        super().__init__(20, -np.ones(7), np.ones(7))
        #: Weight of the squared action norm.
        self.action_cost = float(action_cost)

    def reward(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        distance = torch.linalg.vector_norm(next_obs[..., 17:20], dim=-1)
        return -distance - self.action_cost * (act * act).sum(dim=-1)


class KukaReachEnv(BulletEnv):
    """pybullet_data's `kuka_iiwa/model.urdf` (7 revolute joints, fixed base, gravity on).

    Control: a joint velocity servo. Action `a [7]` in [-1, 1] commands joint velocities
    `a * MAX_JOINT_VELOCITY * actuator_gain_scale` (rad/s), tracked by PyBullet's
    VELOCITY_CONTROL motors up to the URDF's effort limit (300 N m per joint). The servo holds
    the arm against gravity and makes the action nearly the joint velocity one step later, an
    almost first-order, well-conditioned system a sampling or gradient planner handles well; raw
    torques would leave the planner to fight gravity and the arm's stiff, coupled dynamics.
    Masses, damping and friction matter whenever the servo saturates (fast reversals of the
    proximal joints do). `actuator_gain_scale` scales the commanded velocity per unit action.

    Joint friction: a Coulomb torque `-f * tanh(qdot / FRICTION_VELOCITY)` from the velocities
    at the start of each control step, sent as a joint torque (the motors are the servo's),
    with `f = JOINT_FRICTION` N m; joint damping is the URDF's 0.5 N m s/rad.

    Episode: 200 steps of 0.02 s (4 substeps), no termination. Reset: joints at `HOME` plus
    uniform noise of `INIT_NOISE` rad, at rest; the target is the end effector's position at
    a random joint configuration within 90% of the joint limits, kept when it is at least
    `MIN_TARGET_HEIGHT` above the base and `MIN_TARGET_RADIUS` from its vertical axis, so it is
    reachable. The end effector is the origin of link 7's frame (the flange).
    State: `[q (7), qdot (7), target (3)]`.
    """

    EE_LINK = 6
    HOME = (0.0, 0.6, 0.0, -1.4, 0.0, 1.1, 0.0)
    INIT_NOISE = 0.1
    MAX_JOINT_VELOCITY = 2.0
    JOINT_FRICTION = 1.0
    FRICTION_VELOCITY = 0.05
    MIN_TARGET_HEIGHT = 0.15
    MIN_TARGET_RADIUS = 0.25

    def __init__(
        self, env_id: str, max_episode_steps: int = 200, render_mode: str | None = None
    ) -> None:
        task = KukaReachTask()
        self._action_cost = task.action_cost
        super().__init__(
            env_id, task, "kuka_iiwa/model.urdf",
            control_timestep=0.02, n_substeps=4, max_episode_steps=max_episode_steps,
            joint_damping=[0.5] * 7, joint_friction=[self.JOINT_FRICTION] * 7,
            camera=Camera(target=(0.0, 0.0, 0.4), distance=1.8, yaw=50.0, pitch=-25.0),
            render_mode=render_mode,
        )
        client = self._client
        infos = [
            pybullet.getJointInfo(self._robot, j, physicsClientId=client) for j in self._joints
        ]
        #: Joint limits (rad), `[7]` each, and the servo's per-substep force limits (see module).
        self._lower = np.array([i[8] for i in infos])
        self._upper = np.array([i[9] for i in infos])
        self._servo_forces = [i[10] / self._n_substeps for i in infos]
        self._target = np.zeros(3)
        #: Joint velocities of the current state, kept by `observe` and `_set_state` for the
        #: friction torque of the next step (saves reading them back from PyBullet).
        self._qdot = [0.0] * 7
        # A red sphere at the target and a floor, visual only (no collision shape): they show
        # up in images and take no part in the dynamics.
        sphere = pybullet.createVisualShape(
            pybullet.GEOM_SPHERE, radius=0.04, rgbaColor=[0.9, 0.1, 0.1, 1.0],
            physicsClientId=client,
        )
        self._marker: int = pybullet.createMultiBody(
            baseMass=0.0, baseVisualShapeIndex=sphere, physicsClientId=client
        )
        floor = pybullet.createVisualShape(
            pybullet.GEOM_BOX, halfExtents=[1.5, 1.5, 0.005], rgbaColor=[0.6, 0.6, 0.6, 1.0],
            physicsClientId=client,
        )
        pybullet.createMultiBody(
            baseMass=0.0, baseVisualShapeIndex=floor, basePosition=[0.0, 0.0, -0.005],
            physicsClientId=client,
        )


    @property
    def joint_limits(self) -> tuple[np.ndarray, np.ndarray]:
        """The joints' lower and upper limits (rad), `[7]` each."""
        return self._lower.copy(), self._upper.copy()
    def observe(self) -> Array:
        """`[q (7), qdot (7), end effector (3), end effector - target (3)]`, float64 (20)."""
        states = pybullet.getJointStates(self._robot, self._joints, physicsClientId=self._client)
        ee = pybullet.getLinkState(
            self._robot, self.EE_LINK, computeForwardKinematics=True, physicsClientId=self._client
        )[4]
        t = self._target
        self._qdot = [s[1] for s in states]
        return np.array([
            *(s[0] for s in states), *self._qdot, *ee, ee[0] - t[0], ee[1] - t[1], ee[2] - t[2]
        ])

    def _actuate(self, action: Array) -> None:
        client = self._client
        velocity = self.MAX_JOINT_VELOCITY * self._gain
        pybullet.setJointMotorControlArray(
            self._robot, self._joints, pybullet.VELOCITY_CONTROL,
            targetVelocities=(action * velocity).tolist(), forces=self._servo_forces,
            physicsClientId=client,
        )
        slip = np.tanh(np.array(self._qdot) / self.FRICTION_VELOCITY)
        pybullet.setJointMotorControlArray(
            self._robot, self._joints, pybullet.TORQUE_CONTROL,
            forces=(-self._joint_friction * slip).tolist(), physicsClientId=client,
        )

    def _configure_joint_friction(self) -> None:
        """Nothing to configure: the friction torque is computed at every step, in `_actuate`."""

    def _reward(self, obs: Array, action: Array) -> float:
        dx, dy, dz = float(obs[17]), float(obs[18]), float(obs[19])
        cost = self._action_cost * float(np.dot(action, action))
        return -math.sqrt(dx * dx + dy * dy + dz * dz) - cost

    def _reset(self, rng: np.random.Generator) -> Array:
        self._target = self._draw_target(rng)
        q = np.asarray(self.HOME) + rng.uniform(-self.INIT_NOISE, self.INIT_NOISE, size=7)
        self._reset_joints(np.clip(q, self._lower, self._upper), np.zeros(7))
        self._place_marker()
        return self.observe()

    def _draw_target(self, rng: np.random.Generator) -> Array:
        """The end effector's position at a random joint configuration (moves the joints)."""
        while True:
            q = rng.uniform(0.9 * self._lower, 0.9 * self._upper)
            self._reset_joints(q, np.zeros(7))
            ee = pybullet.getLinkState(
                self._robot, self.EE_LINK, computeForwardKinematics=True,
                physicsClientId=self._client,
            )[4]
            high_enough = ee[2] >= self.MIN_TARGET_HEIGHT
            if high_enough and math.hypot(ee[0], ee[1]) >= self.MIN_TARGET_RADIUS:
                return np.array(ee)

    def _place_marker(self) -> None:
        pybullet.resetBasePositionAndOrientation(
            self._marker, self._target.tolist(), [0.0, 0.0, 0.0, 1.0],
            physicsClientId=self._client,
        )

    def _set_state(self, state: Array) -> None:
        super()._set_state(state)
        self._qdot = state[7:14].tolist()

    def _task_state(self) -> Array:
        return self._target.copy()

    def _set_task_state(self, state: Array) -> None:
        self._target = np.array(state, dtype=np.float64)
        self._place_marker()


# ===================================================================== cart-pole swing-up
class CartpoleSwingupEnv(BulletEnv):
    """pybullet_data's `cartpole.urdf`: slider joint 0 (cart, m), hinge joint 1 (pole, rad).

    Control: force on the cart. Action `a [1]` in [-1, 1] is a slider force
    `a * FORCE * actuator_gain_scale` N (TORQUE_CONTROL, held over the control step), as
    dm_control's cart-pole (same masses: cart 1 kg, pole 0.1 kg and 1 m; same 10 N). Force
    control is what makes swing-up a dynamics problem; a velocity servo on the cart would hide
    the pole's reaction.

    The pole angle `theta` is the hinge angle, 0 upright (the URDF's pole points up at 0),
    positive tipping the pole toward +x. Joint friction is the joints' velocity motors with target
    0 (Coulomb, `JOINT_FRICTION`), damping `JOINT_DAMPING`, both small. The URDF limits the
    slider to +-15 m, which PyBullet enforces as a hard stop, so the cart cannot leave its rail
    and episodes do not terminate (the reward's `centered` term keeps it near 0).

    Episode: 500 steps of 0.02 s (4 substeps), 10 s as dm_control's. Reset (dm_control's
    swing-up): cart at `0.01 * N(0, 1)`, pole hanging at `pi + 0.01 * N(0, 1)`, both velocities
    `0.01 * N(0, 1)`. obs `[cart_x, cos theta, sin theta, cart_v, theta_dot]`; state
    `[cart_x, theta, cart_v, theta_dot]`.
    """

    FORCE = 10.0
    JOINT_FRICTION = (0.05, 0.002)
    JOINT_DAMPING = (0.1, 0.002)

    def __init__(
        self, env_id: str, max_episode_steps: int = 500, render_mode: str | None = None
    ) -> None:
        super().__init__(
            env_id, CartpoleSwingupTask(), "cartpole.urdf",
            control_timestep=0.02, n_substeps=4, max_episode_steps=max_episode_steps,
            joint_damping=self.JOINT_DAMPING, joint_friction=self.JOINT_FRICTION,
            camera=Camera(target=(0.0, 0.0, 0.0), distance=4.5, yaw=0.0, pitch=-5.0),
            render_mode=render_mode,
        )
        # A dark backdrop behind the rail, visual only, for contrast with the white pole.
        backdrop = pybullet.createVisualShape(
            pybullet.GEOM_BOX, halfExtents=[8.0, 0.01, 3.0], rgbaColor=[0.2, 0.25, 0.3, 1.0],
            physicsClientId=self._client,
        )
        pybullet.createMultiBody(
            baseMass=0.0, baseVisualShapeIndex=backdrop, basePosition=[0.0, 1.0, 0.0],
            physicsClientId=self._client,
        )

    def observe(self) -> Array:
        """`[cart_x, cos theta, sin theta, cart_v, theta_dot]`, float64 (5)."""
        cart, pole = pybullet.getJointStates(
            self._robot, self._joints, physicsClientId=self._client
        )
        theta = pole[0]
        return np.array([cart[0], math.cos(theta), math.sin(theta), cart[1], pole[1]])

    def _actuate(self, action: Array) -> None:
        pybullet.setJointMotorControl2(
            self._robot, 0, pybullet.TORQUE_CONTROL,
            force=float(action[0]) * self.FORCE * self._gain, physicsClientId=self._client,
        )

    def _reward(self, obs: Array, action: Array) -> float:
        return cartpole_swingup_reward(float(obs[0]), float(obs[1]), float(action[0]),
                                       float(obs[4]))

    def _reset(self, rng: np.random.Generator) -> Array:
        noise = 0.01 * rng.standard_normal(4)
        self._reset_joints(np.array([noise[0], math.pi + noise[1]]), noise[2:])
        return self.observe()


# ===================================================================== factories
def kuka_reach(env_id: str, **kwargs: Any) -> KukaReachEnv:
    return KukaReachEnv(env_id, **kwargs)


def cartpole_swingup(env_id: str, **kwargs: Any) -> CartpoleSwingupEnv:
    return CartpoleSwingupEnv(env_id, **kwargs)
