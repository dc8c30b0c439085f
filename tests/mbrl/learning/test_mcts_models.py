"""MCTS on the two kinds of model it plans through besides analytic ones: a learned ensemble
(tree steps through the members' mean, leaves scored by batched particle rollouts) and the true
simulator (through `get_state` / `set_state` vectors)."""

from __future__ import annotations

import math

import numpy as np
import torch

import envs
from controllers import MCTS, MPC, MCTSConfig, MPCConfig
from envs.dynamics import SimulatorDynamics, set_joint_state
from mbrl.learning.models import EnsembleConfig, EnsembleDynamics
from mbrl.learning.propagation import ModelDynamics, Propagation
from mbrl.learning.training import TrainConfig, fit

F64 = torch.float64


class BaitedChain:
    """Reward of x' = x + a: stepping left from near 0 pays 0.3 at once, passing x = 2.5
    pays 1; the greedy first step (left) is wrong at horizon 3."""

    def reward(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        bait = (obs[..., 0].abs() < 0.5) & (act[..., 0] < 0)
        goal = next_obs[..., 0] > 2.5
        return 0.3 * bait.to(obs.dtype) + goal.to(obs.dtype)

    def terminated(
        self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor
    ) -> torch.Tensor:
        return torch.zeros(obs.shape[:-1], dtype=torch.bool)


def test_mcts_through_a_learned_ensemble_sees_past_the_bait() -> None:
    generator = torch.Generator().manual_seed(0)
    obs = (torch.rand(2000, 1, generator=generator) * 8 - 4)
    act = torch.randint(0, 2, (2000, 1), generator=generator).float() * 2 - 1
    model = EnsembleDynamics(1, 1, EnsembleConfig(ensemble_size=2, hidden_size=32,
                                                  hidden_layers=2, probabilistic=False,
                                                  weight_decay=1e-6),
                             generator=torch.Generator().manual_seed(0))
    fit(model, obs, act, obs + act, TrainConfig(batch_size=64, max_epochs=30, patience=None,
                                                num_elites=2), torch.Generator().manual_seed(0))
    dynamics = ModelDynamics(model, BaitedChain(), particles=2,
                             propagation=Propagation.TS_INFINITY,
                             generator=torch.Generator().manual_seed(0))
    planner = MCTS(dynamics, torch.tensor([-1.0], dtype=F64), torch.tensor([1.0], dtype=F64),
                   MCTSConfig(horizon=3, simulations=150, rollouts_per_leaf=4),
                   actions=torch.tensor([[-1.0], [1.0]], dtype=F64),
                   generator=torch.Generator().manual_seed(0))
    plan = planner.plan(torch.zeros(1, dtype=torch.float32))
    assert plan.actions[:3, 0].tolist() == [1.0, 1.0, 1.0]


def test_mcts_on_the_true_simulator_holds_the_pendulum_up_and_leaves_it_alone() -> None:
    """From 0.3 rad off upright, three torques, 1 s horizon, 40 simulations per step: MCTS
    through the simulator's own states keeps the pendulum up (measured: cos 0.9994 after 1 s)."""
    env = envs.make("mujoco/pendulum-swingup")
    env.reset(seed=0)
    set_joint_state(env, np.array([0.3, 0.0]))
    planner = MCTS(SimulatorDynamics(env), torch.tensor([-1.0], dtype=F64),
                   torch.tensor([1.0], dtype=F64),
                   MCTSConfig(horizon=20, simulations=40, grid_points=3, rollouts_per_leaf=4),
                   generator=torch.Generator().manual_seed(0))
    controller = MPC(planner, MPCConfig(replan_every=1))
    for _ in range(20):
        before = env.get_state()
        action = controller.act(torch.from_numpy(before))
        np.testing.assert_array_equal(env.get_state(), before)  # planning used its own copy
        assert float(action[0]) in (-1.0, 0.0, 1.0)
        obs, *_ = env.step(action.numpy())
    assert obs[0] > math.cos(0.3)
