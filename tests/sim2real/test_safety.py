"""The command gate: watchdog, bounds, e-stop and input checks, driven on an exact clock."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim2real.safety import CommandGate, SafetyConfig

PERIOD = 0.02


def cartpole_gate(**config: object) -> CommandGate:
    """A cart-pole: the slider is driven in [-1, 1], the pole's hinge is passive."""
    return CommandGate(["slider", "hinge"], ["slider"], np.array([-1.0]), np.array([1.0]),
                       SafetyConfig(period_s=PERIOD, **config))  # type: ignore[arg-type]


def test_fresh_state_passes_the_controllers_command_clamped_into_the_bounds() -> None:
    gate = cartpole_gate()
    reading = gate.accept_state(["hinge", "slider"], [3.0, 0.5], [0.1, -0.2], stamp_s=1.0)
    assert reading is not None  # reordered into the gate's state order
    np.testing.assert_array_equal(reading.joint_state, [0.5, 3.0, -0.2, 0.1])
    assert gate.fresh_state(1.01) is reading
    command = gate.command(1.01, [0.3])
    assert not command.safe and command.values.tolist() == [0.3]
    assert gate.command(1.01, [7.0]).values.tolist() == [1.0]


def test_no_state_or_stale_state_gives_the_safe_command_until_fresh_state_returns() -> None:
    gate = cartpole_gate(stale_periods=2.0)
    assert gate.command(0.0, [0.5]).safe  # nothing received yet
    gate.accept_state(["slider", "hinge"], [0.0, 3.1], [0.0, 0.0], stamp_s=0.0)
    assert not gate.command(2 * PERIOD, [0.5]).safe  # exactly two periods old: still fresh
    late = gate.command(2 * PERIOD + 1e-6, [0.5])
    assert late.safe and late.values.tolist() == [0.0] and "no fresh" in late.reason
    gate.accept_state(["slider", "hinge"], [0.0, 3.1], [0.0, 0.0], stamp_s=0.1)
    assert not gate.command(0.1 + PERIOD, [0.5]).safe
    assert [e.kind for e in gate.events] == ["fresh", "stale", "fresh"]


def test_the_estop_latches_until_reset() -> None:
    gate = cartpole_gate()
    gate.accept_state(["slider", "hinge"], [0.0, 0.0], [0.0, 0.0], stamp_s=0.0)
    gate.engage_estop(0.001)
    for t in (0.002, 0.004):
        gate.accept_state(["slider", "hinge"], [0.0, 0.0], [0.0, 0.0], stamp_s=t)
        command = gate.command(t, [0.9])
        assert command.safe and command.reason == "e-stop latched"
    assert gate.fresh_state(0.004) is None and gate.estop_engaged
    gate.reset_estop(0.005)
    assert not gate.command(0.005, [0.9]).safe
    kinds = [e.kind for e in gate.events]
    assert kinds.count("estop") == kinds.count("estop_reset") == 1
    assert kinds.index("estop") < kinds.index("estop_reset") == len(kinds) - 1


@pytest.mark.parametrize(("names", "positions", "velocities", "stamp", "why"), [
    (["slider"], [0.0], [0.0], 1.0, "missing joints ['hinge']"),
    (["slider", "hinge", "wheel"], [0.0] * 3, [0.0] * 3, 1.0, "unknown joints ['wheel']"),
    (["slider", "hinge"], [0.0], [0.0, 0.0], 1.0, "2 names, 1 positions and 2 velocities"),
    (["slider", "hinge", "hinge"], [0.0] * 3, [0.0] * 3, 1.0, "repeated joint names"),
    (["slider", "hinge"], [math.nan, 0.0], [0.0, 0.0], 1.0, "NaN or infinite"),
    (["slider", "hinge"], [0.0, 0.0], [0.0, math.inf], 1.0, "NaN or infinite"),
    (["slider", "hinge"], [0.0, 0.0], [0.0, 0.0], 0.5, "not after the last accepted"),
    (["slider", "hinge"], [0.0, 0.0], [0.0, 0.0], 0.75, "not after the last accepted"),
])
def test_malformed_state_is_rejected_with_the_reason_and_never_acted_on(
    names: list[str], positions: list[float], velocities: list[float], stamp: float, why: str
) -> None:
    gate = cartpole_gate(stale_periods=100.0)
    gate.accept_state(["slider", "hinge"], [0.0, 0.0], [0.0, 0.0], stamp_s=0.75)
    assert gate.accept_state(names, positions, velocities, stamp) is None
    event = gate.events[-1]
    assert event.kind == "rejected_state" and why in event.reason, event
    latest = gate.fresh_state(0.8)
    assert latest is not None and latest.stamp_s == 0.75  # the good reading still stands


@pytest.mark.parametrize("proposed", [[math.nan], [math.inf], [0.1, 0.2], []])
def test_a_non_finite_or_misshapen_command_becomes_the_safe_command(
    proposed: list[float],
) -> None:
    gate = cartpole_gate()
    gate.accept_state(["slider", "hinge"], [0.0, 0.0], [0.0, 0.0], stamp_s=0.0)
    command = gate.command(0.01, proposed)
    assert command.safe and gate.events[-1].kind == "rejected_command"
    assert np.isfinite(command.values).all() and command.values.shape == (1,)


def test_a_configured_hold_is_the_safe_command_inside_the_bounds() -> None:
    gate = CommandGate(["a", "b"], ["a", "b"], np.array([-1.0, 0.5]), np.array([1.0, 2.0]),
                       SafetyConfig(period_s=PERIOD, safe_command=(0.2, 0.0)))
    assert gate.command(0.0, None).values.tolist() == [0.2, 0.5]  # zero is below b's bound


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="command_joints"):
        CommandGate(["slider"], ["motor"], np.array([-1.0]), np.array([1.0]))
    with pytest.raises(ValueError, match="finite with low <= high"):
        CommandGate(["slider"], ["slider"], np.array([1.0]), np.array([-1.0]))
    with pytest.raises(ValueError, match="period_s: must be > 0"):
        SafetyConfig(period_s=0.0)
    with pytest.raises(ValueError, match="safe_command must have 1 values"):
        CommandGate(["slider"], ["slider"], np.array([-1.0]), np.array([1.0]),
                    SafetyConfig(safe_command=(0.0, 0.0)))


def test_a_stamp_far_ahead_of_its_arrival_is_refused_and_cannot_lock_out_later_messages() -> None:
    gate = cartpole_gate(max_stamp_lead_s=0.01)
    assert gate.accept_state(["slider", "hinge"], [0.0, 3.1], [0.0, 0.0], stamp_s=11.0,
                             received_s=1.0) is None
    assert "ahead of its arrival" in gate.events[-1].reason and gate.events[-1].time_s == 1.0
    # Accepted, it would have made every real message after it "out of order".
    assert gate.accept_state(["slider", "hinge"], [0.0, 3.1], [0.0, 0.0], stamp_s=1.005,
                             received_s=1.0) is not None
