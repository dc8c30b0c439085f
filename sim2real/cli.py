"""The `mbrl` subcommands of deployment: `deploy ros`, `sim-robot` and `replay`.

`mbrl.cli` may not import this package (it sits above `mbrl`), so these reach the `mbrl`
command through the `mbrl.commands` entry point (`COMMANDS`). Importing this module loads
nothing heavy; each command checks for the ROS 2 extra first, before anything is written.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mbrl.cli import (
    DefaultsOnce,
    add_planner_settings,
    add_risk,
    physics_scales,
    planner_settings,
    positive_int,
)

log = logging.getLogger(__name__)


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _domain_id(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 101:
        raise argparse.ArgumentTypeError(f"must be in 0..101, got {text}")
    return value


def _add_topics(parser: argparse.ArgumentParser) -> None:
    # The defaults of `controller_node.Topics`, repeated: --help must not need rclpy.
    parser.add_argument("--joint-states", default="/joint_states",
                        help="topic of sensor_msgs/JointState from the robot")
    parser.add_argument("--commands", default="/forward_effort_controller/commands",
                        help="topic of std_msgs/Float64MultiArray efforts to the robot")


def _add_ros(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--domain-id", type=_domain_id,
                        help="ROS_DOMAIN_ID (default: the environment's, else 0)")


# ----------------------------------------------------------------------------- deploy ros
def _cmd_deploy_ros(args: argparse.Namespace) -> int:
    from sim2real.ros.dds import require_ros

    require_ros()
    from mbrl.algorithms.distill import is_distill_run
    from mbrl.errors import UserError
    from mbrl.files import write_json
    from mbrl.runs.rundir import new_run_dir
    from sim2real.deployment import (
        ControlLoop,
        SimulatorMPCConfig,
        controller_from_planner,
        controller_from_run,
        controller_from_student,
    )
    from sim2real.safety import SafetyConfig

    if (args.controller is None) == (args.planner is None):
        raise UserError("give one of --controller RUN_DIR (MPC through a trained run's model) "
                        "or --planner NAME (MPC through the simulator of --env)")
    if args.controller is not None:
        for option in ("env", "horizon", "population", "iterations", "set"):
            if getattr(args, option) is not None:
                raise UserError(f"--{option}: set by the run in --controller, not here")
        for option in ("robust", "copies"):
            if getattr(args, option) is not None:
                raise UserError(f"--{option}: with --planner only; --controller plans through "
                                f"its ensemble, whose particles --risk scores")
        if is_distill_run(Path(args.controller)):
            for option in ("risk", "risk_epsilon", "plan_budget_ms"):
                if getattr(args, option) is not None:
                    raise UserError(f"--{option.replace('_', '-')}: for MPC, not for the "
                                    f"distilled student in --controller")
            deployed = controller_from_student(Path(args.controller))
        else:
            deployed = controller_from_run(
                Path(args.controller), args.plan_budget_ms, args.seed,
                compensate_delay=not args.no_delay_compensation, risk=args.risk,
                risk_epsilon=args.risk_epsilon)
        if args.rate is not None and abs(args.rate - deployed.rate_hz) > 1e-6:
            raise UserError(f"--rate {args.rate:g}: the model in {args.controller} steps at "
                            f"{deployed.rate_hz:g} Hz; leave --rate out or give that")
    else:
        if args.robust is None:
            for option in ("copies", "risk", "risk_epsilon"):
                if getattr(args, option) is not None:
                    raise UserError(f"--{option.replace('_', '-')}: with --planner, robust "
                                    f"MPC needs --robust FILE (the ranges of the copies)")
        robust = None
        if args.robust is not None:
            import dataclasses

            from sim2real.randomization import load_randomization

            robust = dataclasses.asdict(load_randomization(args.robust))
        defaults = SimulatorMPCConfig
        config = SimulatorMPCConfig(
            env_id=args.env or defaults.env_id, planner=args.planner,
            planner_settings=planner_settings(args),
            rate_hz=args.rate or defaults.rate_hz,
            horizon=args.horizon or defaults.horizon,
            plan_budget_ms=args.plan_budget_ms, seed=args.seed,
            compensate_delay=not args.no_delay_compensation, robust=robust,
            copies=args.copies or defaults.copies, risk=args.risk or defaults.risk,
            risk_epsilon=args.risk_epsilon or defaults.risk_epsilon)
        deployed = controller_from_planner(config)
    robot = deployed.env.env_id.split("/")[-1].split("-")[0]
    if args.robot is not None and args.robot not in (robot, deployed.env.env_id):
        raise UserError(f"--robot {args.robot}: the controller is for the {robot} "
                        f"({deployed.env.env_id})")
    joints = deployed.env.joint_interface.command_joints  # type: ignore[union-attr]
    if args.safe_command is not None and len(args.safe_command) != len(joints):
        raise UserError(f"--safe-command: give one effort for each of {list(joints)}, got "
                        f"{len(args.safe_command)}")
    safety = SafetyConfig(period_s=deployed.period_s, stale_periods=args.stale_periods,
                          safe_command=tuple(args.safe_command) if args.safe_command else None)
    loop = ControlLoop(deployed, safety)
    run_dir = new_run_dir(args.out, "deploy-ros")
    settings = {key: value for key, value in vars(args).items()
                if key not in ("run", "parser", "verbose")}
    write_json(run_dir / "config.json", {**settings, "controller_description":
                                         deployed.description, "rate_hz": deployed.rate_hz})
    return _run_deployment(args, loop, run_dir)


def _run_deployment(args: argparse.Namespace, loop: Any, run_dir: Path) -> int:
    from mbrl.files import write_json
    from sim2real.ros.dds import use_loopback_only

    if args.loopback_only:
        use_loopback_only(args.domain_id)
    elif args.domain_id is not None:
        import os

        os.environ["ROS_DOMAIN_ID"] = str(args.domain_id)
    import rclpy

    from sim2real.ros.controller_node import Stop, Topics, init_ros, run_controller
    from sim2real.ros.log import McapLog
    from sim2real.ros.replay import replay

    topics = Topics(args.joint_states, args.commands, args.estop, args.estop_reset)
    stop = Stop()
    stop.install()
    import torch

    torch.set_num_threads(args.threads)
    warm_ms = loop.warm_up()
    init_ros()
    print(f"{loop.deployed.description} (warm: {warm_ms:.1f} ms an act): "
          f"{loop.deployed.rate_hz:g} Hz, "
          f"{topics.joint_states} -> {topics.commands}; log in {run_dir}; Ctrl-C stops "
          "(the safe command first)", flush=True)
    started = time.time()
    try:
        with McapLog(run_dir / "deploy.mcap") as mcap:
            acknowledged = run_controller(loop, topics, mcap, args.duration, stop)
    finally:
        rclpy.try_shutdown()
    stats = getattr(loop.deployed.controller, "stats", None)
    summary = {
        "seconds": time.time() - started, "periods": loop.periods,
        "rate_overruns": loop.overruns,
        "planner_overruns": getattr(stats, "overruns", None),
        "planner_fallbacks": getattr(stats, "fallbacks", None),
        "events": _event_counts(loop.gate.events),
        "stopped_by": {None: "duration", 2: "SIGINT", 15: "SIGTERM"}.get(stop.signal),
        "safe_command_acknowledged": acknowledged,
    }
    summary["log"] = replay(run_dir / "deploy.mcap", run_dir / "deploy.png")
    write_json(run_dir / "summary.json", summary)
    print(json.dumps({k: v for k, v in summary.items() if k != "log"}), flush=True)
    return 130 if stop.signal == 2 else 0


def _event_counts(events: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in events:
        counts[event.kind] = counts.get(event.kind, 0) + 1
    return counts


def _add_deploy(commands: Any) -> None:
    deploy = commands.add_parser(
        "deploy", help="run a controller on a robot through ROS 2", allow_abbrev=False,
        description="Run a controller on a robot (real, or `mbrl sim-robot`).")
    targets = deploy.add_subparsers(dest="target", metavar="TARGET", required=True)
    ros = targets.add_parser(
        "ros", help="a ROS 2 controller node (needs the [ros] extra)", allow_abbrev=False,
        formatter_class=DefaultsOnce,
        description="A ROS 2 node that reads sensor_msgs/JointState, maps it to the model's "
        "observation with the robot's own map (envs), runs the controller at a fixed rate, "
        "and publishes std_msgs/Float64MultiArray efforts to a ros2_control forward command "
        "controller. Between the controller and the robot: a watchdog (state older than "
        "--stale-periods periods, or none, gives the safe command), the robot's effort "
        "bounds, a latching e-stop (std_msgs/Bool true on --estop, released by true on "
        "--estop-reset), the planner's deadline with the shifted-plan fallback, and "
        "malformed joint states refused with the reason. Everything is logged to OUT/"
        "deploy-ros-*/deploy.mcap (Foxglove, ros2 bag; `mbrl replay`). Ctrl-C sends the "
        "safe command, waits for the robot to acknowledge it, then stops.",
    )
    which = ros.add_argument_group("controller (one of)")
    which.add_argument("--controller", metavar="RUN_DIR",
                       help="MPC through this `mbrl train pets` run's learned model, or this "
                       "`mbrl distill` run's student, at its control rate")
    which.add_argument("--planner", help="MPC with this registered planner through the "
                       "simulator of --env (see `mbrl planners`)")
    ros.add_argument("--env", help="with --planner: the robot's env id (default: "
                     "mujoco/cartpole-swingup)")
    ros.add_argument("--robot", help="the robot, checked against the controller's (cartpole, "
                     "or an env id)")
    ros.add_argument("--rate", type=_positive_float,
                     help="control rate, Hz (default: a run's own; 20 for --planner)")
    ros.add_argument("--horizon", type=positive_int, help="with --planner: horizon in periods "
                     "(default: 20)")
    add_planner_settings(ros, "the registry's", "the registry's")
    robust = ros.add_argument_group("robust MPC")
    robust.add_argument("--robust", metavar="FILE",
                        help="with --planner: plan across --copies simulators with physics "
                        "drawn from this randomisation config (JSON) or preset (peng2018)")
    robust.add_argument("--copies", type=positive_int,
                        help="with --robust: the simulator copies K (default: 4)")
    add_risk(robust, "(default: the run's with --controller, cvar with --robust)",
             "(default: the run's with --controller, 0.25 with --robust)")
    ros.add_argument("--plan-budget-ms", type=_positive_float,
                     help="the planner's deadline per replan (default: 90%% of the period, "
                     "75%% without delay compensation)")
    ros.add_argument("--no-delay-compensation", action="store_true",
                     help="send each command as soon as it is planned, from the state it was "
                     "planned at, instead of planning one period ahead from the model's "
                     "prediction and sending at the period boundary")
    ros.add_argument("--stale-periods", type=_positive_float, default=2.0,
                     help="joint state older than this many periods is stale")
    ros.add_argument("--safe-command", type=float, nargs="+", metavar="EFFORT",
                     help="the safe command, one effort a commanded joint (default: zero)")
    ros.add_argument("--duration", type=_positive_float,
                     help="stop after this many seconds (default: run until Ctrl-C)")
    ros.add_argument("--seed", type=int, default=0, help="planner seed")
    ros.add_argument("--threads", type=positive_int, default=1,
                     help="torch threads of the controller (a robot's computer is shared)")
    ros.add_argument("--out", default="runs", help="folder for the run directory")
    _add_topics(ros)
    ros.add_argument("--estop", default="/estop", help="topic of the e-stop (std_msgs/Bool)")
    ros.add_argument("--estop-reset", default="/estop_reset",
                     help="topic that releases a latched e-stop (std_msgs/Bool true)")
    _add_ros(ros)
    ros.add_argument("--loopback-only", action="store_true",
                     help="keep DDS on 127.0.0.1 (a robot on this machine, e.g. sim-robot)")
    ros.set_defaults(run=_cmd_deploy_ros, parser=ros)


# ----------------------------------------------------------------------------- sim-robot
def _cmd_sim_robot(args: argparse.Namespace) -> int:
    from sim2real.ros.dds import require_ros

    require_ros()
    from mbrl.errors import UserError
    from mbrl.files import write_json
    from mbrl.runs.rundir import new_run_dir
    from sim2real.ros.sim_robot import Fault, SimRobotConfig

    physics = physics_scales(args.physics)
    config = SimRobotConfig(
        env_id=args.env, seed=args.seed, duration_s=args.duration, latency_ms=args.latency_ms,
        noise_std=args.noise_std, physics=physics,
        faults=tuple(Fault.parse(text) for text in args.fault or []),
        publish_rate_hz=args.publish_rate, start_on_first_command=args.start_on_first_command)
    import envs

    probe = envs.make(config.env_id)
    try:
        probe.set_physics_params(**config.physics)
    except ValueError as error:  # a bad name or scale, in one line
        raise UserError(f"--physics: {error}") from None
    finally:
        probe.close()
    run_dir = new_run_dir(args.out, "sim-robot")
    write_json(run_dir / "config.json", config)

    from sim2real.ros.dds import use_loopback_only

    use_loopback_only(args.domain_id)
    import rclpy

    from sim2real.ros.controller_node import Stop, Topics, init_ros
    from sim2real.ros.log import McapLog
    from sim2real.ros.sim_robot import run_sim_robot

    stop = Stop()
    stop.install()
    import torch

    torch.set_num_threads(1)  # the task's reward: tiny tensors
    init_ros()
    print(f"{config.env_id} on {args.joint_states} / {args.commands} (DDS on 127.0.0.1); "
          f"log in {run_dir}", flush=True)
    try:
        with McapLog(run_dir / "robot.mcap") as mcap:
            summary = run_sim_robot(config, Topics(args.joint_states, args.commands), mcap, stop)
    finally:
        rclpy.try_shutdown()
    write_json(run_dir / "summary.json", summary)
    print(json.dumps(summary.__dict__), flush=True)
    return 0


def _fault(text: str) -> str:
    from sim2real.ros.sim_robot import Fault

    try:
        Fault.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _add_sim_robot(commands: Any) -> None:
    robot = commands.add_parser(
        "sim-robot", help="a MuJoCo robot as a ROS 2 node (needs the [ros] extra)",
        allow_abbrev=False, formatter_class=DefaultsOnce,
        description="Simulate a robot behind ros2_control's topics, in real time: publish "
        "sensor_msgs/JointState at the env's update rate and apply std_msgs/Float64MultiArray "
        "efforts, with optional command latency, sensor noise, physics shifts and faults. "
        "DDS stays on 127.0.0.1. Writes OUT/sim-robot-*/ with config.json, robot.mcap and "
        "summary.json (return, refused commands).",
    )
    robot.add_argument("--env", default="mujoco/cartpole-swingup",
                       help="a MuJoCo-backed env id, see `mbrl envs`")
    robot.add_argument("--seed", type=int, default=0, help="episode and noise seed")
    robot.add_argument("--duration", type=_positive_float,
                       help="simulated seconds (default: until Ctrl-C)")
    robot.add_argument("--latency-ms", type=float, default=0.0,
                       help="delay from receiving a command to applying it")
    robot.add_argument("--noise-std", type=float, default=0.0,
                       help="gaussian noise on published positions and velocities")
    robot.add_argument("--physics", action="append", metavar="NAME=SCALE[,...]",
                       help="a physics scale (mass_scale, damping_scale, friction_scale, "
                       "actuator_gain_scale); repeatable")
    robot.add_argument("--fault", action="append", type=_fault, metavar="KIND@START-END",
                       help="joint states go wrong from START to END seconds: drop, freeze, "
                       "garbage, or delay@START-END:MS; repeatable")
    robot.add_argument("--publish-rate", type=_positive_float, default=100.0,
                       help="joint states per second, a divisor of the physics rate (commands "
                       "apply at the physics rate either way)")
    robot.add_argument("--start-on-first-command", action="store_true",
                       help="hold the episode until the first command arrives")
    robot.add_argument("--out", default="runs", help="folder for the run directory")
    _add_topics(robot)
    _add_ros(robot)
    robot.set_defaults(run=_cmd_sim_robot, parser=robot)


# ----------------------------------------------------------------------------- replay
def _cmd_replay(args: argparse.Namespace) -> int:
    from sim2real.ros.dds import require_ros

    require_ros()
    from sim2real.ros.replay import replay

    summary = replay(Path(args.log), Path(args.figure) if args.figure else None)
    print(json.dumps(summary, indent=2))
    return 0


def _add_replay(commands: Any) -> None:
    replay = commands.add_parser(
        "replay", help="plot a deployment's MCAP log", allow_abbrev=False,
        formatter_class=DefaultsOnce,
        description="Read a log of `mbrl deploy ros` or `mbrl sim-robot`; print counts per "
        "topic, the controller's plan time, state age and safe periods, the safety events and "
        "the robot's return; plot joint positions, commands, timing and events.")
    replay.add_argument("log", metavar="LOG.mcap", help="the log")
    replay.add_argument("--figure", help="where to write the plot (default: LOG.png)")
    replay.set_defaults(run=_cmd_replay, parser=replay)


# ----------------------------------------------------------------------------- adapt
def _cmd_adapt(args: argparse.Namespace) -> int:
    import dataclasses

    from tqdm import tqdm

    from mbrl.config import load as load_config
    from mbrl.errors import UserError
    from mbrl.runs.rundir import CONFIG, completed_episodes, new_run_dir
    from sim2real.adaptation import AdaptConfig, adapt, prepare

    if args.resume:
        given = [f"--{name.replace('_', '-')}" for name in ("run_dir", "env", "physics",
                                                            "adapter_size", "seed", "init")
                 if getattr(args, name) is not None]
        if given:
            raise UserError(f"--resume continues with the run's own settings; drop "
                            f"{', '.join(given)} (only --episodes may change)")
        run_dir = Path(args.resume)
        if not (run_dir / CONFIG).is_file():
            raise UserError(f"--resume {run_dir}: no {CONFIG} of an `mbrl adapt` run there")
        config = load_config(AdaptConfig, run_dir / CONFIG)
        if args.episodes is not None:
            config = dataclasses.replace(config, episodes=args.episodes)
        prepared = prepare(config)
    else:
        if args.run_dir is None:
            raise UserError("give the source RUN_DIR, or --resume an adaptation run")
        config = AdaptConfig(
            source_run=args.run_dir, env_id=args.env, physics=physics_scales(args.physics),
            episodes=args.episodes or 3, adapter_size=args.adapter_size or 16,
            seed=args.seed or 0, init=args.init or "source")
        prepared = prepare(config)  # a bad target is refused before a run directory exists
        run_dir = new_run_dir(args.out, "adapt")
    print(f"run directory: {run_dir}")
    try:
        rows = adapt(config, run_dir, prepared=prepared, resume=bool(args.resume),
                     progress=lambda episodes: tqdm(episodes, desc="progressive adaptation",
                                                    unit="episode"))
    except KeyboardInterrupt:
        print(f"\nmbrl adapt: interrupted with {completed_episodes(run_dir)} of "
              f"{config.episodes} episodes saved; continue with: mbrl adapt --resume {run_dir}",
              file=sys.stderr)
        return 130
    for row in rows:
        print(f"episode {int(row['episode']):3d}  return {row['return']:9.2f}  "
              f"holdout mse {row['holdout_mse']:.4g}")
    return 0


def _add_adapt(commands: Any) -> None:
    adapt = commands.add_parser(
        "adapt", help="adapt a trained run to another robot (progressive networks)",
        allow_abbrev=False, formatter_class=DefaultsOnce,
        description="Grow a new column with lateral adapters over RUN_DIR's frozen model "
        "(Rusu et al. 2016) and train it on a few episodes of the target robot, planning "
        "through the source model first and the adapted one after; the source model is "
        "left untouched. Writes OUT/adapt-*/ with config.json, metrics.csv, model.pt, "
        "replay_buffer.npz and learning_curve.png; --resume continues a killed run.")
    adapt.add_argument("run_dir", metavar="RUN_DIR", nargs="?",
                       help="a run directory of `mbrl train pets`")
    adapt.add_argument("--env", help="the target robot, with the same observations and actions "
                       "(default: the run's)")
    adapt.add_argument("--physics", action="append", metavar="NAME=SCALE[,...]",
                       help="the target's physics scales (default: nominal)")
    adapt.add_argument("--episodes", type=positive_int,
                       help="target episodes (default: 3; on --resume, the run's)")
    adapt.add_argument("--adapter-size", type=positive_int,
                       help="units of each lateral adapter (default: 16)")
    adapt.add_argument("--init", choices=("source", "random"),
                       help="the new column's start: a copy of the source column with silent "
                       "adapters (the model starts as the source), or random as in Rusu et "
                       "al. (default: source)")
    adapt.add_argument("--seed", type=int, help="seed (default: 0)")
    adapt.add_argument("--out", default="runs", help="folder for the run directory")
    adapt.add_argument("--resume", metavar="ADAPT_DIR",
                       help="continue this `mbrl adapt` run from its last completed episode, "
                       "with the settings in its config.json; --episodes may extend it")
    adapt.set_defaults(run=_cmd_adapt, parser=adapt)


#: What `mbrl.cli` adds through the `mbrl.commands` entry point.
COMMANDS: dict[str, tuple[str, Callable[[Any], None]]] = {
    "deploy": ("run a controller on a robot through ROS 2", _add_deploy),
    "sim-robot": ("a MuJoCo robot as a ROS 2 node, with faults", _add_sim_robot),
    "replay": ("plot a deployment's MCAP log", _add_replay),
    "adapt": ("adapt a trained run to another robot (progressive networks)", _add_adapt),
}
