"""Torch dynamics compiled to machine code, for iLQR and DDP at C speed.

`compile_dynamics(fn, state_dim, control_dim)` traces `fn(x [dx], u [du]) -> [dx]` once into a
graph of ATen operations (`torch.fx`'s `make_fx`), writes that graph out as a NumPy function
and compiles it with Numba, as `jax.jit` compiles a traced function. The result is a dynamics
object that `controllers.ilqr` (and `ILQRPlanner`, and so `MPC`) takes in place of `fn`:

- `__call__(x, u)`: `fn` itself (torch, differentiable), for anything that needs torch;
- `step_array(x, u)`: the compiled step on float64 arrays;
- `jacobians(xs [H, dx], us [H, du])`: centred finite differences of the compiled step at every
  step of a trajectory, in one compiled loop (step `cbrt(machine eps) * max(1, |z|)`, error
  about 1e-10 relative);
- `affine_policy_rollout(...)`: iLQR's forward pass, the rollout of the controls
  `u_t = v_t + K_t (x'_t - x_t)` clipped into the limits, in compiled code.

What tracing fixes, as with `jax.jit`: Python control flow takes the branch it took for the
example input, and the values of tensors and numbers `fn` closes over are copied into the
compiled code; compile again after changing them. The compiled step is checked against `fn`
at random states and controls before it is returned, and a graph with an operation outside the
supported set (elementwise arithmetic and functions, indexing, slicing, stacking, matrix
products, comparisons and `where`, sums, clamps) is refused with the operation's name.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from numba import njit
from numpy.typing import NDArray
from torch.fx.experimental.proxy_tensor import make_fx

from controllers.small_products import dot, product, times, transposed_times

Array = NDArray[np.float64]
#: Relative finite-difference step of `jacobians`: the cube root of float64's epsilon, which
#: balances the centred difference's truncation and rounding errors.
DIFFERENCE_STEP = float(np.finfo(np.float64).eps ** (1 / 3))

_ELEMENTWISE = {
    "sin": "np.sin({0})", "cos": "np.cos({0})", "tan": "np.tan({0})", "tanh": "np.tanh({0})",
    "exp": "np.exp({0})", "log": "np.log({0})", "sqrt": "np.sqrt({0})", "neg": "(-{0})",
    "abs": "np.abs({0})", "atan": "np.arctan({0})", "asin": "np.arcsin({0})",
    "acos": "np.arccos({0})", "sigmoid": "(1.0 / (1.0 + np.exp(-{0})))",
    "relu": "np.maximum({0}, 0.0)", "reciprocal": "(1.0 / {0})", "rsqrt": "(1.0 / np.sqrt({0}))",
    "sign": "np.sign({0})", "square": "({0} * {0})",
}
_BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**", "gt": ">", "lt": "<",
           "ge": ">=", "le": "<=", "eq": "==", "ne": "!="}
_IDENTITY = {"clone", "detach", "alias", "lift_fresh_copy", "_to_copy", "contiguous",
             "lift_fresh"}


class CompiledDynamics:
    """`fn` with a compiled twin (see the module docstring); made by `compile_dynamics`."""

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 state_dim: int, control_dim: int, kernels: dict[str, Any], source: str) -> None:
        self.fn = fn
        self.state_dim, self.control_dim = state_dim, control_dim
        self._step, self._jacobians = kernels["step"], kernels["jacobians"]
        self._rollout = kernels["rollout"]
        #: The generated NumPy source that Numba compiled, for reading.
        self.source = source

    def __call__(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """`fn(x [dx], u [du]) -> [dx]`, in torch."""
        return self.fn(x, u)

    def step_array(self, x: Array, u: Array) -> Array:
        """The compiled step: `x [dx], u [du] -> [dx]`, float64 arrays."""
        result: Array = self._step(np.ascontiguousarray(x, dtype=np.float64),
                                   np.ascontiguousarray(u, dtype=np.float64))
        return result

    def jacobians(self, xs: torch.Tensor, us: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`A [H, dx, dx]` and `B [H, dx, du]` at each row of `xs [H, dx]` and `us [H, du]`,
        by centred differences of the compiled step."""
        states = np.ascontiguousarray(xs.detach().cpu().numpy(), dtype=np.float64)
        controls = np.ascontiguousarray(us.detach().cpu().numpy(), dtype=np.float64)
        horizon = states.shape[0]
        A = np.empty((horizon, self.state_dim, self.state_dim))
        B = np.empty((horizon, self.state_dim, self.control_dim))
        self._jacobians(states, controls, DIFFERENCE_STEP, A, B)
        return torch.from_numpy(A).to(xs.dtype), torch.from_numpy(B).to(xs.dtype)

    def affine_policy_rollout(
        self, states: Array, feedforward: Array, gains: Array, low: Array | None,
        high: Array | None,
    ) -> tuple[Array, Array]:
        """From `states[0]`, the controls `feedforward_t + gains_t (x'_t - states_t)`
        (`[H, du]`, `[H, du, dx]`, `[H+1, dx]`), clipped into `[low, high]` where given,
        rolled out: `(new_states [H+1, dx], new_controls [H, du])`; a rollout that turns NaN
        or infinite stops there, its remaining rows NaN."""
        limited = low is not None and high is not None
        empty = np.empty(0)
        new_states = np.full_like(states, np.nan)
        new_controls = np.full_like(feedforward, np.nan)
        self._rollout(np.ascontiguousarray(states), np.ascontiguousarray(feedforward),
                      np.ascontiguousarray(gains), limited,
                      empty if low is None else low, empty if high is None else high,
                      new_states, new_controls)
        return new_states, new_controls


def compile_dynamics(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], state_dim: int, control_dim: int,
    check_points: int = 16, seed: int = 0,
) -> CompiledDynamics:
    """Trace `fn(x [state_dim], u [control_dim]) -> [state_dim]` and compile it (module
    docstring), then check it against `fn` at `check_points` random inputs.

    Raises:
        ValueError: `fn` does not map `[dx], [du]` to `[dx]`, uses an operation outside the
            supported set (named), or its compiled step differs from it (a branch on the
            input's values, say).
    """
    if state_dim < 1 or control_dim < 1:
        raise ValueError(f"state_dim and control_dim must be >= 1, got {state_dim}, "
                         f"{control_dim}")
    x = torch.zeros(state_dim, dtype=torch.float64)
    u = torch.zeros(control_dim, dtype=torch.float64)
    try:
        with torch.no_grad():
            graph = make_fx(fn)(x, u)
    except RuntimeError as error:  # make_fx's refusal of a value read out of the input
        if "data-dependent" not in str(error):
            raise
        raise ValueError(
            "compile_dynamics: the function reads a value out of its input (float(), .item(), "
            "a branch on its input's values), which tracing cannot follow; use it uncompiled"
        ) from None
    step_source, constants = _numpy_source(graph, state_dim)
    source = step_source + _KERNELS
    namespace: dict[str, Any] = {"np": np, "njit": njit, "math": math, **constants,
                                 "times": times, "transposed_times": transposed_times,
                                 "product": product, "dot": dot}
    exec(compile(source, "<compile_dynamics>", "exec"), namespace)
    dynamics = CompiledDynamics(
        fn, state_dim, control_dim,
        {"step": namespace["step"], "jacobians": namespace["jacobians"],
         "rollout": namespace["rollout"]}, source,
    )
    _check(dynamics, check_points, seed)
    return dynamics


def _check(dynamics: CompiledDynamics, points: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for _ in range(points):
        x = torch.randn(dynamics.state_dim, generator=generator, dtype=torch.float64)
        u = torch.randn(dynamics.control_dim, generator=generator, dtype=torch.float64)
        with torch.no_grad():
            expected = dynamics.fn(x, u).numpy()
        got = dynamics.step_array(x.numpy(), u.numpy())
        error = float(np.abs(got - expected).max())
        if not error <= 1e-9 * max(1.0, float(np.abs(expected).max())):
            raise ValueError(
                f"compile_dynamics: the compiled step differs from the function by {error:.3g} "
                f"at x={x.tolist()}, u={u.tolist()}; does the function branch on its input's "
                "values? Use it uncompiled."
            )


def _numpy_source(graph: torch.fx.GraphModule, state_dim: int) -> tuple[str, dict[str, Any]]:
    """The traced graph as `def step(x, u)` in NumPy that Numba compiles, and the constants it
    reads (as globals, which Numba freezes)."""
    lines = ["@njit(cache=False)", "def step(x, u):"]
    constants: dict[str, Any] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    names: dict[Any, str] = {}
    placeholders = iter(["x", "u"])
    output = None
    for node in graph.graph.nodes:
        if node.op == "placeholder":
            names[node] = next(placeholders)
            shapes[names[node]] = tuple(node.meta["val"].shape)
            continue
        if node.op == "get_attr":
            value = getattr(graph, node.target).detach().to(torch.float64).numpy()
            name = f"const_{len(constants)}"
            constants[name] = float(value) if value.ndim == 0 else np.ascontiguousarray(value)
            names[node], shapes[name] = name, tuple(value.shape)
            continue
        if node.op == "output":
            output = node.args[0]
            continue
        name = f"v{len(names)}"
        names[node] = name
        value = node.meta.get("val")
        shapes[name] = tuple(value.shape) if isinstance(value, torch.Tensor) else ()
        lines.append(f"    {name} = {_expression(node, names, shapes)}")
    assert output is not None
    result = output[0] if isinstance(output, (tuple, list)) else output
    if shapes.get(names[result]) != (state_dim,):
        raise ValueError(f"compile_dynamics: fn must return [{state_dim}], it returns "
                         f"{list(shapes.get(names[result], ()))}")
    lines.append(f"    return np.ascontiguousarray({names[result]}).astype(np.float64)")
    return "\n".join(lines) + "\n", constants


def _expression(node: torch.fx.Node, names: dict[Any, str],
                shapes: dict[str, tuple[int, ...]]) -> str:
    """One ATen call as a NumPy expression."""
    target = node.target
    op = getattr(target, "_opname", None) or getattr(target, "__name__", str(target))
    overload = getattr(target, "_overloadname", "")

    def arg(value: Any) -> str:
        if isinstance(value, torch.fx.Node):
            return names[value]
        if isinstance(value, bool):
            return "True" if value else "False"
        if isinstance(value, (int, float)):
            return repr(float(value)) if isinstance(value, float) else repr(value)
        raise ValueError(f"compile_dynamics: unsupported argument {value!r} to aten.{op}")

    def shape(value: Any) -> tuple[int, ...]:
        return shapes[names[value]] if isinstance(value, torch.fx.Node) else ()

    args: Any = node.args  # ATen arguments: nodes, numbers and lists of them
    if op in _IDENTITY:
        return arg(args[0])
    if op in _ELEMENTWISE:
        return _ELEMENTWISE[op].format(arg(args[0]))
    if op in _BINARY:
        alpha: Any = node.kwargs.get("alpha")
        right = arg(args[1]) if alpha is None else f"({float(alpha)!r} * {arg(args[1])})"
        return f"({arg(args[0])} {_BINARY[op]} {right})"
    if op == "rsub":
        return f"({arg(args[1])} - {arg(args[0])})"
    if op == "atan2":
        return f"np.arctan2({arg(args[0])}, {arg(args[1])})"
    if op in ("minimum", "maximum"):
        return f"np.{op}({arg(args[0])}, {arg(args[1])})"
    if op in ("clamp", "clip"):
        low = args[1] if len(args) > 1 else node.kwargs.get("min")
        high = args[2] if len(args) > 2 else node.kwargs.get("max")
        text = arg(args[0])
        if low is not None:
            text = f"np.maximum({text}, {arg(low)})"
        if high is not None:
            text = f"np.minimum({text}, {arg(high)})"
        return text
    if op == "select":
        dim, index = int(args[1]), int(args[2])
        rank = len(shape(args[0]))
        dim = dim % rank
        return f"{arg(args[0])}[{', '.join([':'] * dim + [str(index)])}]"
    if op == "slice":
        dim = int(args[1]) if len(args) > 1 else 0
        rank = len(shape(args[0]))
        size = shape(args[0])[dim % rank]
        start = 0 if len(args) < 3 or args[2] is None else int(args[2])
        end = size if len(args) < 4 or args[3] is None else min(int(args[3]), size)
        step = 1 if len(args) < 5 else int(args[4])
        return f"{arg(args[0])}[{', '.join([':'] * (dim % rank) + [f'{start}:{end}:{step}'])}]"
    if op in ("stack", "cat"):
        parts = list(args[0])
        dim = int(args[1]) if len(args) > 1 else 0
        if dim != 0:
            raise ValueError(f"compile_dynamics: aten.{op} along dim {dim} is not supported")
        if op == "stack" and all(shape(p) == () for p in parts):
            return f"np.array([{', '.join(arg(p) for p in parts)}])"
        joined = ", ".join(f"np.ascontiguousarray({arg(p)})" for p in parts)
        return f"np.{'stack' if op == 'stack' else 'concatenate'}(({joined},))"
    if op in ("mv", "mm", "matmul", "dot"):  # loops, not BLAS (`controllers.small_products`)
        ranks = (len(shape(args[0])), len(shape(args[1])))
        helper = {(2, 1): "times", (2, 2): "product", (1, 1): "dot",
                  (1, 2): "transposed_times"}.get(ranks)
        if helper is None:
            raise ValueError(f"compile_dynamics: aten.{op} of ranks {ranks} is not supported")
        return f"{helper}({arg(args[0])}, {arg(args[1])})"
    if op == "sum" and overload in ("default", ""):
        return f"np.sum({arg(args[0])})"
    if op == "sum" and overload == "dim_IntList" and list(args[1]) == [0] and not (
            len(args) > 2 and args[2]):
        return f"np.sum({arg(args[0])}, axis=0)"
    if op == "where" and overload == "self":
        return f"np.where({arg(args[0])}, {arg(args[1])}, {arg(args[2])})"
    if op == "unsqueeze" and int(args[1]) == 0:
        return (f"np.array([{arg(args[0])}])" if shape(args[0]) == ()
                else f"np.ascontiguousarray({arg(args[0])}).reshape((1,) + {arg(args[0])}.shape)")
    if op in ("view", "reshape", "_unsafe_view"):
        target_shape = tuple(int(s) for s in args[1])
        return f"np.ascontiguousarray({arg(args[0])}).reshape({target_shape!r})"
    if op in ("t", "numpy_T") or (op in ("transpose", "permute") and len(shape(args[0])) == 2):
        return f"np.ascontiguousarray({arg(args[0])}.T)"
    if op in ("linalg_solve", "_linalg_solve_ex"):
        raise ValueError("compile_dynamics: aten.linalg_solve is not supported; write the "
                         "small solve out (for 2 x 2, Cramer's rule)")
    raise ValueError(f"compile_dynamics: aten.{op}.{overload} is not supported; use the torch "
                     "dynamics uncompiled")


_KERNELS = '''

@njit(cache=False)
def jacobians(states, controls, relative_step, A, B):
    horizon, nx = states.shape
    nu = controls.shape[1]
    z = np.empty(nx + nu)
    for t in range(horizon):
        z[:nx] = states[t]
        z[nx:] = controls[t]
        for j in range(nx + nu):
            h = relative_step * max(1.0, abs(z[j]))
            keep = z[j]
            z[j] = keep + h
            plus = step(z[:nx], z[nx:])
            z[j] = keep - h
            minus = step(z[:nx], z[nx:])
            z[j] = keep
            for i in range(nx):
                slope = (plus[i] - minus[i]) / (2.0 * h)
                if j < nx:
                    A[t, i, j] = slope
                else:
                    B[t, i, j - nx] = slope


@njit(cache=False)
def rollout(states, feedforward, gains, limited, low, high, new_states, new_controls):
    horizon, nu = feedforward.shape
    nx = states.shape[1]
    x = states[0].copy()
    new_states[0] = x
    u = np.empty(nu)
    for t in range(horizon):
        for i in range(nu):
            total = 0.0
            for j in range(nx):
                total += gains[t, i, j] * (x[j] - states[t, j])
            value = feedforward[t, i] + total
            if limited:
                value = min(max(value, low[i]), high[i])
            u[i] = value
        new_controls[t] = u
        x = step(x, u)
        finite = True
        for j in range(nx):
            finite = finite and np.isfinite(x[j])
        new_states[t + 1] = x
        if not finite:
            return
'''
