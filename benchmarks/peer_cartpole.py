"""dm_control's cart-pole swing-up reward in plain torch, for the peers that plan through a
learned model (`benchmarks/peer_workers/mbrl_lib_worker.py`).

It is imported by file path inside each peer's own virtual environment, so it imports nothing
of the toolkit; `tests/benchmarks/test_peer_mbrl_lib.py` checks that it equals
`envs.cartpole.CartpoleSwingupTask().reward`, so the two cannot drift apart.

Observation `[cart_x, cos, sin, cart_v, pole_w]` (angle 0 upright), action `[force]` in
[-1, 1]. The reward (Tassa et al. 2018, "DeepMind Control Suite") is
`upright * centered * small_control * small_velocity`, each factor a tolerance in [0, 1].
"""

from __future__ import annotations

import math

import torch

ACTION_LOW, ACTION_HIGH = -1.0, 1.0
OBS_DIM, ACT_DIM = 5, 1

#: dm_control's gaussian `tolerance(z, margin=m)` is `exp(k z**2)` with `k = ln(0.1) / m**2`
#: (0.1 at one margin): a margin of 2 m for the cart's position, 5 rad/s for the pole's speed.
CART_X_EXPONENT = math.log(0.1) / 2.0**2
POLE_W_EXPONENT = math.log(0.1) / 5.0**2


def reward(act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """Reward `[B]` of reaching `next_obs` `[B, 5]` under `act` `[B, 1]`.

    `(cos + 1) / 2` upright, `(1 + tol(x)) / 2` centered, `(4 + max(0, 1 - u**2)) / 5` small
    control, `(1 + tol(w)) / 2` small velocity.
    """
    cart_x, cos_theta, pole_w = next_obs[:, 0], next_obs[:, 1], next_obs[:, 4]
    force = act[:, 0]
    upright = (cos_theta + 1) / 2
    centered = (1 + torch.exp(CART_X_EXPONENT * cart_x * cart_x)) / 2
    small_control = (4 + (1 - force * force).clamp(min=0)) / 5
    small_velocity = (1 + torch.exp(POLE_W_EXPONENT * pole_w * pole_w)) / 2
    return upright * centered * small_control * small_velocity
