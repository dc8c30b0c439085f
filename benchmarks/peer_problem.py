"""The planning problem the peer comparison shares: a torque-limited pendulum swing-up in plain
torch, imported by file path both here and inside each peer's own virtual environment (so it
imports nothing of the toolkit).

State `[theta, omega]` (theta 0 hanging, pi upright), action `[torque]` in [-2, 2],
semi-implicit Euler at 50 ms; the cost pays for distance from upright, speed and torque.
"""

from __future__ import annotations

import math

import torch

DT = 0.05
ACTION_LOW, ACTION_HIGH = -2.0, 2.0
START = (0.0, 0.0)


def dynamics(state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """Next states `[K, 2]` of states `[K, 2]` under actions `[K, 1]` (clamped to the bounds)."""
    torque = action[:, 0].clamp(ACTION_LOW, ACTION_HIGH)
    omega = state[:, 1] + DT * (-9.81 * torch.sin(state[:, 0]) - 0.1 * state[:, 1] + 4 * torque)
    return torch.stack([state[:, 0] + DT * omega, omega], dim=1)


def running_cost(state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """Cost `[K]` of states `[K, 2]` and actions `[K, 1]`: 1 + cos(theta) is 0 upright."""
    return 1 + torch.cos(state[:, 0]) + 0.01 * state[:, 1] ** 2 + 0.001 * action[:, 0] ** 2


def sequence_returns(state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """The objective the optimizers maximise: minus the summed running cost `[N]` of action
    sequences `[N, H, 1]` from `state` `[2]` (the states they reach, from the first on)."""
    states = state.to(torch.float32).reshape(1, 2).expand(actions.shape[0], 2)
    total = torch.zeros(actions.shape[0])
    for t in range(actions.shape[1]):
        states = dynamics(states, actions[:, t])
        total -= running_cost(states, actions[:, t])
    return total


def episode_cost(command: object, steps: int) -> float:
    """The summed running cost of `steps` steps from `START` under `command(state [2]) ->
    action [1]` (a planner's receding-horizon controller)."""
    state = torch.tensor([START], dtype=torch.float32)
    total = 0.0
    for _ in range(steps):
        action = torch.as_tensor(command(state[0]), dtype=torch.float32).reshape(1, 1)  # type: ignore[operator]
        total += float(running_cost(state, action)[0])
        state = dynamics(state, action)
    return total if math.isfinite(total) else math.inf
