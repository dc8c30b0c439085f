"""An RSSM as planning dynamics: the sampling planners plan in its latent space unchanged.

PlaNet (Hafner et al. 2019, sec. 4) plans with CEM over action sequences scored by the reward
head along the transition model's (prior's) predictions from the current filtered belief.
`LatentDynamics` gives that the planners' contract: a state is the flat features `[h, s]`
`[B, dh + ds]` of a latent state, `step` is one prior step (its mean: PlaNet scores the mean
rewards of sampled latent trajectories; the mean keeps a plan's score deterministic), and the
reward is the reward head at the next state. `sequence_returns` scores `N` sequences from one
state in one batched rollout.
"""

from __future__ import annotations

import torch

from mbrl.learning.rssm import RSSM, State


class LatentDynamics:
    """`controllers.Dynamics` and `SequenceDynamics` in an RSSM's latent space."""

    def __init__(self, model: RSSM) -> None:
        self.model = model
        c = model.config
        self._dh, self._ds = c.deterministic, c.stochastic
        #: Entries of a state: dh + ds.
        self.state_dim = c.deterministic + c.stochastic
        #: The precision planners sample in.
        self.dtype = torch.float32

    def state_of(self, latent: State) -> torch.Tensor:
        """The planning state `[..., dh + ds]` of a latent state (a filtered belief)."""
        return latent.features()

    def _latent(self, x: torch.Tensor) -> State:
        h, s = x[..., : self._dh], x[..., self._dh:]
        return State(h, s, s, torch.ones_like(s))

    @torch.no_grad()
    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The prior's mean next state `[B, dh + ds]` of states `[B, dh + ds]` under actions
        `[B, du]`."""
        return self.model.prior(self._latent(state.float()), action.float()).features()

    @torch.no_grad()
    def reward(self, state: torch.Tensor, action: torch.Tensor,
               next_state: torch.Tensor) -> torch.Tensor:
        """The reward head at the next state, `[B]`."""
        return self.model.reward_head(next_state.float())[..., 0].to(action.dtype)

    @torch.no_grad()
    def sequence_returns(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Summed predicted rewards `[N]` of sequences `[N, H, du]` from one state
        `[dh + ds]`."""
        x = state.float().expand(actions.shape[0], -1)
        total = torch.zeros(actions.shape[0])
        for u in actions.float().unbind(dim=1):
            x = self.step(x, u)
            total += self.model.reward_head(x)[..., 0]
        return total.to(actions.dtype)
