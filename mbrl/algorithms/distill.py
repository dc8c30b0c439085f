"""Distillation runs: a planner teaches a neural policy, from the command line or Python.

    mbrl distill dagger --env mujoco/cartpole-swingup --teacher cem
    mbrl distill plato  --env dmc/cartpole-swingup --teacher runs/pets-...   # a PETS run's model

The teacher is MPC over a registered planner on the true simulator (from the env's exact
state), or over a `mbrl train pets` run's planner and learned ensemble (from the
observation). The student is a `controllers.policy.NeuralPolicy`. The algorithm is one of
`ALGORITHMS`: behaviour cloning and DAgger (`mbrl.algorithms.dagger`), PLATO
(`mbrl.algorithms.plato`) and mirror-descent guided policy search (`mbrl.algorithms.gps`).

A run directory holds `config.json`, `metrics.csv` (per iteration: student and teacher
return, teacher queries, safety violations, the fit's losses), `student.pt` (loaded without
unpickling code), the labelled data, `learning_curve.png` and `student.mp4` where rendering
works. Each iteration ends at one commit point (`mbrl.runs.rundir.commit_checkpoint`), so a
run killed at any instant resumes (`resume=True`, `--resume`) to exactly the results of a
run never stopped; only `iterations` may change on resume.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import envs
from controllers import MPC, MPCConfig
from controllers.policy import NeuralPolicy, PolicyConfig
from controllers.policy_penalty import PenalizedCost, PenalizedTask, PolicyPull, penalized_reward
from controllers.validation import ConfigError, check_types, require, require_positive
from envs.dynamics import joint_state, simulator_state
from mbrl.algorithms.dagger import BETA_SCHEDULES, DAggerConfig, dagger
from mbrl.algorithms.gps import GPSConfig, mdgps
from mbrl.algorithms.pets import load_run, model_input
from mbrl.algorithms.pets import make_training_env as pets_training_env
from mbrl.algorithms.plato import PLATOConfig, plato
from mbrl.algorithms.students import (
    SAFETY,
    DistillProgress,
    LabelledData,
    LabellingAgent,
    Teacher,
    evaluate_policy,
)
from mbrl.config import require_known_env
from mbrl.control.episodes import rollout
from mbrl.control.goals import GOALS
from mbrl.control.planners import (
    PlanningProblem,
    build_planner,
    model_problem,
    planner_config,
    planner_names,
    planner_spec,
    simulator_problem,
)
from mbrl.errors import RunDirError, UserError
from mbrl.files import read_json, write_csv, write_json
from mbrl.learning.checkpoint import load_policy, save_policy
from mbrl.learning.policy_training import PolicyTrainConfig
from mbrl.learning.propagation import Propagation
from mbrl.runs import plots
from mbrl.runs.rundir import (
    CONFIG,
    METRICS,
    PROGRESS,
    commit_checkpoint,
    discard_older_checkpoints,
    latest_checkpoint,
    publish,
    read_run_config,
    recover,
    require_same_settings,
)
from mbrl.runs.video import try_render, write_video

#: The algorithms: behaviour cloning, DAgger, PLATO, mirror-descent GPS.
ALGORITHMS = ("bc", "dagger", "plato", "gps")
#: The files of a distillation run.
STUDENT, DATA, STATE = "student.pt", "labelled_data.npz", "algorithm_state.npz"
PUBLISHED = (STUDENT, DATA, METRICS)
#: The settings that may change when a run resumes.
RESUMABLE_CHANGES = ("iterations",)
#: Seeds of the evaluation episodes (the same for teacher and student, apart from training's).
EVAL_SEED = 10_000


@dataclass(frozen=True)
class DistillConfig:
    """Settings of one distillation run."""

    #: "bc", "dagger", "plato" or "gps".
    algorithm: str = "dagger"
    #: Registered env id (`backend/task`).
    env_id: str = "mujoco/cartpole-swingup"
    #: Simulator steps per control step (the student acts at the teacher's period).
    action_repeat: int = 8
    #: Control steps per episode (None: the env's own time limit).
    episode_steps: int | None = None
    #: Seed of the env, the teacher, the student and its fitting.
    seed: int = 0
    #: A registered planner run as MPC on the true simulator, or a `mbrl train pets` run
    #: directory whose planner and learned model are the teacher.
    teacher: str = "cem"
    #: The simulator teacher's planning horizon, control steps (a run's own otherwise).
    horizon: int = 30
    #: The teacher planner's settings over the registry's (or over the run's planner's).
    teacher_settings: dict[str, Any] = field(default_factory=dict)
    #: Iterations (each: episodes, labels or samples, one refit of the student).
    iterations: int = 10
    #: Episodes per iteration (DAgger, behaviour cloning and PLATO).
    episodes_per_iteration: int = 1
    #: DAgger's beta schedule: "once" (1 then 0), "geometric" (beta_p ** i), "always".
    beta_schedule: str = "once"
    #: p of the geometric schedule.
    beta_p: float = 0.5
    #: PLATO's lambda, the weight of KL(teacher || student) in the adaptive teacher.
    kl_weight: float = 1.0
    #: Episodes the student (and, once, the teacher) is evaluated on after each iteration.
    eval_episodes: int = 3
    #: The student network.
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    #: Fitting the student after each iteration.
    fit: PolicyTrainConfig = field(default_factory=PolicyTrainConfig)
    #: Mirror-descent GPS's settings (conditions, samples, KL step).
    gps: GPSConfig = field(default_factory=GPSConfig)
    #: Domain randomisation of the training episodes (`sim2real.randomization`'s settings,
    #: through the "randomize" env wrapper); a teacher on the simulator plans with each
    #: episode's drawn physics (privileged), and the student is evaluated on the nominal
    #: robot. None: the nominal robot.
    randomize: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        check_types(self)
        require(self, "algorithm", self.algorithm in ALGORITHMS,
                f"must be one of {list(ALGORITHMS)}")
        require_known_env(self)
        require_positive(self, "action_repeat", "horizon", "iterations",
                         "episodes_per_iteration")
        require(self, "eval_episodes", self.eval_episodes >= 0, "must be >= 0")
        require(self, "episode_steps", self.episode_steps is None or self.episode_steps >= 1,
                "must be >= 1 or null")
        require(self, "beta_schedule", self.beta_schedule in BETA_SCHEDULES,
                f"must be one of {list(BETA_SCHEDULES)}")
        require(self, "beta_p", 0.0 <= self.beta_p <= 1.0, "must be in [0, 1]")
        require(self, "kl_weight", self.kl_weight >= 0, "must be >= 0")
        is_planner = self.teacher in planner_names()
        require(self, "teacher", is_planner or (Path(self.teacher) / CONFIG).is_file(),
                f"must be a registered planner ({', '.join(planner_names())}) or a run "
                f"directory of `mbrl train pets`; {self.teacher!r} is neither")
        if is_planner:
            try:
                planner_config(self.teacher, self.horizon, **self.teacher_settings)
            except ConfigError as error:
                raise error.inside("teacher_settings") from None
        if self.algorithm == "gps":
            require(self, "randomize", self.randomize is None,
                    "gps fits each condition's dynamics to its samples; it takes no "
                    "randomised physics")
            require(self, "algorithm", self.policy.gaussian,
                    "gps needs a Gaussian student (policy.gaussian true)")


# --------------------------------------------------------------------------- teachers


@dataclass(frozen=True)
class Teachers:
    """How a run builds its teachers, seeded per iteration."""

    #: The plain teacher, `seed -> Teacher`.
    plain: Callable[[int], Teacher]
    #: PLATO's adaptive teacher, `(seed, pull) -> Teacher`.
    adaptive: Callable[[int, PolicyPull], Teacher]


def make_teachers(config: DistillConfig, env: envs.RobotEnv) -> Teachers:
    """The teachers of `config` acting in `env` (see `DistillConfig.teacher`).

    Raises:
        UserError: for a run-directory teacher of another robot or control period, or a
            planner that cannot plan this robot.
        ConfigError: for a teacher setting the planner does not have.
    """
    if config.teacher in planner_names():
        return _simulator_teachers(config, env)
    return _model_teachers(config, env)


def _simulator_teachers(config: DistillConfig, env: envs.RobotEnv) -> Teachers:
    name = config.teacher
    gradient = planner_spec(name).gradient_based
    # The sampling planners score every simulator step of a MuJoCo env's batched rollout, so
    # the penalty is spread over the repeat to weigh once per control step.
    per_step = config.action_repeat if env.env_id.startswith("mujoco/") else 1

    def view(_: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(joint_state(env) if gradient else simulator_state(env))

    def build(problem: PlanningProblem) -> MPC:
        try:
            return MPC(build_planner(name, problem, **config.teacher_settings), MPCConfig())
        except ConfigError as error:
            raise (error.inside("teacher_settings") if error.path != "planner"
                   else error) from None

    def plain(seed: int) -> Teacher:
        teacher = Teacher(build(simulator_problem(env, config.horizon, seed)), view)
        if config.randomize is not None:  # plan with each episode's drawn physics
            teacher.rebuild = lambda: build(simulator_problem(env, config.horizon, seed))
        return teacher

    def adaptive(seed: int, pull: PolicyPull) -> Teacher:
        if gradient:
            problem = simulator_problem(env, config.horizon, seed)
            assert problem.gradient is not None
            cost = PenalizedCost(problem.gradient.cost, pull, observe=env.joint_observation)
            problem = dataclasses.replace(
                problem, gradient=dataclasses.replace(problem.gradient, cost=cost))
        else:
            spread = dataclasses.replace(pull, weight=pull.weight / per_step)
            problem = simulator_problem(
                env, config.horizon, seed, reward=penalized_reward(env.task.reward, spread))
        teacher = Teacher(build(problem), view)
        if config.randomize is not None:
            teacher.rebuild = lambda: adaptive(seed, pull).controller
        return teacher

    problem = simulator_problem(env, config.horizon, config.seed)
    if gradient and problem.gradient is None:
        raise UserError(f"--teacher {name}: {problem.no_gradient_reason}")
    return Teachers(plain, adaptive)


def _model_teachers(config: DistillConfig, env: envs.RobotEnv) -> Teachers:
    run_dir = Path(config.teacher)
    try:
        run, model = load_run(run_dir)
    except RunDirError as error:
        raise UserError(f"--teacher {run_dir}: {error}") from None
    if (run.env_id, run.action_repeat) != (config.env_id, config.action_repeat):
        raise UserError(f"--teacher {run_dir} was trained on {run.env_id} at action repeat "
                        f"{run.action_repeat}; distil on the same (--env {run.env_id} "
                        f"--action-repeat {run.action_repeat})")
    settings = {**run.planner_settings, **config.teacher_settings}
    try:
        planner_config(run.planner, run.horizon, **settings)
    except ConfigError as error:
        raise error.inside("teacher_settings") from None

    def build(problem: PlanningProblem) -> MPC:
        try:
            return MPC(build_planner(run.planner, problem, **settings), run.mpc)
        except ConfigError as error:
            raise (error.inside("teacher_settings") if error.path != "planner"
                   else error) from None

    def problem_for(seed: int, task: Any) -> PlanningProblem:
        return model_problem(model, task, run.horizon, seed, env_id=run.env_id,
                             particles=run.particles, propagation=Propagation(run.propagation))

    def plain(seed: int) -> Teacher:
        return Teacher(build(problem_for(seed, env.task)), model_input)

    def adaptive(seed: int, pull: PolicyPull) -> Teacher:
        if not planner_spec(run.planner).gradient_based:
            return Teacher(build(problem_for(seed, PenalizedTask(env.task, pull))), model_input)
        problem = problem_for(seed, env.task)
        if problem.gradient is not None:
            cost = PenalizedCost(problem.gradient.cost, pull)
            problem = dataclasses.replace(
                problem, gradient=dataclasses.replace(problem.gradient, cost=cost))
        return Teacher(build(problem), model_input)

    build(problem_for(config.seed, env.task))  # settings the planner refuses: now
    return Teachers(plain, adaptive)


# --------------------------------------------------------------------------- the run


def make_env(config: DistillConfig) -> envs.RobotEnv:
    """The nominal robot, at the run's control period and episode length: where the student
    is evaluated."""
    return make_training_env(dataclasses.replace(config, randomize=None))


def make_training_env(config: DistillConfig) -> envs.RobotEnv:
    """The robot the student learns on: the nominal one, or randomised under the action
    repeat (PETS's `make_training_env`).

    Raises:
        ConfigError: naming `randomize.<field>` for settings this robot cannot take.
    """
    return pets_training_env(config)


def new_student(config: DistillConfig, env: envs.RobotEnv) -> NeuralPolicy:
    """The untrained student of `config` for `env`."""
    task = env.task
    return NeuralPolicy(task.obs_dim, task.act_dim, task.action_low, task.action_high,
                        config.policy, generator=torch.Generator().manual_seed(config.seed))


def train_distill(
    config: DistillConfig,
    run_dir: Path,
    resume: bool = False,
    on_iteration: Callable[[dict[str, float]], object] = lambda _: None,
) -> list[dict[str, float]]:
    """Run the distillation `config` asks for into `run_dir`; return the metrics rows.

    With `resume`, continue the run in `run_dir` from its last committed iteration; `config`
    must be the run's own but for `RESUMABLE_CHANGES`. `on_iteration` is called with each
    iteration's row (a progress bar).

    Raises:
        UserError: for a teacher that cannot teach this robot (before anything is written).
        RunDirError: on resume, if the run directory is damaged or belongs to other settings.
    """
    env = make_training_env(config)
    nominal = make_env(config) if config.randomize is not None else env
    gps_costs = None
    if config.algorithm == "gps":
        goal = GOALS.get(config.env_id)
        if goal is None:
            raise UserError(f"--env {config.env_id}: gps needs the task's quadratic cost, and "
                            f"none is known (mbrl.control.goals.GOALS has "
                            f"{', '.join(sorted(GOALS))})")
        gps_costs = goal.costs(env.task.act_dim)
    else:
        teachers = make_teachers(config, env)
    student = new_student(config, env)
    task = env.task
    progress = DistillProgress(
        LabelledData(task.obs_dim, task.act_dim), [], np.random.default_rng(config.seed),
        torch.Generator().manual_seed(config.seed),
    )
    if resume:
        _restore(run_dir, config, student, progress)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / CONFIG, config)
    eval_seeds = [EVAL_SEED + k for k in range(config.eval_episodes)]
    if config.algorithm != "gps" and math.isnan(progress.teacher_return) and eval_seeds:
        nominal_teacher = make_teachers(config, nominal).plain(config.seed)
        rng = np.random.default_rng(0)
        progress.teacher_return = float(np.mean([
            rollout(nominal, LabellingAgent(nominal_teacher, student, 1.0, rng),
                    seed=s).episode_return
            for s in eval_seeds]))

    def evaluate(policy: NeuralPolicy) -> float:
        return evaluate_policy(nominal, policy, eval_seeds)

    safety = SAFETY.get(config.env_id, lambda: None)

    def commit(state: DistillProgress) -> None:
        _save(run_dir, config, student, state)
        on_iteration(state.rows[-1])

    if config.algorithm in ("bc", "dagger"):
        schedule = "always" if config.algorithm == "bc" else config.beta_schedule
        dagger(env, teachers.plain, student,
               DAggerConfig(config.iterations, config.episodes_per_iteration, schedule,
                            config.beta_p),
               config.fit, progress, evaluate, safety, commit)
    elif config.algorithm == "plato":
        plato(env, teachers.plain, teachers.adaptive, student,
              PLATOConfig(config.iterations, config.episodes_per_iteration, config.kl_weight),
              config.fit, progress, evaluate, safety, commit)
    else:
        assert gps_costs is not None
        mdgps(env, student, dataclasses.replace(config.gps, iterations=config.iterations),
              config.fit, progress, evaluate, *gps_costs, horizon=env.max_episode_steps,
              safety=safety, on_iteration=commit)
    _write_video(nominal, student, run_dir / "student.mp4")
    return progress.rows


def _save(run_dir: Path, config: DistillConfig, student: NeuralPolicy,
          progress: DistillProgress) -> None:
    """Commit the iteration as one checkpoint, then publish it and the plot."""
    iteration = len(progress.rows) - 1

    def write(folder: Path) -> None:
        save_policy(student, folder / STUDENT, {"env_id": config.env_id,
                                                 "action_repeat": config.action_repeat})
        progress.data.save(folder / DATA)
        if progress.extra:
            with (folder / STATE).open("wb") as handle:
                np.savez(handle, **progress.extra)
        write_csv(folder / METRICS, progress.rows)
        write_json(folder / PROGRESS, {
            "iterations_done": len(progress.rows),
            "samples": len(progress.data),
            "teacher_return": progress.teacher_return,
            "config": config,
            "numpy_rng": progress.rng.bit_generator.state,
            "torch_generator": progress.generator.get_state().tolist(),
            "student_generator": student.generator.get_state().tolist(),
        })

    checkpoint = commit_checkpoint(run_dir, iteration, write)
    publish(checkpoint, run_dir, PUBLISHED)
    plot_distillation(progress.rows, run_dir / "learning_curve.png",
                      f"{config.algorithm} on {config.env_id}, teacher {Path(config.teacher).name}")
    discard_older_checkpoints(run_dir, keep=checkpoint)


def _restore(run_dir: Path, config: DistillConfig, student: NeuralPolicy,
             progress: DistillProgress) -> None:
    """Put `student` and `progress` back to the run's last committed iteration (nothing if
    none was committed); `config.json` updated for `RESUMABLE_CHANGES`.

    Raises:
        RunDirError: naming the file, for a damaged run directory or other settings.
    """
    stored = read_distill_config(run_dir / CONFIG)
    require_same_settings(config, stored, RESUMABLE_CHANGES, str(run_dir / CONFIG))
    checkpoint = recover(run_dir, PUBLISHED)
    if stored != config:
        write_json(run_dir / CONFIG, config)
    if checkpoint is None:
        return
    path = checkpoint / PROGRESS
    saved = read_json(path)
    try:
        done = int(saved["iterations_done"])
        ran_under = saved["config"]
        rng_state, torch_state = saved["numpy_rng"], saved["torch_generator"]
        student_state, teacher_return = saved["student_generator"], saved["teacher_return"]
    except (KeyError, TypeError, ValueError) as error:
        raise RunDirError(f"{path} is damaged: {type(error).__name__}: {error}") from None
    from mbrl.config import from_dict

    require_same_settings(config, from_dict(DistillConfig, ran_under), RESUMABLE_CHANGES,
                          f"{path} (the settings its iterations ran under)")
    if config.iterations < done:
        raise RunDirError(f"cannot resume {run_dir} with iterations={config.iterations}: "
                          f"{done} are done already")
    try:
        saved_student, _ = load_policy(checkpoint / STUDENT)
        data = LabelledData.load(checkpoint / DATA, progress.data.obs_dim,
                                 progress.data.act_dim)
        extra: dict[str, Any] = {}
        if (checkpoint / STATE).is_file():
            with np.load(checkpoint / STATE, allow_pickle=False) as saved_state:
                extra = {name: saved_state[name] for name in saved_state.files}
    except (FileNotFoundError, ValueError, OSError) as error:
        raise RunDirError(str(error)) from None
    progress.extra = extra
    student.load_state_dict(saved_student.state_dict())
    with (checkpoint / METRICS).open() as handle:
        rows = [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(handle)]
    if len(rows) != done:
        raise RunDirError(f"{checkpoint / METRICS} holds {len(rows)} iterations, but {path} "
                          f"says {done}")
    progress.data, progress.rows = data, rows
    progress.teacher_return = float(teacher_return)
    progress.rng.bit_generator.state = rng_state
    progress.generator.set_state(torch.tensor(torch_state, dtype=torch.uint8))
    student.generator.set_state(torch.tensor(student_state, dtype=torch.uint8))


def _number(text: str) -> float:
    """A metrics value as it was written: counts back as ints, the rest as floats."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def read_distill_config(path: Path) -> DistillConfig:
    """The config of a distillation run, its errors as `RunDirError`."""
    return read_run_config(DistillConfig, path, "mbrl distill")


def is_distill_run(run_dir: Path) -> bool:
    """Whether `run_dir` is a run directory of `mbrl distill` (rather than `train pets`)."""
    try:
        return "algorithm" in json.loads((run_dir / CONFIG).read_text())
    except (OSError, ValueError):
        return False


def load_student(run_dir: Path) -> tuple[DistillConfig, NeuralPolicy]:
    """A distillation run's config and its last committed student.

    Raises:
        RunDirError: naming the folder, if it has no readable config or student.
    """
    config = read_distill_config(run_dir / CONFIG)
    checkpoint = latest_checkpoint(run_dir)  # the published copy may lag it by a kill
    try:
        student, _ = load_policy((checkpoint or run_dir) / STUDENT)
    except (FileNotFoundError, ValueError) as error:
        raise RunDirError(f"{run_dir} has no usable student: {error}") from None
    return config, student


def evaluate_student(run_dir: Path, episodes: int = 1, seed: int = 12345,
                     video: bool = True) -> dict[str, Any]:
    """Run a distillation run's student for `episodes` on its robot; write `eval.json` (and
    `eval.mp4` of the first episode where rendering works)."""
    config, student = load_student(run_dir)
    env = make_env(config)
    rng = np.random.default_rng(seed)
    returns = [rollout(env, student, seed=int(rng.integers(2**31))).episode_return
               for _ in range(episodes)]
    clip = _write_video(env, student, run_dir / "eval.mp4") if video else None
    result = {"env_id": config.env_id, "algorithm": config.algorithm, "returns": returns,
              "mean_return": float(np.mean(returns)), "seed": seed,
              "video": str(clip) if clip else None}
    write_json(run_dir / "eval.json", result)
    return result


def _write_video(env: envs.RobotEnv, student: NeuralPolicy, path: Path) -> Path | None:
    frames: list[Any] = []
    rollout(env, student, seed=EVAL_SEED, on_step=lambda _: frames.append(try_render(env)))
    return write_video(frames, path, fps=round(1 / env.control_timestep))


def plot_distillation(rows: list[dict[str, float]], path: Path, title: str) -> None:
    """Student return against teacher queries, the teacher's return as a line."""
    fig = plots.new_figure(figsize=(6, 4))
    ax = fig.subplots()
    queries = [r["teacher_queries"] for r in rows]
    ax.plot(queries, [r["student_return"] for r in rows], "o-", label="student")
    if rows and math.isfinite(rows[0]["teacher_return"]):
        ax.axhline(rows[0]["teacher_return"], color="k", ls="--", label="teacher")
    ax.set_xlabel("teacher queries (labels or samples)")
    ax.set_ylabel("return")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    plots.save_png(fig, path)
