"""Distillation: planners teach neural policies, and a policy seeds a real-time planner.

1. Student return against teacher queries for behaviour cloning, DAgger, PLATO and MDGPS on
   the MuJoCo cart-pole swing-up and on the two-link reacher (a new random target and arm
   pose each episode: several start states). The teacher is CEM MPC on the true simulator;
   MDGPS's teachers are its local controllers (its queries are their sampled steps). Target:
   a student within 5% of its teacher's return.
2. Safety violations during training on the cart-pole (the cart off the middle of its rail,
   or the pole falling after balance), PLATO against DAgger. Target: at most half.
3. Inference: one observation through the student against one teacher replan, same core.
   Targets: at least 1,000 times faster, and at least 5 kHz.
4. 50 Hz MPC through a learned ensemble (the `pets_realtime` controller: CEM, 40 samples, one
   iteration, 20 ms budget) with and without the student's own actions among the candidates,
   the student distilled by DAgger from that run's PETS planner. Target: return >= 800.

    python -m benchmarks.distillation [--seeds 0] [--workers 2] [--quick]

Each job's result is kept under --work, so a killed run continues. Writes
benchmarks/results/distillation.json and .png.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

import envs
from benchmarks.jobs import Job, result_path, run_jobs
from benchmarks.pets_realtime import CONFIGS, evaluate
from benchmarks.provenance import RESULTS, provenance
from controllers.policy import PolicyConfig
from mbrl.algorithms.distill import EVAL_SEED, DistillConfig, make_env, make_teachers, train_distill
from mbrl.algorithms.gps import GPSConfig
from mbrl.algorithms.pets import PETSConfig, load_run
from mbrl.config import load as load_config
from mbrl.control.episodes import rollout
from mbrl.learning.checkpoint import load_policy
from mbrl.learning.policy_training import PolicyTrainConfig

ALGORITHMS = ("bc", "dagger", "plato", "gps")
#: The tasks and their runs' settings (the teacher: CEM on the true simulator).
TASKS: dict[str, DistillConfig] = {
    "cartpole": DistillConfig(
        env_id="mujoco/cartpole-swingup", action_repeat=8, teacher="cem", horizon=15,
        teacher_settings={"population": 100, "iterations": 3}, iterations=10,
        eval_episodes=3, kl_weight=0.3, policy=PolicyConfig(hidden_sizes=(64, 64)),
        gps=GPSConfig(conditions=4, samples_per_condition=5),
    ),
    "reacher": DistillConfig(
        env_id="mujoco/reacher-2link", action_repeat=2, teacher="cem", horizon=10,
        teacher_settings={"population": 100, "iterations": 3}, iterations=10,
        eval_episodes=3, kl_weight=0.3, policy=PolicyConfig(hidden_sizes=(64, 64)),
        gps=GPSConfig(conditions=4, samples_per_condition=5),
    ),
}
#: MDGPS's iterations (each samples every condition; a DAgger iteration is one episode).
GPS_ITERATIONS = 20
#: PLATO at other weights lambda of the KL to the student, on the cart-pole (first seed).
PLATO_LAMBDAS = {"plato-lambda1": 1.0, "plato-lambda3": 3.0}
#: DAgger on the reacher with four times the labels (first seed): whether more data closes
#: the gap that ten iterations leave.
REACHER_LONG = {"dagger-40": 40}
#: The PETS run whose model teaches the real-time student (`pets_realtime`'s source).
PETS_RUN = Path("runs/bench-pets/dmc-cartpole-swingup-seed0")
TARGET_RATIO, TARGET_SPEEDUP, TARGET_HZ, TARGET_RETURN, TARGET_SAFETY = (
    0.95, 1000.0, 5000.0, 800.0, 0.5)


def task_config(task: str, algorithm: str, seed: int, quick: bool) -> DistillConfig:
    config = dataclasses.replace(TASKS[task], algorithm=algorithm, seed=seed)
    if algorithm == "gps":
        config = dataclasses.replace(config, iterations=GPS_ITERATIONS)
    if quick:
        config = dataclasses.replace(
            config, iterations=2, episode_steps=10, eval_episodes=1,
            teacher_settings={"population": 16, "iterations": 1},
            fit=PolicyTrainConfig(epochs=5),
            gps=dataclasses.replace(config.gps, conditions=2, samples_per_condition=2,
                                    min_points_per_cluster=10))
    return config


def distill_job(work: Path, key: str, config: DistillConfig) -> dict[str, Any]:
    """One distillation run (resumed if its directory exists)."""
    run_dir = work / "runs" / key.replace("/", "-")
    started = time.perf_counter()
    rows = train_distill(config, run_dir, resume=(run_dir / "config.json").is_file())
    return {"run_dir": str(run_dir), "rows": rows, "seconds": time.perf_counter() - started}


def inference_job(work: Path, task: str, run_dir: str, quick: bool) -> dict[str, Any]:
    """Single-observation inference: the student's `act` against one teacher replan, in this
    process (one core), on states of one teacher episode."""
    config = TASKS[task]
    student, _ = load_policy(Path(run_dir) / "student.pt")
    env = make_env(config)
    teacher = make_teachers(config, env).plain(0)
    obs, _ = env.reset(seed=EVAL_SEED)
    teacher.reset()
    teacher_ms = []
    for _ in range(5 if quick else 30):
        started = time.perf_counter()
        action = teacher.label(obs)
        teacher_ms.append((time.perf_counter() - started) * 1e3)
        obs, *_ = env.step(action)
    calls = 2_000 if quick else 20_000
    blocks = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            student.act(obs)
        blocks.append((time.perf_counter() - started) / calls * 1e6)
    x = torch.from_numpy(obs).float()[None]
    with torch.inference_mode():
        started = time.perf_counter()
        for _ in range(calls // 10):
            student.mean_action(x)
        module_us = (time.perf_counter() - started) / (calls // 10) * 1e6
    student_us = float(np.median(blocks))
    teacher_ms_median = float(np.median(teacher_ms))
    return {"student_us": student_us, "student_us_blocks": blocks,
            "student_hz": 1e6 / student_us, "torch_module_us": module_us,
            "teacher_ms": teacher_ms, "teacher_ms_median": teacher_ms_median,
            "speedup": teacher_ms_median * 1e3 / student_us}


def realtime_job(work: Path, student_dir: str | None, episodes: int,
                 return_mean: bool) -> dict[str, Any]:
    """The 50 Hz controller through the PETS run's ensemble, policy-seeded where
    `student_dir` is given, playing the elites' mean (the real-time config's) or, without
    `return_mean`, the best candidate; and the student alone at its own period."""
    config = load_config(PETSConfig, CONFIGS / "pets_cartpole_realtime.json")
    config = dataclasses.replace(config, planner_settings={**config.planner_settings,
                                                           "return_mean": return_mean})
    _, model = load_run(PETS_RUN)
    task = envs.make(config.env_id, action_repeat=config.action_repeat).task
    policy = None
    student_returns: list[float] = []
    if student_dir is not None:
        student, _ = load_policy(Path(student_dir) / "student.pt")
        policy = student.mean_action
        env = envs.make(config.env_id, action_repeat=config.action_repeat)
        student_returns = [rollout(env, student, seed=10_000 + e).episode_return
                           for e in range(episodes)]
    results = evaluate(model, task, config, episodes, policy=policy, quiet=True)
    plan_ms = np.concatenate([np.asarray(r["plan_ms"]) for r in results])
    return {"returns": [r["return"] for r in results],
            "mean_return": float(np.mean([r["return"] for r in results])),
            "plan_ms_median": float(np.median(plan_ms)),
            "plan_ms_p95": float(np.percentile(plan_ms, 95)),
            "fallbacks": int(sum(r["fallbacks"] for r in results)), "replans": int(plan_ms.size),
            "student_returns": student_returns}


def jobs(work: Path, seeds: list[int], quick: bool, realtime_episodes: int) -> list[Job]:
    planned: list[Job] = []
    # The real-time student first: its teacher (PETS's planner) is the slowest.
    pets_student = DistillConfig(
        algorithm="dagger", env_id="dmc/cartpole-swingup", action_repeat=8,
        teacher=str(PETS_RUN), iterations=2 if quick else 8, eval_episodes=1 if quick else 3,
        policy=PolicyConfig(hidden_sizes=(64, 64)))
    if quick:
        pets_student = dataclasses.replace(
            pets_student, episode_steps=10,
            teacher_settings={"population": 20, "iterations": 1},
            fit=PolicyTrainConfig(epochs=5))
    planned.append(Job("distill/pets-cartpole/dagger/s0", distill_job,
                       (work, "distill/pets-cartpole/dagger/s0", pets_student), []))
    for seed in seeds:
        for task in TASKS:
            for algorithm in ALGORITHMS:
                key = f"distill/{task}/{algorithm}/s{seed}"
                planned.append(Job(key, distill_job,
                                   (work, key, task_config(task, algorithm, seed, quick)), []))
    for name, weight in PLATO_LAMBDAS.items():
        key = f"distill/cartpole/{name}/s{seeds[0]}"
        config = dataclasses.replace(task_config("cartpole", "plato", seeds[0], quick),
                                     kl_weight=weight)
        planned.append(Job(key, distill_job, (work, key, config), []))
    for name, iterations in REACHER_LONG.items():
        key = f"distill/reacher/{name}/s{seeds[0]}"
        config = dataclasses.replace(task_config("reacher", "dagger", seeds[0], quick),
                                     iterations=2 if quick else iterations)
        planned.append(Job(key, distill_job, (work, key, config), []))
    for task in TASKS:
        key = f"distill/{task}/dagger/s{seeds[0]}"
        run_dir = work / "runs" / key.replace("/", "-")
        planned.append(Job(f"inference/{task}", inference_job,
                           (work, task, str(run_dir), quick), [key]))
    student_dir = str(work / "runs" / "distill-pets-cartpole-dagger-s0")
    for plays, return_mean in (("mean", True), ("best", False)):
        planned.append(Job(f"realtime/plain-{plays}", realtime_job,
                           (work, None, realtime_episodes, return_mean), []))
        planned.append(Job(f"realtime/seeded-{plays}", realtime_job,
                           (work, student_dir, realtime_episodes, return_mean),
                           ["distill/pets-cartpole/dagger/s0"]))
    return planned


def shortfall(student: float, teacher: float) -> float:
    """How far the student's return falls below the teacher's, as a fraction of |teacher|
    (negative: the student does better)."""
    return float((teacher - student) / abs(teacher))


def within_target(key: str, curve: dict[str, Any]) -> dict[str, Any]:
    """The 5% target of one curve: from new start states, and for MDGPS from its conditions'
    start states (where its teachers act), which is what it is judged on."""
    gps = key.endswith("/gps")
    judged = curve["final_shortfall_conditions"] if gps else curve["final_shortfall"]
    return {"shortfall": curve["final_shortfall"],
            **({"shortfall_on_conditions": judged} if gps else {}),
            "met": judged <= 1 - TARGET_RATIO}


def summarise(done: dict[str, dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    curves: dict[str, dict[str, Any]] = {}
    variants = [(task, algorithm, seeds) for task in TASKS for algorithm in ALGORITHMS]
    variants += [("cartpole", name, seeds[:1]) for name in PLATO_LAMBDAS]
    variants += [("reacher", name, seeds[:1]) for name in REACHER_LONG]
    for task, algorithm, run_seeds in variants:
        runs = [done[f"distill/{task}/{algorithm}/s{s}"]["rows"] for s in run_seeds]
        final_student = [rows[-1]["student_return"] for rows in runs]
        final_teacher = [rows[-1]["teacher_return"] for rows in runs]
        best = [max(r["student_return"] for r in rows) for rows in runs]
        curves[f"{task}/{algorithm}"] = {
            "queries": [r["teacher_queries"] for r in runs[0]],
            "student_return_mean": np.mean([[r["student_return"] for r in rows]
                                            for rows in runs], axis=0).tolist(),
            "teacher_return": float(np.mean(final_teacher)),
            "final_student_return": float(np.mean(final_student)),
            # The shortfall from the teacher, a fraction of the teacher's return's size
            # (the reacher's returns are negative, so a ratio would mislead).
            "final_shortfall": shortfall(np.mean(final_student), np.mean(final_teacher)),
            "final_shortfall_per_seed": [shortfall(s, t) for s, t in zip(
                final_student, final_teacher, strict=True)],
            "best_student_return": float(np.mean(best)),
            # MDGPS's teachers are its local controllers, which know only their conditions'
            # start states: the like-for-like comparison is the student from those starts.
            "final_student_return_conditions": float(np.mean(
                [rows[-1].get("student_return_conditions", np.nan) for rows in runs])),
            "final_shortfall_conditions": shortfall(
                float(np.mean([rows[-1].get("student_return_conditions", np.nan)
                               for rows in runs])), float(np.mean(final_teacher))),
            "violations": [rows[-1]["violations"] for rows in runs],
            "teacher_queries": runs[0][-1]["teacher_queries"],
            "seconds": [done[f"distill/{task}/{algorithm}/s{s}"]["seconds"]
                        for s in run_seeds],
            "seeds": run_seeds,
        }
    dagger_v = float(np.mean(curves["cartpole/dagger"]["violations"]))
    plato_v = {name: float(np.mean(curves[f"cartpole/{name}"]["violations"]))
               for name in ("plato", *PLATO_LAMBDAS)}
    inference = {task: done[f"inference/{task}"] for task in TASKS}
    realtime = {name: done[f"realtime/{name}"]
                for name in ("plain-mean", "seeded-mean", "plain-best", "seeded-best")}
    plain, seeded = realtime["plain-mean"], realtime["seeded-mean"]
    best_seeded = max(realtime["seeded-mean"]["mean_return"],
                      realtime["seeded-best"]["mean_return"])
    targets = {
        "student_within_5pct": {key: within_target(key, c) for key, c in curves.items()},
        "plato_violations_at_most_half_of_dagger": {
            "dagger": dagger_v, **plato_v,
            "met": {name: v <= TARGET_SAFETY * dagger_v for name, v in plato_v.items()}},
        "inference": {task: {"speedup": r["speedup"], "student_hz": r["student_hz"],
                             "met": r["speedup"] >= TARGET_SPEEDUP
                             and r["student_hz"] >= TARGET_HZ}
                      for task, r in inference.items()},
        "policy_seeded_50hz": {
            **{name: r["mean_return"] for name, r in realtime.items()},
            "met": best_seeded >= TARGET_RETURN,
            "plain_elite_mean_beats_seeded": plain["mean_return"] > seeded["mean_return"]},
    }
    return {"curves": curves, "inference": inference, "realtime": realtime,
            "targets": targets}


def plot(summary: dict[str, Any], path: Path) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    for ax, task in zip(axes[0], TASKS, strict=True):
        shown = [*ALGORITHMS, *(PLATO_LAMBDAS if task == "cartpole" else REACHER_LONG)]
        for algorithm in shown:
            c = summary["curves"][f"{task}/{algorithm}"]
            ax.plot(c["queries"], c["student_return_mean"], "o-", ms=3,
                    label=algorithm.replace("plato", "plato lambda 0.3", 1)
                    if algorithm == "plato" else algorithm.replace("-lambda", " lambda "))
        teacher = summary["curves"][f"{task}/dagger"]["teacher_return"]
        ax.axhline(teacher, color="k", ls="--", label="teacher (CEM MPC)")
        ax.axhline(teacher - (1 - TARGET_RATIO) * abs(teacher), color="grey", ls=":",
                   label="5% below the teacher")
        ax.set_xscale("log")
        ax.set_xlabel("teacher queries (MDGPS: local controllers' sampled steps)")
        ax.set_ylabel("student return (mean over seeds)")
        ax.set_title(f"{TASKS[task].env_id}")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    violations = axes[1, 0]
    names = ["bc", "dagger", "plato", *PLATO_LAMBDAS, "gps"]
    values = [float(np.mean(summary["curves"][f"cartpole/{a}"]["violations"])) for a in names]
    labels = [n.replace("plato-lambda", "plato\nlambda ") if n != "plato" else "plato\nlambda 0.3"
              for n in names]
    violations.bar(labels, values, color=["tab:blue", "tab:orange", "tab:green", "tab:olive",
                                          "tab:cyan", "tab:red"])
    for x, value in enumerate(values):
        violations.text(x, value, f"{value:g}", ha="center", va="bottom")
    violations.set_yscale("symlog")
    violations.set_ylabel("safety violations during training (mean over seeds)")
    violations.set_title("cart-pole: off the rail's middle, or a fall after balance")
    realtime = axes[1, 1]
    rt = summary["realtime"]
    labels = ["CEM\nelite mean", "CEM + student\nelite mean", "CEM\nbest", "CEM + student\nbest",
              "student alone\n(12.5 Hz)"]
    runs = [rt["plain-mean"]["returns"], rt["seeded-mean"]["returns"],
            rt["plain-best"]["returns"], rt["seeded-best"]["returns"],
            rt["seeded-mean"]["student_returns"]]
    means = [float(np.mean(series)) for series in runs]
    realtime.bar(labels, means, color=["tab:grey", "tab:purple", "tab:grey", "tab:purple",
                                       "tab:orange"])
    for i, series in enumerate(runs):
        realtime.plot([i] * len(series), series, "k.", ms=4)
    realtime.axhline(TARGET_RETURN, color="red", ls="--", label="target 800")
    realtime.tick_params(axis="x", labelsize=8)
    realtime.set_ylabel("return, dm_control cart-pole swing-up")
    realtime.set_title("through the learned ensemble, 20 ms budget per replan")
    realtime.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--realtime-episodes", type=int, default=10)
    parser.add_argument("--work", type=Path, default=Path("runs/bench-distillation"),
                        help="run directories and each job's result (kept: a rerun continues)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: every job, tiny budgets (not a measurement)")
    args = parser.parse_args()
    if not (PETS_RUN / "model.pt").is_file():
        raise SystemExit(f"{PETS_RUN} is missing: run `python -m benchmarks.pets_realtime` "
                         "first (it trains the PETS run whose model is the teacher)")
    planned = jobs(args.work, args.seeds, args.quick,
                   2 if args.quick else args.realtime_episodes)
    revisions_file = args.work / "revisions.json"
    revisions = json.loads(revisions_file.read_text()) if revisions_file.exists() else []
    revision = provenance()["git_revision"]
    if [job for job in planned if not result_path(args.work, job.key).exists()] and (
            revision not in revisions):
        args.work.mkdir(parents=True, exist_ok=True)
        revisions.append(revision)
        revisions_file.write_text(json.dumps(revisions) + "\n")
    done = run_jobs(planned, args.work, args.workers)
    summary = summarise(done, args.seeds)
    print(json.dumps(summary["targets"], indent=2))
    name = "distillation_quick" if args.quick else "distillation"
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": "distillation", **provenance(), "jobs_ran_at_revisions": revisions,
               "seeds": args.seeds,
               "tasks": {task: dataclasses.asdict(c) for task, c in TASKS.items()},
               "gps_iterations": GPS_ITERATIONS, "pets_run": str(PETS_RUN), **summary}
    (args.out / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(summary, args.out / f"{name}.png")


if __name__ == "__main__":
    main()
