"""The transfer benchmark: how much of a target-trained controller's return survives a robot
the controller never trained on, and what randomisation, robust MPC and progressive adaptation
buy back.

    python -m benchmarks.sim2real [--seeds 0 1 2] [--workers 2] [--work runs/bench-sim2real]
                                  [--quick]

Source: the nominal MuJoCo cart-pole swing-up (`mujoco/cartpole-swingup`, 80 ms control
period). Every controller is PETS's MPC (CEM, population 60, 2 iterations, horizon 15, 5
particles through a 5-member probabilistic ensemble: `make demo`'s settings). Targets:

- parameter shifts of the MuJoCo cart-pole: masses x2 and x0.5, actuator gain x0.5, damping x3,
  a two-step action delay (2 x 10 ms simulator steps) and sensor noise (std 0.05 on every
  observation entry); each is a fixed `sim2real.randomization` draw;
- the PyBullet cart-pole (`pybullet/cartpole-swingup`). Mapping: the same observation
  `[x, cos, sin, v, w]` (both robots use `envs.cartpole.observation`), the same action (cart
  force = a x 10 N), the same 80 ms period (4 of PyBullet's 20 ms steps against 8 of MuJoCo's
  10 ms). What differs: the integrator (Bullet's 5 ms substeps against MuJoCo's 2 ms Euler),
  joint friction and damping (slider 0.05 N dry and 0.1 viscous against 0.01 and 0.005), the
  pole's inertia (URDF box against a capsule), and the rail (+-15 m against +-2.5 m).

Per seed, controllers (`CONTROLLERS`):
- nominal PETS: 8 episodes on the source;
- randomised PETS: 20 episodes (and, "longer", the same run continued to 40) under
  configs/randomize_cartpole.json (masses x0.4-2.5, damping
  x0.3-5, gain x0.4-1.6, delay 0-2 steps, noise 0-0.08; the targets lie inside, never drawn
  exactly), planning by the particles' mean, and (randomisation plus robust MPC) by the CVaR
  of the worst 40% of the particles (2 of 5);
- progressive: the nominal model grown by a column started from the source's weights
  (`init="source"`) on each target, after 1 and 3 target episodes (and 10 on PyBullet, where
  Rusu et al.'s random start is run too): the return of the episode planned through it
  (`sim2real.adaptation.adapt`, whose episode k plans through the model fitted on k episodes);
- target-trained: PETS trained 8 episodes on the target itself (15 on PyBullet), the
  reference every return is a fraction of (on the source it is nominal PETS).
Each return is one 10 s episode from the same start on that seed (`EVAL_SEED + seed`).

On PyBullet, the progressive model is compared with fine-tuning the source model (both keep
the source's normalisers) and with a model from scratch on the same target data (the first
1/3/10 episodes of the adaptation): one-step error on held-out target data (the
target-trained run's), MPC return on the target, and the return on the source afterwards.
Episodes needed: the first training episode of the target-trained run (training from
scratch) and of the adaptation whose return reaches 90% of the target-trained return. The
simulation lemma's plot: each target's one-step error of the nominal model against its value
gap there (the target-trained return minus nominal PETS's), with their rank correlation.

The bound: the same CEM MPC planning through the target's own simulator (where a simulator
copy reproduces the target: not the delay and noise targets).

The ensembles' spread: for the nominal and the randomised model on each target's data, the
one-step RMSE, the predictive standard deviation and the share of entries within two of it.

Jobs run in `--workers` processes (one torch thread each) and keep their results under
`--work`, so a killed benchmark continues where it stopped (the JSON lists every revision
the jobs ran at). Writes sim2real.json and
sim2real.png under `--out`.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from scipy.stats import spearmanr

import envs
from benchmarks.jobs import Job, result_path, run_jobs
from benchmarks.provenance import RESULTS, provenance
from controllers import MPC
from mbrl.algorithms.pets import (
    PETSConfig,
    load_run,
    make_training_env,
    model_input,
    on_robot,
    planning_controller,
    train_pets,
)
from mbrl.config import env_wrapper
from mbrl.control.episodes import rollout
from mbrl.control.planners import build_planner, simulator_problem
from mbrl.learning.data import ReplayBuffer
from mbrl.learning.models import EnsembleConfig, EnsembleDynamics
from mbrl.learning.training import TrainConfig, evaluate, fit
from sim2real.adaptation import AdaptConfig, Prepared, adapt
from sim2real.progressive import ProgressiveEnsembleDynamics

SOURCE = "mujoco/cartpole-swingup"
BULLET = "pybullet/cartpole-swingup"
RANDOMIZE_FILE = Path(__file__).resolve().parents[1] / "configs" / "randomize_cartpole.json"
EVAL_SEED = 1000
CVAR_EPSILON = 0.4
FRACTION = 0.9


@dataclass(frozen=True)
class Size:
    """How much the benchmark runs (`--quick`: a smoke run of every job in minutes)."""

    #: Episodes of each PETS run (nominal, target-trained on a parameter shift).
    pets_episodes: int = 8
    #: Episodes of PETS trained on the PyBullet cart-pole (training from scratch there: it
    #: learns more slowly than on MuJoCo's, 390 after 8 episodes against 780).
    pybullet_episodes: int = 15
    #: Episodes of the randomised PETS run (a model of the whole range needs more data: at 10
    #: episodes it kept 70% of nominal PETS's return on the nominal robot).
    randomized_episodes: int = 20
    #: Episodes of the same run continued ("longer"; a copy, so both are measured).
    randomized_longer_episodes: int = 40
    #: Episodes of progressive adaptation to PyBullet (episode k plans through the model
    #: fitted on k episodes, so 11 gives "after 10").
    adapt_pybullet: int = 11
    #: Episodes of progressive adaptation to a parameter shift.
    adapt_shift: int = 4
    #: Target episodes the PyBullet comparison fits on.
    compare_at: tuple[int, ...] = (1, 3, 10)
    #: Control steps per episode (None: the robots' 10 s).
    episode_steps: int | None = None
    #: Epochs of each model fit.
    max_epochs: int = 50


QUICK = Size(pets_episodes=2, pybullet_episodes=3, randomized_episodes=2,
             randomized_longer_episodes=3, adapt_pybullet=3, adapt_shift=2, compare_at=(1, 2),
             episode_steps=10, max_epochs=2)


@dataclass(frozen=True)
class Target:
    """A robot to transfer to: an env id and a fixed shift (a degenerate randomisation)."""

    env_id: str = SOURCE
    randomize: dict[str, Any] | None = field(default=None)


def _fixed(value: float) -> dict[str, float]:
    return {"low": value, "high": value}


TARGETS: dict[str, Target] = {
    "nominal": Target(),
    "mass x2": Target(randomize={"mass_scale": _fixed(2.0)}),
    "mass x0.5": Target(randomize={"mass_scale": _fixed(0.5)}),
    "gain x0.5": Target(randomize={"actuator_gain_scale": _fixed(0.5)}),
    "damping x3": Target(randomize={"damping_scale": _fixed(3.0)}),
    "delay 2 steps": Target(randomize={"action_delay_steps": [2, 2]}),
    "noise 0.05": Target(randomize={"observation_noise_std": _fixed(0.05)}),
    "pybullet": Target(env_id=BULLET),
}
SHIFTS = [name for name in TARGETS if name not in ("nominal", "pybullet")]
#: The targets a simulator copy reproduces (their planning bound is measured).
BOUNDED = ["nominal", "mass x2", "mass x0.5", "gain x0.5", "damping x3", "pybullet"]

BASE = PETSConfig(
    env_id=SOURCE, action_repeat=8, episodes=8, random_episodes=1, particles=5,
    model=EnsembleConfig(hidden_layers=3, weight_decay=5e-5),
    train=TrainConfig(batch_size=32, max_epochs=50, patience=10),
    horizon=15, planner_settings={"population": 60, "iterations": 2},
)
#: Columns of the transfer table: name -> (run, risk).
CONTROLLERS = {"nominal PETS": ("nominal", "mean"),
               "randomised PETS": ("randomized", "mean"),
               "randomised + CVaR MPC": ("randomized", "cvar"),
               "randomised PETS, longer": ("randomized-longer", "mean"),
               "randomised longer + CVaR MPC": ("randomized-longer", "cvar")}
#: The columns the robustness targets judge ("randomisation plus robust MPC").
ROBUST = ("randomised + CVaR MPC", "randomised longer + CVaR MPC")


def slug(name: str) -> str:
    return "".join(c if c.isalnum() or c == "." else "-" for c in name)


def run_name(kind: str, seed: int) -> str:
    return f"{slug(kind)}-s{seed}"


def target_run(target: str, seed: int) -> str:
    """The target-trained run (on the source: nominal PETS itself)."""
    return run_name("nominal" if target == "nominal" else f"target-{target}", seed)


def on_target(config: PETSConfig, target: Target) -> PETSConfig:
    """`config` driving `target`: its robot at the run's control period, its fixed shift."""
    return dataclasses.replace(on_robot(config, target.env_id), randomize=target.randomize)


# --------------------------------------------------------------------------- the jobs


def train_job(work: Path, name: str, config: PETSConfig,
              continues: str | None = None) -> dict[str, Any]:
    """Train (or finish training) one PETS run, or a copy of run `continues` trained on to
    `config.episodes`; its episode returns."""
    run_dir = work / name
    if continues is not None and not run_dir.exists():
        shutil.copytree(work / continues, run_dir)
    rows = train_pets(config, run_dir, resume=(run_dir / "config.json").exists())
    return {"returns": [row["return"] for row in rows]}


def episode_return(model: EnsembleDynamics, config: PETSConfig, seed: int) -> float:
    """One MPC episode through `model` on `config`'s robot, from the seed's start."""
    env = make_training_env(config)
    controller = planning_controller(model, env.task, config,
                                     torch.Generator().manual_seed(EVAL_SEED + seed))
    result = rollout(env, controller, seed=EVAL_SEED + seed, observe=model_input)
    env.close()
    return result.episode_return


def eval_job(work: Path, run: str, target: str, seed: int, risk: str) -> dict[str, Any]:
    """A trained run's return on a target, planning by `risk`."""
    config, model = load_run(work / run)
    config = dataclasses.replace(on_target(config, TARGETS[target]), risk=risk,
                                 risk_epsilon=CVAR_EPSILON)
    return {"return": episode_return(model, config, seed)}


def adapt_job(work: Path, target: str, seed: int, episodes: int,
              init: Literal["source", "random"]) -> dict[str, Any]:
    """Progressive adaptation of the seed's nominal model to a target (continued, if a
    killed benchmark left it unfinished)."""
    source_dir = work / run_name("nominal", seed)
    source_config, source = load_run(source_dir)
    config = on_target(source_config, TARGETS[target])
    prepared = Prepared(config, source, make_training_env(config))
    run_dir = work / run_name(f"adapt-{target}" + ("" if init == "source" else "-random-init"),
                              seed)
    rows = adapt(AdaptConfig(str(source_dir), env_id=config.env_id, episodes=episodes,
                             seed=seed, init=init), run_dir, prepared=prepared,
                 resume=(run_dir / "config.json").exists())
    return {"returns": [row["return"] for row in rows]}


def _transitions(path: Path, episodes: int | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`obs`, `act`, `next_obs` of a saved buffer (its first `episodes` episodes)."""
    arrays = ReplayBuffer.load(path).arrays()
    keep = np.ones(len(arrays["obs"]), bool)
    if episodes is not None:
        ids = arrays["episode"]
        keep = ids < ids.min() + episodes
    obs, act, next_obs = (torch.tensor(arrays[name][keep]) for name in ("obs", "act", "next_obs"))
    return obs, act, next_obs


def one_step_error(model: EnsembleDynamics,
                   data: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> float:
    """Mean over members of the one-step MSE (observation units)."""
    with torch.no_grad():
        return float(evaluate(model, *data)[0].mean())


def compare_job(work: Path, seed: int, compare_at: tuple[int, ...]) -> dict[str, Any]:
    """Progressive, fine-tuned and from-scratch models on the same PyBullet data."""
    source_config, source = load_run(work / run_name("nominal", seed))
    target_config = on_target(source_config, TARGETS["pybullet"])
    held_out = _transitions(work / target_run("pybullet", seed) / "replay_buffer.npz")
    adapt_data = work / run_name("adapt-pybullet", seed) / "replay_buffer.npz"
    builders: dict[str, Callable[[torch.Generator], EnsembleDynamics]] = {
        "progressive": lambda g: ProgressiveEnsembleDynamics(source, 16, g, init="source"),
        # (the progressive model froze the source in place; a fine-tuned copy learns again)
        "fine-tune": lambda g: copy.deepcopy(source).requires_grad_(True),
        "scratch": lambda g: EnsembleDynamics(source.obs_dim, source.act_dim,
                                              source_config.model, g),
    }
    # The two that start from the source's weights keep its normalisers.
    keeps_normalizers = {"progressive": True, "fine-tune": True, "scratch": False}
    rows = []
    for episodes in compare_at:
        data = _transitions(adapt_data, episodes)
        for method, build in builders.items():
            generator = torch.Generator().manual_seed(seed)
            model = build(generator)
            train = dataclasses.replace(source_config.train,
                                        fit_normalizers=not keeps_normalizers[method])
            fit(model, *data, train, generator)
            # The source return: the progressive model plans there through its source column.
            on_source = model.source if isinstance(model, ProgressiveEnsembleDynamics) else model
            rows.append({
                "method": method, "target_episodes": episodes,
                "held_out_error": one_step_error(model, held_out),
                "target_return": episode_return(model, target_config, seed),
                "source_return": episode_return(on_source, source_config, seed),
            })
    return {"rows": rows}


def errors_job(work: Path, seed: int) -> dict[str, Any]:
    """The nominal model's one-step error on each target's data (the target-trained run's
    transitions; on the source, its own, so in-sample)."""
    _, model = load_run(work / run_name("nominal", seed))
    return {"errors": {target: one_step_error(model, _transitions(
        work / target_run(target, seed) / "replay_buffer.npz")) for target in TARGETS}}


def bound_job(work: Path, target: str, seed: int, base: PETSConfig) -> dict[str, Any]:
    """The same CEM MPC planning through the target's own simulator (its physics copied): the
    return a learned model could at best give this planner. Not for the delay and noise
    targets, which a simulator copy does not reproduce."""
    config = on_target(base, TARGETS[target])
    steps: dict[str, Any] = {} if config.episode_steps is None else {
        "max_episode_steps": config.episode_steps * config.action_repeat}
    env = envs.make(config.env_id, action_repeat=config.action_repeat, **steps)
    shift = TARGETS[target].randomize or {}
    env.set_physics_params(**{name: value["low"] for name, value in shift.items()})
    env.reset(seed=EVAL_SEED + seed)
    threads = 1 if config.env_id.startswith("mujoco/") else None  # a core for each worker
    problem = simulator_problem(env, config.horizon, EVAL_SEED + seed, rollout_threads=threads)
    controller = MPC(build_planner(config.planner, problem, **config.planner_settings),
                     config.mpc)
    result = rollout(env, controller, seed=EVAL_SEED + seed,
                     observe=lambda _: torch.from_numpy(env.get_state()))
    return {"return": result.episode_return}


def spread_job(work: Path, seed: int) -> dict[str, Any]:
    """Whether an ensemble's spread covers a target: for the nominal and the randomised
    model on each target's data, the one-step error, the predictive standard deviation
    (members' variances plus the spread of their means) and the share of next-observation
    entries within two of them of the truth (0.95 for a calibrated Gaussian)."""
    result: dict[str, dict[str, dict[str, float]]] = {}
    for kind in ("nominal", "randomized"):
        _, model = load_run(work / run_name(kind, seed))
        result[kind] = {}
        for target in TARGETS:
            obs, act, next_obs = _transitions(
                work / target_run(target, seed) / "replay_buffer.npz")
            with torch.no_grad():
                prediction = model.predict(obs, act)
            mean = prediction.mean.mean(dim=0)
            epistemic = prediction.mean.var(dim=0, unbiased=False)
            aleatoric = (prediction.var.mean(dim=0) if prediction.var is not None
                         else torch.zeros_like(mean))
            std = (epistemic + aleatoric).sqrt()
            error = (next_obs - mean).abs()
            result[kind][target] = {
                "rmse": float(error.pow(2).mean().sqrt()),
                "predictive_std": float(std.pow(2).mean().sqrt()),
                "member_spread_std": float(epistemic.mean().sqrt()),
                "within_2_std": float((error <= 2 * std).float().mean()),
            }
    return result


# --------------------------------------------------------------------------- scheduling


def pets_config(size: Size, seed: int) -> PETSConfig:
    return dataclasses.replace(
        BASE, seed=seed, episodes=size.pets_episodes, episode_steps=size.episode_steps,
        train=dataclasses.replace(BASE.train, max_epochs=size.max_epochs))


def jobs(work: Path, seeds: list[int], size: Size) -> list[Job]:
    """Every job, seed after seed (so that a short run has whole seeds)."""
    randomize = env_wrapper("randomize").settings(str(RANDOMIZE_FILE))
    planned: list[Job] = []
    for seed in seeds:
        base = pets_config(size, seed)
        trains = {run_name("nominal", seed): base,
                  run_name("randomized", seed): dataclasses.replace(
                      base, episodes=size.randomized_episodes, randomize=randomize)}
        for target in TARGETS:
            if target != "nominal":
                trains[target_run(target, seed)] = on_target(base, TARGETS[target])
        trains[target_run("pybullet", seed)] = dataclasses.replace(
            trains[target_run("pybullet", seed)], episodes=size.pybullet_episodes)
        for name, config in trains.items():
            planned.append(Job(f"train/{name}", train_job, (work, name, config), []))
        randomized = run_name("randomized", seed)
        longer = run_name("randomized-longer", seed)
        planned.append(Job(f"train/{longer}", train_job, (
            work, longer, dataclasses.replace(trains[randomized],
                                              episodes=size.randomized_longer_episodes),
            randomized), [f"train/{randomized}"]))
        nominal = f"train/{run_name('nominal', seed)}"
        for target in TARGETS:
            evaluated = [(run_name(run, seed), risk) for run, risk in CONTROLLERS.values()]
            for run, risk in dict.fromkeys([*evaluated, (target_run(target, seed), "mean")]):
                planned.append(Job(f"eval/{run}/{slug(target)}/{risk}", eval_job,
                                   (work, run, target, seed, risk), [f"train/{run}"]))
            episodes = size.adapt_pybullet if target == "pybullet" else size.adapt_shift
            if target != "nominal":
                planned.append(Job(f"adapt/{slug(target)}/s{seed}", adapt_job,
                                   (work, target, seed, episodes, "source"), [nominal]))
        planned.append(Job(f"adapt-random-init/pybullet/s{seed}", adapt_job,
                           (work, "pybullet", seed, size.adapt_pybullet, "random"), [nominal]))
        planned.append(Job(f"compare/s{seed}", compare_job, (work, seed, size.compare_at),
                           [f"adapt/pybullet/s{seed}", f"train/{target_run('pybullet', seed)}"]))
        planned.append(Job(f"errors/s{seed}", errors_job, (work, seed),
                           [f"train/{target_run(t, seed)}" for t in TARGETS]))
        for target in BOUNDED:
            planned.append(Job(f"bound/{slug(target)}/s{seed}", bound_job,
                               (work, target, seed, base), []))
        planned.append(Job(f"spread/s{seed}", spread_job, (work, seed),
                           [f"train/{target_run(t, seed)}" for t in TARGETS]
                           + [f"train/{run_name('randomized', seed)}"]))
    keys = [job.key for job in planned]
    assert len(keys) == len(set(keys)), "job keys must be unique"
    return planned


# --------------------------------------------------------------------------- the summary


def summarise(done: dict[str, dict[str, Any]], seeds: list[int], size: Size) -> dict[str, Any]:
    """The transfer table, the targets, the progressive comparison and the lemma's points."""

    def returned(run: str, target: str, risk: str) -> float:
        return float(done[f"eval/{run}/{slug(target)}/{risk}"]["return"])

    table: dict[str, dict[str, Any]] = {}
    for target in TARGETS:
        reference = [returned(target_run(target, s), target, "mean") for s in seeds]
        row: dict[str, Any] = {"target-trained": reference}
        for column, (run, risk) in CONTROLLERS.items():
            row[column] = [returned(run_name(run, s), target, risk) for s in seeds]
        for after in (1, 3, 10):
            for prefix, name in (("adapt", "progressive"),
                                 ("adapt-random-init", "progressive (random init)")):
                key = f"{prefix}/{slug(target)}/s{seeds[0]}"
                if key in done and len(done[key]["returns"]) > after:
                    row[f"{name} after {after}"] = [
                        done[f"{prefix}/{slug(target)}/s{s}"]["returns"][after] for s in seeds]
        if target in BOUNDED:
            row["CEM through the true simulator"] = [
                float(done[f"bound/{slug(target)}/s{s}"]["return"]) for s in seeds]
        table[target] = {
            "returns": row,
            "fraction_of_target_trained": {
                name: float(np.mean(values) / np.mean(reference)) for name, values in row.items()},
        }
    robust_targets: dict[str, Any] = {}
    for robust in ROBUST:
        shift_fractions = {t: table[t]["fraction_of_target_trained"][robust] for t in SHIFTS}
        nominal_ratio = float(np.mean(table["nominal"]["returns"][robust])
                              / np.mean(table["nominal"]["returns"]["nominal PETS"]))
        robust_targets[robust] = {
            "on_every_shift_at_least_0.9": {
                "fractions": shift_fractions,
                "met": all(f >= FRACTION for f in shift_fractions.values())},
            "on_nominal_at_least_0.95_of_nominal_pets": {
                "ratio": nominal_ratio, "met": nominal_ratio >= 0.95}}

    def first_reaching(returns: list[float], reference: float) -> int | None:
        return next((k for k, r in enumerate(returns) if r >= FRACTION * reference), None)

    episodes_needed: list[dict[str, Any]] = []
    scratch_needs: list[int | None] = []
    progressive_needs: list[int | None] = []
    for s in seeds:
        trained = returned(target_run("pybullet", s), "pybullet", "mean")
        scratch_needs.append(first_reaching(
            done[f"train/{target_run('pybullet', s)}"]["returns"], trained))
        progressive_needs.append(first_reaching(done[f"adapt/pybullet/s{s}"]["returns"], trained))
        episodes_needed.append({"seed": s, "target_trained_return": trained,
                                "scratch": scratch_needs[-1],
                                "progressive": progressive_needs[-1]})
    compare = [dict(row, seed=s) for s in seeds for row in done[f"compare/s{s}"]["rows"]]
    source_kept = all(
        row["source_return"] == returned(run_name("nominal", row["seed"]), "nominal", "mean")
        for row in compare if row["method"] == "progressive")
    # The value gap: what nominal PETS's return on a target falls short of the target-trained
    # controller's there (which also levels the PyBullet cart-pole's lower ceiling).
    lemma = [{"target": t, "seed": s, "one_step_error": done[f"errors/s{s}"]["errors"][t],
              "value_gap": returned(target_run(t, s), t, "mean")
              - returned(run_name("nominal", s), t, "mean")}
             for t in TARGETS for s in seeds]
    per_target = [(np.mean([p["one_step_error"] for p in lemma if p["target"] == t]),
                   np.mean([p["value_gap"] for p in lemma if p["target"] == t])) for t in TARGETS]
    errors, gaps = zip(*per_target, strict=True)
    rank_correlation = float(spearmanr(errors, gaps).statistic)
    spread = {kind: {target: {key: float(np.mean([done[f"spread/s{s}"][kind][target][key]
                                                   for s in seeds]))
                              for key in done[f"spread/s{seeds[0]}"][kind][target]}
                     for target in TARGETS}
              for kind in ("nominal", "randomized")}
    return {
        "table": table,
        "ensemble_spread": spread,
        "targets": {
            "randomisation_plus_robust_mpc": robust_targets,
            "pybullet_progressive_90pct_in_a_third_of_scratch_episodes": {
                "per_seed": episodes_needed,
                "met": all(p is not None and (s is None or 3 * p <= s)
                           for p, s in zip(progressive_needs, scratch_needs, strict=True))
                and all(s is not None for s in scratch_needs)},
            "progressive_source_return_unchanged": {"met": source_kept},
        },
        "pybullet_comparison": compare,
        "simulation_lemma": {"points": lemma,
                             "spearman_error_vs_gap_over_targets": rank_correlation},
    }


def markdown_table(summary: dict[str, Any]) -> str:
    """The transfer table: each controller's return on each target as a fraction of the
    target-trained return (mean of the seeds' returns over the mean of the references')."""
    table = summary["table"]
    present = {name for row in table.values() for name in row["fraction_of_target_trained"]}
    columns = [name for name in (
        *CONTROLLERS, *(f"progressive after {k}" for k in (1, 3, 10)),
        *(f"progressive (random init) after {k}" for k in (1, 3, 10)),
        "CEM through the true simulator") if name in present]
    lines = ["| target | target-trained return | " + " | ".join(columns) + " |",
             "|---" * (len(columns) + 2) + "|"]
    for target, row in table.items():
        fractions = row["fraction_of_target_trained"]
        reference = np.mean(row["returns"]["target-trained"])
        cells = [f"{fractions[c]:.2f}" if c in fractions else "" for c in columns]
        lines.append(f"| {target} | {reference:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(summary: dict[str, Any], size: Size, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (table_axis, compare_axis, lemma_axis) = plt.subplots(
        1, 3, figsize=(18, 5), gridspec_kw={"width_ratios": [2.2, 1, 1]})
    targets = list(summary["table"])
    columns = [*CONTROLLERS, "progressive after 1", "progressive after 3"]
    x = np.arange(len(targets))
    width = 0.8 / len(columns)
    for i, column in enumerate(columns):
        values = [summary["table"][t]["fraction_of_target_trained"].get(column, np.nan)
                  for t in targets]
        table_axis.bar(x + (i - len(columns) / 2 + 0.5) * width, values, width, label=column)
    table_axis.axhline(FRACTION, color="k", linestyle="--", linewidth=1)
    table_axis.set_xticks(x, targets, rotation=20, fontsize=8)
    table_axis.set_ylabel("return / target-trained return (mean of seeds)")
    table_axis.set_title("transfer from the nominal MuJoCo cart-pole")
    table_axis.legend(fontsize=7)

    rows = summary["pybullet_comparison"]
    for method in ("progressive", "fine-tune", "scratch"):
        mine = [r for r in rows if r["method"] == method]
        means = [np.mean([r["target_return"] for r in mine if r["target_episodes"] == k])
                 for k in size.compare_at]
        sources = [np.mean([r["source_return"] for r in mine if r["target_episodes"] == k])
                   for k in size.compare_at]
        line = compare_axis.plot(size.compare_at, means, marker="o", label=f"{method}: PyBullet")
        compare_axis.plot(size.compare_at, sources, marker="x", linestyle=":",
                          color=line[0].get_color(), label=f"{method}: MuJoCo source")
    compare_axis.set_xscale("log")
    compare_axis.set_xticks(size.compare_at, [str(k) for k in size.compare_at])
    compare_axis.set_xlabel("target (PyBullet) episodes")
    compare_axis.set_ylabel("return")
    compare_axis.set_title("the same PyBullet data:\nprogressive, fine-tune, scratch", fontsize=10)
    compare_axis.legend(fontsize=7)

    for target in TARGETS:
        points = [p for p in summary["simulation_lemma"]["points"] if p["target"] == target]
        lemma_axis.scatter([p["one_step_error"] for p in points],
                           [p["value_gap"] for p in points], label=target, s=18)
    lemma_axis.set_xscale("log")
    lemma_axis.set_xlabel("nominal model's one-step MSE on the target's data")
    lemma_axis.set_ylabel("value gap (target-trained - nominal PETS return)")
    rank = summary["simulation_lemma"]["spearman_error_vs_gap_over_targets"]
    lemma_axis.set_title("simulation lemma: value gap against model error\n"
                         f"(Spearman over targets {rank:.2f})", fontsize=10)
    lemma_axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("runs/bench-sim2real"),
                        help="run directories and each job's result (kept: a rerun continues)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: every job, a few short episodes (not a measurement)")
    args = parser.parse_args()
    size = QUICK if args.quick else Size()
    planned = jobs(args.work, args.seeds, size)
    # Every revision this work folder's jobs ran at (a rerun continues at a later one).
    revisions_file = args.work / "revisions.json"
    revisions = json.loads(revisions_file.read_text()) if revisions_file.exists() else []
    revision = provenance()["git_revision"]
    to_run = [job for job in planned if not result_path(args.work, job.key).exists()]
    if to_run and revision not in revisions:
        args.work.mkdir(parents=True, exist_ok=True)
        revisions.append(revision)
        revisions_file.write_text(json.dumps(revisions) + "\n")
    done = run_jobs(planned, args.work, args.workers)
    summary = summarise(done, args.seeds, size)
    print(json.dumps(summary["targets"], indent=2))
    print(markdown_table(summary))
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": "sim2real", **provenance(), "jobs_ran_at_revisions": revisions,
               "seeds": args.seeds,
               "size": dataclasses.asdict(size), "pets": dataclasses.asdict(pets_config(size, 0)),
               "randomize": json.loads(RANDOMIZE_FILE.read_text()),
               "targets": {name: dataclasses.asdict(t) for name, t in TARGETS.items()},
               "cvar_epsilon": CVAR_EPSILON, **summary}
    (args.out / "sim2real.json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(summary, size, args.out / "sim2real.png")


if __name__ == "__main__":
    main()
