"""Replay of camera frames for latent models: each frame stored once, chunks inside episodes.

PlaNet (Hafner et al. 2019, "Learning Latent Dynamics for Planning from Pixels", sec. 3 and
appendix A) trains on chunks of 50 consecutive steps of one episode, drawn uniformly from all
data so far. Storing transitions as `(frame, action, next frame)` pairs would keep every frame
twice; here row `k` holds the frame `o_k` an episode reached and the action `a_k` taken there
with its reward `r_k`, and an episode of `T` steps takes `T + 1` rows, its last row's action
unused. Frames are uint8 `[C, H, W]` (what a convolution takes); 100,000 64x64 RGB frames take
1.23 GB (12,288 bytes each), the actions and rewards a few MB more.

Shapes: `N` rows, `B` batch, `L` chunk length in steps, `du` action dimension.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from mbrl.files import atomic_open

_FORMAT_VERSION = 1


@dataclass(frozen=True)
class FrameChunks:
    """Chunks of `L` consecutive steps of one episode each."""

    #: Frames `o_0 .. o_L`, `[B, L + 1, C, H, W]` uint8.
    frames: torch.Tensor
    #: Actions `a_0 .. a_{L-1}`, `[B, L, du]` float32 (`a_t` taken at `o_t`).
    actions: torch.Tensor
    #: Rewards `r_0 .. r_{L-1}`, `[B, L]` float32 (`r_t` for `a_t`).
    rewards: torch.Tensor
    #: Whether step `t` ended the episode by the task, `[B, L]` bool.
    terminated: torch.Tensor


class FrameReplay:
    """Episodes of frames, actions and rewards (see the module docstring).

    Args:
        frame_shape: `(C, H, W)` of every frame.
        act_dim: du.
    """

    def __init__(self, frame_shape: tuple[int, int, int], act_dim: int) -> None:
        if len(frame_shape) != 3 or min(frame_shape) < 1 or act_dim < 1:
            raise ValueError(f"frame_shape must be (C, H, W) of positive sizes and act_dim "
                             f">= 1, got {frame_shape} and {act_dim}")
        self.frame_shape, self.act_dim = tuple(int(s) for s in frame_shape), int(act_dim)
        self._frames = np.zeros((0, *self.frame_shape), dtype=np.uint8)
        self._actions = np.zeros((0, act_dim), dtype=np.float32)
        self._rewards = np.zeros(0, dtype=np.float32)
        self._terminated = np.zeros(0, dtype=bool)
        self._episode = np.zeros(0, dtype=np.int64)
        self._rows = 0
        self._open = False  # an episode has begun and not ended

    def __len__(self) -> int:
        """Frames stored."""
        return self._rows

    @property
    def steps(self) -> int:
        """Steps stored (frames less one per episode)."""
        return self._rows - self.num_episodes

    @property
    def num_episodes(self) -> int:
        """Episodes begun."""
        return int(self._episode[self._rows - 1]) + 1 if self._rows else 0

    @property
    def nbytes(self) -> int:
        """Memory of the stored rows, bytes."""
        per_row = (int(np.prod(self.frame_shape)) + 4 * self.act_dim + 4 + 1 + 8)
        return per_row * self._rows

    def start_episode(self, frame: Any) -> None:
        """Begin an episode at its reset frame `[C, H, W]` uint8."""
        self._append(self._checked_frame(frame), np.zeros(self.act_dim, np.float32), 0.0,
                     False, self.num_episodes)
        self._open = True

    def add_step(self, action: Any, reward: float, next_frame: Any,
                 terminated: bool = False, last: bool = False) -> None:
        """Record the action `[du]` taken at the latest frame, its reward, and the frame it
        led to; `last` (or `terminated`) ends the episode.

        Raises:
            ValueError: naming `action`, `reward` or `frame`, for a wrong shape, dtype or a
                non-finite value; or if no episode has begun.
        """
        if not self._open:
            raise ValueError("add_step before start_episode: no episode has begun")
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (self.act_dim,) or not np.isfinite(a).all():
            raise ValueError(f"action must be finite [du={self.act_dim}], got {a.tolist()}")
        if not np.isfinite(reward):
            raise ValueError(f"reward must be finite, got {reward}")
        frame = self._checked_frame(next_frame)
        row = self._rows - 1
        self._actions[row], self._rewards[row] = a, reward
        self._terminated[row] = bool(terminated)
        self._append(frame, np.zeros(self.act_dim, np.float32), 0.0, False,
                     int(self._episode[row]))
        if terminated or last:
            self._open = False

    def sample(self, batch_size: int, length: int, rng: np.random.Generator) -> FrameChunks:
        """`batch_size` chunks of `length` steps, each inside one episode, uniformly over all
        the places such a chunk fits.

        Raises:
            ValueError: if no episode has `length` steps yet.
        """
        starts = self._chunk_starts(length)
        if starts.size == 0:
            raise ValueError(f"no episode holds {length} steps yet (the longest holds "
                             f"{self._longest_episode()})")
        chosen = starts[rng.integers(starts.size, size=batch_size)]
        rows = chosen[:, None] + np.arange(length + 1)
        steps = rows[:, :-1]
        return FrameChunks(
            frames=torch.from_numpy(self._frames[rows]),
            actions=torch.from_numpy(self._actions[steps]),
            rewards=torch.from_numpy(self._rewards[steps]),
            terminated=torch.from_numpy(self._terminated[steps]),
        )

    def _chunk_starts(self, length: int) -> NDArray[np.int64]:
        """Rows `k` where `k .. k + length` lie in one episode."""
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        n = self._rows
        if n <= length:
            return np.zeros(0, dtype=np.int64)
        episode = self._episode[:n]
        k = np.arange(n - length)
        return k[episode[k] == episode[k + length]]

    def _longest_episode(self) -> int:
        if not self._rows:
            return 0
        return int(np.bincount(self._episode[: self._rows]).max()) - 1

    def _checked_frame(self, frame: Any) -> NDArray[np.uint8]:
        f = np.asarray(frame)
        if f.dtype != np.uint8:
            raise ValueError(f"frame must be uint8, got {f.dtype}")
        if f.shape != self.frame_shape:
            raise ValueError(f"frame must be {list(self.frame_shape)} (C, H, W), got "
                             f"{list(f.shape)}")
        return f

    def _append(self, frame: NDArray[np.uint8], action: NDArray[np.float32], reward: float,
                terminated: bool, episode: int) -> None:
        if self._rows == self._frames.shape[0]:  # grow by half again: amortised O(1)
            extra = max(16, self._rows // 2)
            self._frames = np.concatenate(
                [self._frames, np.zeros((extra, *self.frame_shape), np.uint8)])
            self._actions = np.concatenate([self._actions, np.zeros((extra, self.act_dim),
                                                                   np.float32)])
            self._rewards = np.concatenate([self._rewards, np.zeros(extra, np.float32)])
            self._terminated = np.concatenate([self._terminated, np.zeros(extra, bool)])
            self._episode = np.concatenate([self._episode, np.zeros(extra, np.int64)])
        row = self._rows
        self._frames[row], self._actions[row] = frame, action
        self._rewards[row], self._terminated[row] = reward, terminated
        self._episode[row] = episode
        self._rows += 1

    def save(self, path: str | Path) -> None:
        """Write everything to `path` (`.npz`, no pickles), atomically."""
        n = self._rows
        with atomic_open(path, "wb") as handle:
            np.savez(handle, format_version=_FORMAT_VERSION, frames=self._frames[:n],
                     actions=self._actions[:n], rewards=self._rewards[:n],
                     terminated=self._terminated[:n], episode=self._episode[:n],
                     open=self._open)

    @classmethod
    def load(cls, path: str | Path) -> FrameReplay:
        """The replay `save` wrote.

        Raises:
            ValueError: naming the file, for anything else or arrays that do not fit together.
        """
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as saved:
                arrays = {name: saved[name] for name in saved.files}
        except (OSError, ValueError) as error:
            raise ValueError(f"{path} is not a frame replay file: {error}") from None
        needed = ("format_version", "frames", "actions", "rewards", "terminated", "episode",
                  "open")
        missing = [name for name in needed if name not in arrays]
        if missing:
            raise ValueError(f"{path} is not a frame replay file: it lacks {missing}")
        if int(arrays["format_version"]) != _FORMAT_VERSION:
            raise ValueError(f"{path}: frame replay format {int(arrays['format_version'])}, "
                             f"this code reads {_FORMAT_VERSION}")
        frames, actions = arrays["frames"], arrays["actions"]
        n = frames.shape[0]
        if (frames.dtype != np.uint8 or frames.ndim != 4 or actions.ndim != 2
                or any(arrays[k].shape[0] != n for k in ("actions", "rewards", "terminated",
                                                         "episode"))):
            raise ValueError(f"{path}: the arrays do not fit together (frames "
                             f"{list(frames.shape)} {frames.dtype}, actions "
                             f"{list(actions.shape)})")
        episode = arrays["episode"]
        if n and (episode[0] != 0 or np.any(np.diff(episode) < 0)
                  or np.any(np.diff(episode) > 1)):
            raise ValueError(f"{path}: episode numbers must start at 0 and count up by one")
        replay = cls(tuple(frames.shape[1:]), actions.shape[1])
        replay._frames, replay._actions = frames.copy(), actions.astype(np.float32)
        replay._rewards = arrays["rewards"].astype(np.float32)
        replay._terminated = arrays["terminated"].astype(bool)
        replay._episode = episode.astype(np.int64)
        replay._rows, replay._open = n, bool(arrays["open"])
        return replay
