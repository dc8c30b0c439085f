"""Plots written into run directories (PNG, headless).

Figures are drawn with matplotlib's object API (`matplotlib.figure.Figure`), not pyplot:
importing this module loads nothing and switches no global backend, and drawing needs no
display.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mbrl.files import atomic_open


def new_figure(**kwargs: Any) -> Any:
    """A `matplotlib.figure.Figure(**kwargs)`, drawn by the Agg canvas wherever it is saved."""
    from matplotlib.figure import Figure  # matplotlib loads when a run first draws

    return Figure(**kwargs)


def save_png(fig: Any, path: Path) -> None:
    """Write `fig` to `path` as a PNG, atomically."""
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)


def plot_trajectory(rows: Sequence[Mapping[str, float]], path: Path, title: str) -> None:
    """Observations, actions and reward of one episode against time, as a PNG."""
    time_s = [r["time_s"] for r in rows]
    obs_keys = [k for k in rows[0] if k.startswith("obs_")]
    act_keys = [k for k in rows[0] if k.startswith("action_")]
    fig = new_figure(figsize=(8, 7.5))
    axes = fig.subplots(3, 1, sharex=True)
    for key in obs_keys:
        axes[0].plot(time_s, [r[key] for r in rows], label=key, lw=1.2)
    axes[0].set_ylabel("observation")
    axes[0].legend(ncol=min(len(obs_keys), 6), fontsize=7, loc="upper right")
    for key in act_keys:
        axes[1].plot(time_s, [r[key] for r in rows], label=key, lw=1.0)
    axes[1].set_ylabel("action")
    axes[1].legend(ncol=min(len(act_keys), 7), fontsize=7, loc="upper right")
    axes[2].plot(time_s, [r["reward"] for r in rows], color="tab:green", label="reward")
    twin = axes[2].twinx()
    twin.plot(time_s, [r["return"] for r in rows], color="tab:purple", label="return")
    axes[2].set_ylabel("reward", color="tab:green")
    twin.set_ylabel("return", color="tab:purple")
    axes[2].set_xlabel("time (s)")
    fig.suptitle(title)
    fig.tight_layout()
    save_png(fig, path)


def plot_learning_curve(rows: Sequence[Mapping[str, float]], path: Path, title: str,
                        error_key: str = "holdout_mse",
                        error_label: str = "model holdout MSE") -> None:
    """Episode return against environment steps (and noise-free evaluation returns where
    rows have `eval_return`), and the model's error `error_key`, as a PNG."""
    steps = [r["env_steps"] for r in rows]
    fig = new_figure(figsize=(7, 6))
    ret, err = fig.subplots(2, 1, sharex=True)
    ret.plot(steps, [r["return"] for r in rows], marker="o", color="tab:blue",
             label="training episode")
    evaluated = [(r["env_steps"], r["eval_return"]) for r in rows
                 if not math.isnan(r.get("eval_return", math.nan))]
    if evaluated:
        ret.plot(*zip(*evaluated, strict=True), marker="s", color="tab:green",
                 label="evaluation (no exploration noise)")
        ret.legend(fontsize=8)
    ret.set_ylabel("episode return")
    ret.grid(alpha=0.3)
    err.plot(steps, [r[error_key] for r in rows], marker="o", color="tab:red")
    err.set_ylabel(error_label)
    err.set_yscale("log")
    err.set_xlabel("environment steps")
    err.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    save_png(fig, path)


def plot_open_loop(truth: Any, predicted: Any, path: Path, context: int, title: str,
                   columns: int = 9) -> None:
    """PlaNet's figure: true frames (top) over the model's open-loop predictions (bottom),
    `[K, C, H, W]` uint8 each, at `columns` evenly spaced steps after `context` filtered
    frames, as a PNG."""
    k = truth.shape[0]
    picks = sorted({round(i * (k - 1) / max(columns - 1, 1)) for i in range(columns)})
    fig = new_figure(figsize=(1.2 * len(picks), 3.0))
    axes = fig.subplots(2, len(picks), squeeze=False)
    for column, step in enumerate(picks):
        for row, frames in enumerate((truth, predicted)):
            axis = axes[row][column]
            axis.imshow(frames[step].transpose(1, 2, 0))
            axis.set_xticks([])
            axis.set_yticks([])
        axes[0][column].set_title(f"t={context + step + 1}", fontsize=8)
    axes[0][0].set_ylabel("truth", fontsize=8)
    axes[1][0].set_ylabel("open loop", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_png(fig, path)
