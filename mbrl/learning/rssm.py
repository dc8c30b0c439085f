"""PlaNet's recurrent state-space model: latent dynamics learned from camera frames.

Hafner, Lillicrap, Fischer, Villegas, Ha, Lee & Davidson (2019), "Learning Latent Dynamics
for Planning from Pixels", sec. 3 and appendix A. The state is a deterministic part `h_t` (a
GRU) and a stochastic part `s_t` (a diagonal Gaussian):

    h_t = GRU(h_{t-1}, relu(W [s_{t-1}, a_{t-1}]))        deterministic path
    p(s_t | h_t)           = N(mu_p(h_t), sigma_p(h_t))      prior (transition)
    q(s_t | h_t, e(o_t))   = N(mu_q(h_t, e), sigma_q(h_t, e))  posterior (filter)
    p(o_t | h_t, s_t), p(r_t | h_t, s_t)                     decoder and reward head

trained on the ELBO: the frames' and rewards' Gaussian log-likelihoods (unit variance) minus
the KL(q || p) averaged over steps and batch and clamped below at `free_nats`, frames
quantised to 5 bits with uniform dequantisation noise. The encoder is four stride-2
convolutions (`depth`, 2, 4, 8 times `depth` channels, 4x4 kernels) of a 64x64 frame, the
decoder their transpose, as in the paper.

Shapes: `B` batch, `T` time, `C, H, W` a frame, `du` action, `dh` deterministic and `ds`
stochastic state, `de` the embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from controllers.validation import check_types, require, require_positive

#: The frame size the convolutions take.
IMAGE_SIZE = 64
#: Frames per block of the convolutions (`RSSM.conv_block`).
CONV_BLOCK = 256


@dataclass(frozen=True)
class RSSMConfig:
    """Sizes and objective of an `RSSM` (the paper's are the defaults)."""

    #: dh, the GRU's state.
    deterministic: int = 200
    #: ds, the Gaussian state.
    stochastic: int = 30
    #: Width of the hidden layers of the prior, posterior and heads.
    hidden: int = 200
    #: Channels of the first convolution (doubled at each of the next three).
    depth: int = 32
    #: Nats of KL per step that are free (the KL term is max(mean KL, free_nats)).
    free_nats: float = 3.0
    #: Bits each pixel keeps (PlaNet: 5).
    bits: int = 5
    #: The floor of the Gaussians' std.
    min_std: float = 0.1
    #: Latent overshooting (sec. 4): the prior's predictions 2 .. D steps ahead of each
    #: posterior are also fitted to the posterior there; D = 1 is off (the one-step KL only).
    overshooting_distance: int = 1
    #: beta: the weight of the overshooting KL terms (averaged over all distances and steps)
    #: beside the one-step term.
    overshooting_scale: float = 1.0
    #: KL balancing (DreamerV2, Hafner et al. 2021): the share alpha of the KL's gradient
    #: that trains the prior toward the posterior, 1 - alpha the posterior toward the prior
    #: (DreamerV2: 0.8); None: off, the plain KL.
    kl_balance: float | None = None

    def __post_init__(self) -> None:
        check_types(self)
        require_positive(self, "deterministic", "stochastic", "hidden", "depth", "bits",
                         "overshooting_distance")
        require(self, "bits", self.bits <= 8, "must be <= 8")
        require(self, "free_nats", self.free_nats >= 0, "must be >= 0")
        require(self, "min_std", self.min_std > 0, "must be > 0")
        require(self, "overshooting_scale", self.overshooting_scale >= 0, "must be >= 0")
        require(self, "kl_balance", self.kl_balance is None or 0 <= self.kl_balance <= 1,
                "must be in [0, 1] or null")

    @property
    def embedding(self) -> int:
        """de: the encoder's output size (8 * depth channels of 2x2)."""
        return 8 * self.depth * 4


@dataclass(frozen=True)
class State:
    """A latent state: deterministic `h [..., dh]`, stochastic sample `s [..., ds]` and the
    Gaussian it was drawn from (`mean`, `std`, `[..., ds]`)."""

    h: torch.Tensor
    s: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def features(self) -> torch.Tensor:
        """`[h, s]` `[..., dh + ds]`: what the decoder and the reward head read."""
        return torch.cat([self.h, self.s], dim=-1)


@dataclass(frozen=True)
class Losses:
    """The ELBO's terms, each a mean per step and batch element."""

    #: Negative frame log-likelihood (unit-variance Gaussian, summed over pixels).
    reconstruction: torch.Tensor
    #: Negative reward log-likelihood.
    reward: torch.Tensor
    #: KL(q || p) before the free-nats clamp.
    kl: torch.Tensor
    #: What is minimised: reconstruction + reward + max(KL, free nats) (+ beta times the
    #: overshooting term where it is on).
    total: torch.Tensor
    #: KL of the multi-step priors, 2 .. D steps ahead, before the clamp (0 when off).
    overshooting: torch.Tensor


def preprocess(frames: torch.Tensor, bits: int, generator: torch.Generator | None) -> torch.Tensor:
    """uint8 frames to floats in [-0.5, 0.5): `bits` bits kept, uniform noise of one
    quantisation step added (dequantisation; none without a generator)."""
    if frames.dtype != torch.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    bins = 2**bits
    x = torch.floor(frames.float() / 2 ** (8 - bits)) / bins - 0.5
    if generator is not None:
        x = x + torch.rand(x.shape, generator=generator) / bins
    return x


class RSSM(nn.Module):
    """The model (see the module docstring)."""

    def __init__(self, act_dim: int, config: RSSMConfig = RSSMConfig(),
                 channels: int = 3, seed: int | None = None) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # the caller's global generator is untouched
            if seed is not None:
                torch.manual_seed(seed)
            self._build(act_dim, config, channels)

    def _build(self, act_dim: int, config: RSSMConfig, channels: int) -> None:
        self.act_dim, self.config, self.channels = act_dim, config, channels
        #: Frames the convolutions take at once: past a few hundred 64x64 frames their
        #: activations outgrow the CPU's caches, and a step of the paper's batch (2,550
        #: frames) runs faster in blocks (`benchmarks/planet_speed.py`). The results are the
        #: same (each frame is convolved alone); None: all at once.
        self.conv_block: int | None = CONV_BLOCK
        d, c = config.depth, config
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, d, 4, 2), nn.ReLU(), nn.Conv2d(d, 2 * d, 4, 2), nn.ReLU(),
            nn.Conv2d(2 * d, 4 * d, 4, 2), nn.ReLU(), nn.Conv2d(4 * d, 8 * d, 4, 2), nn.ReLU(),
            nn.Flatten(),
        )
        features = c.deterministic + c.stochastic
        self.decoder_input = nn.Linear(features, c.embedding)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(c.embedding, 4 * d, 5, 2), nn.ReLU(),
            nn.ConvTranspose2d(4 * d, 2 * d, 5, 2), nn.ReLU(),
            nn.ConvTranspose2d(2 * d, d, 6, 2), nn.ReLU(),
            nn.ConvTranspose2d(d, channels, 6, 2),
        )
        self.state_action = nn.Linear(c.stochastic + act_dim, c.deterministic)
        self.gru = nn.GRUCell(c.deterministic, c.deterministic)
        self.prior_net = nn.Sequential(nn.Linear(c.deterministic, c.hidden), nn.ReLU(),
                                       nn.Linear(c.hidden, 2 * c.stochastic))
        self.posterior_net = nn.Sequential(
            nn.Linear(c.deterministic + c.embedding, c.hidden), nn.ReLU(),
            nn.Linear(c.hidden, 2 * c.stochastic))
        self.reward_head = nn.Sequential(nn.Linear(features, c.hidden), nn.ReLU(),
                                         nn.Linear(c.hidden, c.hidden), nn.ReLU(),
                                         nn.Linear(c.hidden, 1))

    def initial(self, batch: int) -> State:
        """The state before the first frame: zeros `[B, ...]`."""
        c = self.config
        zeros = torch.zeros(batch, c.stochastic)
        return State(torch.zeros(batch, c.deterministic), zeros, zeros, torch.ones_like(zeros))

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Embeddings `[..., de]` of preprocessed frames `[..., C, 64, 64]`."""
        if frames.shape[-3:] != (self.channels, IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"frames must be [..., {self.channels}, {IMAGE_SIZE}, "
                             f"{IMAGE_SIZE}], got {list(frames.shape)}")
        lead = frames.shape[:-3]
        flat = frames.reshape(-1, *frames.shape[-3:])
        return _in_blocks(self.encoder, flat, self.conv_block).reshape(*lead, -1)

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """Frame means `[..., C, 64, 64]` of features `[..., dh + ds]`."""
        lead = features.shape[:-1]
        x = self.decoder_input(features.reshape(-1, features.shape[-1]))
        x = _in_blocks(self.decoder, x[:, :, None, None], self.conv_block)
        return x.reshape(*lead, *x.shape[1:])

    def _gaussian(self, stats: torch.Tensor, generator: torch.Generator | None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, raw_std = stats.chunk(2, dim=-1)
        std = F.softplus(raw_std) + self.config.min_std
        noise = torch.randn(mean.shape, generator=generator) if generator is not None \
            else torch.zeros_like(mean)
        return mean + std * noise, mean, std

    def prior(self, state: State, action: torch.Tensor,
              generator: torch.Generator | None = None) -> State:
        """One step of the transition: `p(s_t | h_t)` after action `a_{t-1}` `[B, du]` (the
        mean without a generator)."""
        x = F.relu(self.state_action(torch.cat([state.s, action], dim=-1)))
        h = self.gru(x, state.h)
        s, mean, std = self._gaussian(self.prior_net(h), generator)
        return State(h, s, mean, std)

    def posterior(self, prior: State, embedding: torch.Tensor,
                  generator: torch.Generator | None = None) -> State:
        """The filter: `q(s_t | h_t, e_t)` with the prior's `h_t` and an embedding `[B, de]`."""
        stats = self.posterior_net(torch.cat([prior.h, embedding], dim=-1))
        s, mean, std = self._gaussian(stats, generator)
        return State(prior.h, s, mean, std)

    def observe(self, embeddings: torch.Tensor, actions: torch.Tensor, start: State,
                generator: torch.Generator | None = None) -> tuple[list[State], list[State]]:
        """Priors and posteriors of a sequence: embeddings `[B, T, de]` of `o_1 .. o_T`,
        actions `[B, T, du]` (`a_{t-1}` before `o_t`), from `start`."""
        priors, posteriors, state = [], [], start
        for t in range(embeddings.shape[1]):
            prior = self.prior(state, actions[:, t], generator)
            state = self.posterior(prior, embeddings[:, t], generator)
            priors.append(prior)
            posteriors.append(state)
        return priors, posteriors

    def imagine(self, state: State, actions: torch.Tensor) -> list[State]:
        """Open-loop prediction: the prior's means under actions `[B, K, du]` from `state`
        (no frames seen), one state per action."""
        states = []
        for k in range(actions.shape[1]):
            state = self.prior(state, actions[:, k])
            states.append(state)
        return states

    def loss(self, frames: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
             generator: torch.Generator) -> Losses:
        """The negative ELBO of chunks: uint8 frames `[B, T + 1, C, 64, 64]` (`o_0 .. o_T`),
        actions `[B, T, du]` (`a_t` taken at `o_t`), rewards `[B, T]` (`r_t` for `a_t`). The
        first frame is filtered from the zero state with a zero action; the losses cover the
        `T` steps after it. With `overshooting_distance` D > 1, the prior is also rolled
        2 .. D steps from every posterior and its KL to the (fixed) posterior there added,
        weighted by `overshooting_scale` (latent overshooting, eq. 7); with `kl_balance`
        alpha, each KL term's gradient is split alpha : 1 - alpha between prior and posterior.

        Raises:
            ValueError: naming the argument, for a wrong shape or dtype, or NaN actions.
        """
        b, t = actions.shape[:2]
        if frames.shape[:2] != (b, t + 1) or rewards.shape != (b, t):
            raise ValueError(f"frames must be [B, T+1, ...] and rewards [B, T] for actions "
                             f"[B={b}, T={t}, du], got {list(frames.shape)} and "
                             f"{list(rewards.shape)}")
        if actions.shape[-1] != self.act_dim or not bool(torch.isfinite(actions).all()):
            raise ValueError(f"actions must be finite [B, T, du={self.act_dim}]")
        images = preprocess(frames, self.config.bits, generator)
        embeddings = self.encode(images)
        first = self.posterior(self.prior(self.initial(b), torch.zeros(b, self.act_dim),
                                          generator), embeddings[:, 0], generator)
        priors, posteriors = self.observe(embeddings[:, 1:], actions, first, generator)
        features = torch.stack([q.features() for q in posteriors], dim=1)  # [B, T, dh+ds]
        reconstruction = 0.5 * (self.decode(features) - images[:, 1:]).pow(2).sum(
            dim=(-3, -2, -1)).mean()
        reward = 0.5 * (self.reward_head(features)[..., 0] - rewards).pow(2).mean()
        kl = torch.stack([_kl(q, p) for q, p in zip(posteriors, priors, strict=True)],
                         dim=1)  # [B, T]
        balanced = torch.stack([self._kl_term(q, p) for q, p in zip(posteriors, priors,
                                                                  strict=True)], dim=1)
        c = self.config
        total = reconstruction + reward + balanced.mean().clamp_min(c.free_nats)
        overshooting = torch.zeros(())
        if c.overshooting_distance > 1 and t > 1:
            overshooting, term = self._overshooting([first, *posteriors], actions, generator)
            total = total + c.overshooting_scale * term.clamp_min(c.free_nats)
        return Losses(reconstruction, reward, kl.mean(), total, overshooting.detach())

    def _kl_term(self, q: State, p: State) -> torch.Tensor:
        """The KL that is minimised `[B]`: plain, or balanced between prior and posterior."""
        alpha = self.config.kl_balance
        if alpha is None:
            return _kl(q, p)
        return alpha * _kl(_detached(q), p) + (1 - alpha) * _kl(q, _detached(p))

    def _overshooting(self, posteriors: list[State], actions: torch.Tensor,
                      generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean KL, and the mean minimised KL term, of the priors `d` = 2 .. D steps
        ahead of every posterior to the posterior there (`posteriors[i]` is `q(s_i)` of
        chunk step `i`, `0 .. T`; actions `[B, T, du]`)."""
        b, t = actions.shape[:2]
        starts = _stack(posteriors[:-1])  # [B, T] flattened: start step i = 0 .. T-1
        targets = _stack(posteriors[1:])  # q(s_{i+1}) .. for the start i
        padded = torch.cat([actions, actions.new_zeros(b, self.config.overshooting_distance,
                                                       actions.shape[-1])], dim=1)
        state = _flat(starts)
        kls, terms, counts = [], [], []
        for d in range(1, min(self.config.overshooting_distance, t) + 1):
            # From start i, the d-th step takes a_{i+d-1} and predicts s_{i+d}.
            step_actions = padded[:, d - 1: d - 1 + t].reshape(b * t, -1)
            state = self.prior(state, step_actions, generator)
            if d == 1:
                continue  # the one-step term is the ELBO's own
            valid = t - d + 1  # starts 0 .. T-d reach a target
            prior = _unflat(state, b, t)
            target = State(*(torch.roll(x, shifts=-(d - 1), dims=1)[:, :valid]
                             for x in (targets.h, targets.s, targets.mean, targets.std)))
            predicted = State(*(x[:, :valid] for x in (prior.h, prior.s, prior.mean, prior.std)))
            fixed = _detached(target)
            kls.append(_kl(fixed, predicted).sum())
            terms.append(self._kl_term(fixed, predicted).sum())
            counts.append(b * valid)
        total = sum(counts)
        return torch.stack(kls).sum() / total, torch.stack(terms).sum() / total


def _in_blocks(net: nn.Module, x: torch.Tensor, block: int | None) -> torch.Tensor:
    """`net(x)` of a batch `[N, ...]`, computed `block` rows at a time."""
    if block is None or x.shape[0] <= block:
        return net(x)
    return torch.cat([net(part) for part in x.split(block)])


def _kl(q: State, p: State) -> torch.Tensor:
    """KL(q || p) of diagonal Gaussians, summed over the state `[...]`."""
    ratio = (q.std / p.std).pow(2)
    return 0.5 * (ratio + ((q.mean - p.mean) / p.std).pow(2) - 1 - ratio.log()).sum(-1)


def _detached(state: State) -> State:
    return State(state.h.detach(), state.s.detach(), state.mean.detach(), state.std.detach())


def _stack(states: list[State]) -> State:
    """States `[B, ...]` stacked along time, `[B, T, ...]`."""
    return State(*(torch.stack([getattr(x, name) for x in states], dim=1)
                   for name in ("h", "s", "mean", "std")))


def _flat(state: State) -> State:
    return State(*(x.reshape(-1, x.shape[-1]) for x in (state.h, state.s, state.mean,
                                                         state.std)))


def _unflat(state: State, b: int, t: int) -> State:
    return State(*(x.reshape(b, t, -1) for x in (state.h, state.s, state.mean, state.std)))
