"""Short episode videos for run directories (headless rendering; optional where it fails)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import envs

log = logging.getLogger(__name__)


def try_render(env: envs.RobotEnv, width: int = 320, height: int = 240) -> np.ndarray | None:
    """A frame of the env, or None where this machine cannot render (no OpenGL)."""
    try:
        return env.render_rgb(width=width, height=height)
    except Exception as error:  # no OpenGL here: the run goes on without video
        log.warning("rendering failed, no video: %s", error)
        return None


def write_video(frames: Sequence[np.ndarray | None], path: Path, fps: int) -> Path | None:
    """Write `frames` as an MP4; None (and no file) if a frame is missing or no encoder."""
    if not frames or any(f is None for f in frames):
        return None
    try:
        import imageio.v2 as imageio

        imageio.mimwrite(path, list(frames), fps=fps, macro_block_size=8)  # type: ignore[arg-type]
    except Exception as error:  # imageio-ffmpeg missing: the run is complete without video
        log.warning("could not write %s: %s", path, error)
        path.unlink(missing_ok=True)
        return None
    return path
