"""Time-varying linear-Gaussian controllers and the KL-bounded LQR step of guided policy search.

A local controller `p(u_t | x_t) = N(K_t x_t + k_t, Sigma_t)` over `T` steps, on linear-Gaussian
dynamics `x_{t+1} ~ N(F_t [x_t; u_t] + f_t, W_t)` from `x_0 ~ N(mu_0, S_0)`, under a quadratic
cost `1/2 [x;u]' C_t [x;u] + [x;u]' c_t + cc_t` (expanded about zero, as the reference
implementation keeps it) and a final cost on `x_T`.

`kl_bounded_update` is the C-step of mirror-descent guided policy search (Montgomery & Levine
2016, "Guided Policy Search as Approximate Mirror Descent", eq. 3):

    minimise_p  E_p[cost]  subject to  KL(p || pi_lin) <= epsilon

through its Lagrangian: for a multiplier `eta`, the maximum-entropy LQR solution of
`cost / eta - log pi_lin(u | x)` is `p(u|x) = N(-Q_uu^-1 (Q_ux x + Q_u), Q_uu^-1)` (Levine &
Abbeel 2014, "Learning Neural Network Policies with Guided Policy Search under Unknown
Dynamics", sec. 3.1); `eta` is found by the bracketing search of the reference implementation
(cbfinn/gps, `TrajOptLQRPython.update`: geometric steps in log space, at most a factor of 10 at
a time, until the KL is within 10% of `epsilon`). NumPy float64 throughout: the matrices are a
few entries. Shapes: `T` steps, `dx` state, `du` action dimension, `n = dx + du`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


@dataclass
class LinearGaussianController:
    """`u_t ~ N(K_t x_t + k_t, covariance_t)`, a `Controller` that counts its steps."""

    #: Gains `[T, du, dx]`.
    K: Array
    #: Offsets `[T, du]`.
    k: Array
    #: Action covariances `[T, du, du]`.
    covariance: Array
    #: Draws the exploration noise (None: play the mean).
    rng: np.random.Generator | None = None
    _t: int = 0

    @property
    def horizon(self) -> int:
        """T."""
        return int(self.k.shape[0])

    def precision(self) -> Array:
        """The inverse covariances `[T, du, du]`."""
        return np.asarray(np.linalg.inv(self.covariance), dtype=np.float64)

    def reset(self) -> None:
        """Back to step 0."""
        self._t = 0

    def act(self, obs: Array) -> Array:
        """The action `[du]` at step t (the last step's controller past the horizon)."""
        t = min(self._t, self.horizon - 1)
        self._t += 1
        mean = self.K[t] @ np.asarray(obs, dtype=np.float64) + self.k[t]
        if self.rng is None:
            return mean
        return self.rng.multivariate_normal(mean, self.covariance[t])

    @classmethod
    def constant(cls, horizon: int, dx: int, mean: Array, std: Array,
                 rng: np.random.Generator | None = None) -> LinearGaussianController:
        """Open loop: `u_t ~ N(mean, diag(std^2))` at every step."""
        du = mean.shape[0]
        return cls(np.zeros((horizon, du, dx)), np.tile(mean, (horizon, 1)),
                   np.tile(np.diag(std**2), (horizon, 1, 1)), rng)


@dataclass(frozen=True)
class LocalModel:
    """What a condition's samples say: fitted dynamics, initial state and cost expansion."""

    #: Dynamics `F [T, dx, n]`, `f [T, dx]`, noise `W [T, dx, dx]`.
    F: Array
    f: Array
    W: Array
    #: Initial state mean `[dx]` and covariance `[dx, dx]`.
    x0_mean: Array
    x0_cov: Array
    #: Running cost `C [T, n, n]`, `c [T, n]`, `cc [T]`; final cost `C_final [dx, dx]`,
    #: `c_final [dx]`, `cc_final`.
    C: Array
    c: Array
    cc: Array
    C_final: Array
    c_final: Array
    cc_final: float


def marginals(controller: LinearGaussianController, model: LocalModel
              ) -> tuple[Array, Array]:
    """State-action means `[T, n]` and covariances `[T, n, n]` under the model, and the final
    state's appended (`[T+1, n]`, its action part zero)."""
    T, du, dx = controller.K.shape
    n = dx + du
    mu, sigma = np.zeros((T + 1, n)), np.zeros((T + 1, n, n))
    x_mean, x_cov = model.x0_mean, model.x0_cov
    for t in range(T):
        K = controller.K[t]
        u_mean = K @ x_mean + controller.k[t]
        mu[t] = np.concatenate([x_mean, u_mean])
        sigma[t, :dx, :dx] = x_cov
        sigma[t, :dx, dx:] = x_cov @ K.T
        sigma[t, dx:, :dx] = K @ x_cov
        sigma[t, dx:, dx:] = K @ x_cov @ K.T + controller.covariance[t]
        x_mean = model.F[t] @ mu[t] + model.f[t]
        x_cov = model.F[t] @ sigma[t] @ model.F[t].T + model.W[t]
        x_cov = (x_cov + x_cov.T) / 2
    mu[T, :dx], sigma[T, :dx, :dx] = x_mean, x_cov
    return mu, sigma


def expected_cost(controller: LinearGaussianController, model: LocalModel) -> float:
    """The cost the model predicts for the controller (Laplace: the quadratic cost's mean
    under the Gaussian marginals; the reference's `estimate_cost`)."""
    mu, sigma = marginals(controller, model)
    T, dx = controller.horizon, model.F.shape[1]
    total = 0.0
    for t in range(T):
        total += (model.cc[t] + 0.5 * np.sum(sigma[t] * model.C[t])
                  + 0.5 * mu[t] @ model.C[t] @ mu[t] + mu[t] @ model.c[t])
    x, s = mu[T, :dx], sigma[T, :dx, :dx]
    total += float(model.cc_final + 0.5 * np.sum(s * model.C_final)
                   + 0.5 * x @ model.C_final @ x + x @ model.c_final)
    return float(total)


def kl_divergence(new: LinearGaussianController, reference: LinearGaussianController,
                  model: LocalModel) -> float:
    """`sum_t E_{x ~ p_new}[ KL(new(.|x) || reference(.|x)) ]`, under the new controller's
    state marginals."""
    mu, sigma = marginals(new, model)
    T, du, dx = new.K.shape
    total = 0.0
    for t in range(T):
        P_ref = np.linalg.inv(reference.covariance[t])
        x_mean, x_cov = mu[t, :dx], sigma[t, :dx, :dx]
        dK = reference.K[t] - new.K[t]
        dk = reference.k[t] - new.k[t]
        gap = dK @ x_mean + dk
        _, logdet_ref = np.linalg.slogdet(reference.covariance[t])
        _, logdet_new = np.linalg.slogdet(new.covariance[t])
        total += 0.5 * (np.trace(P_ref @ new.covariance[t]) + gap @ P_ref @ gap
                        + np.trace(dK.T @ P_ref @ dK @ x_cov) - du + logdet_ref - logdet_new)
    return float(total)


def max_entropy_lqr(model: LocalModel, reference: LinearGaussianController, eta: float
                    ) -> LinearGaussianController | None:
    """The minimiser of `E[cost] / eta + KL(p || reference)` over linear-Gaussian `p` (its
    covariance `Q_uu^-1`), or None where a `Q_uu` is not positive definite (eta too small)."""
    T, du, dx = reference.K.shape
    K, k, cov = np.zeros((T, du, dx)), np.zeros((T, du)), np.zeros((T, du, du))
    V_xx, V_x = model.C_final / eta, model.c_final / eta
    for t in reversed(range(T)):
        P = np.linalg.inv(reference.covariance[t])
        Kr, kr = reference.K[t], reference.k[t]
        # -log reference(u|x) = 1/2 (u - Kr x - kr)' P (u - Kr x - kr) + const, in [x; u].
        C_kl = np.block([[Kr.T @ P @ Kr, -Kr.T @ P], [-P @ Kr, P]])
        c_kl = np.concatenate([Kr.T @ P @ kr, -P @ kr])
        Q = model.C[t] / eta + C_kl + model.F[t].T @ V_xx @ model.F[t]
        q = model.c[t] / eta + c_kl + model.F[t].T @ (V_x + V_xx @ model.f[t])
        Q = (Q + Q.T) / 2
        Q_uu, Q_ux, q_u = Q[dx:, dx:], Q[dx:, :dx], q[dx:]
        try:
            factor = np.linalg.cholesky(Q_uu)
        except np.linalg.LinAlgError:
            return None
        inverse = np.linalg.solve(factor.T, np.linalg.solve(factor, np.eye(du)))
        K[t], k[t], cov[t] = -inverse @ Q_ux, -inverse @ q_u, inverse
        cov[t] = (cov[t] + cov[t].T) / 2
        V_xx = Q[:dx, :dx] + Q[:dx, dx:] @ K[t]
        V_x = q[:dx] + Q[:dx, dx:] @ k[t]
        V_xx = (V_xx + V_xx.T) / 2
    return LinearGaussianController(K, k, cov)


@dataclass(frozen=True)
class CStepResult:
    """What `kl_bounded_update` found."""

    controller: LinearGaussianController
    #: The multiplier eta it settled on.
    eta: float
    #: KL(new || reference) summed over the steps.
    kl: float
    #: Searches of eta run.
    iterations: int


def kl_bounded_update(model: LocalModel, reference: LinearGaussianController,
                      epsilon: float, eta: float = 1.0, min_eta: float = 1e-8,
                      max_eta: float = 1e16, max_iterations: int = 50) -> CStepResult:
    """The C-step (see the module docstring): the controller of least expected cost whose KL
    from `reference` (the global policy's linearisation) is about `epsilon` (within 10%), or
    below it where the cost's own optimum is nearer, starting the search of eta at `eta`."""
    best: CStepResult | None = None
    for iteration in range(1, max_iterations + 1):
        controller = max_entropy_lqr(model, reference, eta)
        while controller is None:  # not positive definite: more weight on the KL term
            min_eta = eta
            eta = min(max(eta * 10.0, 1e-6), max_eta)
            controller = max_entropy_lqr(model, reference, eta)
            if eta >= max_eta and controller is None:
                raise np.linalg.LinAlgError("the C-step's LQR is not positive definite at any "
                                            "eta")
        kl = kl_divergence(controller, reference, model)
        best = CStepResult(controller, eta, kl, iteration)
        gap = kl - epsilon
        if abs(gap) < 0.1 * epsilon:
            break
        if gap < 0:  # within the bound: a smaller eta moves further
            max_eta = eta
            eta = max(math.sqrt(min_eta * max_eta), 0.1 * max_eta)
        else:
            min_eta = eta
            eta = min(math.sqrt(min_eta * max_eta), 10.0 * min_eta)
        if max_eta - min_eta < 1e-12 * max_eta:
            break
    assert best is not None
    return best
