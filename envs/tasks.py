"""Task functions that several backends share (they import no simulator)."""

from __future__ import annotations

import math

import numpy as np
import torch

from envs.core import Task


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
