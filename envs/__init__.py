"""Simulated robots and tasks: dm_control, MuJoCo and PyBullet behind one Gymnasium API.

    >>> import envs
    >>> env = envs.make("dmc/cartpole-swingup")
    >>> obs, info = env.reset(seed=0)
    >>> reward = env.task.reward(obs_batch, act_batch, next_obs_batch)  # batched torch

Ids are `backend/task`; `envs.registry()` lists them. This package imports nothing else of
the toolkit: planners reach it through structural protocols.
"""

from envs.core import PHYSICS_PARAMS, RobotEnv, Task
from envs.registry import EnvSpec, UnknownEnvError, make, register, registry, spec
from envs.wrappers import ActionRepeat, PixelObservation, RepeatedTask

__all__ = [
    "PHYSICS_PARAMS",
    "ActionRepeat",
    "EnvSpec",
    "PixelObservation",
    "RepeatedTask",
    "RobotEnv",
    "Task",
    "UnknownEnvError",
    "make",
    "register",
    "registry",
    "spec",
]

_BUILTIN = [
    ("dmc/cartpole-swingup", "envs.dmc:cartpole_swingup",
     "dm_control: swing a pole up from hanging and balance it on a cart"),
    ("dmc/cartpole-balance", "envs.dmc:cartpole_balance",
     "dm_control: keep a nearly upright pole balanced on a cart"),
    ("dmc/pendulum-swingup", "envs.dmc:pendulum_swingup",
     "dm_control: swing a torque-limited pendulum up (sparse reward)"),
    ("dmc/acrobot-swingup", "envs.dmc:acrobot_swingup",
     "dm_control: swing a two-link arm, actuated at the elbow only, up to a target above it"),
    ("dmc/reacher-easy", "envs.dmc:reacher_easy",
     "dm_control: touch a large target with a two-link planar arm (sparse reward)"),
    ("dmc/cheetah-run", "envs.dmc:cheetah_run",
     "dm_control: run a planar half-cheetah forward"),
    ("dmc/walker-walk", "envs.dmc:walker_walk",
     "dm_control: walk a planar biped forward at 1 m/s"),
    ("mujoco/cartpole-swingup", "envs.cartpole:cartpole_swingup",
     "MuJoCo: swing a pole up on a cart (own MJCF, bare mujoco bindings)"),
    ("mujoco/pendulum-swingup", "envs.pendulum:pendulum_swingup",
     "MuJoCo: pump a torque-limited pendulum up and hold it"),
    ("mujoco/pointmass-wall", "envs.pointmass:pointmass_wall",
     "MuJoCo: bring a point mass to a goal behind a wall (sparse reward)"),
    ("mujoco/reacher-2link", "envs.reacher:reacher_two_link",
     "MuJoCo: bring a two-link arm's fingertip to a random target (dense reward)"),
    ("pybullet/kuka-reach", "envs.kuka:kuka_reach",
     "PyBullet: bring a KUKA iiwa's end effector to a random target"),
    ("pybullet/cartpole-swingup", "envs.cartpole_bullet:cartpole_swingup",
     "PyBullet: swing up the pole of pybullet_data's cartpole.urdf"),
]
for _id, _entry, _description in _BUILTIN:
    register(_id, _entry, _description)
