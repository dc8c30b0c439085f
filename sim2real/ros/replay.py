"""`mbrl replay LOG.mcap`: what a deployment's log says, as numbers and one figure.

Reads the log of the controller node or of the simulated robot (whatever topics it has):
joint states, commands, the controller's period records (plan time, the age of the state it
acted on, safe or not, overruns) and safety events, and the robot's step records (return).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from mbrl.errors import UserError
from sim2real.ros.log import CYCLE_TOPIC, EVENT_TOPIC, ROBOT_TOPIC, LogRecord, read_log


def replay(path: Path, figure: Path | None = None) -> dict[str, Any]:
    """Summarise the log at `path` and plot it to `figure` (default: beside it, `.png`)."""
    if not path.is_file():
        raise UserError(f"{path}: no such log file")
    try:
        records = read_log(path)
    except ValueError as error:
        raise UserError(str(error)) from None
    if not records:
        raise UserError(f"{path}: the log holds no messages")
    summary = summarize(records)
    figure = figure or path.with_suffix(".png")
    plot(records, figure, title=path.name)
    summary["figure"] = str(figure)
    return summary


def _percentiles(values: list[float]) -> dict[str, float] | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    return {"p50": float(np.percentile(finite, 50)), "p99": float(np.percentile(finite, 99)),
            "max": float(np.max(finite)), "n": len(finite)}


def summarize(records: list[LogRecord]) -> dict[str, Any]:
    """Counts per topic, the controller's timing and safety, the robot's return."""
    times = [r.time_s for r in records]
    topics = Counter(r.topic for r in records)
    summary: dict[str, Any] = {"duration_s": max(times) - min(times),
                               "messages": dict(sorted(topics.items()))}
    cycles = [r.json() for r in records if r.topic == CYCLE_TOPIC]
    if cycles:
        summary["periods"] = len(cycles)
        summary["safe_periods"] = sum(bool(c["safe"]) for c in cycles)
        summary["overruns"] = sum(bool(c["overrun"]) for c in cycles)
        summary["plan_ms"] = _percentiles([c["plan_ms"] for c in cycles])
        summary["state_age_ms"] = _percentiles(
            [1000 * (c["decided_s"] - c["state_stamp_s"]) for c in cycles
             if c["state_stamp_s"] is not None])
    events = [r.json() for r in records if r.topic == EVENT_TOPIC]
    if events:
        summary["events"] = dict(Counter(e["kind"] for e in events))
    steps = [r.json() for r in records if r.topic == ROBOT_TOPIC]
    if steps:
        summary["robot_steps"] = len(steps)
        summary["robot_return"] = float(sum(s["reward"] for s in steps))
    return summary


def plot(records: list[LogRecord], figure: Path, title: str) -> None:
    """Joint positions, commands (safe periods shaded), timing and events against time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = min(r.time_s for r in records)
    states = [r for r in records if r.topic.endswith("joint_states")]
    commands = [r for r in records if r.topic.endswith("commands")]
    cycles = [r.json() for r in records if r.topic == CYCLE_TOPIC]
    events = [r.json() for r in records if r.topic == EVENT_TOPIC]
    fig, axes = plt.subplots(4, 1, figsize=(10, 9), sharex=True)
    valid = [r for r in states if len(r.message.name) == len(r.message.position)]
    if valid:
        names = list(valid[0].message.name)
        for name in names:
            points = [(r.time_s - t0, r.message.position[list(r.message.name).index(name)])
                      for r in valid if name in r.message.name]
            axes[0].plot(*zip(*points, strict=True), label=name, lw=1)
        axes[0].legend(loc="upper right", fontsize=8)
    axes[0].set_ylabel("joint position")
    if commands:
        width = max(len(r.message.data) for r in commands)
        for j in range(width):
            points = [(r.time_s - t0, r.message.data[j]) for r in commands
                      if len(r.message.data) > j]
            axes[1].plot(*zip(*points, strict=True), lw=1, label=f"command {j}")
    for c, following in itertools.pairwise(cycles):
        if c["safe"]:  # the safe command holds until the next period's command
            axes[1].axvspan(c["decided_s"] - t0, following["decided_s"] - t0, color="red",
                            alpha=0.2, lw=0)
    axes[1].set_ylabel("effort (safe: red)")
    if cycles:
        tick = [c["decided_s"] - t0 for c in cycles]
        axes[2].plot(tick, [c["plan_ms"] if c["plan_ms"] is not None else math.nan
                            for c in cycles], ".", ms=2, label="plan ms")
        axes[2].plot(tick, [1000 * (c["decided_s"] - c["state_stamp_s"])
                            if c["state_stamp_s"] is not None else math.nan for c in cycles],
                     ".", ms=2, label="state age at command, ms")
        axes[2].legend(loc="upper right", fontsize=8)
    axes[2].set_ylabel("ms")
    kinds = sorted({e["kind"] for e in events})
    for e in events:
        axes[3].plot(e["time_s"] - t0, kinds.index(e["kind"]), "|", ms=10)
    axes[3].set_yticks(range(len(kinds)), kinds)
    axes[3].set_ylabel("safety events")
    axes[3].set_xlabel("seconds")
    axes[0].set_title(title)
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=100)
    plt.close(fig)
