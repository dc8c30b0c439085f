"""The cart-pole: a pole hinged on a cart that a force pushes along a rail.

Its task (dm_control's smooth swing-up reward, `CartpoleSwingupTask`) and its observation map
from the joint state (`observation`) are shared by the cart-poles of every backend
(`dmc/cartpole-*`, `mujoco/cartpole-swingup` here, `pybullet/cartpole-swingup`), so their
returns compare directly. Joint state `[cart x, pole angle, cart velocity, pole angular
velocity]`, angle 0 upright; observation `[cart x, cos, sin, cart velocity, pole angular
velocity]` (dm_control's layout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from envs.core import Array, Task
from envs.mujoco_env import MujocoEnv


def observation(joint_state: torch.Tensor) -> torch.Tensor:
    """`[x, cos theta, sin theta, v, w]` `[..., 5]` of joint states `[x, theta, v, w]`
    `[..., 4]`: the cart-pole's observation, in torch (batched, differentiable)."""
    theta = joint_state[..., 1]
    return torch.stack([joint_state[..., 0], torch.cos(theta), torch.sin(theta),
                        joint_state[..., 2], joint_state[..., 3]], dim=-1)


class CartpoleSwingupTask(Task):
    """dm_control's smooth cart-pole reward (Tassa et al. 2018), in [0, 1].

    `upright * centered * small_control * small_velocity`, with `upright = (cos + 1) / 2`,
    `centered = (1 + tol(x, margin 2)) / 2`, `small_control = (4 + tol_quadratic(a, 1)) / 5`,
    `small_velocity = (1 + tol(w, margin 5)) / 2` (gaussian tolerances at 0, value 0.1 at the
    margin). obs: `[cart_x, cos, sin, cart_v, pole_w]` (5), angle 0 upright; act `[1]` in
    [-1, 1]. Used by the cart-poles of every backend, so their returns compare directly.
    """

    def __init__(self) -> None:
        super().__init__(5, np.array([-1.0]), np.array([1.0]))

    def reward(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        # The tolerances written out (as in `cartpole_swingup_reward`): planners call this for
        # every particle at every step, and the general `tolerance` takes three times the ops.
        cart_x, cos_theta, pole_w = next_obs[..., 0], next_obs[..., 1], next_obs[..., 4]
        action = act[..., 0]
        small_control = (1 - action * action).clamp(min=0)  # quadratic, 0 at |a| >= 1
        return (
            (cos_theta + 1)
            * (4 + small_control)
            * (1 + torch.exp(_CART_X_EXPONENT * cart_x * cart_x))
            * (1 + torch.exp(_POLE_W_EXPONENT * pole_w * pole_w))
        ) / 40


#: dm_control's gaussian `tolerance(z, margin=m)` (value 0.1 at one margin) is
#: `exp(-0.5 * (z / m * s) ** 2)` with `s = sqrt(-2 ln 0.1)`, i.e. `exp(k * z * z)` with these `k`.
_GAUSSIAN_SCALE = math.sqrt(-2.0 * math.log(0.1))
_CART_X_EXPONENT = -0.5 * (_GAUSSIAN_SCALE / 2.0) ** 2  # margin 2 m
_POLE_W_EXPONENT = -0.5 * (_GAUSSIAN_SCALE / 5.0) ** 2  # margin 5 rad/s


def cartpole_swingup_reward(cart_x: float, cos_theta: float, action: float, pole_w: float) -> float:
    """`CartpoleSwingupTask.reward` of one transition, on plain floats for a simulator's step.

    upright (cos + 1) / 2 * small_control (4 + (1 - u^2)) / 5 (quadratic tolerance, |u| <= 1)
    * centered (1 + gaussian(x)) / 2 * small_velocity (1 + gaussian(w)) / 2.
    """
    return (
        (cos_theta + 1.0) * (5.0 - action * action)
        * (1.0 + math.exp(_CART_X_EXPONENT * cart_x * cart_x))
        * (1.0 + math.exp(_POLE_W_EXPONENT * pole_w * pole_w)) / 40.0
    )


class CartpoleSwingupEnv(MujocoEnv):
    """Swing a pole up from hanging and balance it above a cart, on `assets/cartpole.xml`.

    obs `[cart_x, cos(theta), sin(theta), cart_v, pole_w]` (5), theta = 0 upright (dm_control's
    layout); action: the cart's force in [-1, 1] x 10 N. Episodes start hanging (theta = pi) with
    0.01-scale gaussian noise on positions and velocities, last 1000 steps (10 s) and never
    terminate. Reward: dm_control's smooth swing-up reward (`CartpoleSwingupTask`).

    Physics: semi-implicit Euler at MuJoCo's default 2 ms, 5 physics steps per 10 ms control
    step. Against a 0.1 ms RK4 reference, a 2 s bang-bang swing deviates by at most 3e-3 rad
    (1.6e-2 rad with one 10 ms Euler step per control step), and the slider's dry friction and
    joint limit are resolved at 500 Hz.
    """

    def __init__(
        self,
        env_id: str = "mujoco/cartpole-swingup",
        max_episode_steps: int = 1000,
        render_mode: str | None = None,
        rollout_threads: int | None = None,
    ) -> None:
        super().__init__(
            env_id, CartpoleSwingupTask(), "cartpole.xml", frame_skip=5,
            max_episode_steps=max_episode_steps, camera="fixed", render_mode=render_mode,
            rollout_threads=rollout_threads,
        )

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        noise = 0.01 * rng.standard_normal(4)
        self._qpos[:] = (noise[0], math.pi + noise[1])
        self._qvel[:] = noise[2:]

    def _outcome(self, action: Array) -> tuple[Array, float, bool]:
        x, theta = self._qpos.tolist()
        v, w = self._qvel.tolist()
        cos = math.cos(theta)
        obs = np.array((x, cos, math.sin(theta), v, w))
        return obs, cartpole_swingup_reward(x, cos, action.item(), w), False

    def observation_of(
        self, qpos: torch.Tensor, qvel: torch.Tensor, mocap_pos: torch.Tensor
    ) -> torch.Tensor:
        return observation(torch.cat([qpos, qvel], dim=-1))


@dataclass(frozen=True)
class CartpoleJointDynamics:
    """The cart-pole's equations of motion in plain torch, `x [4], u [1] -> [4]` on the joint
    state `[x, theta, x', theta']` (theta about +y, 0 upright), for solvers that want an
    analytic model (`controllers.compiled.compile_dynamics` compiles it).

    Lagrange's equations of a cart on a slider and a pole on a hinge, with viscous joint
    damping, integrated as MuJoCo's Euler integrator does: `substeps` semi-implicit Euler steps
    of `timestep`, the damping implicit (`(M + h D) a = f`); the control is clipped into
    `control_range` and multiplied by `gear`. Not modelled: dry friction (`frictionloss`) and
    the slider's joint limit. `of_model` reads the numbers from a MuJoCo model, so the two
    agree to rounding where those are absent.
    """

    #: Cart mass (kg).
    cart_mass: float
    #: Pole mass (kg).
    pole_mass: float
    #: Distance from the hinge to the pole's centre of mass (m).
    pole_com: float
    #: Pole's moment of inertia about its centre of mass, around the hinge axis (kg m^2).
    pole_inertia: float
    #: Gravity's magnitude (m/s^2).
    gravity: float
    #: Force per unit control (N).
    gear: float
    #: Control limits `(low, high)` before the gear, or None.
    control_range: tuple[float, float] | None
    #: Viscous damping of the slider and the hinge.
    damping: tuple[float, float]
    #: Physics step (s).
    timestep: float
    #: Physics steps per call.
    substeps: int

    @classmethod
    def of_model(cls, model: Any, substeps: int) -> CartpoleJointDynamics:
        """The cart-pole of a compiled `mujoco.MjModel` of `assets/cartpole.xml` (or one with
        its parameters edited), `substeps` physics steps a call."""
        pole = model.body("pole").id
        limited = bool(model.actuator_ctrllimited[0])
        return cls(
            cart_mass=float(model.body_mass[model.body("cart").id]),
            pole_mass=float(model.body_mass[pole]), pole_com=float(model.body_ipos[pole][2]),
            pole_inertia=float(model.body_inertia[pole][1]),
            gravity=float(-model.opt.gravity[2]), gear=float(model.actuator_gear[0, 0]),
            control_range=(float(model.actuator_ctrlrange[0, 0]),
                           float(model.actuator_ctrlrange[0, 1])) if limited else None,
            damping=(float(model.dof_damping[0]), float(model.dof_damping[1])),
            timestep=float(model.opt.timestep), substeps=substeps,
        )

    def __call__(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        M, m, lc, h = self.cart_mass, self.pole_mass, self.pole_com, self.timestep
        (b_cart, b_pole), g = self.damping, self.gravity
        control = u[0] if self.control_range is None else torch.clamp(u[0], *self.control_range)
        force = self.gear * control
        position, velocity = x[:2], x[2:]
        for _ in range(self.substeps):
            cos, sin = torch.cos(position[1]), torch.sin(position[1])
            # (M + h D) a = f, the 2 x 2 system solved by Cramer's rule.
            a11, a12, a22 = M + m + h * b_cart, m * lc * cos, self.pole_inertia + m * lc**2 + (
                h * b_pole)
            f1 = force + m * lc * sin * velocity[1] ** 2 - b_cart * velocity[0]
            f2 = m * g * lc * sin - b_pole * velocity[1]
            det = a11 * a22 - a12 * a12
            velocity = velocity + h * torch.stack([(a22 * f1 - a12 * f2) / det,
                                                   (a11 * f2 - a12 * f1) / det])
            position = position + h * velocity
        return torch.cat([position, velocity])


def cartpole_swingup(env_id: str = "mujoco/cartpole-swingup", **kwargs: Any) -> CartpoleSwingupEnv:
    """`mujoco/cartpole-swingup`; kwargs: max_episode_steps, render_mode, rollout_threads."""
    return CartpoleSwingupEnv(env_id, **kwargs)
