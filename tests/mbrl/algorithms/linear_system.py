"""A linear system with a quadratic cost, where distillation's answers are known: the LQR gain.

The double integrator `x' = A x + B u` (position and velocity, dt 0.1), cost
`1/2 x'Qx + 1/2 u'Ru` per step; its infinite-horizon optimum is `u = -K x` with `K` from
`controllers.lqr.solve_dare`. `LinearSystem` speaks the episode loop's env protocol (episodes
of `T` steps from a Gaussian initial state, reward = -cost), and `LQRTeacher` is the optimal
controller, a `Controller`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from controllers.costs import QuadraticCost, QuadraticFinalCost
from controllers.lqr import lqr_gain

F64 = torch.float64
A = torch.tensor([[1.0, 0.1], [0.0, 1.0]], dtype=F64)
B = torch.tensor([[0.005], [0.1]], dtype=F64)
Q = torch.eye(2, dtype=F64)
R = 0.1 * torch.eye(1, dtype=F64)
#: The optimal gain `[du, dx]` (u = -K x) and the value matrix P.
K, P = lqr_gain(A, B, Q, R)
#: Action bounds far outside what the optimum asks, so the problem stays unconstrained.
LOW, HIGH = np.array([-100.0]), np.array([100.0])


class LinearSystem:
    """`x' = A x + B u` from `x_0 ~ N(0, I)` (the seed's), `steps` steps an episode."""

    def __init__(self, steps: int = 30) -> None:
        self.steps = steps
        self.max_episode_steps = steps
        self._x = np.zeros(2)
        self._t = 0

    def reset(self, *, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        self._x = np.random.default_rng(seed).normal(size=2)
        self._t = 0
        return self._x.copy(), {}

    def check_action(self, action: Any) -> np.ndarray:
        return np.clip(np.asarray(action, dtype=np.float64).reshape(1), LOW, HIGH)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        x, u = self._x, action
        reward = -0.5 * float(x @ Q.numpy() @ x + u @ R.numpy() @ u)
        self._x = A.numpy() @ x + B.numpy() @ u
        self._t += 1
        return self._x.copy(), reward, False, self._t >= self.steps, {}


class LQRTeacher:
    """`u = -K x`: the optimal controller."""

    def reset(self) -> None:
        """Nothing to forget."""

    def act(self, obs: Any) -> np.ndarray:
        return -(K.numpy() @ np.asarray(obs, dtype=np.float64))


def costs() -> tuple[QuadraticCost, QuadraticFinalCost]:
    """The running cost and a final cost of the value matrix P, under which every step's
    finite-horizon optimal gain is the infinite-horizon K."""
    return QuadraticCost(Q, R), QuadraticFinalCost(P)


def effective_gain(policy: torch.nn.Module) -> np.ndarray:
    """`d u / d x` `[du, dx]` of a policy's mean at the origin."""
    x = torch.zeros(1, 2)
    jacobian = torch.autograd.functional.jacobian(lambda z: policy(z)[0], x)
    return jacobian[:, 0, :].double().numpy()
