"""Plots written into run directories (PNG, headless).

Figures are drawn with matplotlib's object API (`matplotlib.figure.Figure`), not pyplot:
importing this module loads nothing and switches no global backend, and drawing needs no
display.
"""

from __future__ import annotations

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


def plot_learning_curve(rows: Sequence[Mapping[str, float]], path: Path, title: str) -> None:
    """Episode return against environment steps, and the model's holdout error, as a PNG."""
    steps = [r["env_steps"] for r in rows]
    fig = new_figure(figsize=(7, 6))
    ret, err = fig.subplots(2, 1, sharex=True)
    ret.plot(steps, [r["return"] for r in rows], marker="o", color="tab:blue")
    ret.set_ylabel("episode return")
    ret.grid(alpha=0.3)
    err.plot(steps, [r["holdout_mse"] for r in rows], marker="o", color="tab:red")
    err.set_ylabel("model holdout MSE")
    err.set_yscale("log")
    err.set_xlabel("environment steps")
    err.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    save_png(fig, path)
