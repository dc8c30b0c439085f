"""What every MuJoCo-based backend (dm_control and the bare `mujoco` bindings) shares.

The exact state, the physics parameters and the linearisation all work on a raw
`mujoco.MjModel` / `mujoco.MjData` pair, which dm_control's `Physics` also wraps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import mujoco
import numpy as np
from numpy.typing import NDArray

from envs.core import JointInterface, RobotEnv

Array = NDArray[np.float64]

#: Everything `mj_step` reads: time, qpos, qvel, act, warm start, controls, applied forces,
#: mocap poses, equality activations, user and plugin data.
STATE_SPEC = mujoco.mjtState.mjSTATE_INTEGRATION


def get_state(model: mujoco.MjModel, data: mujoco.MjData) -> Array:
    """The exact integration state, `[mj_stateSize(model, STATE_SPEC)]` float64."""
    state = np.empty(mujoco.mj_stateSize(model, STATE_SPEC))
    mujoco.mj_getState(model, data, state, STATE_SPEC)
    return state


def set_state(model: mujoco.MjModel, data: mujoco.MjData, state: Array) -> None:
    """Restore a vector from `get_state` and recompute positions-derived quantities."""
    mujoco.mj_setState(model, data, np.ascontiguousarray(state, dtype=np.float64), STATE_SPEC)
    mujoco.mj_forward(model, data)


@dataclass(frozen=True)
class NominalPhysics:
    """The model values that physics parameters scale, copied when the env is built."""

    #: Body masses, `[nbody]`.
    body_mass: Array
    #: Body principal inertias, `[nbody, 3]`.
    body_inertia: Array
    #: Geom friction coefficients (sliding, torsional, rolling), `[ngeom, 3]`.
    geom_friction: Array
    #: Joint damping per degree of freedom, `[nv]`.
    dof_damping: Array
    #: Joint dry friction (`frictionloss`) per degree of freedom, `[nv]`; scaled with the
    #: contacts' friction, so models without contacts still respond to `friction_scale`.
    dof_frictionloss: Array
    #: Actuator transmission gears, `[nu, 6]`.
    actuator_gear: Array

    @classmethod
    def of(cls, model: mujoco.MjModel) -> NominalPhysics:
        return cls(
            body_mass=model.body_mass.copy(),
            body_inertia=model.body_inertia.copy(),
            geom_friction=model.geom_friction.copy(),
            dof_damping=model.dof_damping.copy(),
            dof_frictionloss=model.dof_frictionloss.copy(),
            actuator_gear=model.actuator_gear.copy(),
        )

    def apply(
        self, model: mujoco.MjModel, data: mujoco.MjData, params: Mapping[str, float]
    ) -> None:
        """Set the model to these nominal values times the scales in `params`.

        The simulator's state is kept: `mj_setConst` uses `data` as scratch space.
        """
        state = get_state(model, data)
        mass = params["mass_scale"]
        model.body_mass[:] = self.body_mass * mass
        model.body_inertia[:] = self.body_inertia * mass
        friction = params["friction_scale"]
        model.geom_friction[:, 0] = self.geom_friction[:, 0] * friction
        model.dof_frictionloss[:] = self.dof_frictionloss * friction
        model.dof_damping[:] = self.dof_damping * params["damping_scale"]
        model.actuator_gear[:] = self.actuator_gear * params["actuator_gain_scale"]
        # Derived constants (subtree masses, inverse weights) follow the new masses.
        mujoco.mj_setConst(model, data)
        set_state(model, data, state)


def linearize(
    model: mujoco.MjModel,
    data: mujoco.MjData,
    state: Array,
    ctrl: Array,
    n_substeps: int,
    eps: float = 1e-6,
) -> tuple[Array, Array]:
    """Jacobians of one control step (`n_substeps` physics steps with a held control).

    Takes MuJoCo's own centred finite differences of each physics step
    (`mujoco.mjd_transitionFD`; for RK4 models, which it does not support, the same differences
    taken by `_centred_differences`) and chains them along the step:
    `A = A_k ... A_1`, `B = sum_j A_k ... A_{j+1} B_j`. The state is in MuJoCo's tangent space,
    `x = [dq (nv), qvel (nv), act (na)]`, which is `[qpos, qvel, act]` when every joint is a
    hinge or slide.

    Args:
        state: an integration state from `get_state`; restored on return.
        ctrl: the control `[nu]`.

    Returns:
        A `[2nv+na, 2nv+na]`, B `[2nv+na, nu]`, float64.
    """
    set_state(model, data, state)
    data.ctrl[:] = ctrl
    try:
        return chain_substep_jacobians(model, data, n_substeps, eps, centred=True)
    finally:
        set_state(model, data, state)


def chain_substep_jacobians(
    model: mujoco.MjModel, data: mujoco.MjData, n_substeps: int, eps: float, centred: bool
) -> tuple[Array, Array]:
    """`(A, B)` of `n_substeps` physics steps from `data`'s state under its held controls,
    chained from each substep's `substep_jacobians`; `data` is left at the last substep's end.
    """
    nx = 2 * model.nv + model.na
    A, B = np.eye(nx), np.zeros((nx, model.nu))
    A_step, B_step = np.empty((nx, nx)), np.empty((nx, model.nu))
    for _ in range(n_substeps):
        substep_jacobians(model, data, eps, centred, A_step, B_step)  # leaves data as it was
        mujoco.mj_step(model, data)
        A, B = A_step @ A, A_step @ B + B_step
    return A, B


def linearize_env(
    env: RobotEnv, model: mujoco.MjModel, data: mujoco.MjData, n_substeps: int,
    state: Array, action: Array,
) -> tuple[Array, Array]:
    """`linearize` of a MuJoCo-backed env at its `get_state()` vector and an action, leaving
    the env's state as it was. Raises ValueError for a bad action or state, as `step` would."""
    clipped = env.check_action(action)
    saved = env.get_state()
    env.set_state(state)
    try:
        return linearize(model, data, get_state(model, data), clipped, n_substeps)
    finally:
        env.set_state(saved)


def substep_jacobians(
    model: mujoco.MjModel, data: mujoco.MjData, eps: float, centred: bool, A: Array, B: Array
) -> None:
    """Write one physics step's Jacobians at `data`'s state and controls into `A`
    `[2nv+na, 2nv+na]` and `B` `[2nv+na, nu]`, leaving `data` as it was.

    MuJoCo's `mjd_transitionFD`, centred or forward; RK4 models, which it does not support,
    get the same centred differences from `_centred_differences`.
    """
    if model.opt.integrator != mujoco.mjtIntegrator.mjINT_RK4:
        mujoco.mjd_transitionFD(model, data, eps, centred, A, B, None, None)
        return
    state = get_state(model, data)
    A[:], B[:] = _centred_differences(model, data, state, data.ctrl.copy(), eps)
    set_state(model, data, state)


def _centred_differences(
    model: mujoco.MjModel, data: mujoco.MjData, state: Array, ctrl: Array, eps: float
) -> tuple[Array, Array]:
    """One physics step's `(A, B)` by centred differences in tangent space, as
    `mjd_transitionFD` takes them (positions perturbed with `mj_integratePos`, compared with
    `mj_differentiatePos`)."""
    nv, nu = model.nv, model.nu
    nx = 2 * nv + model.na

    def step_from(dx: Array, du: Array) -> tuple[Array, Array]:
        set_state(model, data, state)
        data.ctrl[:] = ctrl + du
        mujoco.mj_integratePos(model, data.qpos, dx[:nv], 1.0)
        data.qvel[:] += dx[nv : 2 * nv]
        data.act[:] += dx[2 * nv :]
        mujoco.mj_step(model, data)
        return data.qpos.copy(), np.concatenate([data.qvel, data.act])

    def difference(plus: tuple[Array, Array], minus: tuple[Array, Array]) -> Array:
        dq = np.empty(nv)
        mujoco.mj_differentiatePos(model, dq, 1.0, minus[0], plus[0])
        return np.concatenate([dq, plus[1] - minus[1]]) / (2 * eps)

    no_dx, no_du = np.zeros(nx), np.zeros(nu)
    A = np.empty((nx, nx))
    B = np.empty((nx, nu))
    for i, e in enumerate(np.eye(nx) * eps):
        A[:, i] = difference(step_from(e, no_du), step_from(-e, no_du))
    for j, e in enumerate(np.eye(nu) * eps):
        B[:, j] = difference(step_from(no_dx, e), step_from(no_dx, -e))
    return A, B


def disable_shadows(model: mujoco.MjModel) -> None:
    """Turn off shadow casting, which makes software (Mesa EGL) rendering several times faster."""
    model.light_castshadow[:] = 0


def joint_interface(model: mujoco.MjModel) -> JointInterface | None:
    """The named joints and joint motors of `model` (see `JointInterface`), or None if a joint
    is not a hinge or slide (one degree of freedom), is unnamed, or an actuator is not a
    motor on one joint (dm_control's and our models of the cart-pole, pendulum, acrobot,
    reacher, cheetah and walker qualify where their joints do)."""
    one_dof = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))
    joint_types = [int(model.jnt_type[j]) for j in range(model.njnt)]
    if model.nq != model.nv or any(kind not in one_dof for kind in joint_types):
        return None
    names = tuple(model.joint(j).name for j in range(model.njnt))
    commanded, gears = [], []
    for a in range(model.nu):
        on_joint = int(model.actuator_trntype[a]) == int(mujoco.mjtTrn.mjTRN_JOINT)
        if not on_joint or model.actuator_biastype[a]:
            return None
        commanded.append(names[model.actuator_trnid[a, 0]])
        gears.append(float(model.actuator_gear[a, 0]))
    if not all(names) or len(set(names)) != len(names):
        return None
    return JointInterface(names, tuple(commanded), tuple(gears))
