"""Neural policies: a controller that answers in microseconds, taught by a planner.

`NeuralPolicy` is a multilayer perceptron from observation to action, deterministic or
Gaussian (a state-independent diagonal covariance, as the students of DAgger, PLATO and
Guided Policy Search use), with the observation normalisation inside it and saved with it.
It is a `Controller`: `act(obs)` returns an action `[du]` that is finite and inside the
bounds, always (the mean clamped into the box; a network that outputs NaN gives the safe
action, counted in `nonfinite_actions`).

Single-observation inference skips torch's dispatch: `act` runs the layers as NumPy
matrix-vector products on a copy of the weights, refreshed whenever the weights change
(`weights_changed()`, which the fitting code calls), so a small policy answers in a few
microseconds where the same torch module takes tens.

Shapes: `B` batch, `do` observation and `du` action dimension.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from controllers.validation import check_types, checked_bounds, require

#: The hidden-layer nonlinearities, torch and NumPy alike.
ACTIVATIONS: dict[str, tuple[type[nn.Module], Callable[[NDArray[Any]], NDArray[Any]]]] = {
    "tanh": (nn.Tanh, np.tanh),
    "relu": (nn.ReLU, lambda z: np.maximum(z, 0.0)),
}


@dataclass(frozen=True)
class PolicyConfig:
    """Settings of a `NeuralPolicy`."""

    #: Widths of the hidden layers; () is a linear (affine) policy.
    hidden_sizes: tuple[int, ...] = (64, 64)
    #: The hidden layers' nonlinearity: "tanh" or "relu".
    activation: str = "tanh"
    #: A Gaussian policy (mean and a state-independent diagonal std) rather than a
    #: deterministic one; `act` plays the mean unless asked to explore.
    gaussian: bool = True
    #: The Gaussian's initial std, as a fraction of the action range's half-width.
    initial_std: float = 0.2

    def __post_init__(self) -> None:
        check_types(self)
        require(self, "hidden_sizes", all(w >= 1 for w in self.hidden_sizes),
                "must be positive widths")
        require(self, "activation", self.activation in ACTIVATIONS,
                f"must be one of {list(ACTIVATIONS)}")
        require(self, "initial_std", self.initial_std > 0, "must be > 0")

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain values (a checkpoint stores them)."""
        return {"hidden_sizes": list(self.hidden_sizes), "activation": self.activation,
                "gaussian": self.gaussian, "initial_std": self.initial_std}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PolicyConfig:
        """The settings `to_dict` wrote."""
        return cls(**{**values, "hidden_sizes": tuple(values["hidden_sizes"])})


@dataclass
class _Snapshot:
    """The weights as NumPy arrays, for `act`'s fast path."""

    layers: list[tuple[NDArray[np.float64], NDArray[np.float64]]] = field(default_factory=list)
    obs_mean: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    obs_std: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))


class NeuralPolicy(nn.Module):
    """An MLP policy `obs [B, do] -> action mean [B, du]`, a `Controller` (see the module
    docstring).

    Args:
        obs_dim, act_dim: do and du.
        action_low, action_high: `[du]` finite bounds.
        config: see `PolicyConfig`.
        generator: initialises the weights and draws explored actions (seed 0 if None).
    """

    #: The action bounds `[du]` and the observation normaliser `[do]` (buffers, saved).
    action_low: torch.Tensor
    action_high: torch.Tensor
    obs_mean: torch.Tensor
    obs_std: torch.Tensor

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        action_low: torch.Tensor | NDArray[Any],
        action_high: torch.Tensor | NDArray[Any],
        config: PolicyConfig = PolicyConfig(),
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if obs_dim < 1 or act_dim < 1:
            raise ValueError(f"obs_dim and act_dim must be >= 1, got {obs_dim} and {act_dim}")
        low, high = checked_bounds(_tensor(action_low), _tensor(action_high), torch.float64)
        if low.shape != (act_dim,):
            raise ValueError(f"action bounds must be [du={act_dim}], got {list(low.shape)}")
        self.obs_dim, self.act_dim, self.config = obs_dim, act_dim, config
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        activation = ACTIVATIONS[config.activation][0]
        widths = [obs_dim, *config.hidden_sizes, act_dim]
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
            linear = nn.Linear(n_in, n_out)
            bound = 1.0 / math.sqrt(n_in)
            with torch.no_grad():
                linear.weight.uniform_(-bound, bound, generator=self.generator)
                linear.bias.uniform_(-bound, bound, generator=self.generator)
            layers.append(linear)
            if i < len(widths) - 2:
                layers.append(activation())
        self.net = nn.Sequential(*layers)
        self.register_buffer("action_low", low.float())
        self.register_buffer("action_high", high.float())
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))
        half_range = (high - low).float() / 2
        self.log_std = nn.Parameter(torch.log(config.initial_std * half_range),
                                    requires_grad=config.gaussian)
        #: Actions `act` replaced by the safe action because the network gave NaN or inf.
        self.nonfinite_actions = 0
        self._low64, self._high64 = low.numpy().copy(), high.numpy().copy()
        self._snapshot: _Snapshot | None = None

    # ------------------------------------------------------------------ torch (batched)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The action mean `[B, du]` of observations `[B, do]`, not clamped (what is fitted)."""
        return self.net((obs - self.obs_mean) / self.obs_std)

    def std(self) -> torch.Tensor:
        """The Gaussian's std `[du]` (the initial one for a deterministic policy)."""
        return self.log_std.exp()

    def mean_action(self, obs: torch.Tensor) -> torch.Tensor:
        """The action `[B, du]` the policy plays at `obs` `[B, do]`: the mean, clamped into the
        bounds (differentiable inside them); any dtype, returned in `obs`'s."""
        mean = self.forward(obs.to(self.obs_mean.dtype))
        return torch.clamp(mean, self.action_low, self.action_high).to(obs.dtype)

    def fit_normalizer(self, obs: torch.Tensor) -> None:
        """Set the observation normalisation to the mean and std of `obs` `[N, do]`."""
        with torch.no_grad():
            self.obs_mean.copy_(obs.mean(dim=0))
            self.obs_std.copy_(obs.std(dim=0, unbiased=False).clamp_min(1e-6)
                               if obs.shape[0] > 1 else torch.ones_like(self.obs_std))
        self.weights_changed()

    def set_std(self, std: torch.Tensor) -> None:
        """Set the Gaussian's std `[du]` (positive)."""
        if std.shape != (self.act_dim,) or not bool((std > 0).all() & torch.isfinite(std).all()):
            raise ValueError(f"std must be [du={self.act_dim}], positive and finite, got {std}")
        with torch.no_grad():
            self.log_std.copy_(std.log())

    def weights_changed(self) -> None:
        """Forget `act`'s copy of the weights (call after changing them)."""
        self._snapshot = None

    # ------------------------------------------------------------------ the Controller

    def reset(self) -> None:
        """A policy carries nothing between episodes."""

    def act(self, obs: Any, explore: bool = False) -> torch.Tensor:
        """The action `[du]` (float64) at one observation `[do]` (NumPy or torch): the mean,
        or with `explore` a draw from the Gaussian; always finite and inside the bounds.

        Raises:
            ValueError: naming `obs` if it is not `[do]` or not finite.
        """
        x = np.asarray(obs.detach().cpu() if isinstance(obs, torch.Tensor) else obs,
                       dtype=np.float64)
        if x.shape != (self.obs_dim,):
            raise ValueError(f"obs must be [do={self.obs_dim}], got shape {list(x.shape)}")
        if not np.isfinite(x).all():
            raise ValueError(f"obs holds NaN or infinite values: {x}")
        snapshot = self._snapshot or self._take_snapshot()
        h = (x - snapshot.obs_mean) / snapshot.obs_std
        squash = ACTIVATIONS[self.config.activation][1]
        last = len(snapshot.layers) - 1
        for i, (weight, bias) in enumerate(snapshot.layers):
            h = weight @ h + bias
            if i < last:
                h = squash(h)
        if explore and self.config.gaussian:
            noise = torch.randn(self.act_dim, generator=self.generator, dtype=torch.float64)
            h = h + self.std().detach().double().numpy() * noise.numpy()
        if not np.isfinite(h).all():
            self.nonfinite_actions += 1
            h = np.zeros(self.act_dim)
        return torch.from_numpy(np.minimum(np.maximum(h, self._low64), self._high64))

    def _take_snapshot(self) -> _Snapshot:
        def array(t: torch.Tensor) -> NDArray[np.float64]:
            return t.detach().cpu().double().numpy().copy()

        linears = [m for m in self.net if isinstance(m, nn.Linear)]
        self._snapshot = _Snapshot(
            layers=[(array(m.weight), array(m.bias)) for m in linears],
            obs_mean=array(self.obs_mean), obs_std=array(self.obs_std),
        )
        return self._snapshot

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """As `nn.Module.load_state_dict`; `act` then uses the loaded weights."""
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.weights_changed()
        return result


def _tensor(x: torch.Tensor | NDArray[Any]) -> torch.Tensor:
    """A float64 copy of `x`."""
    if isinstance(x, torch.Tensor):
        return x.detach().to(torch.float64).clone()
    return torch.from_numpy(np.array(x, dtype=np.float64))
