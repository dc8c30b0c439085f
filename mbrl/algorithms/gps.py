"""Guided policy search, mirror-descent form (MDGPS): local LQR controllers teach a global policy.

Montgomery & Levine (2016), "Guided Policy Search as Approximate Mirror Descent", Algorithm 2
(after Levine & Koltun 2013, "Guided Policy Search"), as the reference implementation
(cbfinn/gps, `AlgorithmMDGPS`) runs it. Each of M initial conditions has a time-varying
linear-Gaussian controller `p_i`; every iteration samples them, fits local dynamics to the
samples (`mbrl.learning.local_dynamics`: regression with a GMM prior), linearises the global
`NeuralPolicy` about the samples, improves each `p_i` under a KL bound to that linearisation
(the C-step, `controllers.linear_gaussian.kl_bounded_update`), and fits the policy to the
controllers' actions at the sampled states weighted by their precision (the S-step). The bound
adapts by the reference's step rule: the predicted against the actual improvement of the
linearised policy's expected cost ("laplace").

Differences from the reference, stated: the policy is linearised by its Jacobian at each step's
mean sampled state (the reference regresses it on the samples with its own GMM prior); the
cost is the task's quadratic goal (`mbrl.control.goals`) in observation space, which is also
the state of the local controllers (the cart-pole's and pendulum's observations are Markov).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.func import jacrev

from controllers.linear_gaussian import (
    CStepResult,
    LinearGaussianController,
    LocalModel,
    expected_cost,
    kl_bounded_update,
)
from controllers.policy import NeuralPolicy
from controllers.validation import check_types, require, require_positive
from mbrl.algorithms.students import DistillProgress, SafetyMonitor, episode, evaluate_policy
from mbrl.control.episodes import Env, rollout
from mbrl.learning.local_dynamics import FittedDynamics, fit_linear_gaussian, fit_mixture
from mbrl.learning.policy_training import PolicyTrainConfig, fit_policy

Array = np.ndarray
#: The running cost `(x [dx], u [du], t) -> []` with `derivatives(xs, us, steps)`, and the
#: final cost `x -> []` with `derivatives(x)` (`controllers.costs`).
Cost = Any


@dataclass(frozen=True)
class GPSConfig:
    """Settings of `mdgps`."""

    #: Iterations (the run's `iterations` replaces it).
    iterations: int = 10
    #: Initial conditions M: episodes from the env's reset with seeds 0 .. M-1.
    conditions: int = 4
    #: Samples of each local controller per iteration.
    samples_per_condition: int = 5
    #: The KL bound per step, epsilon (times the horizon and the step multiplier).
    kl_step: float = 0.2
    #: Bounds of the adaptive step multiplier.
    min_step_mult: float = 0.01
    max_step_mult: float = 10.0
    #: The first controllers' action std, a fraction of the action range's half-width.
    initial_std: float = 0.5
    #: Sampled trajectories kept for the dynamics prior (the latest).
    prior_samples: int = 20
    #: The prior's mixture: at most this many clusters, at least this many points each.
    max_clusters: int = 20
    min_points_per_cluster: int = 40
    #: Where the local dynamics come from: "regression" on the samples with the GMM prior,
    #: or "model", the Jacobians of a known or learned model (`mdgps(..., model=)`) at each
    #: step's mean sample.
    dynamics: str = "regression"

    def __post_init__(self) -> None:
        check_types(self)
        require_positive(self, "iterations", "conditions", "prior_samples", "max_clusters",
                         "min_points_per_cluster")
        require(self, "samples_per_condition", self.samples_per_condition >= 2,
                "must be >= 2")
        for name in ("kl_step", "initial_std", "min_step_mult"):
            require(self, name, getattr(self, name) > 0, "must be > 0")
        require(self, "max_step_mult", self.max_step_mult >= self.min_step_mult,
                f"must be >= min_step_mult ({self.min_step_mult})")
        require(self, "dynamics", self.dynamics in ("regression", "model"),
                "must be regression or model")


def mdgps(
    env: Env,
    student: NeuralPolicy,
    config: GPSConfig,
    fit: PolicyTrainConfig,
    progress: DistillProgress,
    evaluate: Callable[[NeuralPolicy], float],
    cost: Cost,
    final_cost: Cost,
    horizon: int,
    safety: Callable[[], SafetyMonitor | None] = lambda: None,
    on_iteration: Callable[[DistillProgress], object] = lambda _: None,
    model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> list[dict[str, float]]:
    """Run MDGPS from `progress` to `config.iterations`; return the metrics rows. Montgomery &
    Levine (2016), Algorithm 2:

        for k = 1 .. K:
            run each local controller p_i from its initial condition: samples D_i
            fit the dynamics p(x_{t+1} | x_t, u_t) of each condition to D_i (GMM prior)
            linearise the global policy about D_i: pi_lin_i
            adjust epsilon by the predicted and actual improvement of the last step
            C-step: p_i <- argmin E_{p_i}[cost]  s.t.  KL(p_i || pi_lin_i) <= epsilon
            S-step: pi_theta <- argmin sum_{i,t,samples} KL(pi_theta(u|x) || p_i(u|x))

    `cost` and `final_cost` are the task's quadratic cost on observations; `horizon` is T,
    the control steps of an episode; `model`, `x [dx], u [du] -> x' [dx]` in torch, the
    dynamics whose Jacobians `config.dynamics == "model"` takes. The state between iterations
    (controllers, step multiplier, multipliers eta, the prior's samples) lives in
    `progress.extra`.
    """
    if config.dynamics == "model" and model is None:
        raise ValueError("GPSConfig.dynamics is 'model' but no model was given")
    low = student.action_low.double().numpy()
    high = student.action_high.double().numpy()
    dx, du = student.obs_dim, student.act_dim
    conditions = list(range(config.conditions))
    state = _GPSState.restore(progress.extra, config, horizon, dx, du, low, high)
    for i in range(len(progress.rows), config.iterations):
        # Samples of every local controller (the first iteration's: open-loop noise).
        monitor = safety()
        samples = []
        for m in conditions:
            controller = state.controllers[m]
            controller.rng = progress.rng
            runs = [episode(env, controller, m, monitor)
                    for _ in range(config.samples_per_condition)]
            controller.rng = None
            if any(run.steps != horizon for run in runs):
                raise ValueError(f"MDGPS needs episodes of all {horizon} steps; one ended early")
            samples.append((np.stack([r.observations for r in runs]),
                            np.stack([r.actions for r in runs]),
                            float(np.mean([r.episode_return for r in runs]))))
        # The dynamics, about each condition's samples, under a prior fitted to them all.
        state.remember([s[0] for s in samples], [s[1] for s in samples], config.prior_samples)
        points = state.transitions()
        clusters = max(1, min(config.max_clusters,
                              points.shape[0] // config.min_points_per_cluster))
        prior = fit_mixture(points, clusters, progress.rng)
        models = [_local_model(states, actions, prior, cost, final_cost,
                               model if config.dynamics == "model" else None)
                  for states, actions, _ in samples]
        if i == 0:  # catch the policy up with the first controllers before linearising it
            _s_step(student, state.controllers, samples, fit, progress.generator)
        policy_lin = [_linearise(student, states, horizon) for states, _, _ in samples]
        # The step size, from how the last C-step's prediction fared.
        if i > 0 and not np.isnan(state.prev_laplace):
            cur_laplace = float(np.mean([expected_cost(p, md)
                                         for p, md in zip(policy_lin, models, strict=True)]))
            predicted = state.prev_laplace - state.prev_predicted
            actual = state.prev_laplace - cur_laplace
            multiplier = float(np.clip(predicted / (2 * max(1e-4, predicted - actual)),
                                       0.1, 5.0))
            state.step_mult = float(np.clip(multiplier * state.step_mult,
                                            config.min_step_mult, config.max_step_mult))
        # C-step: each controller as good as the KL bound to the policy allows.
        epsilon = config.kl_step * state.step_mult * horizon
        results, failures = [], 0
        for m, (md, lin) in enumerate(zip(models, policy_lin, strict=True)):
            try:
                results.append(kl_bounded_update(md, lin, epsilon, eta=state.etas[m]))
            except np.linalg.LinAlgError:  # no eta makes this fit's LQR positive definite:
                failures += 1  # keep the condition's controller for another iteration
                results.append(CStepResult(state.controllers[m], state.etas[m], 0.0, 0))
        state.controllers = [r.controller for r in results]
        state.etas = [r.eta for r in results]
        state.prev_laplace = float(np.mean([expected_cost(p, md)
                                            for p, md in zip(policy_lin, models, strict=True)]))
        state.prev_predicted = float(np.mean([expected_cost(c, md) for c, md in
                                              zip(state.controllers, models, strict=True)]))
        # S-step: the policy fitted to the new controllers' actions at the sampled states.
        report = _s_step(student, state.controllers, samples, fit, progress.generator)
        progress.data.observations = list(report[1])
        progress.data.labels = list(report[2])
        local_return = float(np.mean([rollout(env, c, seed=m).episode_return
                                      for m, c in enumerate(state.controllers)]))
        progress.teacher_return = local_return
        progress.rows.append({
            "iteration": i,
            "step_mult": state.step_mult,
            "kl": float(np.mean([r.kl for r in results])),
            "cstep_failures": failures,
            "epsilon": epsilon,
            "data_return": float(np.mean([s[2] for s in samples])),
            "student_return": evaluate(student),
            "student_return_conditions": evaluate_policy(env, student, conditions),
            "teacher_return": local_return,
            "teacher_queries": progress.queries_so_far()
            + config.conditions * config.samples_per_condition * horizon,
            "violations": progress.violations_so_far()
            + (monitor.violations if monitor else 0),
            "samples": len(report[1]),
            "train_loss": report[0].train_loss,
            "holdout_loss": report[0].holdout_loss,
        })
        progress.extra = state.save()
        on_iteration(progress)
    return progress.rows


def _local_model(states: Array, actions: Array, prior: Any, cost: Cost, final_cost: Cost,
                 model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None
                 ) -> LocalModel:
    """A condition's dynamics (fitted, or the model's linearisation), initial state and cost
    expanded about zero (the samples' average of each sample's quadratic expansion, as the
    reference's `_eval_cost`)."""
    dynamics = (fit_linear_gaussian(states, actions, prior) if model is None
                else _linearised_model(model, states, actions))
    n_samples, horizon, du = actions.shape
    dx = states.shape[2]
    C = np.zeros((horizon, dx + du, dx + du))
    c = np.zeros((horizon, dx + du))
    cc = np.zeros(horizon)
    C_final, c_final, cc_final = np.zeros((dx, dx)), np.zeros(dx), 0.0
    steps = torch.arange(horizon)
    for n in range(n_samples):
        xs, us = torch.from_numpy(states[n, :-1]), torch.from_numpy(actions[n])
        l_x, l_u, l_xx, l_uu, l_ux = (d.double().numpy() for d in cost.derivatives(xs, us, steps))
        values = np.array([float(cost(x, u, t)) for x, u, t in zip(xs, us, steps, strict=True)])
        y = np.concatenate([states[n, :-1], actions[n]], axis=1)
        H = np.block([[l_xx, l_ux.transpose(0, 2, 1)], [l_ux, l_uu]])
        g = np.concatenate([l_x, l_u], axis=1)
        Hy = np.einsum("tij,tj->ti", H, y)
        C += H / n_samples
        c += (g - Hy) / n_samples
        cc += (values - np.einsum("ti,ti->t", g, y) + 0.5 * np.einsum("ti,ti->t", y, Hy)
               ) / n_samples
        x_final = torch.from_numpy(states[n, -1])
        f_x, f_xx = (d.double().numpy() for d in final_cost.derivatives(x_final))
        y_final = states[n, -1]
        C_final += f_xx / n_samples
        c_final += (f_x - f_xx @ y_final) / n_samples
        cc_final += (float(final_cost(x_final)) - f_x @ y_final
                     + 0.5 * y_final @ f_xx @ y_final) / n_samples
    x0 = states[:, 0]
    x0_cov = np.cov(x0.T, bias=True).reshape(dx, dx) + 1e-6 * np.eye(dx)
    return LocalModel(dynamics.F, dynamics.f, dynamics.W, x0.mean(axis=0), x0_cov, C, c, cc,
                      C_final, c_final, float(cc_final))


def _linearised_model(model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                      states: Array, actions: Array) -> FittedDynamics:
    """The model's Jacobians at each step's mean sample; the noise, the covariance of the
    samples' next states about that linearisation (floored at 1e-6)."""
    x_mean = torch.from_numpy(states[:, :-1].mean(axis=0))  # [T, dx]
    u_mean = torch.from_numpy(actions.mean(axis=0))  # [T, du]
    with torch.no_grad():
        next_mean = torch.vmap(model)(x_mean, u_mean).double().numpy()
    A, B = (j.detach().double().numpy()
            for j in torch.vmap(jacrev(model, argnums=(0, 1)))(x_mean, u_mean))
    F = np.concatenate([A, B], axis=2)
    xu_mean = np.concatenate([x_mean.numpy(), u_mean.numpy()], axis=1)
    f = next_mean - np.einsum("tij,tj->ti", F, xu_mean)
    xu = np.concatenate([states[:, :-1], actions], axis=2)  # [N, T, n]
    residual = states[:, 1:] - (np.einsum("tij,ntj->nti", F, xu) + f)
    dx = states.shape[2]
    W = np.einsum("nti,ntj->tij", residual, residual) / states.shape[0] + 1e-6 * np.eye(dx)
    return FittedDynamics(F, f, W)


def _linearise(student: NeuralPolicy, states: Array, horizon: int) -> LinearGaussianController:
    """The policy as a linear-Gaussian controller: its Jacobian at each step's mean sampled
    state, its own covariance."""
    means = torch.from_numpy(states[:, :horizon].mean(axis=0)).float()  # [T, dx]

    def mean_action(x: torch.Tensor) -> torch.Tensor:
        return student(x[None])[0]

    with torch.no_grad():
        actions = student(means).double().numpy()
    gains = torch.vmap(jacrev(mean_action))(means).detach().double().numpy()  # [T, du, dx]
    offsets = actions - np.einsum("tij,tj->ti", gains, means.double().numpy())
    variance = student.std().detach().double().numpy() ** 2
    return LinearGaussianController(gains, offsets, np.tile(np.diag(variance), (horizon, 1, 1)))


def _s_step(student: NeuralPolicy, controllers: list[LinearGaussianController],
            samples: list[tuple[Array, Array, float]], fit: PolicyTrainConfig,
            generator: torch.Generator) -> tuple[Any, Array, Array]:
    """Fit the policy to each controller's mean action at its sampled states, weighted by the
    controller's precision; the policy's variance is the inverse of the mean precision (the
    reference's `policy_opt.update`)."""
    obs, targets, precisions = [], [], []
    for controller, (states, _, _) in zip(controllers, samples, strict=True):
        x = states[:, : controller.horizon]  # [N, T, dx]
        obs.append(x.reshape(-1, x.shape[-1]))
        targets.append((np.einsum("tij,ntj->nti", controller.K, x) + controller.k).reshape(
            -1, controller.k.shape[1]))
        precision = controller.precision()
        precisions.append(np.broadcast_to(precision, (x.shape[0], *precision.shape)).reshape(
            -1, *precision.shape[1:]))
    o, a, p = (np.concatenate(part) for part in (obs, targets, precisions))
    std = torch.from_numpy(np.sqrt(1.0 / np.diag(p.mean(axis=0))))
    report = fit_policy(student, torch.from_numpy(o).float(), torch.from_numpy(a).float(), fit,
                        generator, precision=torch.from_numpy(p).float(), std=std)
    return report, o, a


@dataclass
class _GPSState:
    """What MDGPS carries from one iteration to the next."""

    controllers: list[LinearGaussianController]
    etas: list[float]
    step_mult: float
    prev_laplace: float
    prev_predicted: float
    recent_states: Array  # [S, T+1, dx]
    recent_actions: Array  # [S, T, du]

    def remember(self, states: list[Array], actions: list[Array], keep: int) -> None:
        """Add the iteration's samples to those the prior is fitted to, keeping the latest."""
        self.recent_states = np.concatenate([self.recent_states, *states])[-keep:]
        self.recent_actions = np.concatenate([self.recent_actions, *actions])[-keep:]

    def transitions(self) -> Array:
        """Every kept `[x_t, u_t, x_{t+1}]` `[S * T, 2 dx + du]`."""
        s, a = self.recent_states, self.recent_actions
        return np.concatenate([s[:, :-1], a, s[:, 1:]], axis=2).reshape(-1, 2 * s.shape[2]
                                                                         + a.shape[2])

    def save(self) -> dict[str, Array]:
        """As arrays (a checkpoint's `algorithm_state.npz`)."""
        return {
            "K": np.stack([c.K for c in self.controllers]),
            "k": np.stack([c.k for c in self.controllers]),
            "covariance": np.stack([c.covariance for c in self.controllers]),
            "etas": np.asarray(self.etas),
            "scalars": np.asarray([self.step_mult, self.prev_laplace, self.prev_predicted]),
            "recent_states": self.recent_states,
            "recent_actions": self.recent_actions,
        }

    @classmethod
    def restore(cls, saved: dict[str, Array], config: GPSConfig, horizon: int, dx: int,
                du: int, low: Array, high: Array) -> _GPSState:
        """The state `save` wrote, or the first iteration's: open-loop Gaussian noise about
        the middle of the action range."""
        if not saved:
            std = config.initial_std * (high - low) / 2
            first = [LinearGaussianController.constant(horizon, dx, (low + high) / 2, std)
                     for _ in range(config.conditions)]
            return cls(first, [1.0] * config.conditions, 1.0, np.nan, np.nan,
                       np.zeros((0, horizon + 1, dx)), np.zeros((0, horizon, du)))
        controllers = [LinearGaussianController(K, k, cov) for K, k, cov in
                       zip(saved["K"], saved["k"], saved["covariance"], strict=True)]
        step_mult, prev_laplace, prev_predicted = (float(v) for v in saved["scalars"])
        return cls(controllers, [float(e) for e in saved["etas"]], step_mult, prev_laplace,
                   prev_predicted, saved["recent_states"], saved["recent_actions"])
