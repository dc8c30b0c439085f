"""PlaNet on a CPU: time per gradient step and per planning step, what speeds them up, and
mbrl-lib's PlaNet at equal model size.

    python -m benchmarks.planet_speed

1. Our gradient step (`RSSM.loss`, backward, clipping, Adam) and planning step (one
   `LatentMPC.act`: filter a frame, CEM in latent space) at both presets (`planet_paper`,
   `planet_cpu`), on one and two torch threads; medians of `--steps` steps after one warm-up.
2. What was tried on the gradient step, each against the default in the same run: the
   convolutions all at once instead of in blocks of 256 frames, channels-last memory format,
   `torch.compile` of the encoder and decoder, oneDNN (`torch.backends.mkldnn`) switched off,
   and shorter chunks (L=25).
3. Side by side at the paper's size (GRU 200, state 30, hidden 200, depth 32, B=50 x L=50),
   one thread each, both pinned to one core, alternating blocks: our step against mbrl-lib's
   `PlaNetModel.update` (`mbrl==0.2.0` in its own venv, `benchmarks/peer_workers/
   mbrl_lib_planet_worker.py`); the ratio ours / theirs per block, target at most 1.

Writes benchmarks/results/planet_speed.json and .png.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from benchmarks.peer_mbrl_lib import REQUIREMENTS
from benchmarks.peer_venvs import WORKERS, Worker, on_the_benchmark_core, peer_python
from benchmarks.provenance import RESULTS, provenance
from mbrl.algorithms.planet import PlaNetConfig, latent_controller, make_env, preset
from mbrl.learning.rssm import RSSM

#: Ours / mbrl-lib's time per gradient step at equal size: at most this.
TARGET_RATIO = 1.0


def gradient_step(config: PlaNetConfig, *, conv_block: int | None = 256,
                  channels_last: bool = False, compiled: bool = False,
                  chunk_length: int | None = None) -> Callable[[], None]:
    """One gradient step of `config`'s model on a fixed batch of random frames, as a call."""
    model = RSSM(1, config.model, seed=0)
    model.conv_block = conv_block
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if compiled:
        model.encoder = torch.compile(model.encoder)  # type: ignore[assignment]
        model.decoder = torch.compile(model.decoder)  # type: ignore[assignment]
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate,
                                 eps=config.adam_epsilon)
    b, t = config.batch_size, chunk_length or config.chunk_length
    generator = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (b, t + 1, 3, 64, 64), dtype=torch.uint8,
                           generator=generator)
    if channels_last:
        frames = frames.reshape(-1, 3, 64, 64).contiguous(
            memory_format=torch.channels_last).reshape(b, t + 1, 3, 64, 64)
    actions = torch.rand(b, t, 1, generator=generator) * 2 - 1
    rewards = torch.rand(b, t, generator=generator)

    def step() -> None:
        losses = model.loss(frames, actions, rewards, generator)
        optimiser.zero_grad(set_to_none=True)
        losses.total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimiser.step()

    return step


def planning_step(config: PlaNetConfig) -> Callable[[], None]:
    """One control step of the latent MPC (filter a frame, plan), as a call."""
    env = make_env(config)
    model = RSSM(env.task.act_dim, config.model, seed=0)
    agent = latent_controller(model, env.task, config, torch.Generator().manual_seed(0))
    frame, _ = env.reset(seed=0)
    agent.reset()

    def step() -> None:
        agent.act(frame)

    return step


def median_ms(call: Callable[[], None], steps: int) -> dict[str, Any]:
    call()  # warm-up: allocations, oneDNN primitives, compilation
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1e3)
    return {"median_ms": statistics.median(times), "ms": times}


@contextlib.contextmanager
def threads(count: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def presets_table(steps: dict[str, int]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for name in ("planet_cpu", "planet_paper"):
        config = preset(name)
        for count in (1, 2):
            with threads(count):
                key = f"{name}/{count}-thread"
                table[key] = {
                    "gradient_step": median_ms(gradient_step(config), steps[name]),
                    "planning_step": median_ms(planning_step(config), 5),
                }
                print(key, {k: round(v["median_ms"]) for k, v in table[key].items()},
                      flush=True)
    return table


def tried(steps: dict[str, int]) -> dict[str, Any]:
    """Each variant against the default, both measured back to back, two threads."""
    variants: dict[str, dict[str, Any]] = {
        "convolutions all at once (no blocks)": {"conv_block": None},
        "channels-last": {"channels_last": True},
        "torch.compile of encoder and decoder": {"compiled": True},
        "chunks of L=25": {"chunk_length": 25},
    }
    results: dict[str, Any] = {}
    for name in ("planet_cpu", "planet_paper"):
        config = preset(name)
        with threads(2):
            default = median_ms(gradient_step(config), steps[name])
            results[f"{name}/default"] = default
            for label, change in [*variants.items(), ("oneDNN off", {})]:
                try:
                    if label == "oneDNN off":
                        with torch.backends.mkldnn.flags(enabled=False):
                            measured = median_ms(gradient_step(config), steps[name])
                    else:
                        measured = median_ms(gradient_step(config, **change), steps[name])
                    measured["vs_default"] = measured["median_ms"] / default["median_ms"]
                except Exception as error:  # a variant this machine cannot run is reported
                    measured = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
                results[f"{name}/{label}"] = measured
                print(name, label, {k: v for k, v in measured.items() if k != "ms"},
                      flush=True)
    return results


def against_mbrl_lib(blocks: int, steps: int) -> dict[str, Any]:
    """Alternating blocks of `steps` gradient steps, ours and mbrl-lib's, on one core."""
    paper = preset("planet_paper")
    sizes = {"belief": paper.model.deterministic, "latent": paper.model.stochastic,
             "hidden": paper.model.hidden, "depth": paper.model.depth,
             # mbrl-lib's loss steps through frames 1 .. L-1 of a sequence of L frames.
             "batch": paper.batch_size, "length": paper.chunk_length + 1, "action_size": 1,
             "seed": 0}
    python = peer_python("mbrl_lib", REQUIREMENTS)
    worker = Worker(python, WORKERS / "mbrl_lib_planet_worker.py", sizes)
    before = os.sched_getaffinity(0)
    on_the_benchmark_core()
    ours_blocks, theirs_blocks = [], []
    try:
        with threads(1):
            ours = gradient_step(paper)
            ours()
            worker.ask({"op": "time", "steps": 1, "threads": 1})  # warm-up
            for _ in range(blocks):
                ours_blocks.append(median_ms(ours, steps)["ms"])
                theirs_blocks.append(worker.ask({"op": "time", "steps": steps,
                                                 "threads": 1})["ms"])
    finally:
        worker.close()
        os.sched_setaffinity(0, before)
    ratios = [statistics.median(o) / statistics.median(t)
              for o, t in zip(ours_blocks, theirs_blocks, strict=True)]
    return {
        "sizes": sizes,
        "ours_ms": ours_blocks, "mbrl_lib_ms": theirs_blocks,
        "ratio_per_block": ratios, "median_ratio": statistics.median(ratios),
        "target_ratio": TARGET_RATIO, "met": statistics.median(ratios) <= TARGET_RATIO,
        "what_differs": "both step through 50 frames a chunk (mbrl-lib gets sequences of 51 "
        "frames and drops the first); ours also encodes that first frame, to filter the "
        "state it starts from, and quantises frames to 5 bits with dequantisation noise",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paper-steps", type=int, default=2)
    parser.add_argument("--cpu-steps", type=int, default=5)
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--skip-peer", action="store_true")
    args = parser.parse_args()
    steps = {"planet_paper": args.paper_steps, "planet_cpu": args.cpu_steps}
    payload: dict[str, Any] = {"benchmark": "planet_speed", **provenance(),
                               "presets": {name: dataclasses.asdict(preset(name))
                                           for name in ("planet_cpu", "planet_paper")}}
    payload["mbrl_lib"] = None if args.skip_peer else against_mbrl_lib(args.blocks, 2)
    if payload["mbrl_lib"]:
        print("mbrl-lib", {k: v for k, v in payload["mbrl_lib"].items()
                           if k in ("ratio_per_block", "median_ratio")}, flush=True)
    payload["table"] = presets_table(steps)
    payload["tried"] = tried(steps)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "planet_speed.json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(payload)


def plot(payload: dict[str, Any]) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    table = payload["table"]
    names = list(table)
    x = np.arange(len(names))
    axes[0].bar(x - 0.2, [table[n]["gradient_step"]["median_ms"] / 1e3 for n in names], 0.4,
                label="gradient step")
    axes[0].bar(x + 0.2, [table[n]["planning_step"]["median_ms"] / 1e3 for n in names], 0.4,
                label="planning step")
    axes[0].set_xticks(x, names, rotation=20, fontsize=7)
    axes[0].set_ylabel("seconds (median)")
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=8)
    axes[0].set_title("PlaNet on this CPU, by preset and threads", fontsize=9)
    tried_rows = [(k, v["vs_default"]) for k, v in payload["tried"].items()
                  if "vs_default" in v]
    axes[1].barh([k for k, _ in tried_rows], [v for _, v in tried_rows])
    axes[1].axvline(1.0, color="black", lw=1)
    peer = payload.get("mbrl_lib")
    if peer:
        axes[1].barh(["planet_paper/ours vs mbrl-lib (1 thread)"], [peer["median_ratio"]],
                     color="tab:red")
    axes[1].set_xlabel("time / default (below 1: faster)")
    axes[1].tick_params(axis="y", labelsize=7)
    axes[1].set_title("what was tried, gradient step, 2 threads", fontsize=9)
    fig.tight_layout()
    fig.savefig(RESULTS / "planet_speed.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
