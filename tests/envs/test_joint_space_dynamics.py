"""`JointSpaceDynamics`: a MuJoCo env's [qpos, qvel] step, and MuJoCo's finite-difference
Jacobians of it, for gradient-based solvers (and iLQR swinging the MuJoCo cart-pole up)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import envs
from controllers.ilqr import ILQRConfig, ilqr
from envs.dynamics import JointSpaceDynamics

F64 = torch.float64


@pytest.mark.parametrize(
    ("env_id", "finite_differences", "centred"),
    [
        ("mujoco/cartpole-swingup", "substeps", True),
        ("dmc/cartpole-swingup", "substeps", True),  # RK4: differences by hand
        ("mujoco/cartpole-swingup", "control_step", True),
        ("dmc/cartpole-swingup", "control_step", True),
        ("mujoco/cartpole-swingup", "substeps", False),
        ("mujoco/cartpole-swingup", "control_step", False),
    ],
)
def test_the_jacobians_are_those_of_the_step(
    env_id: str, finite_differences: str, centred: bool
) -> None:
    env = envs.make(env_id, action_repeat=2)
    env.reset(seed=0)
    dynamics = JointSpaceDynamics(env, finite_differences, centred)
    x = torch.tensor([0.1, 2.5, 0.3, -0.4], dtype=F64)  # mid-rail: smooth dynamics
    u = torch.tensor([0.2], dtype=F64)
    A, B = dynamics.jacobians(x[None], u[None])
    eps = 1e-6
    for i in range(4):
        dx = torch.zeros(4, dtype=F64)
        dx[i] = eps
        column = (dynamics(x + dx, u) - dynamics(x - dx, u)) / (2 * eps)
        torch.testing.assert_close(A[0, :, i], column, rtol=1e-4, atol=1e-6)
    du = torch.tensor([eps], dtype=F64)
    torch.testing.assert_close(B[0, :, 0], (dynamics(x, u + du) - dynamics(x, u - du)) / (2 * eps),
                               rtol=1e-4, atol=1e-6)


def test_it_steps_like_the_env_and_leaves_the_env_alone() -> None:
    env = envs.make("mujoco/cartpole-swingup", action_repeat=2)
    obs, _ = env.reset(seed=1)
    dynamics = JointSpaceDynamics(env)
    before = env.get_state()
    x = torch.tensor([obs[0], np.arctan2(obs[2], obs[1]), obs[3], obs[4]], dtype=F64)
    next_x = dynamics(x, torch.tensor([0.5], dtype=F64))
    dynamics.jacobians(x[None], torch.tensor([[0.5]], dtype=F64))
    np.testing.assert_array_equal(env.get_state(), before)  # it steps its own copy
    next_obs, *_ = env.step(np.array([0.5]))
    np.testing.assert_allclose(next_x[[0, 2, 3]].numpy(), next_obs[[0, 3, 4]], atol=1e-9)
    np.testing.assert_allclose(np.cos(next_x[1].item()), next_obs[1], atol=1e-9)


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="not MuJoCo-backed"):
        JointSpaceDynamics(envs.make("pybullet/cartpole-swingup"))
    dynamics = JointSpaceDynamics(envs.make("mujoco/cartpole-swingup"))
    with pytest.raises(ValueError, match=r"joint state must be finite \[4\]"):
        dynamics(torch.zeros(3, dtype=F64), torch.zeros(1, dtype=F64))


@pytest.mark.slow
def test_ilqr_with_mujocos_derivatives_swings_the_mujoco_cart_pole_up() -> None:
    """3 s (150 steps of 20 ms) planned by iLQR from MuJoCo's finite differences, quadratic
    costs on angle (upright = 0, start at pi) and cart position, |u| <= 1; replayed open loop
    on the env. Measured: cos theta 0.9999 at the end, return 168.3, about 40 s."""
    env = envs.make("mujoco/cartpole-swingup", action_repeat=2)
    env.reset(seed=0)
    dynamics = JointSpaceDynamics(env)
    x0 = torch.from_numpy(np.concatenate([dynamics._data.qpos, dynamics._data.qvel]))
    low, high = torch.tensor(env.task.action_low), torch.tensor(env.task.action_high)
    result = ilqr(
        dynamics,
        lambda x, u, t: 0.01 * (u @ u) + 0.01 * x[1] ** 2 + 0.01 * x[0] ** 2,
        lambda x: 10 * x[1] ** 2 + 5 * x[0] ** 2 + (x[2] ** 2 + x[3] ** 2),
        x0.clone(), torch.zeros(150, 1, dtype=F64), ILQRConfig(max_iterations=100),
        control_low=low, control_high=high,
    )
    assert bool((result.controls >= low).all() and (result.controls <= high).all())
    obs, _ = env.reset(seed=0)
    total = 0.0
    for u in result.controls.numpy():
        obs, reward, *_ = env.step(u)
        total += reward
    assert obs[1] > 0.999 and total > 150.0, (obs, total)
