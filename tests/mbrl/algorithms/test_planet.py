"""PlaNet runs on the real dm_control cart-pole from 64x64 frames: the run directory, exact
resume after a kill inside an episode, the belief-keeping latent MPC, the command line and its
refusals (tiny budgets: 20-step episodes, a model of a few thousand weights)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import mbrl.algorithms.planet as planet_module
from controllers.validation import ConfigError
from mbrl.algorithms.planet import (
    PRESETS,
    PlaNetConfig,
    heldout_episode,
    latent_controller,
    make_env,
    open_loop_prediction,
    preset,
    train_planet,
)
from mbrl.cli import main
from mbrl.config import from_dict
from mbrl.control.latent_mpc import frame_tensor
from mbrl.learning.checkpoint import load_model, load_rssm
from mbrl.learning.frames import FrameReplay
from mbrl.learning.rssm import RSSM, RSSMConfig, preprocess
from mbrl.runs.rundir import completed_episodes

TINY = PlaNetConfig(
    episodes=3, seed_episodes=2, episode_steps=20, chunk_length=8, batch_size=4,
    train_steps=3, model=RSSMConfig(deterministic=16, stochastic=4, hidden=16, depth=4),
    planner_settings={"population": 20, "elites": 4, "iterations": 2}, horizon=4,
    eval_every=1,
)
#: Columns measured in wall-clock time: they differ between any two runs.
TIMES = ("train_s", "plan_ms", "wall_s")


def _same(rows: list[dict[str, float]], other: list[dict[str, float]]) -> bool:
    def values(row: dict[str, float]) -> list[Any]:
        return [None if isinstance(v, float) and math.isnan(v) else v
                for k, v in row.items() if k not in TIMES]
    return [values(r) for r in rows] == [values(r) for r in other]


def test_a_run_writes_its_directory_and_learns_from_its_own_frames(tmp_path: Path) -> None:
    rows = train_planet(TINY, tmp_path / "run")
    run_dir = tmp_path / "run"
    assert [int(r["episode"]) for r in rows] == [0, 1, 2]
    assert [r["env_steps"] for r in rows] == [160, 320, 480]  # 20 steps x action repeat 8
    assert math.isnan(rows[1]["loss"]) and np.isfinite(rows[2]["loss"])
    assert np.isfinite(rows[2]["eval_return"]) and 0 < rows[2]["open_loop_mse"] < 1
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.json", "metrics.csv", "model.pt", "replay_buffer.npz",
            "learning_curve.png", "prediction.png", "prediction.mp4", "tensorboard"} <= names
    replay = FrameReplay.load(run_dir / "replay_buffer.npz")
    assert (replay.num_episodes, replay.steps, replay.frame_shape) == (3, 60, (3, 64, 64))
    _model, optimiser, _ = load_rssm(run_dir / "model.pt", planet_module.make_optimiser(TINY))
    assert optimiser is not None and optimiser.state_dict()["state"][0]["step"] == 3
    with pytest.raises(ValueError, match="not a model checkpoint"):
        load_model(run_dir / "model.pt")


def test_a_killed_run_resumes_to_the_results_of_one_never_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = dataclasses.replace(TINY, episodes=4)
    straight = train_planet(config, tmp_path / "straight")

    # Killed inside the fourth episode, after its model update, as it starts collecting.
    real_rollout, calls = planet_module.rollout, []

    def rollout_then_kill(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 6:  # the held-out episode, 2 seed episodes, episode 2 and its test
            raise KeyboardInterrupt
        return real_rollout(*args, **kwargs)

    monkeypatch.setattr(planet_module, "rollout", rollout_then_kill)
    with pytest.raises(KeyboardInterrupt):
        train_planet(config, tmp_path / "killed")
    monkeypatch.setattr(planet_module, "rollout", real_rollout)
    assert completed_episodes(tmp_path / "killed") == 3
    resumed = train_planet(config, tmp_path / "killed", resume=True)

    assert _same(resumed, straight)
    for name in ("model.pt", "replay_buffer.npz"):
        assert (tmp_path / "straight" / name).read_bytes() == (
            tmp_path / "killed" / name).read_bytes(), name


def test_resume_may_extend_the_episodes_only(tmp_path: Path) -> None:
    train_planet(dataclasses.replace(TINY, episodes=2), tmp_path / "run")
    longer = train_planet(TINY, tmp_path / "run", resume=True)
    assert [int(r["episode"]) for r in longer] == [0, 1, 2]
    with pytest.raises(Exception, match="train_steps"):
        train_planet(dataclasses.replace(TINY, train_steps=4), tmp_path / "run", resume=True)


def test_the_latent_mpc_filters_every_frame_into_its_belief() -> None:
    model = RSSM(1, TINY.model, seed=0)
    env = make_env(TINY)
    agent = latent_controller(model, env.task, TINY, torch.Generator().manual_seed(0))
    frame, _ = env.reset(seed=1)
    agent.reset()
    first = agent.act(frame)
    frame2, *_ = env.step(first.numpy())
    second = agent.act(frame2)
    for action in (first, second):
        assert action.shape == (1,) and bool(torch.isfinite(action).all())
        assert -1 <= float(action) <= 1

    # The same belief by hand: the posterior of frame 1 from the zero state and no action,
    # then the prior under the played action and the posterior of frame 2.
    with torch.no_grad():
        embed = [model.encode(preprocess(frame_tensor(f, 3)[None], 5, None))
                 for f in (frame, frame2)]
        belief = model.posterior(model.prior(model.initial(1), torch.zeros(1, 1)), embed[0])
        belief = model.posterior(model.prior(belief, first[None]), embed[1])
    assert agent.belief is not None
    torch.testing.assert_close(agent.belief.features(), belief.features())
    agent.reset()
    assert agent.belief is None
    env.close()


def test_open_loop_predictions_cover_the_heldout_episode_after_its_context() -> None:
    episode = heldout_episode(TINY)
    assert episode.frames.shape == (51, 3, 64, 64) and episode.frames.dtype == torch.uint8
    assert episode.actions.shape == (50, 1)
    assert torch.equal(heldout_episode(TINY).frames, episode.frames)  # the same every time
    predicted = open_loop_prediction(RSSM(1, TINY.model, seed=0), episode)
    assert predicted.shape == (46, 3, 64, 64) and predicted.dtype == torch.uint8


def test_presets_hold_the_papers_settings_and_a_cpu_sized_one() -> None:
    paper = preset("planet_paper", "dmc/cheetah-run")
    assert paper.action_repeat == 4 and preset("planet_paper").action_repeat == 8
    assert (paper.batch_size, paper.chunk_length, paper.train_steps, paper.seed_episodes,
            paper.horizon, paper.exploration_noise) == (50, 50, 100, 5, 12, 0.3)
    assert paper.planner_settings == {"population": 1000, "elites": 100, "iterations": 10}
    assert (paper.model.deterministic, paper.model.stochastic, paper.model.hidden,
            paper.model.embedding, paper.model.free_nats) == (200, 30, 200, 1024, 3.0)
    assert (paper.learning_rate, paper.adam_epsilon) == (1e-3, 1e-4)
    assert not paper.mpc.warm_start
    cpu = preset("planet_cpu")
    assert cpu.model.depth < paper.model.depth and cpu.batch_size < paper.batch_size
    assert set(PRESETS) == {"planet_paper", "planet_cpu"}
    with pytest.raises(ConfigError, match="preset"):
        preset("nosuch")


def test_the_command_line_trains_and_evaluates_a_planet_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = tmp_path / "tiny.json"
    config_file.write_text(json.dumps(dataclasses.asdict(TINY)))
    assert main(["train", "planet", "--config", str(config_file), "--episodes", "2",
                 "--out", str(tmp_path / "runs"), "--threads", "1"]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "config.json").read_text())["episodes"] == 2
    assert main(["train", "planet", "--resume", str(run_dir), "--episodes", "3"]) == 0
    assert "open-loop mse" in capsys.readouterr().out
    assert main(["eval", str(run_dir), "--episodes", "1"]) == 0
    result = json.loads((run_dir / "eval.json").read_text())
    assert len(result["returns"]) == 1 and result["env_id"] == "dmc/cartpole-swingup"
    assert (run_dir / "eval.mp4").is_file()


@pytest.mark.parametrize("argv, problem", [
    (["--env", "nosuch/env"], "unknown env id 'nosuch/env'"),
    (["--planner", "ilqr"], "planner: must be a sampling planner"),
    (["--particles", "20"], "--particles: PETS options"),
    (["--preset", "nosuch"], "invalid choice"),
    (["--set", "population=0"], "planner_settings.population: must be >= 1"),
    (["--set", "nosuch=1"], "nosuch"),
    (["--config", "LONG_CHUNKS"], "chunk_length: 999 steps is longer than an episode"),
    (["--resume", "somewhere", "--seed", "3"], "--seed, --out cannot be given with --resume"),
])
def test_bad_input_is_one_line_naming_it(
    argv: list[str], problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if "LONG_CHUNKS" in argv:  # chunks longer than the env's episodes, from a config file
        config_file = tmp_path.parent / f"{tmp_path.name}-long.json"
        config_file.write_text(json.dumps(dataclasses.asdict(dataclasses.replace(
            TINY, chunk_length=999))))
        argv = ["--config", str(config_file)]
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "planet", "--out", str(tmp_path), *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert problem in err and "Traceback" not in err
    assert not list(tmp_path.iterdir()), "nothing may be written before the refusal"


def test_frames_of_the_wrong_size_or_dtype_and_nan_actions_are_named() -> None:
    with pytest.raises(ValueError, match="frame must be uint8"):
        frame_tensor(np.zeros((64, 64, 3), np.float32), 3)
    with pytest.raises(ValueError, match=r"frame must be \[64, 64, 3\]"):
        frame_tensor(np.zeros((32, 32, 3), np.uint8), 3)
    model = RSSM(1, TINY.model, seed=0)
    frames = torch.zeros(2, 4, 3, 64, 64, dtype=torch.uint8)
    actions = torch.zeros(2, 3, 1)
    actions[0, 1, 0] = float("nan")
    with pytest.raises(ValueError, match="actions must be finite"):
        model.loss(frames, actions, torch.zeros(2, 3), torch.Generator())
    with pytest.raises(ValueError, match="frames must be uint8"):
        model.loss(frames.float(), torch.zeros(2, 3, 1), torch.zeros(2, 3), torch.Generator())
    with pytest.raises(ValueError, match=r"frames must be \[\.\.\., 3, 64, 64\]"):
        model.loss(torch.zeros(2, 4, 3, 32, 32, dtype=torch.uint8), torch.zeros(2, 3, 1),
                   torch.zeros(2, 3), torch.Generator())


@pytest.mark.parametrize("values, problem", [
    ({"model": {"kl_balance": 1.5}}, "model.kl_balance: must be in [0, 1] or null"),
    ({"model": {"overshooting_distance": 0}}, "model.overshooting_distance: must be >= 1"),
    ({"seed_episodes": 200}, "seed_episodes: must not exceed episodes (100)"),
    ({"learning_rate": 0}, "learning_rate: must be > 0"),
    ({"planner": "ddp"}, "planner: must be a sampling planner or mcts"),
    ({"exploration_noise": -0.1}, "exploration_noise: must be >= 0"),
])
def test_settings_out_of_range_are_refused_naming_the_field(values: dict[str, Any],
                                                            problem: str) -> None:
    with pytest.raises(ConfigError) as error:
        from_dict(PlaNetConfig, values)
    assert problem in str(error.value)
