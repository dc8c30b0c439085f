"""MPC from camera frames through a latent model: the filtered belief is kept between steps.

PlaNet (Hafner et al. 2019, Algorithm 1, "data collection"): at each control step

    b_t = q(s_t | h_t, e(o_t)),  h_t = GRU(h_{t-1}, s_{t-1}, a_{t-1})   filter the new frame
    a_t = planner(b_t)                                                  CEM in latent space
    a_t = a_t + eps,  eps ~ N(0, exploration_noise^2)                    exploration (training)

`LatentMPC` is a `Controller` on frames: `act(frame)` takes one `[H, W, C]` uint8 image (what
`envs.make(..., pixels=True)` observes) or `[C, H, W]`, updates the belief with the action it
played last, and plans from the belief's mean features through any registered sampling
planner (`latent_problem`). Its actions are finite and inside the bounds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from controllers import MPC
from mbrl.learning.rssm import IMAGE_SIZE, RSSM, State, preprocess


def frame_tensor(frame: Any, channels: int, name: str = "frame") -> torch.Tensor:
    """One uint8 frame as `[C, 64, 64]`, from `[64, 64, C]` (a rendered image) or
    `[C, 64, 64]`.

    Raises:
        ValueError: naming `name`, for another dtype or size.
    """
    array = frame.numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
    if array.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 pixels, got {array.dtype}")
    if array.shape == (IMAGE_SIZE, IMAGE_SIZE, channels):
        array = array.transpose(2, 0, 1)
    if array.shape != (channels, IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"{name} must be [{IMAGE_SIZE}, {IMAGE_SIZE}, {channels}] or "
                         f"[{channels}, {IMAGE_SIZE}, {IMAGE_SIZE}] uint8, got "
                         f"{list(array.shape)}")
    return torch.from_numpy(np.ascontiguousarray(array))


class LatentMPC:
    """A belief filter in front of `mpc`, whose planner plans through `LatentDynamics` of
    `model` (see the module docstring).

    Args:
        model: the trained RSSM.
        mpc: MPC over the model's latent planning problem.
        exploration_noise: std of the Gaussian noise added to each action (0: none).
        rng: draws the noise.
    """

    def __init__(self, model: RSSM, mpc: MPC, exploration_noise: float = 0.0,
                 rng: np.random.Generator | None = None) -> None:
        if exploration_noise < 0 or (exploration_noise > 0 and rng is None):
            raise ValueError("exploration_noise must be >= 0, with an rng where it is > 0")
        self.model, self.mpc = model, mpc
        self.exploration_noise, self.rng = exploration_noise, rng
        self.low = mpc.action_low.float()
        self.high = mpc.action_high.float()
        self.belief: State | None = None
        self._last_action = torch.zeros(1, model.act_dim)

    @property
    def stats(self) -> Any:
        """The MPC's replan statistics (`MPCStats`)."""
        return self.mpc.stats

    def reset(self) -> None:
        """A new episode: the zero state, no action yet, a fresh plan."""
        self.mpc.reset()
        self.belief = None
        self._last_action = torch.zeros(1, self.model.act_dim)

    @torch.no_grad()
    def observe(self, frame: Any) -> State:
        """Filter one frame into the belief (the posterior's mean after the last action)."""
        image = preprocess(frame_tensor(frame, self.model.channels)[None],
                           self.model.config.bits, None)
        previous = self.belief if self.belief is not None else self.model.initial(1)
        prior = self.model.prior(previous, self._last_action)
        self.belief = self.model.posterior(prior, self.model.encode(image))
        return self.belief

    def act(self, obs: Any) -> torch.Tensor:
        """The action `[du]` (float32) at frame `obs`, inside the bounds.

        Raises:
            ValueError: naming `frame`, for a frame of the wrong dtype or size.
        """
        belief = self.observe(obs)
        action = self.mpc.act(belief.features()[0]).float()
        if self.exploration_noise > 0:
            assert self.rng is not None
            noise = self.rng.normal(0.0, self.exploration_noise, size=action.shape[0])
            action = action + torch.from_numpy(noise).float()
        action = torch.clamp(torch.nan_to_num(action), self.low, self.high)
        self._last_action = action[None].clone()
        return action
