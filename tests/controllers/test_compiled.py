"""`compile_dynamics`: the compiled step is the torch function's, its Jacobians are
torch.func's, iLQR through it finds the same plans, and what it cannot compile is named."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.func import jacrev

from controllers.compiled import compile_dynamics
from controllers.costs import QuadraticCost, QuadraticFinalCost
from controllers.ilqr import ILQRConfig, ilqr

F64 = torch.float64
DT = 0.05
WEIGHTS = torch.tensor([[1.0, 0.5], [-0.3, 2.0]], dtype=F64)


def pendulum(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """A damped, clamped-torque pendulum, angle 0 hanging: [theta, omega]."""
    torque = torch.clamp(u[0], -2.0, 2.0)
    omega = x[1] + DT * (-9.81 * torch.sin(x[0]) - 0.1 * x[1] + torque)
    return torch.stack([x[0] + DT * omega, omega])


def mixing(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Matrix products, a closed-over tensor, slicing, concatenation and tanh."""
    hidden = torch.tanh(WEIGHTS @ x + u.sum())
    return torch.cat([x[:1] + DT * hidden[1:], x[1:] * 0.9 - DT * hidden[:1] ** 2])


@pytest.mark.parametrize("fn", [pendulum, mixing])
def test_the_compiled_step_and_jacobians_are_the_functions(fn: object) -> None:
    compiled = compile_dynamics(fn, 2, 1)  # type: ignore[arg-type]
    generator = torch.Generator().manual_seed(1)
    xs = torch.randn(7, 2, generator=generator, dtype=F64)
    us = 3 * torch.randn(7, 1, generator=generator, dtype=F64)  # some past the clamp
    for x, u in zip(xs, us, strict=True):
        np.testing.assert_allclose(compiled.step_array(x.numpy(), u.numpy()),
                                   fn(x, u).numpy(), rtol=1e-14, atol=1e-14)  # type: ignore[operator]
    A, B = compiled.jacobians(xs, us)
    for t in range(7):
        exact_A, exact_B = jacrev(fn, argnums=(0, 1))(xs[t], us[t])  # type: ignore[arg-type]
        torch.testing.assert_close(A[t], exact_A, rtol=1e-8, atol=1e-9)
        torch.testing.assert_close(B[t], exact_B, rtol=1e-8, atol=1e-9)


def test_ilqr_through_the_compiled_pendulum_finds_the_same_swing_up() -> None:
    goal = torch.tensor([math.pi, 0.0], dtype=F64)
    cost = QuadraticCost(DT * torch.diag(torch.tensor([1.0, 0.1], dtype=F64)),
                         DT * torch.tensor([[0.01]], dtype=F64), goal)
    final = QuadraticFinalCost(torch.diag(torch.tensor([100.0, 10.0], dtype=F64)), goal)
    compiled = compile_dynamics(pendulum, 2, 1)
    x0, start = torch.zeros(2, dtype=F64), torch.zeros(60, 1, dtype=F64)
    low, high = -torch.ones(1, dtype=F64), torch.ones(1, dtype=F64)
    for bounds in ((None, None), (low, high)):
        plain = ilqr(pendulum, cost, final, x0, start, ILQRConfig(), *bounds)
        fast = ilqr(compiled, cost, final, x0, start, ILQRConfig(), *bounds)
        assert fast.iterations == plain.iterations
        assert fast.cost == pytest.approx(plain.cost, rel=1e-9)
        torch.testing.assert_close(fast.controls, plain.controls, rtol=1e-6, atol=1e-6)
        if bounds[0] is not None:
            assert bool((fast.controls.abs() <= 1.0).all())


def test_a_diverging_rollout_ends_in_nan_and_is_rejected() -> None:
    compiled = compile_dynamics(lambda x, u: x * torch.exp(10 * u[0]), 1, 1)
    states = np.zeros((4, 1))
    states[0] = 1.0
    new_states, _ = compiled.affine_policy_rollout(
        states, np.full((3, 1), 100.0), np.zeros((3, 1, 1)), None, None)
    assert np.isinf(new_states[1]).all() and np.isnan(new_states[2:]).all()
    clipped_states, clipped = compiled.affine_policy_rollout(
        states, np.full((3, 1), 100.0), np.zeros((3, 1, 1)), np.array([-0.1]), np.array([0.1]))
    np.testing.assert_array_equal(clipped, np.full((3, 1), 0.1))
    np.testing.assert_allclose(clipped_states[-1], [math.exp(3.0)])


def test_what_cannot_be_compiled_is_named() -> None:
    with pytest.raises(ValueError, match="cumsum"):
        compile_dynamics(lambda x, u: x.cumsum(0) + u, 2, 2)
    with pytest.raises(ValueError, match=r"must return \[2\]"):
        compile_dynamics(lambda x, u: x.sum() + u, 2, 1)

    def reading(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return x + u if float(x[0]) >= 0 else x - u

    with pytest.raises(ValueError, match="reads a value out of its input"):
        compile_dynamics(reading, 1, 1)

    calls: list[int] = []

    def drifting(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        calls.append(1)  # Python state that tracing copies once
        return x + u * len(calls)

    with pytest.raises(ValueError, match="differs from the function"):
        compile_dynamics(drifting, 1, 1)


def test_comparisons_and_where_compile() -> None:
    def relu_step(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return torch.where(x > 0, x + u, 0.5 * x - u)

    compiled = compile_dynamics(relu_step, 3, 3)
    x, u = np.array([-1.0, 0.0, 2.0]), np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(compiled.step_array(x, u), [-1.5, -2.0, 5.0])
