"""Fitting time-varying linear dynamics from few samples: exact with enough samples, and with
fewer samples than dimensions, right through the GMM prior."""

from __future__ import annotations

import numpy as np

from mbrl.learning.local_dynamics import fit_linear_gaussian, fit_mixture

A = np.array([[1.0, 0.1], [0.0, 1.0]])
B = np.array([[0.005], [0.1]])


def _samples(n: int, horizon: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    states = np.zeros((n, horizon + 1, 2))
    actions = rng.normal(size=(n, horizon, 1))
    states[:, 0] = rng.normal(size=(n, 2))
    for t in range(horizon):
        states[:, t + 1] = states[:, t] @ A.T + actions[:, t] @ B.T
    return states, actions


def test_plain_regression_recovers_the_dynamics_with_enough_samples() -> None:
    states, actions = _samples(20, 5, np.random.default_rng(0))
    fitted = fit_linear_gaussian(states, actions, prior=None)
    np.testing.assert_allclose(fitted.F, np.tile(np.hstack([A, B]), (5, 1, 1)), atol=1e-4)
    np.testing.assert_allclose(fitted.f, 0.0, atol=1e-4)


def test_the_prior_makes_three_samples_enough() -> None:
    rng = np.random.default_rng(1)
    history_states, history_actions = _samples(20, 10, rng)
    points = np.concatenate([history_states[:, :-1], history_actions, history_states[:, 1:]],
                            axis=2).reshape(-1, 5)
    prior = fit_mixture(points, clusters=2, rng=rng)
    states, actions = _samples(3, 10, rng)  # 3 samples, 3 + 2 unknowns per output
    fitted = fit_linear_gaussian(states, actions, prior)
    np.testing.assert_allclose(fitted.F, np.tile(np.hstack([A, B]), (10, 1, 1)), atol=0.05)
    unregularised = fit_linear_gaussian(states, actions, prior=None)
    error_with = np.abs(fitted.F[:, :, 2] - B[:, 0]).max()
    error_without = np.abs(unregularised.F[:, :, 2] - B[:, 0]).max()
    assert error_with < error_without
