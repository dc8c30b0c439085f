"""`JointSpaceDynamics`: a MuJoCo env's [qpos, qvel] step, and MuJoCo's finite-difference
Jacobians of it, for gradient-based solvers (and iLQR swinging the MuJoCo cart-pole up)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import envs
from controllers import MPC, MPCConfig
from controllers.compiled import compile_dynamics
from controllers.costs import ResidualCost, ResidualFinalCost
from controllers.ilqr import ILQRConfig, ILQRPlanner, ilqr
from envs.cartpole import CartpoleJointDynamics
from envs.dynamics import JointSpaceDynamics, joint_state, set_joint_state

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
    x0 = torch.from_numpy(joint_state(env))
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


@pytest.mark.parametrize("centred", [True, False])
def test_at_a_control_bound_the_differences_stay_inside_it(centred: bool) -> None:
    """MuJoCo clamps controls to their range, so a difference across the bound would see half
    (or none) of the actuation: the control's column is taken from inside, as
    `mjd_transitionFD` takes it."""
    env = envs.make("mujoco/cartpole-swingup", action_repeat=2)
    env.reset(seed=0)
    dynamics = JointSpaceDynamics(env, "control_step", centred=centred)
    x = torch.tensor([0.1, 2.5, 0.3, -0.4], dtype=F64)
    high = torch.tensor([1.0], dtype=F64)
    _, B = dynamics.jacobians(x[None], high[None])
    inside = (dynamics(x, high) - dynamics(x, high - 1e-4)) / 1e-4
    torch.testing.assert_close(B[0, :, 0], inside, rtol=1e-3, atol=1e-6)
    _, B_substeps = JointSpaceDynamics(env, "substeps", centred=centred).jacobians(
        x[None], high[None]
    )
    torch.testing.assert_close(B[0], B_substeps[0], rtol=1e-3, atol=1e-6)


def test_joint_state_reads_and_sets_qpos_and_qvel_through_wrappers() -> None:
    env = envs.make("mujoco/cartpole-swingup", action_repeat=2)
    obs, _ = env.reset(seed=3)
    x = joint_state(env)
    assert x.shape == (4,)
    np.testing.assert_allclose([x[0], np.cos(x[1]), np.sin(x[1]), x[2], x[3]], obs, atol=1e-12)
    set_joint_state(env, np.array([0.5, np.pi, 0.0, 1.0]))
    np.testing.assert_array_equal(joint_state(env), [0.5, np.pi, 0.0, 1.0])
    np.testing.assert_allclose(env.observe(), [0.5, -1.0, 0.0, 0.0, 1.0], atol=1e-12)
    with pytest.raises(ValueError, match="not MuJoCo-backed"):
        joint_state(envs.make("pybullet/cartpole-swingup"))
    with pytest.raises(ValueError, match=r"joint state must be finite \[4\]"):
        set_joint_state(env, np.array([0.0, np.nan, 0.0, 0.0]))


def test_ilqr_mpc_swings_the_mujoco_cart_pole_up_one_iteration_per_replan() -> None:
    """The benchmark's real-time controller (benchmarks/optimal_control.py): MuJoCo's
    control-step differences, Gauss-Newton costs on `1 - cos` and `sin`, horizon 1 s of 20 ms
    steps, one iteration per replan every 80 ms, feedback gains in between. Measured: upright
    (cos > 0.99) from 2.4 s on; return 314 over the 5 s."""
    env = envs.make("mujoco/cartpole-swingup", action_repeat=2)
    env.reset(seed=1)
    low, high = torch.tensor(env.task.action_low), torch.tensor(env.task.action_high)
    cost = ResidualCost(residual, torch.diag(torch.tensor([0.02, 0.05, 0.05], dtype=F64)),
                        torch.tensor([[0.02]], dtype=F64))
    final_cost = ResidualFinalCost(
        lambda x: torch.cat([residual(x), x[2:]]),
        torch.diag(torch.tensor([10.0, 20.0, 20.0, 2.0, 2.0], dtype=F64)),
    )
    planner = ILQRPlanner(JointSpaceDynamics(env, "control_step", centred=False), cost,
                          final_cost, 50, low, high, ILQRConfig(max_iterations=1),
                          initial_controls=torch.full((50, 1), 0.3, dtype=F64))
    controller = MPC(planner, MPCConfig(replan_every=4))
    total, cosines = 0.0, []
    for _ in range(250):
        action = controller.act(torch.from_numpy(joint_state(env)))
        assert bool((action >= low).all() and (action <= high).all())
        obs, reward, *_ = env.step(action.numpy())
        total += reward
        cosines.append(obs[1])
    assert min(cosines[-50:]) > 0.99 and total > 200.0, (min(cosines[-50:]), total)


def residual(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([x[0], 1 - torch.cos(x[1]), torch.sin(x[1])])


def test_a_bare_model_steps_as_its_env_and_step_array_as_the_call() -> None:
    env = envs.make("mujoco/cartpole-swingup")
    env.reset(seed=0)
    from_env = JointSpaceDynamics(env, "control_step")
    model = env.model  # type: ignore[attr-defined]
    bare = JointSpaceDynamics.of_model(model, np.array([-1.0]), np.array([1.0]), substeps=5,
                                       finite_differences="control_step")
    x, u = np.array([0.2, 2.0, -0.1, 0.5]), np.array([0.7])
    np.testing.assert_array_equal(bare.step_array(x, u), from_env.step_array(x, u))
    np.testing.assert_array_equal(bare.step_array(x, u),
                                  bare(torch.from_numpy(x), torch.from_numpy(u)).numpy())
    np.testing.assert_array_equal(bare.step_array(x, np.array([5.0])),  # clipped to 1
                                  bare.step_array(x, np.array([1.0])))
    A, B = bare.jacobians(torch.from_numpy(x)[None], torch.from_numpy(u)[None])
    A_env, B_env = from_env.jacobians(torch.from_numpy(x)[None], torch.from_numpy(u)[None])
    torch.testing.assert_close(A, A_env, rtol=0, atol=0)
    torch.testing.assert_close(B, B_env, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"action bounds must be \[nu=1\]"):
        JointSpaceDynamics.of_model(model, np.array([1.0]), np.array([-1.0]))
    with pytest.raises(ValueError, match="substeps must be >= 1"):
        JointSpaceDynamics.of_model(model, np.array([-1.0]), np.array([1.0]), substeps=0)


def test_the_cartpoles_equations_are_mujocos_step_without_dry_friction() -> None:
    env = envs.make("mujoco/cartpole-swingup", action_repeat=2)
    model = copy.deepcopy(env.inner.model)  # type: ignore[attr-defined]
    model.dof_frictionloss[:] = 0.0  # what the equations leave out (with the joint limit)
    substeps = round(env.control_timestep / model.opt.timestep)
    mujoco_step = JointSpaceDynamics.of_model(model, np.array([-1.0]), np.array([1.0]),
                                              substeps=substeps)
    equations = CartpoleJointDynamics.of_model(model, substeps)
    assert (equations.gear, equations.damping, substeps) == (10.0, (0.005, 0.001), 10)
    rng = np.random.default_rng(0)
    for _ in range(10):
        x = rng.uniform(-1, 1, 4) * np.array([1.0, 3.0, 2.0, 5.0])
        u = rng.uniform(-1.5, 1.5, 1)  # some outside the control range
        np.testing.assert_allclose(equations(torch.from_numpy(x), torch.from_numpy(u)).numpy(),
                                   mujoco_step.step_array(x, u), rtol=0, atol=1e-12)
    compiled = compile_dynamics(equations, 4, 1)
    np.testing.assert_allclose(compiled.step_array(x, u), mujoco_step.step_array(x, u),
                               rtol=0, atol=1e-12)
