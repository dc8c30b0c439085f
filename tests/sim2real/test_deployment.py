"""The control loop the ROS node runs, without ROS: on an exact clock, against the simulator.

A `ControlLoop` is driven here the way the node drives it (joint states every 10 ms from a
MuJoCo cart-pole stepped at its 2 ms physics rate, a period every 50 ms, the command applied
at the next physics step), so what the end-to-end tests over ROS see can be told apart from
what the loop itself does.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import envs
from controllers.validation import ConfigError
from envs.dynamics import joint_state
from mbrl.algorithms.distill import DistillConfig, train_distill
from mbrl.control.episodes import rollout
from mbrl.errors import UserError
from mbrl.learning.policy_training import PolicyTrainConfig
from sim2real.deployment import (
    ControlLoop,
    DeployedController,
    SimulatorMPCConfig,
    config_period_steps,
    controller_from_planner,
    controller_from_student,
)
from sim2real.robust import RobustSimulatorDynamics
from sim2real.safety import SafetyConfig

#: iLQR MPC through the simulator at 20 Hz: what the end-to-end swing-up deploys.
SWING_UP = SimulatorMPCConfig(planner="ilqr", planner_settings={"max_iterations": 1},
                              rate_hz=20.0, horizon=20, plan_budget_ms=1e6)


def drive(loop: ControlLoop, seconds: float, drop: tuple[float, float] | None = None,
          tick_phase_s: float = 0.004, planning_s: float = 0.0) -> tuple[float, list]:
    """Run the loop against the MuJoCo cart-pole on a simulated clock; the return (the env's
    rewards, as `rollout` sums them) and the cycles. `drop`: joint states withheld then;
    `planning_s`: how long a plan takes, which delays a command sent when its plan is done
    (the loop here plans in no simulated time)."""
    clock = [0.0]
    loop.clock = lambda: clock[0]
    robot = envs.make("mujoco/cartpole-swingup", max_episode_steps=10**9)
    robot.reset(seed=0)
    names = loop.interface.state_joints
    ticks_every, publish_every = round(loop.deployed.period_s / 0.002), 5
    action, pending, cycles, total = np.zeros(1), [], [], 0.0
    delay = 0 if loop.compensates else round(planning_s / 0.002)
    obs = robot.observe()
    for k in range(round(seconds / 0.002)):
        clock[0] = k * 0.002
        withheld = drop is not None and drop[0] <= clock[0] < drop[1]
        if k % publish_every == 0 and not withheld:
            x = joint_state(robot)
            loop.on_joint_state(names, x[:2], x[2:], clock[0])
        while pending and pending[0][0] <= k:
            action = pending.pop(0)[1]
        if (k - round(tick_phase_s / 0.002)) % ticks_every == 0:
            # Applied at the next physics step after it is sent.
            cycles.append(loop.tick(lambda command, k=k: pending.append(
                (k + 1 + delay, np.array(command) / 10.0))))
        robot.physics_step(action)
        if k % 5 == 4:
            next_obs = robot.observe()
            total += float(robot.task.reward(torch.from_numpy(obs), torch.from_numpy(action),
                                             torch.from_numpy(next_obs)))
            obs = next_obs
    return total, cycles


def in_process_return(deployed: DeployedController, seconds: float) -> float:
    """The same controller in process: `rollout` on the env at the controller's period."""
    env = envs.make("mujoco/cartpole-swingup",
                    action_repeat=round(deployed.period_s / 0.01))
    episode = rollout(env, deployed.controller, 0,
                      observe=lambda _: deployed.observe(joint_state(env)),
                      max_steps=round(seconds / deployed.period_s))
    return episode.episode_return


def test_the_delay_compensated_loop_swings_up_as_well_as_the_controller_in_process() -> None:
    deployed = controller_from_planner(SWING_UP)
    reference = in_process_return(deployed, 4.0)
    compensated, cycles = drive(ControlLoop(deployed, SafetyConfig(period_s=0.05)), 4.0)
    assert reference > 250  # up within 4 s (at most 400)
    assert compensated >= 0.95 * reference, (compensated, reference)
    assert cycles[0].safe and cycles[0].reason  # nothing planned before the first state
    assert not any(c.safe for c in cycles[2:])


def test_without_compensation_the_planning_time_delays_every_command_and_costs_return() -> None:
    # Why the loop compensates: a command sent when its plan is done reaches the robot a
    # planning time after the state it was planned from (iLQR here: about 20 ms, 30 ms with
    # a robot process beside it on two cores).
    direct = ControlLoop(controller_from_planner(SWING_UP), SafetyConfig(period_s=0.05),
                         compensate_delay=False)
    late, _ = drive(direct, 4.0, planning_s=0.03)
    compensated, _ = drive(ControlLoop(controller_from_planner(SWING_UP),
                                       SafetyConfig(period_s=0.05)), 4.0, planning_s=0.03)
    assert not direct.compensates
    assert late < 0.8 * compensated, (late, compensated)


def test_a_lost_link_gives_the_safe_command_within_one_period_of_going_stale() -> None:
    deployed = controller_from_planner(
        SimulatorMPCConfig(planner="ilqr", planner_settings={"max_iterations": 1},
                           rate_hz=20.0, horizon=5, plan_budget_ms=1e6))
    loop = ControlLoop(deployed, SafetyConfig(period_s=0.05, stale_periods=2.0))
    _, cycles = drive(loop, 1.5, drop=(0.5, 1.0))
    last_state = 0.49  # the last joint state before the drop, on the 10 ms grid
    stale_at = last_state + 2 * 0.05
    safe = [c for c in cycles if c.tick_s > stale_at and c.safe]
    assert safe and safe[0].tick_s <= stale_at + 0.05 and "no fresh" in safe[0].reason
    assert all(c.safe for c in cycles if stale_at < c.tick_s < 1.0)
    resumed = [c for c in cycles if c.tick_s >= 1.0 and not c.safe]
    assert resumed and resumed[0].tick_s <= 1.0 + 2 * 0.05  # planned once, then sent
    assert [e.kind for e in loop.gate.events] == ["fresh", "stale", "fresh"]


def test_the_estop_latches_until_reset_and_commands_stay_in_the_bounds() -> None:
    deployed = controller_from_planner(
        SimulatorMPCConfig(planner="ilqr", planner_settings={"max_iterations": 1},
                           rate_hz=20.0, horizon=5, plan_budget_ms=1e6))
    loop = ControlLoop(deployed, SafetyConfig(period_s=0.05), clock=lambda: 0.0)
    loop.on_joint_state(["slider", "hinge"], [0.0, 3.1], [0.0, 0.0], 0.0)
    assert loop.engage_estop().tolist() == [0.0]
    for _ in range(3):
        assert loop.tick().reason == "e-stop latched"
    loop.reset_estop()
    loop.on_joint_state(["slider", "hinge"], [0.0, 3.1], [0.0, 0.0], 0.001)
    loop.clock = lambda: 0.002
    loop.tick()  # plans; the next period sends it
    cycle = loop.tick()
    assert not cycle.safe and -10.0 <= cycle.command[0] <= 10.0


def test_malformed_joint_states_are_refused_with_the_reason() -> None:
    loop = ControlLoop(controller_from_planner(SWING_UP), SafetyConfig(period_s=0.05),
                       clock=lambda: 1.0)
    assert not loop.on_joint_state(["slider", "hinge"], [math.nan, 3.1], [0.0, 0.0], 1.0)
    assert not loop.on_joint_state(["slider", "hinge", "pole"], [0.0, 3.1, 0], [0.0, 0, 0], 1.0)
    assert not loop.on_joint_state(["slider"], [0.0], [0.0], 1.0)
    assert loop.tick().safe
    reasons = [e.reason for e in loop.gate.events if e.kind == "rejected_state"]
    assert "NaN" in reasons[0] and "unknown" in reasons[1] and "missing" in reasons[2]


def test_a_rate_that_is_not_whole_env_steps_and_a_robot_without_joints_are_refused() -> None:
    assert config_period_steps(25.0, 0.01, "mujoco/cartpole-swingup") == 4
    with pytest.raises(UserError, match=r"--rate 30: the period 33\.3333 ms is not a whole"):
        config_period_steps(30.0, 0.01, "mujoco/cartpole-swingup")
    with pytest.raises(UserError, match="pybullet/cartpole-swingup has no joint interface"):
        controller_from_planner(SimulatorMPCConfig(env_id="pybullet/cartpole-swingup",
                                                   planner="cem", rate_hz=25.0))
    deployed = controller_from_planner(SWING_UP)
    deployed.predict = None
    with pytest.raises(UserError, match="cannot compensate the planning delay"):
        ControlLoop(deployed, SafetyConfig(period_s=0.05), compensate_delay=True)


def test_robust_mpc_plans_across_randomised_simulator_copies_within_the_bounds() -> None:
    config = SimulatorMPCConfig(
        planner="cem", planner_settings={"population": 20, "iterations": 1}, horizon=5,
        plan_budget_ms=1e6, copies=3, risk="worst",
        robust={"mass_scale": {"low": 0.5, "high": 2.0, "distribution": "log-uniform"}})
    deployed = controller_from_planner(config)
    assert "across 3 randomised copies (worst)" in deployed.description
    dynamics = deployed.controller.planner.dynamics  # type: ignore[attr-defined]
    assert isinstance(dynamics, RobustSimulatorDynamics) and len(dynamics.copies) == 3
    assert len({draw["mass_scale"] for draw in dynamics.draws}) == 3
    _, cycles = drive(ControlLoop(deployed, SafetyConfig(period_s=0.05)), 1.0)
    commands = [c.command[0] for c in cycles[1:]]
    assert all(math.isfinite(v) and -10.0 <= v <= 10.0 for v in commands)
    assert any(v != 0.0 for v in commands)
    with pytest.raises(ConfigError, match="planner: plans through one model"):
        SimulatorMPCConfig(planner="ilqr", robust={})


def test_a_distilled_student_deploys_on_joint_states_each_command_its_own_action(
    tmp_path: Path,
) -> None:
    """A `mbrl distill` run's student behind the gate: no delay to compensate (a policy
    answers in microseconds), every command the student's action at that period's joint
    state times the gear, inside the bounds."""
    config = DistillConfig(env_id="mujoco/cartpole-swingup", action_repeat=5, episode_steps=8,
                           teacher="cem", horizon=4,
                           teacher_settings={"population": 16, "iterations": 1},
                           iterations=1, eval_episodes=0,
                           fit=PolicyTrainConfig(epochs=3))
    train_distill(config, tmp_path / "student")
    deployed = controller_from_student(tmp_path / "student")
    assert deployed.predict is None and deployed.period_s == pytest.approx(0.05)
    loop = ControlLoop(deployed, SafetyConfig(period_s=deployed.period_s))
    _, cycles = drive(loop, seconds=2.0)
    acted = [c for c in cycles if not c.safe]
    assert len(acted) >= 35
    for cycle in acted:
        assert all(math.isfinite(u) and abs(u) <= 10.0 for u in cycle.command)
        assert cycle.plan_ms < 5.0  # a policy, not a planner
    with pytest.raises(UserError, match="no usable student"):
        (tmp_path / "student" / "student.pt").unlink()
        for checkpoint in (tmp_path / "student" / "checkpoints").iterdir():
            (checkpoint / "student.pt").unlink()
        controller_from_student(tmp_path / "student")
