"""Multi-step (open-loop) prediction by a learned dynamics model, and how far it strays.

A planner uses a one-step model over a whole horizon, so what matters is the error after `h`
steps of feeding the model its own predictions. As in Lambert et al. (2020), "Objective
Mismatch in Model-based Reinforcement Learning", and Janner et al. (2019), "When to Trust Your
Model" (MBPO), for every start in held-out logged episodes:

    x_0 <- the logged observation at the start
    for h = 1 .. H: x_h <- model(x_{h-1}, logged action h)   (the members' mean, or particles)
    error_h <- RMSE of x_h against the logged observation h steps on, per dimension divided
               by a scale (the data's standard deviation), averaged over dimensions

With `rollout_particles` a probabilistic ensemble also gives a predictive spread after `h`
steps (PETS's TS-infinity particles, Chua et al. 2018), scored by its Gaussian negative
log-likelihood and by how often the logged observation lies within two standard deviations.

Shapes: `B` starts, `H` horizon, `P` particles, `E` members, `do`/`du` obs/action dims.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from mbrl.learning.data import ReplayBuffer
from mbrl.learning.models import DynamicsModel

#: Standard deviations either side of the mean that `within_two_std` counts.
TWO_STD = 2.0
#: The fraction of a Gaussian within `TWO_STD` of its mean: what a calibrated spread covers.
TWO_STD_NOMINAL = math.erf(TWO_STD / math.sqrt(2.0))


@dataclass(frozen=True)
class Windows:
    """Stretches of `H` consecutive logged transitions, each inside one episode."""

    #: Observation at each start, `[B, do]` float32.
    obs: torch.Tensor
    #: The logged actions from each start on, `[B, H, du]` float32.
    act: torch.Tensor
    #: The logged observations after each of those actions, `[B, H, do]` float32.
    next_obs: torch.Tensor
    #: Episode index of each window, `[B]` int64 (as the buffer numbers its episodes).
    episode: torch.Tensor


def windows(buffer: ReplayBuffer, horizon: int, stride: int = 1) -> Windows:
    """Every `stride`-th start (counted within the buffer) from which `horizon` transitions
    lie inside one episode, with the actions and observations that follow it.

    Raises:
        ValueError: if `horizon` or `stride` is below 1, or no episode is `horizon` long.
    """
    if horizon < 1 or stride < 1:
        raise ValueError(f"horizon and stride must be >= 1, got {horizon} and {stride}")
    data = buffer.arrays()
    episode = data["episode"]
    n = len(episode)
    # Episode indices never decrease, so a window stays inside one episode exactly when its
    # first and last transitions share an index.
    starts = np.flatnonzero(episode[: max(n - horizon + 1, 0)] == episode[horizon - 1 :])
    starts = starts[::stride]
    if len(starts) == 0:
        raise ValueError(f"no episode in the buffer ({n} transitions) has {horizon} steps")
    rows = starts[:, None] + np.arange(horizon)  # [B, H]
    return Windows(
        obs=torch.from_numpy(data["obs"][starts].copy()),
        act=torch.from_numpy(data["act"][rows]),
        next_obs=torch.from_numpy(data["next_obs"][rows]),
        episode=torch.from_numpy(episode[starts].copy()),
    )


@torch.no_grad()
def rollout_mean(model: DynamicsModel, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """Open-loop predictions `[B, H, do]` from `obs` `[B, do]` under `act` `[B, H, du]`.

    Each step feeds back the mean over members of the members' predicted means (for a
    probabilistic ensemble, its predicted variance is not used).
    """
    x = obs
    predictions = []
    for t in range(act.shape[1]):
        x = model.predict(x, act[:, t]).mean.mean(dim=0)
        predictions.append(x)
    return torch.stack(predictions, dim=1)


@torch.no_grad()
def rollout_particles(
    model: DynamicsModel,
    obs: torch.Tensor,
    act: torch.Tensor,
    particles: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Open-loop particles `[P, B, H, do]` from `obs` `[B, do]` under `act` `[B, H, du]`.

    PETS's TS-infinity: particle `p` keeps member `p // (P / E)` for the whole horizon and
    each step samples the member's Gaussian (`generator`, on the model's device), or takes its
    mean where the model is deterministic. `particles` must be a multiple of the members E.
    """
    members = model.num_members
    if particles < 1 or particles % members:
        raise ValueError(f"particles ({particles}) must be a positive multiple of E={members}")
    per_member = particles // members
    batch, horizon = act.shape[:2]
    x = obs.repeat_interleave(per_member, dim=0).expand(members, -1, -1)  # [E, B*k, do]
    paths = []
    for t in range(horizon):
        u = act[:, t].repeat_interleave(per_member, dim=0).expand(members, -1, -1)
        prediction = model.predict(x, u)
        x = prediction.mean
        if prediction.var is not None:
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            x = x + prediction.var.sqrt() * noise
        paths.append(x)
    stacked = torch.stack(paths, dim=2)  # [E, B*k, H, do]
    stacked = stacked.reshape(members, batch, per_member, horizon, -1)
    return stacked.transpose(1, 2).reshape(particles, batch, horizon, -1)


def normalised_rmse(
    prediction: torch.Tensor, target: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Root mean square over dimensions of `(prediction - target) / scale`: `[B, H]` from
    `[B, H, do]` each and `scale` `[do]`."""
    return ((prediction - target) / scale).square().mean(dim=-1).sqrt()


def gaussian_nll(
    particles: torch.Tensor, target: torch.Tensor, scale: torch.Tensor, min_var: float = 1e-6
) -> torch.Tensor:
    """Negative log-likelihood per dimension `[B, H]` of `target` `[B, H, do]` under a diagonal
    Gaussian fitted to `particles` `[P, B, H, do]`, in units divided by `scale` `[do]`
    (with `0.5 log 2 pi`; the variance is at least `min_var` in those units)."""
    mean, var = _moments(particles, scale)
    var = var.clamp_min(min_var)
    z2 = ((target / scale) - mean).square() / var
    return (0.5 * (z2 + var.log() + math.log(2 * math.pi))).mean(dim=-1)


def within_two_std(particles: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fraction of dimensions `[B, H]` where `target` `[B, H, do]` lies within `TWO_STD`
    standard deviations of the particles' mean (`particles` `[P, B, H, do]`); a calibrated
    Gaussian spread gives `TWO_STD_NOMINAL` on average."""
    mean, var = particles.mean(dim=0), particles.var(dim=0, unbiased=False)
    inside = (target - mean).abs() <= TWO_STD * var.sqrt()
    return inside.to(particles.dtype).mean(dim=-1)


def _moments(particles: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance over particles, `[B, H, do]` each, in units divided by `scale`."""
    scaled = particles / scale
    return scaled.mean(dim=0), scaled.var(dim=0, unbiased=False)
