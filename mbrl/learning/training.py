"""Fitting an ensemble dynamics model to transitions, as PETS does.

Chua et al. (2018), "Deep Reinforcement Learning in a Handful of Trials using Probabilistic
Dynamics Models" (PETS), with the early stopping and elite selection of
facebookresearch/mbrl-lib's `ModelTrainer`: a random holdout split; each member trained by
minibatch Adam on its own bootstrap sample of the rest; holdout error per member after every
epoch; each member's best weights kept; training stops once no member has improved by
`improvement_threshold` (relative) for `patience` epochs; the best weights come back and the
members with the lowest holdout error become the elites.

The holdout error that selects snapshots and elites and stops training is the MSE in
normalised units: each dimension's error over the standard deviation of its change in the
training split. In raw units the dimensions with the largest changes (velocities) dominate it,
and a fit stops once they stop improving, however far the small ones (cos and sin of an angle)
still are from fitted.

Shapes: `N` transitions, `E` members, `do` observation and `du` action dimension.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Literal

import torch

from controllers.validation import check_types, require, require_positive
from mbrl.learning.data import ReplayBuffer
from mbrl.learning.models import EnsembleDynamics

log = logging.getLogger(__name__)

#: Holdout rows scored at once (bounds the memory of an evaluation).
EVAL_CHUNK = 8192


@dataclass(frozen=True)
class TrainConfig:
    """Settings of `fit`."""

    #: Fraction of transitions held out to score members (0: score on the training split).
    holdout_fraction: float = 0.1
    #: Transitions per member in each Adam step.
    batch_size: int = 256
    #: Epochs at most; None: until `patience` stops training.
    max_epochs: int | None = 100
    #: Epochs without improvement after which training stops; None: run `max_epochs`.
    patience: int | None = 5
    #: Relative drop of a member's best holdout error (normalised MSE) that counts as an
    #: improvement.
    improvement_threshold: float = 0.01
    #: Members with the lowest holdout error that `predict(..., elites_only=True)` uses.
    num_elites: int = 5
    #: Train each member on its own bootstrap sample (False: every member on all of it, in
    #: the same minibatches).
    bootstrap: bool = True
    #: The holdout error that selects snapshots and elites and stops training: "normalized"
    #: (each dimension over the spread of its change) or "raw" (observation units, as
    #: mbrl-lib's `ModelTrainer`; kept to measure the difference).
    selection: Literal["normalized", "raw"] = "normalized"
    #: Set the model's input and output normalisers from the training data (False: keep the
    #: model's own, as a model that starts from another's trained weights needs).
    fit_normalizers: bool = True

    def __post_init__(self) -> None:
        check_types(self)
        require(self, "holdout_fraction", 0.0 <= self.holdout_fraction < 1.0, "must be in [0, 1)")
        require_positive(self, "batch_size", "num_elites")
        for name in ("max_epochs", "patience"):
            value = getattr(self, name)
            require(self, name, value is None or value >= 1, "must be >= 1 or null")
        require(self, "patience", self.max_epochs is not None or self.patience is not None,
                "cannot be null while max_epochs is null too: training would not end")
        require(self, "improvement_threshold", self.improvement_threshold >= 0.0, "must be >= 0")


@dataclass(frozen=True)
class FitReport:
    """What `fit` did."""

    #: Epochs trained.
    epochs: int
    #: Mean training loss (summed over members) in each epoch, `[epochs]`.
    train_loss: tuple[float, ...]
    #: Holdout error (normalised MSE, or raw with `selection="raw"`) of each member after
    #: each epoch, `[epochs, E]`: what selects each member's weights and stops training.
    holdout_error_history: tuple[tuple[float, ...], ...]
    #: Holdout error of each member's restored weights, `[E]`.
    holdout_error: tuple[float, ...]
    #: Holdout MSE of each member's restored weights, in observation units, `[E]`.
    holdout_mse: tuple[float, ...]
    #: Mean of `holdout_mse`.
    holdout_mse_mean: float
    #: Holdout Gaussian NLL per dimension (normalised units) of each member, `[E]`; None for a
    #: deterministic ensemble.
    holdout_nll: tuple[float, ...] | None
    #: Mean of `holdout_nll`, or None.
    holdout_nll_mean: float | None
    #: Epoch whose weights each member kept, `[E]` (0: none improved on the initial weights).
    best_epochs: tuple[int, ...]
    #: Indices of the elite members, ascending.
    elites: tuple[int, ...]
    #: True when `patience` ended training before `max_epochs`.
    stopped_early: bool


def fit(
    model: EnsembleDynamics,
    obs: torch.Tensor,
    act: torch.Tensor,
    next_obs: torch.Tensor,
    config: TrainConfig = TrainConfig(),
    generator: torch.Generator | None = None,
) -> FitReport:
    """Train `model` on transitions `obs [N, do]`, `act [N, du]`, `next_obs [N, do]`.

    Fits the model's normalisers on the training split, trains, restores each member's best
    weights and sets `model.elite_members`. `generator` (CPU) draws the split, the bootstrap
    samples and the minibatch order; a fixed seed gives fixed weights.

    Raises:
        ValueError: on data of the wrong shape or with NaN/inf values (naming the field and
            the first bad row), or more elites than members.
    """
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    E = model.num_members
    if config.num_elites > E:
        raise ValueError(f"num_elites ({config.num_elites}) exceeds the ensemble size ({E})")
    param = model.output_normalizer.std  # the model's device and dtype
    obs = _checked("obs", obs, model.obs_dim).to(param.device, param.dtype)
    act = _checked("act", act, model.act_dim).to(param.device, param.dtype)
    next_obs = _checked("next_obs", next_obs, model.obs_dim).to(param.device, param.dtype)
    n = obs.shape[0]
    if act.shape[0] != n or next_obs.shape[0] != n:
        raise ValueError(
            f"obs, act and next_obs must have the same number of rows, got "
            f"{n}, {act.shape[0]} and {next_obs.shape[0]}"
        )

    # The split: a random holdout, the rest for training.
    n_holdout = max(1, round(n * config.holdout_fraction)) if config.holdout_fraction > 0 else 0
    n_train = n - n_holdout
    if n_train < 1:
        raise ValueError(f"{n} transitions leave none to train on after the holdout split")
    split = torch.randperm(n, generator=generator).to(obs.device)
    train = split[n_holdout:]
    holdout = split[:n_holdout] if n_holdout > 0 else train
    train_obs, train_act, train_next = obs[train], act[train], next_obs[train]
    holdout_data = (obs[holdout], act[holdout], next_obs[holdout])
    if config.fit_normalizers:
        model.input_normalizer.fit(torch.cat([train_obs, train_act], dim=1))
        model.output_normalizer.fit(train_next - train_obs)

    # Each member's sample of the training rows: a bootstrap, or all of them.
    if config.bootstrap:
        samples = torch.randint(n_train, (E, n_train), generator=generator)
    else:
        samples = torch.arange(n_train).expand(E, n_train)
    optimizer = _adam(model)
    best_error = torch.full((E,), torch.inf, device=obs.device)
    best_epochs = torch.zeros(E, dtype=torch.long)
    best_state = [p.detach().clone() for p in model.parameters()]
    train_loss: list[float] = []
    error_history: list[tuple[float, ...]] = []
    epochs_without_improvement, stopped_early, epoch = 0, False, 0

    epochs = range(1, config.max_epochs + 1) if config.max_epochs else itertools.count(1)
    for epoch in epochs:
        # One pass over each member's sample in a fresh order (one order for all without
        # bootstrap, so that members then differ by their initial weights alone).
        shuffles = E if config.bootstrap else 1
        order = torch.argsort(torch.rand(shuffles, n_train, generator=generator), dim=1)
        rows = samples.gather(1, order.expand(E, n_train)).to(obs.device)
        losses = []
        for start in range(0, n_train, config.batch_size):
            batch = rows[:, start : start + config.batch_size]  # [E, b]
            loss = model.loss(train_obs[batch], train_act[batch], train_next[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        train_loss.append(float(torch.stack(losses).mean()))

        # Score on the holdout; keep each member's weights when it improved.
        error = _selection_error(config, *evaluate(model, *holdout_data)[:2])
        error_history.append(tuple(error.tolist()))
        improved = error < best_error * (1.0 - config.improvement_threshold)
        if bool(improved.any()):
            _keep_improved(model, best_state, improved)
            best_error = torch.where(improved, error, best_error)
            best_epochs[improved.cpu()] = epoch
            epochs_without_improvement = 0
        else:
            epochs_without_improvement += 1
        log.debug("epoch %d: train loss %.5g, holdout error %s", epoch, train_loss[-1], error)
        if config.patience is not None and epochs_without_improvement >= config.patience:
            stopped_early = config.max_epochs is None or epoch < config.max_epochs
            break

    # Restore the best weights and choose the elites.
    with torch.no_grad():
        for p, best in zip(model.parameters(), best_state, strict=True):
            p.copy_(best)
    mse, normalized, nll = evaluate(model, *holdout_data)
    error = _selection_error(config, mse, normalized)
    elites = torch.sort(torch.argsort(error)[: config.num_elites]).values
    model.set_elites(elites)
    return FitReport(
        epochs=epoch,
        train_loss=tuple(train_loss),
        holdout_error_history=tuple(error_history),
        holdout_error=tuple(error.tolist()),
        holdout_mse=tuple(mse.tolist()),
        holdout_mse_mean=float(mse.mean()),
        holdout_nll=None if nll is None else tuple(nll.tolist()),
        holdout_nll_mean=None if nll is None else float(nll.mean()),
        best_epochs=tuple(best_epochs.tolist()),
        elites=tuple(elites.tolist()),
        stopped_early=stopped_early,
    )


def fit_buffer(
    model: EnsembleDynamics,
    buffer: ReplayBuffer,
    config: TrainConfig = TrainConfig(),
    generator: torch.Generator | None = None,
) -> FitReport:
    """`fit` to every transition in `buffer` (copied: its arrays are read-only views)."""
    arrays = buffer.arrays()
    return fit(
        model,
        torch.tensor(arrays["obs"]),
        torch.tensor(arrays["act"]),
        torch.tensor(arrays["next_obs"]),
        config,
        generator,
    )


def evaluate(
    model: EnsembleDynamics, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per-member MSE (observation units), normalised MSE and NLL (None if deterministic) on
    `[N, d]` data, `[E]` each (see `EnsembleDynamics.eval_score`), in chunks of `EVAL_CHUNK`
    rows."""
    n = obs.shape[0]
    sums = torch.zeros(3, model.num_members, device=obs.device)
    for start in range(0, n, EVAL_CHUNK):
        chunk = slice(start, start + EVAL_CHUNK)
        mse, normalized, nll = model.eval_score(obs[chunk], act[chunk], next_obs[chunk])
        rows = obs[chunk].shape[0]
        sums[0] += mse * rows
        sums[1] += normalized * rows
        if nll is not None:
            sums[2] += nll * rows
    means = sums / n
    return means[0], means[1], (means[2] if model.config.probabilistic else None)


def _selection_error(
    config: TrainConfig, mse: torch.Tensor, normalized: torch.Tensor
) -> torch.Tensor:
    """The holdout error `[E]` that `config.selection` chooses snapshots and elites by."""
    return normalized if config.selection == "normalized" else mse


def _adam(model: EnsembleDynamics) -> torch.optim.Adam:
    """Adam with each layer's weight decay on its weights (PETS decays no biases or bounds)."""
    decays = model.config.layer_weight_decays()
    weights = {id(layer.weight) for layer in model.layers}
    groups: list[dict[str, object]] = [
        {"params": [layer.weight], "weight_decay": decay}
        for layer, decay in zip(model.layers, decays, strict=True)
    ]
    groups.append(
        {"params": [p for p in model.parameters() if id(p) not in weights], "weight_decay": 0.0}
    )
    fused = model.output_normalizer.std.device.type in ("cpu", "cuda")  # one kernel per step
    return torch.optim.Adam(groups, lr=model.config.learning_rate, fused=fused)


def _keep_improved(
    model: EnsembleDynamics, best_state: list[torch.Tensor], improved: torch.Tensor
) -> None:
    """Copy the improved members' weights (`improved`, bool `[E]`) into `best_state`.

    Per-member parameters have the member axis first; the shared log-variance bounds are
    kept whenever any member improved.
    """
    members = {id(p) for layer in model.layers for p in (layer.weight, layer.bias)}
    with torch.no_grad():
        for p, best in zip(model.parameters(), best_state, strict=True):
            if id(p) in members:
                best[improved] = p[improved]
            else:
                best.copy_(p)


def _checked(name: str, x: torch.Tensor, dim: int) -> torch.Tensor:
    """`x` as a float tensor `[N, dim]`, N >= 1, all finite; otherwise a ValueError naming it."""
    x = torch.as_tensor(x)
    if x.ndim != 2 or x.shape[1] != dim or x.shape[0] < 1:
        raise ValueError(f"{name} must be [N, {dim}] with N >= 1, got shape {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        raise ValueError(f"{name} must be floating point, got {x.dtype}")
    finite = torch.isfinite(x).all(dim=1)
    if not bool(finite.all()):
        row = int(torch.nonzero(~finite)[0, 0])
        what = "NaN" if bool(torch.isnan(x[row]).any()) else "inf"
        raise ValueError(f"{name} contains {what} at row {row}")
    return x
