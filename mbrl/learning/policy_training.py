"""Fitting a `controllers.policy.NeuralPolicy` to a teacher's actions (supervised learning).

Every distillation algorithm ends its iteration the same way: regress the student's action
mean on the teacher's labels,

    minimise  1/N sum_n (a_n - mu(o_n))' W_n (a_n - mu(o_n))

with `W_n` the identity (DAgger, PLATO: the squared error) or the local controllers'
precision (Guided Policy Search's S-step, Montgomery & Levine 2016, eq. 4), by Adam on
minibatches. The observation normaliser is refit to all the data first. A Gaussian student's
std is then set: to the one given (GPS: the inverse of the mean precision) or to the
root-mean-square residual per action dimension, floored at `min_std` of the half range.

Shapes: `N` samples, `do` observation and `du` action dimension.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from controllers.policy import NeuralPolicy
from controllers.validation import check_types, require, require_positive


@dataclass(frozen=True)
class PolicyTrainConfig:
    """Settings of `fit_policy`."""

    #: Passes over the data per fit.
    epochs: int = 100
    #: Samples per gradient step.
    batch_size: int = 64
    #: Adam's step size.
    learning_rate: float = 1e-3
    #: L2 penalty on the weights (Adam's weight decay).
    weight_decay: float = 0.0
    #: Fraction of the samples held out to report the fit's generalisation (0: none).
    holdout_fraction: float = 0.1
    #: Floor of a Gaussian student's std, as a fraction of the action range's half-width.
    min_std: float = 0.05

    def __post_init__(self) -> None:
        check_types(self)
        require_positive(self, "epochs", "batch_size")
        require(self, "learning_rate", self.learning_rate > 0, "must be > 0")
        require(self, "weight_decay", self.weight_decay >= 0, "must be >= 0")
        require(self, "holdout_fraction", 0 <= self.holdout_fraction < 1, "must be in [0, 1)")
        require(self, "min_std", self.min_std > 0, "must be > 0")


@dataclass(frozen=True)
class PolicyFitReport:
    """What one `fit_policy` call measured."""

    #: The weighted squared error on the training samples after the last epoch.
    train_loss: float
    #: The same on the held-out samples (NaN without any).
    holdout_loss: float
    #: Samples fitted.
    samples: int


def fit_policy(
    policy: NeuralPolicy,
    obs: torch.Tensor,
    actions: torch.Tensor,
    config: PolicyTrainConfig,
    generator: torch.Generator,
    precision: torch.Tensor | None = None,
    std: torch.Tensor | None = None,
) -> PolicyFitReport:
    """Fit `policy` (in place, from its current weights) to `actions [N, du]` at `obs [N, do]`,
    each sample weighted by `precision [N, du, du]` (None: the identity); then set a Gaussian
    policy's std to `std [du]` if given, else to the residual's (see the module docstring).

    Raises:
        ValueError: naming the argument, for a wrong shape or NaN/infinite values.
    """
    n = _checked("obs", obs, policy.obs_dim).shape[0]
    if _checked("actions", actions, policy.act_dim).shape[0] != n:
        raise ValueError(f"obs and actions must have as many rows, got {n} and "
                         f"{actions.shape[0]}")
    if precision is not None and (precision.shape != (n, policy.act_dim, policy.act_dim)
                                  or not bool(torch.isfinite(precision).all())):
        raise ValueError(f"precision must be finite [N={n}, du, du], got "
                         f"{list(precision.shape)}")
    obs, actions = obs.float(), actions.float()
    weights = None if precision is None else precision.float()
    order = torch.randperm(n, generator=generator)
    holdout = int(config.holdout_fraction * n) if n >= 10 else 0
    held, train = order[:holdout], order[holdout:]
    policy.fit_normalizer(obs)
    optimiser = torch.optim.Adam(
        [p for p in policy.net.parameters()], lr=config.learning_rate,
        weight_decay=config.weight_decay,
    )
    for _ in range(config.epochs):
        shuffled = train[torch.randperm(train.shape[0], generator=generator)]
        for batch in shuffled.split(config.batch_size):
            loss = _loss(policy, obs[batch], actions[batch],
                         None if weights is None else weights[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    policy.weights_changed()
    with torch.no_grad():
        train_loss = float(_loss(policy, obs[train], actions[train],
                                 None if weights is None else weights[train]))
        holdout_loss = float("nan") if holdout == 0 else float(
            _loss(policy, obs[held], actions[held], None if weights is None else weights[held]))
        if policy.config.gaussian:
            if std is None:
                residual = actions - policy(obs)
                half_range = (policy.action_high - policy.action_low) / 2
                std = residual.pow(2).mean(dim=0).sqrt().clamp_min(config.min_std * half_range)
            policy.set_std(std.float())
    return PolicyFitReport(train_loss=train_loss, holdout_loss=holdout_loss, samples=n)


def _loss(policy: NeuralPolicy, obs: torch.Tensor, actions: torch.Tensor,
          weights: torch.Tensor | None) -> torch.Tensor:
    residual = actions - policy(obs)
    if weights is None:
        return residual.pow(2).sum(dim=1).mean()
    return torch.einsum("ni,nij,nj->n", residual, weights, residual).mean()


def _checked(name: str, x: torch.Tensor, dim: int) -> torch.Tensor:
    if x.ndim != 2 or x.shape[1] != dim or x.shape[0] < 1:
        raise ValueError(f"{name} must be [N >= 1, {dim}], got {list(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} holds NaN or infinite values")
    return x
