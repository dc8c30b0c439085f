"""The C-step of mirror-descent GPS on a linear system: the KL bound is met, a loose bound
gives the LQR optimum, and a tight one keeps the reference controller."""

from __future__ import annotations

import numpy as np
import pytest

from controllers.linear_gaussian import (
    LinearGaussianController,
    LocalModel,
    expected_cost,
    kl_bounded_update,
    kl_divergence,
    max_entropy_lqr,
)

T, DX, DU = 20, 2, 1
A = np.array([[1.0, 0.1], [0.0, 1.0]])
B = np.array([[0.005], [0.1]])
Q, R = np.eye(2), 0.1 * np.eye(1)


def _model() -> LocalModel:
    C = np.zeros((T, DX + DU, DX + DU))
    C[:, :DX, :DX], C[:, DX:, DX:] = Q, R
    return LocalModel(
        F=np.tile(np.hstack([A, B]), (T, 1, 1)), f=np.zeros((T, DX)),
        W=np.tile(1e-6 * np.eye(DX), (T, 1, 1)), x0_mean=np.array([1.0, 0.0]),
        x0_cov=1e-4 * np.eye(DX), C=C, c=np.zeros((T, DX + DU)), cc=np.zeros(T),
        C_final=Q, c_final=np.zeros(DX), cc_final=0.0)


def _reference() -> LinearGaussianController:
    return LinearGaussianController.constant(T, DX, np.zeros(DU), np.ones(DU))


@pytest.mark.parametrize("epsilon", [0.5, 2.0, 8.0])
def test_the_kl_bound_is_met_within_ten_percent(epsilon: float) -> None:
    result = kl_bounded_update(_model(), _reference(), epsilon)
    assert result.kl == pytest.approx(epsilon, rel=0.1)
    assert result.kl == pytest.approx(kl_divergence(result.controller, _reference(), _model()))
    # Moving away from a do-nothing reference lowers the expected cost.
    assert expected_cost(result.controller, _model()) < expected_cost(_reference(), _model())


def test_a_loose_bound_reaches_the_lqr_gains_and_a_tight_one_keeps_the_reference() -> None:
    model = _model()
    # Finite-horizon LQR by the Riccati recursion, as known answer.
    P, gains = Q.copy(), []
    for _ in range(T):
        K = -np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)
        P = Q + A.T @ P @ (A + B @ K)
        gains.append(K)
    gains.reverse()
    loose = max_entropy_lqr(model, _reference(), eta=1e-8)  # the cost dominates
    assert loose is not None
    np.testing.assert_allclose(loose.K, np.stack(gains), rtol=1e-4, atol=1e-6)
    tight = max_entropy_lqr(model, _reference(), eta=1e8)  # the KL dominates
    assert tight is not None
    np.testing.assert_allclose(tight.K, 0.0, atol=1e-6)
    np.testing.assert_allclose(tight.covariance, 1.0, rtol=1e-6)


def test_the_controller_samples_about_its_mean() -> None:
    controller = LinearGaussianController.constant(3, DX, np.array([0.5]), np.array([0.1]),
                                                   rng=np.random.default_rng(0))
    draws = np.array([controller.act(np.zeros(DX)) for _ in range(3000)])
    assert draws.mean() == pytest.approx(0.5, abs=0.01)
    assert draws.std() == pytest.approx(0.1, rel=0.05)
