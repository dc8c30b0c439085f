"""Linear-quadratic regulators: the discrete algebraic Riccati equation and finite-horizon,
time-varying LQR with tracking.

Problem (finite horizon `H`, states `[dx]`, controls `[du]`):

    minimise   sum_t  1/2 (x_t - r_t)' Q_t (x_t - r_t) + 1/2 (u_t - v_t)' R_t (u_t - v_t)
             + 1/2 (x_H - r_H)' Q_H (x_H - r_H)
    subject to x_{t+1} = A_t x_t + B_t u_t + c_t

with the reference states `r [H+1, dx]` and controls `v [H, du]`. The optimal law is affine,
`u_t = K_t x_t + k_t`, and the cost-to-go is `1/2 x' P_t x + p_t' x + const`; the backward
Riccati recursion computes both (Anderson & Moore 1990, "Optimal Control: Linear Quadratic
Methods", ch. 2). The infinite-horizon regulator solves the discrete algebraic Riccati equation

    P = A'PA - A'PB (R + B'PB)^-1 B'PA + Q,     u = -K x,  K = (R + B'PB)^-1 B'PA

by the structure-preserving doubling algorithm (Chu, Fan & Lin 2005, "A structure-preserving
doubling algorithm for continuous-time algebraic Riccati equations", Linear Algebra Appl.
396), which converges quadratically. Everything runs in the inputs' dtype; use float64 where
accuracy matters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LQRSolution:
    """A finite-horizon LQR solution: `u_t = gains[t] @ x_t + offsets[t]`."""

    #: Feedback gains K `[H, du, dx]`.
    gains: torch.Tensor
    #: Feedforward terms k `[H, du]`.
    offsets: torch.Tensor
    #: Cost-to-go Hessians P `[H+1, dx, dx]`.
    value_hessians: torch.Tensor
    #: Cost-to-go gradients p `[H+1, dx]` (at x = 0).
    value_gradients: torch.Tensor

    def rollout(
        self, x0: torch.Tensor, A: torch.Tensor, B: torch.Tensor, c: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """States `[H+1, dx]` and controls `[H, du]` of the law from `x0 [dx]` under the
        dynamics it was solved for."""
        horizon = self.gains.shape[0]
        A, B = _per_step(A, horizon, "A"), _per_step(B, horizon, "B")
        states, controls = [x0], []
        for t in range(horizon):
            u = self.gains[t] @ states[-1] + self.offsets[t]
            x = A[t] @ states[-1] + B[t] @ u
            if c is not None:
                x = x + _per_step(c, horizon, "c")[t]
            controls.append(u)
            states.append(x)
        return torch.stack(states), torch.stack(controls)


def solve_dare(
    A: torch.Tensor, B: torch.Tensor, Q: torch.Tensor, R: torch.Tensor,
    tol: float = 1e-13, max_iterations: int = 100,
) -> torch.Tensor:
    """The stabilising solution P `[dx, dx]` of the discrete algebraic Riccati equation.

    Args:
        A: `[dx, dx]`; B: `[dx, du]`; Q: `[dx, dx]` symmetric positive semi-definite;
        R: `[du, du]` symmetric positive definite.
        tol: stop when the relative change of P is at most this (doubling converges
            quadratically, so the iterate after that is at machine precision).
        max_iterations: doubling steps at most (each doubles the horizon covered).

    Raises:
        ValueError: shapes that do not fit, R not positive definite, or no convergence
            (`(A, B)` not stabilisable or `(A, Q)` with unobservable modes on the unit circle).
    """
    dx, _ = _check_system(A, B, Q, R)
    identity = torch.eye(dx, dtype=A.dtype, device=A.device)
    G = B @ torch.cholesky_solve(B.mT, torch.linalg.cholesky(R))  # B R^-1 B'
    Ak, Gk, Hk = A, _symmetric(G), _symmetric(Q)
    for _ in range(max_iterations):
        W = identity + Gk @ Hk
        W_inv_A = torch.linalg.solve(W, Ak)  # (I + G H)^-1 A
        W_inv_G = torch.linalg.solve(W, Gk)  # (I + G H)^-1 G
        H_next = _symmetric(Hk + Ak.mT @ Hk @ W_inv_A)
        Gk = _symmetric(Gk + Ak @ W_inv_G @ Ak.mT)
        Ak = Ak @ W_inv_A
        if not bool(torch.isfinite(H_next).all()):
            break
        change = torch.linalg.matrix_norm(H_next - Hk) / torch.linalg.matrix_norm(H_next).clamp_min(
            torch.finfo(A.dtype).tiny
        )
        Hk = H_next
        if float(change) <= tol:
            return Hk
    raise ValueError(
        "the Riccati equation did not converge: is (A, B) stabilisable and (A, Q) detectable?"
    )


def lqr_gain(
    A: torch.Tensor, B: torch.Tensor, Q: torch.Tensor, R: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Infinite-horizon discrete LQR: the gain K `[du, dx]` of `u = -K x` and the DARE
    solution P `[dx, dx]` (the cost from `x` is `x' P x` for the cost `sum x'Qx + u'Ru`)."""
    P = solve_dare(A, B, Q, R)
    K = torch.linalg.solve(R + B.mT @ P @ B, B.mT @ P @ A)
    return K, P


def solve_lqr(
    A: torch.Tensor,
    B: torch.Tensor,
    Q: torch.Tensor,
    R: torch.Tensor,
    Q_final: torch.Tensor,
    horizon: int,
    c: torch.Tensor | None = None,
    x_ref: torch.Tensor | None = None,
    u_ref: torch.Tensor | None = None,
) -> LQRSolution:
    """Finite-horizon, time-varying LQR with tracking, by the backward Riccati recursion.

    Args:
        A: `[H, dx, dx]` or one `[dx, dx]` for every step; B: `[H, dx, du]` or `[dx, du]`.
        Q: `[H, dx, dx]` or `[dx, dx]`; R: `[H, du, du]` or `[du, du]`, positive definite.
        Q_final: `[dx, dx]`, the terminal state cost.
        horizon: H >= 1.
        c: the dynamics' offsets `[H, dx]` or `[dx]` (None: zero).
        x_ref: reference states `[H+1, dx]` (None: the origin).
        u_ref: reference controls `[H, du]` (None: zero).

    Returns:
        The affine law and the cost-to-go (see `LQRSolution`).
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    A, B = _per_step(A, horizon, "A"), _per_step(B, horizon, "B")
    Q, R = _per_step(Q, horizon, "Q"), _per_step(R, horizon, "R")
    dx, du = _check_system(A[0], B[0], Q[0], R[0])
    for name, value in (("A", A), ("B", B), ("Q", Q), ("R", R)):
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{name} has NaN or infinite entries")
    if tuple(B.shape[1:]) != (dx, du) or tuple(Q.shape[1:]) != (dx, dx):
        raise ValueError("B and Q must keep their shapes over the horizon")
    _cholesky(_symmetric(R), "R at every step")
    like = A
    c = _per_step(c, horizon, "c") if c is not None else like.new_zeros(horizon, dx)
    x_ref = x_ref if x_ref is not None else like.new_zeros(horizon + 1, dx)
    u_ref = u_ref if u_ref is not None else like.new_zeros(horizon, du)
    for name, value, shape in (
        ("Q_final", Q_final, (dx, dx)), ("c", c, (horizon, dx)),
        ("x_ref", x_ref, (horizon + 1, dx)), ("u_ref", u_ref, (horizon, du)),
    ):
        if tuple(value.shape) != shape:
            raise ValueError(f"{name} must be {list(shape)}, got {list(value.shape)}")

    P = _symmetric(Q_final)
    p = -Q_final @ x_ref[horizon]
    gains, offsets, hessians, gradients = [], [], [P], [p]
    for t in reversed(range(horizon)):
        next_value = P @ c[t] + p  # gradient of the cost-to-go at the offset
        Q_xx = Q[t] + A[t].mT @ P @ A[t]
        Q_uu = _symmetric(R[t] + B[t].mT @ P @ B[t])
        Q_ux = B[t].mT @ P @ A[t]
        q_x = -Q[t] @ x_ref[t] + A[t].mT @ next_value
        q_u = -R[t] @ u_ref[t] + B[t].mT @ next_value
        factor = _cholesky(Q_uu, f"R + B'PB at step {t}")
        K = -torch.cholesky_solve(Q_ux, factor)
        k = -torch.cholesky_solve(q_u.unsqueeze(-1), factor).squeeze(-1)
        P = _symmetric(Q_xx + Q_ux.mT @ K)
        p = q_x + Q_ux.mT @ k
        gains.append(K)
        offsets.append(k)
        hessians.append(P)
        gradients.append(p)
    return LQRSolution(
        gains=torch.stack(gains[::-1]),
        offsets=torch.stack(offsets[::-1]),
        value_hessians=torch.stack(hessians[::-1]),
        value_gradients=torch.stack(gradients[::-1]),
    )


def _check_system(
    A: torch.Tensor, B: torch.Tensor, Q: torch.Tensor, R: torch.Tensor
) -> tuple[int, int]:
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be square [dx, dx], got {list(A.shape)}")
    dx = A.shape[0]
    if B.ndim != 2 or B.shape[0] != dx:
        raise ValueError(f"B must be [dx={dx}, du], got {list(B.shape)}")
    du = B.shape[1]
    if tuple(Q.shape) != (dx, dx):
        raise ValueError(f"Q must be [{dx}, {dx}], got {list(Q.shape)}")
    if tuple(R.shape) != (du, du):
        raise ValueError(f"R must be [{du}, {du}], got {list(R.shape)}")
    for name, matrix in (("A", A), ("B", B), ("Q", Q), ("R", R)):
        if not bool(torch.isfinite(matrix).all()):
            raise ValueError(f"{name} has NaN or infinite entries")
    _cholesky(_symmetric(R), "R")
    return dx, du


def _cholesky(matrix: torch.Tensor, name: str) -> torch.Tensor:
    factor, info = torch.linalg.cholesky_ex(matrix)
    if bool((info != 0).any()):
        raise ValueError(f"{name} must be symmetric positive definite")
    return factor


def _symmetric(matrix: torch.Tensor) -> torch.Tensor:
    return (matrix + matrix.mT) / 2


def _per_step(value: torch.Tensor, horizon: int, name: str) -> torch.Tensor:
    """`value` for each of `horizon` steps; a single one (a matrix, or the vector `c`) repeats."""
    single = 1 if name == "c" else 2
    if value.ndim == single:
        return value.expand(horizon, *value.shape)
    if value.ndim == single + 1 and value.shape[0] == horizon:
        return value
    raise ValueError(
        f"{name} must be one for all steps ({single}-D) or one per step [H={horizon}, ...], "
        f"got {list(value.shape)}"
    )
