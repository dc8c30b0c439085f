"""Time-varying linear-Gaussian dynamics fitted to a few sampled trajectories, with a GMM prior.

Guided policy search fits `x_{t+1} ~ N(F_t [x_t; u_t] + f_t, W_t)` at every step from a handful
of samples (fewer than the dimensions), which ordinary regression cannot do. Levine & Abbeel
(2014, "Learning Neural Network Policies with Guided Policy Search under Unknown Dynamics",
sec. 3.2) fit a Gaussian mixture to all the transitions `[x_t; u_t; x_{t+1}]` of recent
iterations and use, at each step, the mixture's moments under that step's samples as a
normal-inverse-Wishart prior of the joint Gaussian; conditioning the posterior joint gives the
dynamics. This follows their reference implementation (cbfinn/gps, `DynamicsPriorGMM` and
`gauss_fit_joint_prior`), prior strength 1. Shapes: `N` samples, `T` steps, `dx`, `du`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import logsumexp

Array = NDArray[np.float64]


@dataclass(frozen=True)
class GaussianMixture:
    """A fitted mixture: weights `[K]`, means `[K, d]`, covariances `[K, d, d]`."""

    weights: Array
    means: Array
    covariances: Array

    def log_responsibilities(self, points: Array) -> Array:
        """`log p(k | point)` `[M, K]` of points `[M, d]`."""
        d = points.shape[1]
        log_p = np.empty((points.shape[0], self.weights.shape[0]))
        for j, (mean, cov) in enumerate(zip(self.means, self.covariances, strict=True)):
            factor = np.linalg.cholesky(cov)
            z = np.linalg.solve(factor, (points - mean).T)
            log_det = 2 * np.log(np.diag(factor)).sum()
            log_p[:, j] = (np.log(self.weights[j]) - 0.5 * (z * z).sum(axis=0)
                           - 0.5 * (log_det + d * np.log(2 * np.pi)))
        return log_p - logsumexp(log_p, axis=1, keepdims=True)

    def moments(self, points: Array) -> tuple[Array, Array]:
        """The mean `[d]` and covariance `[d, d]` of the mixture reweighted by the points'
        average responsibilities (the prior at one step)."""
        log_w = logsumexp(self.log_responsibilities(points), axis=0) - np.log(points.shape[0])
        w = np.exp(log_w - logsumexp(log_w))
        mean = w @ self.means
        diff = self.means - mean
        cov = np.einsum("k,kij->ij", w, self.covariances) + np.einsum("k,ki,kj->ij", w, diff,
                                                                      diff)
        return mean, (cov + cov.T) / 2


def fit_mixture(points: Array, clusters: int, rng: np.random.Generator,
                iterations: int = 100, regularisation: float = 1e-6) -> GaussianMixture:
    """EM for a Gaussian mixture of `clusters` components on `points` `[M, d]`, started from a
    random assignment (as the reference); covariances regularised by `regularisation * I`."""
    m, d = points.shape
    clusters = max(1, min(clusters, m))
    assignment = rng.integers(clusters, size=m)
    resp = np.eye(clusters)[assignment]
    previous = -np.inf
    mixture = None
    for _ in range(iterations):
        counts = resp.sum(axis=0) + 1e-10
        means = (resp.T @ points) / counts[:, None]
        covs = np.empty((clusters, d, d))
        for j in range(clusters):
            diff = points - means[j]
            covs[j] = (resp[:, j, None] * diff).T @ diff / counts[j] + regularisation * np.eye(d)
            covs[j] = (covs[j] + covs[j].T) / 2
        mixture = GaussianMixture(counts / m, means, covs)
        log_resp = mixture.log_responsibilities(points)
        resp = np.exp(log_resp)
        # The log-likelihood's change is what the reference stops on; responsibilities are
        # normalised, so track the mean max responsibility as the convergence signal.
        score = float(np.mean(np.max(log_resp, axis=1)))
        if abs(score - previous) < 1e-5 * max(1.0, abs(score)):
            break
        previous = score
    assert mixture is not None
    return mixture


@dataclass(frozen=True)
class FittedDynamics:
    """`x_{t+1} ~ N(F_t [x_t; u_t] + f_t, W_t)`: `F [T, dx, n]`, `f [T, dx]`, `W [T, dx, dx]`."""

    F: Array
    f: Array
    W: Array


def fit_linear_gaussian(states: Array, actions: Array, prior: GaussianMixture | None,
                        regularisation: float = 1e-6) -> FittedDynamics:
    """The dynamics of samples `states [N, T+1, dx]`, `actions [N, T, du]`, each step's joint
    Gaussian of `[x_t; u_t; x_{t+1}]` the normal-inverse-Wishart posterior under the
    mixture's moments at that step (None: no prior, plain regression)."""
    n_samples, horizon, du = actions.shape
    dx = states.shape[2]
    n_in = dx + du
    F, f, W = np.zeros((horizon, dx, n_in)), np.zeros((horizon, dx)), np.zeros((horizon, dx, dx))
    for t in range(horizon):
        points = np.concatenate([states[:, t], actions[:, t], states[:, t + 1]], axis=1)
        mean = points.mean(axis=0)
        diff = points - mean
        empirical = diff.T @ diff / n_samples
        if prior is None:
            sigma = empirical
        else:
            mu0, phi = prior.moments(points)
            m = 1.0
            n0 = (points.shape[0] - 2 - points.shape[1]) / max(points.shape[0], 1)
            n0 = max(n0, 1.0)  # a proper prior with few samples
            sigma = (n_samples * empirical + phi * m
                     + (n_samples * m) / (n_samples + m) * np.outer(mean - mu0, mean - mu0)
                     ) / (n_samples + n0)
        sigma = (sigma + sigma.T) / 2
        sigma[:n_in, :n_in] += regularisation * np.eye(n_in)
        gain = np.linalg.solve(sigma[:n_in, :n_in], sigma[:n_in, n_in:]).T
        F[t] = gain
        f[t] = mean[n_in:] - gain @ mean[:n_in]
        noise = sigma[n_in:, n_in:] - gain @ sigma[:n_in, :n_in] @ gain.T
        W[t] = (noise + noise.T) / 2
    return FittedDynamics(F, f, W)
