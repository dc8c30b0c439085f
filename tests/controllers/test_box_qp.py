"""The box-constrained QP meets the KKT conditions and SciPy's bounded optimum."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import torch

from controllers.box_qp import box_qp

F64 = torch.float64


@pytest.mark.parametrize("n", [1, 5])  # 1: the scalar QP's closed form
@pytest.mark.parametrize("seed", range(8))
def test_the_solution_satisfies_the_kkt_conditions_and_matches_scipy(seed: int, n: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    M = torch.randn(n, n, generator=generator, dtype=F64)
    H = M @ M.T + 0.1 * torch.eye(n, dtype=F64)
    g = 3 * torch.randn(n, generator=generator, dtype=F64)
    lower = -torch.rand(n, generator=generator, dtype=F64)
    upper = torch.rand(n, generator=generator, dtype=F64)

    result = box_qp(H, g, lower, upper)
    x = result.x
    assert bool((x >= lower).all() and (x <= upper).all())
    gradient = g + H @ x
    at_lower, at_upper = x <= lower, x >= upper
    inside = ~(at_lower | at_upper)
    assert bool((gradient[inside].abs() < 1e-8).all())
    assert bool((gradient[at_lower] >= -1e-8).all() and (gradient[at_upper] <= 1e-8).all())

    def objective(v: np.ndarray) -> tuple[float, np.ndarray]:
        return 0.5 * v @ H.numpy() @ v + g.numpy() @ v, H.numpy() @ v + g.numpy()

    reference = scipy.optimize.minimize(
        objective, np.zeros(n), jac=True, method="L-BFGS-B",
        bounds=list(zip(lower.tolist(), upper.tolist(), strict=True)),
        options={"ftol": 1e-15, "gtol": 1e-12},
    )
    assert float(0.5 * x @ H @ x + g @ x) <= reference.fun + 1e-10
    np.testing.assert_allclose(x.numpy(), reference.x, atol=1e-5)


def test_the_free_set_and_its_factor_describe_the_solution() -> None:
    H = torch.diag(torch.tensor([2.0, 1.0, 4.0], dtype=F64))
    g = torch.tensor([-10.0, 0.5, 1.0], dtype=F64)  # unconstrained optimum (5, -0.5, -0.25)
    result = box_qp(H, g, -torch.ones(3, dtype=F64), torch.ones(3, dtype=F64))
    torch.testing.assert_close(result.x, torch.tensor([1.0, -0.5, -0.25], dtype=F64))
    assert result.free.tolist() == [False, True, True]
    torch.testing.assert_close(result.free_factor @ result.free_factor.T, H[1:, 1:])


def test_bad_boxes_and_indefinite_matrices_are_refused() -> None:
    H, g = torch.eye(2, dtype=F64), torch.zeros(2, dtype=F64)
    with pytest.raises(ValueError, match="lower bound above upper"):
        box_qp(H, g, torch.ones(2, dtype=F64), -torch.ones(2, dtype=F64))
    with pytest.raises(ValueError, match="positive definite"):
        box_qp(-H, g, -torch.ones(2, dtype=F64), torch.ones(2, dtype=F64))
