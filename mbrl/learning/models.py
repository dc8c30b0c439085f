"""Ensembles of neural-network dynamics models, probabilistic or deterministic.

Chua et al. (2018), "Deep Reinforcement Learning in a Handful of Trials using Probabilistic
Dynamics Models" (PETS): each of E members is an MLP from `[obs, act]` to a Gaussian over the
change of observation, `next_obs - obs`; members differ by their initial weights and by the
bootstrap sample they are trained on (`mbrl.learning.training.fit`). The interfaces follow
facebookresearch/mbrl-lib (`forward`, `loss`, elite members), without Hydra.

Inputs and outputs are normalised inside the model (`Normalizer`, fitted on training data and
saved in the state dict), so a saved model predicts in observation units on its own.

Shapes: `E` members, `B` batch, `do` observation dimension, `du` action dimension.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from controllers.validation import check_types, require, require_positive
from mbrl.config import from_dict

#: Activations by name: `fn(x, inplace)`.
ACTIVATIONS: dict[str, Callable[[torch.Tensor, bool], torch.Tensor]] = {
    "silu": lambda x, inplace: F.silu(x, inplace=inplace),
    "relu": lambda x, inplace: F.relu(x, inplace=inplace),
    "elu": lambda x, inplace: F.elu(x, inplace=inplace),
    "tanh": lambda x, inplace: x.tanh_() if inplace else x.tanh(),
}

#: Floats in one hidden activation block of `_mlp_blocked` (E x rows x width): 1 MiB, which
#: stays in a server core's L2 cache from one layer to the next (2**17 to 2**19 time the same).
BLOCK_FLOATS = 2**18


@dataclass(frozen=True)
class Prediction:
    """A model's belief about the next observation, one per member."""

    #: Predicted next observation, `[E, B, do]`.
    mean: torch.Tensor
    #: Predicted variance of the next observation, `[E, B, do]`; None for deterministic models.
    var: torch.Tensor | None


@runtime_checkable
class DynamicsModel(Protocol):
    """What planners and trainers need from a learned one-step model.

    `obs` is whatever state the model steps: the observation for PETS, a latent state for a
    latent model such as PlaNet's RSSM (which would have `num_members == 1`).
    """

    @property
    def num_members(self) -> int:
        """Members E along the leading axis of every `Prediction`."""
        ...

    def predict(self, obs: torch.Tensor, act: torch.Tensor) -> Prediction:
        """The next state of `obs` under `act`, per member."""
        ...

    def loss(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """The scalar training loss on these transitions."""
        ...


@dataclass(frozen=True)
class EnsembleConfig:
    """Settings of `EnsembleDynamics` (defaults: PETS's half-cheetah model)."""

    #: Members E.
    ensemble_size: int = 5
    #: Width of every hidden layer.
    hidden_size: int = 200
    #: Hidden layers (the output layer comes on top).
    hidden_layers: int = 4
    #: Activation after each hidden layer, a key of `ACTIVATIONS`.
    activation: str = "silu"
    #: Gaussian outputs (mean and variance) trained by NLL; False: means only, trained by MSE.
    probabilistic: bool = True
    #: Initial lower soft bound on the (normalised) log-variance; learned.
    min_log_var: float = -10.0
    #: Initial upper soft bound on the (normalised) log-variance; learned.
    max_log_var: float = 0.5
    #: L2 weight decay, one per layer (hidden layers, then output) or one for all.
    weight_decay: float | tuple[float, ...] = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)
    #: Adam's learning rate.
    learning_rate: float = 1e-3

    def __post_init__(self) -> None:
        if isinstance(self.weight_decay, list):  # from JSON
            object.__setattr__(self, "weight_decay", tuple(self.weight_decay))
        check_types(self)
        require_positive(self, "ensemble_size", "hidden_size", "hidden_layers")
        require(self, "activation", self.activation in ACTIVATIONS,
                f"must be one of {sorted(ACTIVATIONS)}")
        require(self, "min_log_var", self.min_log_var < self.max_log_var,
                f"must be below max_log_var ({self.max_log_var})")
        require(self, "learning_rate", self.learning_rate > 0, "must be > 0")
        layers = self.hidden_layers + 1
        require(self, "weight_decay", not isinstance(self.weight_decay, tuple)
                or len(self.weight_decay) == layers,
                f"must be one number, or one per layer (hidden_layers + 1 = {layers})")
        require(self, "weight_decay", all(d >= 0 for d in self.layer_weight_decays()),
                "must be >= 0")

    def layer_weight_decays(self) -> tuple[float, ...]:
        """Weight decay of each layer, hidden layers then output: `hidden_layers + 1` values."""
        layers = self.hidden_layers + 1
        if isinstance(self.weight_decay, tuple):
            if len(self.weight_decay) != layers:
                raise ValueError(
                    f"weight_decay has {len(self.weight_decay)} values for {layers} layers "
                    f"(hidden_layers + 1); give one per layer or a single float"
                )
            return self.weight_decay
        return (self.weight_decay,) * layers

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-able values."""
        out = dataclasses.asdict(self)
        if isinstance(self.weight_decay, tuple):
            out["weight_decay"] = list(self.weight_decay)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> EnsembleConfig:
        """The inverse of `to_dict`; missing fields take their defaults, unknown ones raise
        `ConfigError`."""
        return from_dict(cls, dict(values))


class EnsembleLinear(nn.Module):
    """E independent linear layers, applied member-wise in one batched matmul.

    Weights `[E, in, out]`, biases `[E, 1, out]`; `forward` maps `[E, B, in]` to `[E, B, out]`.
    Initialised as in PETS: truncated normal weights with std `1 / (2 sqrt(in))`, zero biases.
    """

    def __init__(
        self,
        ensemble_size: int,
        in_features: int,
        out_features: int,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.ensemble_size, self.in_features, self.out_features = (
            ensemble_size,
            in_features,
            out_features,
        )
        std = 1.0 / (2.0 * math.sqrt(in_features))
        weight = torch.empty(ensemble_size, in_features, out_features)
        nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std, generator=generator)
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros(ensemble_size, 1, out_features))

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        """`x @ weight + bias` per member, `[E, B, in] -> [E, B, out]`.

        With `members` (indices `[M]`), only those members' weights are used and `x` is
        `[M, B, in]`.
        """
        if members is None:
            return torch.baddbmm(self.bias, x, self.weight)
        weight, bias = self.weight.index_select(0, members), self.bias.index_select(0, members)
        return torch.baddbmm(bias, x, weight)

    def extra_repr(self) -> str:
        return f"ensemble_size={self.ensemble_size}, in={self.in_features}, out={self.out_features}"


class Normalizer(nn.Module):
    """Per-dimension standardisation, `(x - mean) / std`, with the statistics as buffers.

    A dimension whose standard deviation is below `min_std` (a constant input, a coordinate
    that never changes) keeps std 1, as in PETS, rather than being divided by almost nothing:
    a later input that does vary there stays finite.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, size: int, min_std: float = 1e-6) -> None:
        super().__init__()
        self.size, self.min_std = size, min_std
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("std", torch.ones(size))

    def fit(self, x: torch.Tensor) -> None:
        """Set mean and std from data `[N, d]` (computed in float64)."""
        if x.ndim != 2 or x.shape[1] != self.size or x.shape[0] < 1:
            raise ValueError(f"x must be [N, {self.size}] with N >= 1, got {tuple(x.shape)}")
        x64 = x.detach().to(torch.float64)
        mean, std = x64.mean(dim=0), x64.std(dim=0, unbiased=False)
        std = torch.where(std < self.min_std, torch.ones_like(std), std)
        self.mean.copy_(mean)
        self.std.copy_(std)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """`(x - mean) / std`, `[..., d]`."""
        return (x - self.mean) / self.std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """`x * std + mean`, `[..., d]`."""
        return torch.addcmul(self.mean, x, self.std)

    def extra_repr(self) -> str:
        return f"size={self.size}, min_std={self.min_std}"


class EnsembleDynamics(nn.Module):
    """An ensemble of MLPs predicting the next observation, as in PETS.

    Each member maps normalised `[obs, act]` through `hidden_layers` `EnsembleLinear` layers
    to the normalised change of observation (and, if probabilistic, its log-variance, kept
    between learned soft bounds). `predict` returns the next observation in observation units.

    Args:
        obs_dim, act_dim: `do`, `du`.
        config: see `EnsembleConfig`.
        generator: the source of the initial weights; a fixed seed gives fixed weights.
    """

    elite_members: torch.Tensor

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        config: EnsembleConfig = EnsembleConfig(),
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        for name, dim in (("obs_dim", obs_dim), ("act_dim", act_dim)):
            if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {dim!r}")
        config.layer_weight_decays()  # raises if weight_decay does not match the layers
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.obs_dim, self.act_dim, self.config = obs_dim, act_dim, config
        self._activation = ACTIVATIONS[config.activation]
        E, width = config.ensemble_size, config.hidden_size
        out = 2 * obs_dim if config.probabilistic else obs_dim
        self.output_size = out  # of the last layer: mean, and log-variance if probabilistic
        sizes = [obs_dim + act_dim] + [width] * config.hidden_layers + [out]
        self.layers = nn.ModuleList(
            EnsembleLinear(E, n_in, n_out, generator) for n_in, n_out in itertools.pairwise(sizes)
        )
        self.input_normalizer = Normalizer(obs_dim + act_dim)
        self.output_normalizer = Normalizer(obs_dim)
        self.min_log_var: nn.Parameter | None = None
        self.max_log_var: nn.Parameter | None = None
        if config.probabilistic:
            self.min_log_var = nn.Parameter(torch.full((obs_dim,), config.min_log_var))
            self.max_log_var = nn.Parameter(torch.full((obs_dim,), config.max_log_var))
        self.register_buffer("elite_members", torch.arange(E))
        self.register_load_state_dict_pre_hook(_resize_elites_before_load)

    @property
    def num_members(self) -> int:
        """Members E."""
        return self.config.ensemble_size

    @property
    def num_elites(self) -> int:
        """Members used by `predict(..., elites_only=True)`."""
        return self.elite_members.numel()

    def set_elites(self, members: torch.Tensor | list[int] | tuple[int, ...]) -> None:
        """Use these member indices (unique, in `[0, E)`) for `predict(..., elites_only=True)`."""
        index = torch.as_tensor(members, dtype=torch.long).flatten()
        _check_elites(index, self.num_members)
        self.elite_members = torch.sort(index).values.to(self.elite_members.device)

    def forward(
        self, obs: torch.Tensor, act: torch.Tensor, elites_only: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Normalised change of observation and its log-variance, `[E, B, do]` each.

        `obs` `[B, do]` or `[E, B, do]`, `act` `[B, du]` or `[E, B, du]`: 2-D inputs go to
        every member, 3-D ones member-wise. With `elites_only`, E is the number of elites.
        The log-variance is None for a deterministic ensemble.
        """
        members = self._members(elites_only)
        n_members = self.num_members if members is None else members.numel()
        x = self.input_normalizer.normalize(self._inputs(obs, act, n_members))
        if x.ndim == 2:
            x = x.expand(n_members, -1, -1)
        if torch.is_grad_enabled():
            out = self._mlp(x, members, inplace=False)
        else:
            out = self._mlp_blocked(x, members)
        if self.max_log_var is None or self.min_log_var is None:
            return out, None
        mean, raw = out[..., : self.obs_dim], out[..., self.obs_dim :]
        log_var = self.max_log_var - F.softplus(self.max_log_var - raw)
        log_var = self.min_log_var + F.softplus(log_var - self.min_log_var)
        return mean, log_var

    def _mlp(
        self, x: torch.Tensor, members: torch.Tensor | None, inplace: bool
    ) -> torch.Tensor:
        """The layers on normalised inputs, `[E, B, do + du] -> [E, B, out]`."""
        *hidden, output = self.layers
        for layer in hidden:
            x = self._activation(layer(x, members), inplace)
        return output(x, members)

    def _mlp_blocked(self, x: torch.Tensor, members: torch.Tensor | None) -> torch.Tensor:
        """`_mlp` without gradients, a block of rows at a time through all the layers.

        A planner's batch (thousands of particles) makes each hidden activation several MB,
        more than the core's cache; a block small enough that its activations stay in cache
        between one layer and the next makes both the matmuls and the activation faster
        (about 1.15x on the PETS-sized model, see `benchmarks/planning_speed.py`).
        """
        rows = max(16, BLOCK_FLOATS // (x.shape[0] * self.config.hidden_size))
        if x.shape[1] <= 2 * rows:
            return self._mlp(x, members, inplace=True)
        out = x.new_empty((*x.shape[:2], self.output_size))
        for start in range(0, x.shape[1], rows):
            out[:, start : start + rows] = self._mlp(x[:, start : start + rows], members, True)
        return out

    def predict(
        self, obs: torch.Tensor, act: torch.Tensor, *, elites_only: bool = False
    ) -> Prediction:
        """The next observation per member, in observation units.

        `obs` `[B, do]` or `[E, B, do]`, `act` `[B, du]` or `[E, B, du]` (2-D: every member
        sees the same batch; 3-D: member-wise, as when propagating particles). Returns
        `[E, B, do]` mean and variance, or `[n_elite, B, do]` with `elites_only` (then 3-D
        inputs are `[n_elite, B, d]`). Inputs are cast to the model's dtype; gradients flow,
        so wrap planning calls in `torch.no_grad()`.
        """
        delta, log_var = self(obs, act, elites_only)
        mean = self.output_normalizer.denormalize(delta).add_(obs)
        var = None
        if log_var is not None:  # exp(log_var) std^2, with one temporary
            var = (log_var + 2 * self.output_normalizer.std.log()).exp_()
        return Prediction(mean=mean, var=var)

    def loss(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """Training loss, summed over members: Gaussian NLL or MSE in normalised units.

        Inputs as for `forward`; `next_obs` has the shape of `obs`. The probabilistic loss adds
        PETS's `0.01 * (sum max_log_var - sum min_log_var)`, which keeps the bounds tight.
        """
        _check_shape("next_obs", next_obs, self.obs_dim, self.num_members)
        if next_obs.shape != obs.shape:
            raise ValueError(
                f"next_obs must have the shape of obs {tuple(obs.shape)}, "
                f"got {tuple(next_obs.shape)}"
            )
        mean, log_var = self(obs, act)
        target = self.output_normalizer.normalize(next_obs - obs)
        if log_var is None or self.max_log_var is None or self.min_log_var is None:
            return (mean - target).square().mean(dim=(1, 2)).sum()
        nll = _gaussian_nll(mean, log_var, target).mean(dim=(1, 2)).sum()
        return nll + 0.01 * (self.max_log_var.sum() - self.min_log_var.sum())

    @torch.no_grad()
    def eval_score(
        self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Per-member scores of the predicted next observation, `[E]` each, on inputs `[B, d]`:
        the MSE in observation units; the MSE in normalised units (each dimension's error over
        the standard deviation of its change in the training data, so that no dimension counts
        more for being measured in larger units); and, if probabilistic, the Gaussian NLL per
        dimension (normalised units, with `log 2 pi`), else None.
        """
        _check_shape("next_obs", next_obs, self.obs_dim, self.num_members)
        mean, log_var = self(obs, act)
        target = self.output_normalizer.normalize(next_obs - obs)
        error = mean - target
        normalized = error.square().mean(dim=(1, 2))
        mse = (error * self.output_normalizer.std).square().mean(dim=(1, 2))
        if log_var is None:
            return mse, normalized, None
        nll = _gaussian_nll(mean, log_var, target).mean(dim=(1, 2)) + 0.5 * math.log(2 * math.pi)
        return mse, normalized, nll

    def _members(self, elites_only: bool) -> torch.Tensor | None:
        """Member indices to run, or None for all of them (no gather needed)."""
        if not elites_only or self.elite_members.numel() == self.num_members:
            return None
        return self.elite_members

    def _inputs(self, obs: torch.Tensor, act: torch.Tensor, n_members: int) -> torch.Tensor:
        """`[obs, act]`, `[B, do + du]` or `[E, B, do + du]`, after checking the shapes."""
        _check_shape("obs", obs, self.obs_dim, n_members)
        _check_shape("act", act, self.act_dim, n_members)
        if obs.shape[-2] != act.shape[-2]:
            raise ValueError(
                f"obs and act must have the same batch size B, got {tuple(obs.shape)} "
                f"and {tuple(act.shape)}"
            )
        dtype = self.output_normalizer.std.dtype
        device = self.output_normalizer.std.device
        obs, act = obs.to(device, dtype), act.to(device, dtype)
        if obs.ndim != act.ndim:
            obs = obs.expand(n_members, -1, -1)
            act = act.expand(n_members, -1, -1)
        return torch.cat([obs, act], dim=-1)


def _gaussian_nll(mean: torch.Tensor, log_var: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Elementwise Gaussian negative log-likelihood without the constant `0.5 log 2 pi`."""
    return 0.5 * ((mean - target).square() * torch.exp(-log_var) + log_var)


def _check_shape(name: str, x: torch.Tensor, dim: int, n_members: int) -> None:
    """Raise unless `x` is `[B, dim]` or `[n_members, B, dim]`."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a tensor [B, {dim}], got {type(x).__name__}")
    ok = (x.ndim == 2 and x.shape[1] == dim) or (
        x.ndim == 3 and x.shape[0] == n_members and x.shape[2] == dim
    )
    if not ok:
        raise ValueError(
            f"{name} must be [B, {dim}] or [{n_members}, B, {dim}], got shape {tuple(x.shape)}"
        )


def _check_elites(index: torch.Tensor, n_members: int) -> None:
    """Raise unless `index` holds unique member indices in `[0, n_members)`, at least one."""
    if index.dtype.is_floating_point or index.dtype == torch.bool or index.ndim != 1:
        raise ValueError(f"elite members must be a 1-D integer tensor, got {index}")
    if index.numel() == 0 or index.numel() > n_members:
        raise ValueError(f"need 1 to {n_members} elite members, got {index.numel()}")
    if bool((index < 0).any() | (index >= n_members).any()):
        raise ValueError(f"elite members must lie in [0, {n_members}), got {index.tolist()}")
    if torch.unique(index).numel() != index.numel():
        raise ValueError(f"elite members must be unique, got {index.tolist()}")


def _resize_elites_before_load(
    module: nn.Module,
    state_dict: Mapping[str, Any],
    prefix: str,
    *args: Any,
) -> None:
    """Let a state dict carry any number of elites: check them and resize the buffer."""
    if not isinstance(module, EnsembleDynamics):
        raise TypeError(f"expected an EnsembleDynamics, got {type(module).__name__}")
    stored = state_dict.get(prefix + "elite_members")
    if isinstance(stored, torch.Tensor):
        _check_elites(stored, module.num_members)
        module.elite_members = torch.empty_like(stored, device=module.elite_members.device)
