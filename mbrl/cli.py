"""The `mbrl` command: one entry point, one subcommand per job.

    mbrl envs                      list the simulated robots and tasks
    mbrl planners                  list the registered planners
    mbrl plan --planner NAME --env ID [--model RUN_DIR]
                                   MPC through the true simulator or a trained run's model
    mbrl train pets --env ID ...   learn a model and plan through it (PETS); --resume RUN_DIR
    mbrl train planet --env ID     learn latent dynamics from pixels, plan in them (PlaNet)
    mbrl distill ALGO --env ID --teacher PLANNER|RUN_DIR
                                   teach a neural policy (bc, dagger, plato, gps); --resume
    mbrl eval RUN_DIR              replay a trained run's model and planner, or its student
    mbrl bench planners ...        planners x tasks x dynamics x budgets x seeds; Pareto plot
    mbrl deploy ros ...            run a controller on a robot through ROS 2 (sim2real, [ros])
    mbrl sim-robot --env ID        a MuJoCo robot as a ROS 2 node, with faults (sim2real, [ros])
    mbrl replay LOG.mcap           plot a deployment's log (sim2real, [ros])
    mbrl adapt RUN_DIR ...         adapt a trained run to another robot (sim2real)

A mistake in what the user gave (a config file, an option, a run directory) is reported in one
line naming it, with exit status 2, before anything is written; any other error is a bug of
ours and keeps its traceback. Ctrl-C stops with one line (and, for training, how to resume) and
exit status 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable, Collection, Sequence
from typing import Any

DESCRIPTION = """\
Model-based reinforcement learning for robot control: learned dynamics models, optimal-control
planners and MPC on MuJoCo, dm_control and PyBullet robots.

Every job writes a run directory (config, metrics, plots, video where rendering works)."""


def _cmd_envs(args: argparse.Namespace) -> int:
    import envs

    specs = envs.registry()
    width = max(len(env_id) for env_id in specs)
    for env_id, spec in specs.items():
        print(f"{env_id:<{width}}  {spec.description}")
    return 0


def _cmd_planners(args: argparse.Namespace) -> int:
    from mbrl.control.planners import planner_names, planner_spec

    for name in planner_names():
        spec = planner_spec(name)
        print(f"{name:<16} {spec.description} (settings: {spec.config_type.__name__})")
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mbrl.experiments.plan import PlanConfig, prepare_plan, run_plan
    from mbrl.runs.rundir import new_run_dir

    defaults = PlanConfig()
    with_model = args.model is not None
    config = PlanConfig(
        env_id=args.env if with_model or args.env else defaults.env_id,
        planner=args.planner, planner_settings=planner_settings(args), model=args.model,
        steps=args.steps, horizon=args.horizon, replan_every=args.replan_every,
        action_repeat=(args.action_repeat if with_model or args.action_repeat
                       else defaults.action_repeat),
        time_budget_ms=args.budget_ms, seed=args.seed, video=not args.no_video,
    )
    prepared = prepare_plan(config)  # every refusal before the run directory exists
    run_dir = new_run_dir(args.out, f"plan-{args.planner}-{prepared.env.env_id}")
    print(f"run directory: {run_dir}")
    summary = run_plan(
        config, run_dir,
        progress=lambda steps: tqdm(steps, desc=f"{args.planner} MPC", unit="step"),
        prepared=prepared,
    )
    print(json.dumps(summary, indent=2))
    print(f"plot: {run_dir / 'trajectory.png'}")
    return 0


def planner_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The planner settings given as options: --population, --iterations and --set."""
    from controllers.validation import ConfigError

    settings: dict[str, Any] = {
        name: getattr(args, name) for name in ("population", "iterations")
        if getattr(args, name, None) is not None
    }
    for item in args.set or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError("planner_settings", f"--set takes KEY=VALUE, got {item!r}")
        try:
            settings[key] = json.loads(text)
        except json.JSONDecodeError:
            settings[key] = text  # a bare word: a string setting
    return settings


#: Options of `mbrl train pets` that a resumed run may not change (its config.json holds them).
_FIXED_ON_RESUME = ("config", "env_id", "action_repeat", "planner", "horizon", "population",
                    "iterations", "set", "particles", "seed", "out", "randomize", "risk",
                    "risk_epsilon")


def _cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    if args.algorithm == "planet":
        return _cmd_train_planet(args)
    if args.preset is not None:
        from mbrl.errors import UserError

        raise UserError("--preset is for `mbrl train planet` (PETS takes --config FILE)")

    from tqdm import tqdm

    from mbrl.algorithms.pets import (
        PETSConfig,
        make_training_env,
        train_pets,
    )
    from mbrl.config import load as load_config
    from mbrl.errors import RunDirError
    from mbrl.runs.rundir import CONFIG, completed_episodes, new_run_dir

    if args.resume:
        refuse_on_resume(args, _FIXED_ON_RESUME, "--episodes")
        run_dir = Path(args.resume)
        if not (run_dir / CONFIG).is_file():
            raise RunDirError(f"cannot resume {run_dir}: {run_dir / CONFIG} is missing (is it a "
                              "run directory of `mbrl train pets`?)")
        config = load_config(PETSConfig, run_dir / CONFIG)
        if args.episodes is not None:
            config = dataclasses.replace(config, episodes=args.episodes)
        print(f"resuming {run_dir} after {completed_episodes(run_dir)} completed episodes")
    else:
        config = load_config(PETSConfig, args.config) if args.config else PETSConfig()
        config = _override(config, args)
        if config.randomize is not None:
            make_training_env(config).close()  # settings the robot refuses: before any file
        run_dir = new_run_dir(args.out or "runs", f"pets-{config.env_id}")
        print(f"run directory: {run_dir}")
    try:
        rows = train_pets(
            config, run_dir, resume=bool(args.resume),
            progress=lambda episodes: tqdm(episodes, desc=f"PETS {config.env_id}",
                                           unit="episode"),
        )
    except KeyboardInterrupt:
        print(f"\nmbrl train: interrupted with {completed_episodes(run_dir)} of {config.episodes} "
              f"episodes saved; continue with: mbrl train pets --resume {run_dir}",
              file=sys.stderr)
        return 130
    for row in rows:
        diverged = int(row.get("diverged_replans", 0))
        print(f"episode {int(row['episode']):3d}  env steps {int(row['env_steps']):6d}  "
              f"return {row['return']:9.2f}  holdout mse {row['holdout_mse']:.4g}"
              + (f"  diverged replans {diverged} (safe fallback played)" if diverged else ""))
    print(f"learning curve: {run_dir / 'learning_curve.png'}")
    return 0


#: Options of `mbrl train` that are PETS's alone.
_PETS_ONLY = ("particles", "risk", "risk_epsilon", "randomize")
#: Options of `mbrl train planet` that a resumed run may not change.
_PLANET_FIXED_ON_RESUME = ("config", "preset", "env_id", "action_repeat", "planner", "horizon",
                           "population", "iterations", "set", "seed", "out")


def _cmd_train_planet(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from mbrl.algorithms.planet import (
        PlaNetConfig,
        check_env,
        make_env,
        preset,
        train_planet,
    )
    from mbrl.config import from_dict
    from mbrl.config import load as load_config
    from mbrl.errors import UserError
    from mbrl.runs.rundir import completed_episodes, new_run_dir, read_run_config

    pets_only = ["--" + name.replace("_", "-") for name in _PETS_ONLY
                 if getattr(args, name) is not None]
    if pets_only:
        raise UserError(f"{', '.join(pets_only)}: PETS options, not for `mbrl train planet`")
    if args.resume:
        refuse_on_resume(args, _PLANET_FIXED_ON_RESUME, "--episodes")
        run_dir = Path(args.resume)
        config = read_run_config(PlaNetConfig, run_dir / "config.json", "mbrl train planet")
        if args.episodes is not None:
            config = dataclasses.replace(config, episodes=args.episodes)
        print(f"resuming {run_dir} after {completed_episodes(run_dir)} completed episodes")
    else:
        if args.config and args.preset:
            raise UserError("--config and --preset: give one of them")
        base = (load_config(PlaNetConfig, args.config) if args.config
                else preset(args.preset or "planet_paper", args.env_id))
        values = dataclasses.asdict(base)
        for name in ("env_id", "episodes", "action_repeat", "seed", "horizon", "planner"):
            if getattr(args, name) is not None:
                values[name] = getattr(args, name)
        if args.planner is not None and args.planner != base.planner:
            values["planner_settings"] = {}
        values["planner_settings"] = {**values["planner_settings"], **planner_settings(args)}
        if "population" in planner_settings(args) and "elites" not in planner_settings(args):
            values["planner_settings"].pop("elites", None)
        config = from_dict(PlaNetConfig, values)
        env = make_env(config)
        check_env(config, env)  # an env that cannot render, a chunk too long: before any file
        env.close()
        run_dir = new_run_dir(args.out or "runs", f"planet-{config.env_id}")
        print(f"run directory: {run_dir}")
    try:
        rows = train_planet(
            config, run_dir, resume=bool(args.resume),
            progress=lambda episodes: tqdm(episodes, desc=f"PlaNet {config.env_id}",
                                           unit="episode"),
        )
    except KeyboardInterrupt:
        print(f"\nmbrl train: interrupted with {completed_episodes(run_dir)} of "
              f"{config.episodes} episodes saved; continue with: mbrl train planet --resume "
              f"{run_dir}", file=sys.stderr)
        return 130
    for row in rows:
        evaluation = row["eval_return"]
        print(f"episode {int(row['episode']):3d}  env steps {int(row['env_steps']):6d}  "
              f"return {row['return']:8.2f}"
              + (f"  evaluation {evaluation:8.2f}" if evaluation == evaluation else "")
              + f"  open-loop mse {row['open_loop_mse']:.4g}")
    print(f"learning curve: {run_dir / 'learning_curve.png'}; open-loop predictions: "
          f"{run_dir / 'prediction.png'}")
    return 0


def refuse_on_resume(args: argparse.Namespace, fixed: Sequence[str], changeable: str) -> None:
    """Raise `UserError` naming the options of `fixed` given with `--resume`: a run keeps
    the settings in its config.json, but for `changeable`."""
    from mbrl.errors import UserError

    given = [name for name in fixed if getattr(args, name) is not None]
    if given:
        flags = ", ".join("--" + name.replace("_id", "").replace("_", "-") for name in given)
        raise UserError(f"{flags} cannot be given with --resume: a run keeps the settings in "
                        f"its config.json (only {changeable} may change)")


def _cmd_bench_planners(args: argparse.Namespace) -> int:

    from tqdm import tqdm

    from mbrl.experiments import planner_grid
    from mbrl.files import write_json
    from mbrl.runs.provenance import provenance
    from mbrl.runs.rundir import check_out_folder

    preset = planner_grid.PRESETS[args.preset]
    for name in ("planners", "tasks", "dynamics", "budgets_ms", "seeds"):
        if getattr(args, name) is None:
            setattr(args, name, preset[name])
    cells, left_out = planner_grid.grid(args.planners, args.tasks, args.budgets_ms, args.seeds,
                                        args.dynamics)
    for entry in left_out:
        print(f"left out: {entry['planner']} on {entry['task']} through the {entry['dynamics']}"
              f": {entry['reason']}")
    out = check_out_folder(args.out)
    rows = planner_grid.run_grid(
        cells, out,
        progress=lambda rows, done, total: tqdm(rows, desc="planner grid", unit="cell",
                                                initial=done, total=total),
        ray_address=args.ray,
    )
    points = planner_grid.summarise(rows)
    write_json(out / "planner_grid.json", {
        **provenance(outputs=[out]), "grid": {"preset": args.preset,
                                              "planners": args.planners, "tasks": args.tasks,
                                 "dynamics": args.dynamics, "budgets_ms": args.budgets_ms,
                                 "seeds": args.seeds},
        "left_out": left_out,
        "tasks": {name: planner_grid.describe(name) for name in args.tasks},
        "models": planner_grid.model_settings() if "ensemble" in args.dynamics else None,
        "summary": points, "cells": rows,
    })
    front = planner_grid.markdown_table(points, only_pareto=True)
    table = (f"## The Pareto front of each task\n\n{front}\n"
             f"## Every point\n\n{planner_grid.markdown_table(points)}")
    (out / "planner_grid.md").write_text(table, encoding="utf-8")
    planner_grid.plot_pareto(points, out / "planner_grid.png")
    print(front)
    print(f"written: {out / 'planner_grid.json'}, {out / 'planner_grid.md'}, "
          f"{out / 'planner_grid.png'}")
    return 0


def physics_scales(items: Sequence[str] | None) -> dict[str, float]:
    """`--physics` values, each `NAME=SCALE[,NAME=SCALE...]`, as one dict.

    Raises:
        UserError: naming the item that is not `NAME=number`.
    """
    from mbrl.errors import UserError

    physics: dict[str, float] = {}
    for item in filter(None, ",".join(items or []).split(",")):
        name, sep, value = item.partition("=")
        try:
            physics[name] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise UserError(f"--physics takes NAME=SCALE[,NAME=SCALE...], got {item!r}")
    return physics


def _override(config: Any, args: argparse.Namespace) -> Any:
    """`config` with the options given on the command line put in."""
    top = {
        name: getattr(args, name)
        for name in ("env_id", "episodes", "action_repeat", "seed", "particles", "horizon",
                     "risk", "risk_epsilon")
        if getattr(args, name) is not None
    }
    if getattr(args, "randomize", None) is not None:
        from mbrl.config import env_wrapper

        top["randomize"] = env_wrapper("randomize").settings(args.randomize)
    given = planner_settings(args)
    if args.planner is not None and args.planner != config.planner:
        # Another planner: the file's settings were for the old one.
        return dataclasses.replace(config, **top, planner=args.planner, planner_settings=given)
    settings = {**config.planner_settings, **given}
    if "population" in given and "elites" not in given:
        settings.pop("elites", None)  # the rule's tenth of the new population
    return dataclasses.replace(config, **top, planner_settings=settings)


#: Options of `mbrl distill` that a resumed run may not change.
_DISTILL_FIXED_ON_RESUME = ("config", "env_id", "action_repeat", "teacher", "horizon", "set",
                            "seed", "out", "beta_schedule", "beta_p", "kl_weight",
                            "episodes_per_iteration", "conditions", "samples", "randomize")


def _cmd_distill(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from mbrl.algorithms.distill import (
        DistillConfig,
        make_env,
        make_teachers,
        make_training_env,
        read_distill_config,
        train_distill,
    )
    from mbrl.config import from_dict
    from mbrl.config import load as load_config
    from mbrl.errors import UserError
    from mbrl.runs.rundir import completed_episodes, new_run_dir

    if args.resume:
        refuse_on_resume(args, _DISTILL_FIXED_ON_RESUME, "--iterations")
        run_dir = Path(args.resume)
        config = read_distill_config(run_dir / "config.json")
        if config.algorithm != args.algorithm:
            raise UserError(f"--resume {run_dir} is a {config.algorithm} run, not "
                            f"{args.algorithm}")
        if args.iterations is not None:
            config = dataclasses.replace(config, iterations=args.iterations)
        print(f"resuming {run_dir} after {completed_episodes(run_dir)} completed iterations")
    else:
        base = load_config(DistillConfig, args.config) if args.config else DistillConfig()
        values = dataclasses.asdict(base)
        values["algorithm"] = args.algorithm
        for name in ("env_id", "action_repeat", "teacher", "horizon", "iterations", "seed",
                     "beta_schedule", "beta_p", "kl_weight", "episodes_per_iteration"):
            if getattr(args, name) is not None:
                values[name] = getattr(args, name)
        if args.randomize is not None:
            from mbrl.config import env_wrapper

            values["randomize"] = env_wrapper("randomize").settings(args.randomize)
        if args.conditions is not None:
            values["gps"]["conditions"] = args.conditions
        if args.samples is not None:
            values["gps"]["samples_per_condition"] = args.samples
        if args.teacher is not None and args.teacher != base.teacher:
            values["teacher_settings"] = {}
        values["teacher_settings"] = {**values["teacher_settings"],
                                      **planner_settings(argparse.Namespace(set=args.set))}
        config = from_dict(DistillConfig, values)
        if config.algorithm != "gps":  # a teacher that cannot teach: before any file
            make_teachers(config, make_env(config))
        make_training_env(config).close()  # randomisation the robot refuses: the same
        run_dir = new_run_dir(args.out or "runs", f"distill-{config.algorithm}-{config.env_id}")
        print(f"run directory: {run_dir}")
    bar = tqdm(total=config.iterations, initial=completed_episodes(run_dir) if args.resume
               else 0, desc=f"{config.algorithm} {config.env_id}", unit="iteration")
    try:
        rows = train_distill(config, run_dir, resume=bool(args.resume),
                             on_iteration=lambda _: bar.update())
    except KeyboardInterrupt:
        bar.close()
        print(f"\nmbrl distill: interrupted with {completed_episodes(run_dir)} of "
              f"{config.iterations} iterations saved; continue with: mbrl distill "
              f"{config.algorithm} --resume {run_dir}", file=sys.stderr)
        return 130
    bar.close()
    for row in rows:
        print(f"iteration {int(row['iteration']):3d}  teacher queries "
              f"{int(row['teacher_queries']):6d}  student {row['student_return']:8.2f}  "
              f"teacher {row['teacher_return']:8.2f}  violations {int(row['violations'])}")
    print(f"student: {run_dir / 'student.pt'}; learning curve: {run_dir / 'learning_curve.png'}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mbrl.algorithms.distill import evaluate_student, is_distill_run
    from mbrl.algorithms.pets import evaluate_pets
    from mbrl.algorithms.planet import evaluate_planet, is_planet_run
    from mbrl.errors import UserError

    run_dir = Path(args.run_dir)
    student, latent = is_distill_run(run_dir), is_planet_run(run_dir)
    if student or latent:
        shifted = [f"--{name.replace('_', '-')}" for name in ("env", "physics", "risk",
                                                              "risk_epsilon")
                   if getattr(args, name) is not None]
        if shifted:
            what = "a distilled student" if student else "a PlaNet run"
            raise UserError(f"{', '.join(shifted)}: not for {what} (it runs on its own "
                            "robot)")
        evaluate = evaluate_student if student else evaluate_planet
        result = evaluate(run_dir, episodes=args.episodes, seed=args.seed,
                          video=not args.no_video)
        print(json.dumps(result, indent=2))
        return 0

    result = evaluate_pets(Path(args.run_dir), episodes=args.episodes, seed=args.seed,
                           video=not args.no_video, env_id=args.env,
                           physics=physics_scales(args.physics), risk=args.risk,
                           risk_epsilon=args.risk_epsilon)
    print(json.dumps(result, indent=2))
    return 0


class DefaultsOnce(argparse.ArgumentDefaultsHelpFormatter):
    """Appends an option's default to its help, once: not where the help states it already,
    nor where there is none (a default of None means "not given")."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "(default:" in text or action.default is None or action.default is argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


#: The subcommands: name, one line of help, and what adds its parser.
_COMMANDS: dict[str, tuple[str, Callable[[Any], None]]] = {}


#: The entry-point group where packages above `mbrl` (which it may not import) add
#: subcommands: each entry is a dict like `_COMMANDS` (`sim2real.cli:COMMANDS` adds deploy,
#: sim-robot and replay).
COMMAND_GROUP = "mbrl.commands"


def _all_commands() -> dict[str, tuple[str, Callable[[Any], None]]]:
    from importlib.metadata import entry_points

    commands = dict(_COMMANDS)
    for entry in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name):
        commands.update(entry.load())
    return commands


def build_parser(only: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser of `mbrl` and its subcommands; with `only`, the subcommands not
    in it get a line of help and no options, so that `mbrl --help` imports nothing heavy
    (each subcommand's options read their defaults from the library)."""
    # No abbreviated options: `--budget` must not quietly mean `--budgets-ms`.
    parser = argparse.ArgumentParser(
        prog="mbrl", allow_abbrev=False, description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (summary, add) in _all_commands().items():
        if only is None or name in only:
            add(commands)
        else:
            commands.add_parser(name, help=summary, add_help=False)
    return parser


def _add_envs(commands: Any) -> None:
    """`mbrl envs`."""
    listing = commands.add_parser(
        "envs", help="list the registered robots and tasks", allow_abbrev=False,
        description="List every registered env id with what it asks.")
    listing.set_defaults(run=_cmd_envs, parser=listing)


def _add_planners(commands: Any) -> None:
    """`mbrl planners`."""
    listing = commands.add_parser(
        "planners", help="list the registered planners", allow_abbrev=False,
        description="List every planner of the registry (mbrl.control.planners) with what it "
        "does and the dataclass that holds its settings.")
    listing.set_defaults(run=_cmd_planners, parser=listing)


def _add_plan(commands: Any) -> None:
    """`mbrl plan`."""
    from mbrl.experiments.plan import PlanConfig

    defaults = PlanConfig()
    plan = commands.add_parser(
        "plan", help="run MPC with any planner through the simulator or a trained model",
        allow_abbrev=False,
        description="One MPC episode with a registered planner (see `mbrl planners`), planning "
        "through the exact physics (the bound a learned model can at best reach) or, with "
        "--model, through a PETS run's ensemble; then a run directory with config.json, "
        "trajectory.csv, trajectory.png, summary.json and episode.mp4.",
        formatter_class=DefaultsOnce,
    )
    plan.add_argument("--planner", default=defaults.planner,
                      help="a registered planner, see `mbrl planners`")
    plan.add_argument("--env", help=f"env id, see `mbrl envs` (default: {defaults.env_id}; "
                      "with --model: the run's)")
    plan.add_argument("--model", metavar="RUN_DIR",
                      help="plan through this `mbrl train pets` run's model instead of the "
                      "true simulator")
    plan.add_argument("--steps", type=positive_int, default=defaults.steps,
                      help="control steps in the episode")
    plan.add_argument("--action-repeat", type=positive_int,
                      help=f"simulator steps per control step (default: "
                      f"{defaults.action_repeat}; with --model: the run's)")
    plan.add_argument("--horizon", type=positive_int, default=defaults.horizon,
                      help="planning horizon in control steps")
    add_planner_settings(plan, "the registry's", "the registry's")
    plan.add_argument("--replan-every", type=positive_int, default=defaults.replan_every,
                      help="replan every this many control steps")
    plan.add_argument("--budget-ms", type=float,
                      help="wall-clock budget of a replan, milliseconds (default: unlimited)")
    plan.add_argument("--seed", type=int, default=defaults.seed, help="episode and planner seed")
    plan.add_argument("--out", default="runs", help="folder for run directories")
    plan.add_argument("--no-video", action="store_true", help="do not render a video")
    plan.set_defaults(run=_cmd_plan, parser=plan)


def _add_train(commands: Any) -> None:
    """`mbrl train`."""
    from mbrl.algorithms.pets import PETSConfig

    pets_defaults = PETSConfig()
    train = commands.add_parser(
        "train", help="learn a dynamics model and plan through it (PETS, PlaNet)",
        allow_abbrev=False,
        description="pets (Chua et al. 2018): random episodes, then fit a probabilistic "
        "ensemble and plan through it (CEM, or any registered planner), episode after "
        "episode. planet (Hafner et al. 2019): the same from 64x64 camera frames alone, "
        "through a recurrent state-space model's latent space (--preset planet_paper, the "
        "paper's settings, or planet_cpu, sized for a laptop CPU). Both write config.json, "
        "metrics.csv, model.pt, replay_buffer.npz, learning_curve.png and TensorBoard "
        "scalars (planet also prediction.png and .mp4: held-out frames beside the model's "
        "open-loop predictions); --resume continues a killed run from its last completed "
        "episode.",
        formatter_class=DefaultsOnce,
    )
    train.add_argument("algorithm", choices=["pets", "planet"], help="the algorithm")
    train.add_argument("--preset", choices=["planet_paper", "planet_cpu"],
                       help="planet's settings: the paper's, or sized for a 2-core CPU "
                       "(default: planet_paper)")
    train.add_argument("--threads", type=positive_int,
                       help="torch threads (a resumed run gives the same results on as many "
                       "threads as it ran on) (default: torch's)")
    train.add_argument("--config", metavar="FILE",
                       help="a PETS or PlaNet config (JSON, as a run's config.json); the "
                       "options below override it (default: the built-in settings)")
    train.add_argument("--env", dest="env_id",
                       help=f"env id, see `mbrl envs` (default: {pets_defaults.env_id})")
    train.add_argument("--episodes", type=positive_int,
                       help=f"episodes in all, the random ones included "
                       f"(default: PETS {pets_defaults.episodes}, PlaNet the preset's)")
    train.add_argument("--action-repeat", type=positive_int,
                       help=f"simulator steps per control step "
                       f"(default: {pets_defaults.action_repeat})")
    train.add_argument("--planner",
                       help=f"a registered planner, see `mbrl planners`; another than the "
                       f"config's starts from the registry's settings "
                       f"(default: {pets_defaults.planner})")
    train.add_argument("--horizon", type=positive_int,
                       help=f"planning horizon in control steps "
                       f"(default: {pets_defaults.horizon})")
    add_planner_settings(train, pets_defaults.planner_settings.get("population"),
                          pets_defaults.planner_settings.get("iterations"))
    train.add_argument("--particles", type=positive_int,
                       help=f"particles per candidate, a multiple of the ensemble size "
                       f"(default: {pets_defaults.particles})")
    train.add_argument("--seed", type=int, help=f"run seed (default: {pets_defaults.seed})")
    add_risk(train, f"(default: {pets_defaults.risk}, PETS's)",
             f"(default: {pets_defaults.risk_epsilon})")
    train.add_argument("--randomize", metavar="FILE",
                       help="train across randomised robots: a domain-randomisation config "
                       "(JSON, sim2real.randomization.RandomizationConfig) or a preset "
                       "(peng2018); each episode's draw is written to metrics.csv "
                       "(default: the nominal robot)")
    train.add_argument("--out", help="folder for run directories (default: runs)")
    train.add_argument("--resume", metavar="RUN_DIR",
                       help="continue this run directory from its last completed episode, with "
                       "the settings in its config.json; --episodes may extend or shorten it")
    train.set_defaults(run=_cmd_train, parser=train)


def add_risk(parser: argparse.ArgumentParser, risk_default: str, epsilon_default: str) -> None:
    """`--risk` and `--risk-epsilon`: how a candidate's particle returns become its score."""
    from controllers.risk import OBJECTIVES

    parser.add_argument("--risk", choices=OBJECTIVES,
                        help="score a plan by its particles' mean return, the worst one, or "
                        f"the CVaR of the worst --risk-epsilon fraction (EPOpt) {risk_default}")
    parser.add_argument("--risk-epsilon", type=float, metavar="EPSILON",
                        help=f"the fraction of particles --risk cvar averages, in (0, 1] "
                        f"{epsilon_default}")


def _add_eval(commands: Any) -> None:
    """`mbrl eval`."""
    evaluate = commands.add_parser(
        "eval", help="replay a trained run's model and planner (PETS, PlaNet), or its student",
        allow_abbrev=False,
        description="Load RUN_DIR's model and planner settings (a `mbrl train` run) or its "
        "student (a `mbrl distill` run), run episodes, and write eval.json (and eval.mp4 of "
        "the first episode where rendering works).",
        formatter_class=DefaultsOnce,
    )
    evaluate.add_argument("run_dir", metavar="RUN_DIR", help="a run directory of `mbrl train`")
    evaluate.add_argument("--episodes", type=positive_int, default=1, help="episodes to run")
    evaluate.add_argument("--seed", type=int, default=12345, help="evaluation seed")
    evaluate.add_argument("--no-video", action="store_true", help="do not render a video")
    evaluate.add_argument("--env", help="evaluate on this robot instead (the same observations "
                          "and actions, e.g. another backend's cart-pole) (default: the run's)")
    evaluate.add_argument("--physics", action="append", metavar="NAME=SCALE[,...]",
                          help="evaluate with these physics scales (mass_scale, damping_scale, "
                          "friction_scale, actuator_gain_scale); results go to "
                          "eval-<env>-<scales>.json (default: the nominal robot)")
    add_risk(evaluate, "(default: the run's)", "(default: the run's)")
    evaluate.set_defaults(run=_cmd_eval, parser=evaluate)


def _add_distill(commands: Any) -> None:
    """`mbrl distill`."""
    from mbrl.algorithms.distill import ALGORITHMS, DistillConfig

    defaults = DistillConfig()
    distill = commands.add_parser(
        "distill", help="teach a neural policy with a planner (DAgger, PLATO, GPS)",
        allow_abbrev=False,
        description="Distil a planner into a neural policy: behaviour cloning (bc), DAgger "
        "(Ross et al. 2011), PLATO (Kahn et al. 2017) or mirror-descent guided policy search "
        "(gps, Montgomery & Levine 2016). The teacher is a registered planner run as MPC on "
        "the true simulator, or a `mbrl train pets` run directory (its planner and learned "
        "model); gps needs no teacher (its local controllers are the teachers). Writes "
        "config.json, metrics.csv, student.pt, learning_curve.png and student.mp4; --resume "
        "continues a killed run from its last completed iteration.",
        formatter_class=DefaultsOnce,
    )
    distill.add_argument("algorithm", choices=ALGORITHMS, help="the algorithm")
    distill.add_argument("--config", metavar="FILE",
                         help="a distillation config (JSON, as a run's config.json); the "
                         "options below override it")
    distill.add_argument("--env", dest="env_id",
                         help=f"env id, see `mbrl envs` (default: {defaults.env_id})")
    distill.add_argument("--teacher", metavar="PLANNER|RUN_DIR",
                         help=f"a registered planner on the true simulator (see `mbrl "
                         f"planners`) or a PETS run directory (default: {defaults.teacher})")
    distill.add_argument("--action-repeat", type=positive_int,
                         help=f"simulator steps per control step (default: "
                         f"{defaults.action_repeat}; a run teacher's must match)")
    distill.add_argument("--horizon", type=positive_int,
                         help=f"the simulator teacher's horizon (default: {defaults.horizon})")
    distill.add_argument("--set", action="append", metavar="KEY=VALUE",
                         help="a setting of the teacher's planner, as JSON (--set "
                         "population=100); repeatable")
    distill.add_argument("--iterations", type=positive_int,
                         help=f"iterations (default: {defaults.iterations})")
    distill.add_argument("--episodes-per-iteration", type=positive_int,
                         help=f"episodes per iteration (default: "
                         f"{defaults.episodes_per_iteration})")
    distill.add_argument("--beta-schedule", choices=("once", "geometric", "always"),
                         help=f"DAgger's teacher share: 1 then 0, p**i, or always 1 "
                         f"(default: {defaults.beta_schedule})")
    distill.add_argument("--beta-p", type=float,
                         help=f"p of the geometric schedule (default: {defaults.beta_p})")
    distill.add_argument("--kl-weight", type=float, metavar="LAMBDA",
                         help=f"PLATO's lambda (default: {defaults.kl_weight})")
    distill.add_argument("--conditions", type=positive_int,
                         help=f"gps: initial conditions (default: {defaults.gps.conditions})")
    distill.add_argument("--samples", type=positive_int,
                         help=f"gps: samples per condition and iteration (default: "
                         f"{defaults.gps.samples_per_condition})")
    distill.add_argument("--randomize", metavar="FILE",
                         help="train the student across randomised robots: a domain-"
                         "randomisation config (JSON) or a preset (peng2018); a simulator "
                         "teacher plans with each episode's drawn physics, and the student is "
                         "evaluated on the nominal robot (default: the nominal robot)")
    distill.add_argument("--seed", type=int, help=f"run seed (default: {defaults.seed})")
    distill.add_argument("--out", help="folder for run directories (default: runs)")
    distill.add_argument("--resume", metavar="RUN_DIR",
                         help="continue this run directory from its last completed "
                         "iteration; --iterations may extend it")
    distill.set_defaults(run=_cmd_distill, parser=distill)


def _add_bench(commands: Any) -> None:
    """`mbrl bench`."""
    from mbrl.control.planners import planner_names
    from mbrl.experiments.planner_grid import PRESETS, SOURCES, TASKS

    names = planner_names()

    bench = commands.add_parser(
        "bench", help="benchmark planners", allow_abbrev=False,
        description="Benchmarks that answer which planner to use.")
    benches = bench.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    planners = benches.add_parser(
        "planners", help="planners x tasks x dynamics x budgets x seeds; resumable",
        allow_abbrev=False,
        description="One MPC episode per cell of planners x tasks x dynamics sources x budgets "
        "x seeds, replanning every step under the budget, through the true simulator or a "
        "PETS ensemble fitted once per task to logged data (kept in OUT/models). The "
        "episodes always run on the true simulator. Finished cells are appended "
        "to OUT/cells.jsonl at once, so running the same command again resumes a stopped grid "
        "without recomputing them. Writes OUT/planner_grid.json (provenance, every cell, the "
        "summary), planner_grid.md (a table, Pareto-optimal points in bold) and "
        "planner_grid.png (return against ms per replan, the Pareto front drawn).",
        formatter_class=DefaultsOnce,
    )
    planners.add_argument("--preset", choices=list(PRESETS), default="default",
                          help="a named grid (the options below change it): "
                          + "; ".join(f"{name}: {', '.join(grid['planners'])} on "
                                      f"{', '.join(grid['tasks'])}"
                                      for name, grid in PRESETS.items()))
    planners.add_argument("--planners", nargs="+", choices=names, metavar="PLANNER",
                          help=f"from: {', '.join(names)} (default: the preset's)")
    planners.add_argument("--tasks", nargs="+", choices=list(TASKS), metavar="TASK",
                          help=f"from: {', '.join(TASKS)} (default: the preset's)")
    planners.add_argument("--dynamics", nargs="+", choices=SOURCES, metavar="SOURCE",
                          help=f"what the planners plan through, from: {', '.join(SOURCES)} "
                          "(default: the preset's)")
    planners.add_argument("--budgets-ms", nargs="+", type=float,
                          help="wall-clock budgets per replan, milliseconds (default: the "
                          "preset's)")
    planners.add_argument("--seeds", nargs="+", type=int,
                          help="episode and planner seeds (default: the preset's)")
    planners.add_argument("--out", default="runs/planner-grid",
                          help="output folder; an existing one is resumed")
    planners.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                          help="fan the cells out over Ray: alone, a Ray instance started on "
                          "this machine; with an address (auto, ray://HOST:10001), that "
                          "cluster (default: run here, one cell after another)")
    planners.set_defaults(run=_cmd_bench_planners, parser=planners)


_COMMANDS.update({
    "envs": ("list the registered robots and tasks", _add_envs),
    "planners": ("list the registered planners", _add_planners),
    "plan": ("run MPC with any planner through the simulator or a trained model", _add_plan),
    "train": ("learn a dynamics model and plan through it (PETS)", _add_train),
    "distill": ("teach a neural policy with a planner (DAgger, PLATO, GPS)", _add_distill),
    "eval": ("replay a trained run's model and planner, or its student", _add_eval),
    "bench": ("benchmark planners", _add_bench),
})


def add_planner_settings(parser: argparse.ArgumentParser, population: object,
                          iterations: object) -> None:
    """The options that change the planner's settings (see `planner_settings`)."""
    parser.add_argument("--population", type=positive_int,
                        help=f"samples per iteration, for the sampling planners (CEM's elites "
                        f"are a tenth) (default: {population})")
    parser.add_argument("--iterations", type=positive_int,
                        help=f"planner iterations per replan (default: {iterations})")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="any other planner setting, as JSON (--set temperature=0.2); "
                        "repeatable")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mbrl` command."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    given = list(sys.argv[1:] if argv is None else argv)
    chosen = next((word for word in given if not word.startswith("-")), None)
    parser = build_parser(only={chosen} if chosen else set())
    args, unknown = parser.parse_known_args(given)
    command = args.parser  # the subcommand's own parser: its usage goes with its errors
    if unknown:
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    from controllers.validation import ConfigError
    from mbrl.errors import UserError

    try:
        code: int = args.run(args)
    except (ConfigError, UserError) as error:
        command.exit(2, f"{command.prog}: error: {_one_line(error)}\n")
    except KeyboardInterrupt:
        command.exit(130, f"\n{command.prog}: interrupted\n")
    return code


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


if __name__ == "__main__":
    sys.exit(main())
