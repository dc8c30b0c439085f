"""The replay buffer: every transition an agent has seen, for sampling and model training.

Experience replay as in Lin (1992), "Self-Improving Reactive Agents Based on Reinforcement
Learning, Planning and Teaching", and Mnih et al. (2015), "Human-level control through deep
reinforcement learning" (DQN): transitions are kept and resampled uniformly. Latent models draw
chunks of consecutive steps inside one episode instead, as in Hafner et al. (2019), "Learning
Latent Dynamics for Planning from Pixels" (PlaNet). Model training holds part of the data out to
decide when to stop, as in Janner et al. (2019), "When to Trust Your Model: Model-Based Policy
Optimization" (MBPO).

Shapes: `N` transitions stored, `B` batch, `L` sequence length, `do` observation and `du` action
dimension. Observations come from `envs` as float64 and are stored as float32.

Indices (`split`, the order of `arrays()`) count transitions in insertion order, oldest first,
also once a bounded buffer has wrapped around and overwritten its oldest transitions.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from numpy.typing import NDArray

from mbrl.files import atomic_open

#: The names of the per-transition arrays, in the order `arrays()` returns them.
FIELDS: tuple[str, ...] = (
    "obs", "act", "next_obs", "reward", "terminated", "truncated", "episode"
)
_META = ("format_version", "obs_dim", "act_dim", "capacity", "next_episode", "position")
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class TransitionBatch:
    """Transitions drawn from a `ReplayBuffer`, as CPU tensors."""

    #: Observations before the action, `[B, do]` float32.
    obs: torch.Tensor
    #: Actions taken, `[B, du]` float32.
    act: torch.Tensor
    #: Observations after the action, `[B, do]` float32.
    next_obs: torch.Tensor
    #: Rewards, `[B]` float32.
    reward: torch.Tensor
    #: Whether the task ended with the transition (not a time limit), `[B]` bool.
    terminated: torch.Tensor


@dataclass(frozen=True)
class SequenceBatch:
    """Chunks of consecutive transitions of one episode each, as CPU tensors.

    Step `t + 1` of a chunk follows step `t` in the same episode: `obs[:, t + 1]` equals
    `next_obs[:, t]`, and only the last step of a chunk can be terminated.
    """

    #: Observations before each action, `[B, L, do]` float32.
    obs: torch.Tensor
    #: Actions taken, `[B, L, du]` float32.
    act: torch.Tensor
    #: Observations after each action, `[B, L, do]` float32.
    next_obs: torch.Tensor
    #: Rewards, `[B, L]` float32.
    reward: torch.Tensor
    #: Whether the task ended with the transition (not a time limit), `[B, L]` bool.
    terminated: torch.Tensor


class ReplayBuffer:
    """Transitions `(obs, act, next_obs, reward, terminated, truncated)` in insertion order.

    Each transition also records the index of its episode; a new episode begins after a
    transition that is terminated or truncated. Storage grows by doubling, so adding is
    amortised O(1).

    Args:
        obs_dim: observation dimension `do`.
        act_dim: action dimension `du`.
        capacity: `None` to keep every transition; otherwise the most transitions kept, the
            oldest being overwritten first once the buffer is full.
    """

    #: Rows allocated at first; storage doubles from there (up to `capacity`).
    INITIAL_ROWS: ClassVar[int] = 1024

    def __init__(self, obs_dim: int, act_dim: int, capacity: int | None = None) -> None:
        if int(obs_dim) < 1 or int(act_dim) < 1:
            raise ValueError(f"obs_dim and act_dim must be >= 1, got {obs_dim} and {act_dim}")
        if capacity is not None and int(capacity) < 1:
            raise ValueError(f"capacity must be None (unbounded) or >= 1, got {capacity}")
        self.obs_dim = int(obs_dim)
        self.act_dim = int(act_dim)
        self.capacity = None if capacity is None else int(capacity)
        rows = self.INITIAL_ROWS if capacity is None else min(self.INITIAL_ROWS, int(capacity))
        self._store: dict[str, NDArray[Any]] = self._allocate(rows)
        self._len = 0
        # Where the next transition goes. Until a bounded buffer is full this is `_len`; once it
        # is full, it is also where the oldest transition sits.
        self._pos = 0
        # The episode index the next transition gets.
        self._next_episode = 0
        # Bumped by every add; keys the cache of valid sequence starts.
        self._version = 0
        self._starts_cache: tuple[int, int, NDArray[np.int64]] | None = None

    # ----------------------------------------------------------------- size
    def __len__(self) -> int:
        """Transitions stored, `N`."""
        return self._len

    @property
    def num_episodes(self) -> int:
        """Episodes with at least one transition stored, the unfinished current one included."""
        if self._len == 0:
            return 0
        episode, start = self._store["episode"], self._start()
        oldest = int(episode[start])
        newest = int(episode[(start + self._len - 1) % self._len])
        return newest - oldest + 1

    @property
    def next_episode(self) -> int:
        """The episode index the next transition added gets."""
        return self._next_episode

    def __repr__(self) -> str:
        return (
            f"ReplayBuffer(obs_dim={self.obs_dim}, act_dim={self.act_dim}, "
            f"capacity={self.capacity}, len={self._len}, episodes={self.num_episodes})"
        )

    # ----------------------------------------------------------------- adding
    def add(
        self,
        obs: Any,
        act: Any,
        next_obs: Any,
        reward: Any,
        terminated: Any,
        truncated: Any,
    ) -> None:
        """Add one transition: `obs [do]`, `act [du]`, `next_obs [do]`, scalar `reward`,
        `terminated` and `truncated` (bools, as `RobotEnv.step` returns them).

        Raises:
            ValueError: naming the field, if a shape does not match, a value is NaN, infinite or
                beyond float32's range, or a flag is not a bool (0 or 1).
        """
        do, du = self.obs_dim, self.act_dim
        row: dict[str, Any] = {
            "obs": _floats("obs", obs, (do,)),
            "act": _floats("act", act, (du,)),
            "next_obs": _floats("next_obs", next_obs, (do,)),
            "reward": _floats("reward", reward, ()),
            "terminated": _flags("terminated", terminated, ()),
            "truncated": _flags("truncated", truncated, ()),
            "episode": self._next_episode,
        }
        # `_append` for one row, written out: this runs on every environment step.
        self._reserve(1)
        size = len(self._store["obs"])
        for name, value in row.items():
            self._store[name][self._pos] = value
        self._pos = (self._pos + 1) % size if self.capacity == size else self._pos + 1
        self._len = min(self._len + 1, size)
        self._next_episode += int(row["terminated"] or row["truncated"])
        self._version += 1

    def add_batch(
        self,
        obs: Any,
        act: Any,
        next_obs: Any,
        reward: Any,
        terminated: Any,
        truncated: Any,
    ) -> None:
        """Add `B` consecutive transitions: `obs [B, do]`, `act [B, du]`, `next_obs [B, do]`,
        `reward [B]`, `terminated [B]`, `truncated [B]` (bool). Row `i + 1` follows row `i`, as
        if each row were passed to `add` in turn.

        Raises:
            ValueError: as `add` does; nothing is added then.
        """
        obs_a = np.asarray(obs)
        if obs_a.ndim != 2:
            raise ValueError(f"obs has shape {obs_a.shape}, expected (B, {self.obs_dim})")
        b = obs_a.shape[0]
        do, du = self.obs_dim, self.act_dim
        self._append(
            _floats("obs", obs_a, (b, do)),
            _floats("act", act, (b, du)),
            _floats("next_obs", next_obs, (b, do)),
            _floats("reward", reward, (b,)),
            _flags("terminated", terminated, (b,)),
            _flags("truncated", truncated, (b,)),
        )

    def _append(
        self,
        obs: NDArray[np.float32],
        act: NDArray[np.float32],
        next_obs: NDArray[np.float32],
        reward: NDArray[np.float32],
        terminated: NDArray[np.bool_],
        truncated: NDArray[np.bool_],
    ) -> None:
        """Store validated rows, `[B, ...]`, in order."""
        b = obs.shape[0]
        if b == 0:
            return
        done = terminated | truncated
        # Each row's episode: the counter, plus the episodes ended by the rows before it.
        ends_before = np.cumsum(done, dtype=np.int64) - done
        rows: dict[str, NDArray[Any]] = {
            "obs": obs, "act": act, "next_obs": next_obs, "reward": reward,
            "terminated": terminated, "truncated": truncated,
            "episode": self._next_episode + ends_before,
        }
        self._next_episode += int(done.sum())
        self._version += 1
        if self.capacity is not None and b >= self.capacity:
            # Only the newest `capacity` rows survive; they fill the buffer in order.
            self._reserve(self.capacity)
            for name, values in rows.items():
                self._store[name][:] = values[b - self.capacity :]
            self._len, self._pos = self.capacity, 0
            return
        self._reserve(b)
        size = len(self._store["obs"])
        first = min(b, size - self._pos)  # rows before the end of storage; the rest wrap to 0
        for name, values in rows.items():
            self._store[name][self._pos : self._pos + first] = values[:first]
            self._store[name][: b - first] = values[first:]
        self._pos = (self._pos + b) % size if self.capacity == size else self._pos + b
        self._len = min(self._len + b, size)

    def _reserve(self, extra: int) -> None:
        """Grow storage (doubling) so that `extra` more rows fit, or to `capacity` if they do
        not fit there without overwriting."""
        size = len(self._store["obs"])
        needed = self._len + extra
        if self.capacity is not None:
            needed = min(needed, self.capacity)
        if needed <= size:
            return
        new_size = max(needed, 2 * size)
        if self.capacity is not None:
            new_size = min(new_size, self.capacity)
        grown = self._allocate(new_size)
        for name, values in self._store.items():
            grown[name][: self._len] = values[: self._len]  # not yet wrapped: in order from 0
        self._store = grown

    def _allocate(self, rows: int) -> dict[str, NDArray[Any]]:
        return {
            "obs": np.zeros((rows, self.obs_dim), dtype=np.float32),
            "act": np.zeros((rows, self.act_dim), dtype=np.float32),
            "next_obs": np.zeros((rows, self.obs_dim), dtype=np.float32),
            "reward": np.zeros(rows, dtype=np.float32),
            "terminated": np.zeros(rows, dtype=np.bool_),
            "truncated": np.zeros(rows, dtype=np.bool_),
            "episode": np.zeros(rows, dtype=np.int64),
        }

    # ----------------------------------------------------------------- reading
    def _start(self) -> int:
        """Storage row of the oldest transition."""
        return self._pos if self.capacity is not None and self._len == self.capacity else 0

    def _physical_index(self, index: NDArray[np.int64]) -> NDArray[np.int64]:
        """Storage rows of insertion-order indices, any shape."""
        start = self._start()
        return index if start == 0 else (index + start) % self._len

    def arrays(self) -> dict[str, NDArray[Any]]:
        """The stored transitions in insertion order, oldest first, as read-only views.

        Keys (`FIELDS`): `obs [N, do]`, `act [N, du]`, `next_obs [N, do]`, `reward [N]`
        float32; `terminated [N]`, `truncated [N]` bool; `episode [N]` int64. The views are
        valid until the next `add`. A bounded buffer that has wrapped is rotated in place (once)
        so that its oldest transition comes first.
        """
        start = self._start()
        if start != 0:
            for values in self._store.values():
                values[:] = np.roll(values, -start, axis=0)
            self._pos = 0
        views = {}
        for name in FIELDS:
            view = self._store[name][: self._len]
            view.flags.writeable = False
            views[name] = view
        return views

    def sample(self, batch_size: int, generator: np.random.Generator) -> TransitionBatch:
        """`batch_size` transitions drawn uniformly with replacement; tensors `[B, ...]`.

        Raises:
            ValueError: if the buffer is empty or `batch_size < 1`.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if self._len == 0:
            raise ValueError("cannot sample from an empty replay buffer: add transitions first")
        rows = self._physical_index(generator.integers(0, self._len, size=batch_size))
        s = self._store
        return TransitionBatch(
            obs=torch.from_numpy(s["obs"][rows]),
            act=torch.from_numpy(s["act"][rows]),
            next_obs=torch.from_numpy(s["next_obs"][rows]),
            reward=torch.from_numpy(s["reward"][rows]),
            terminated=torch.from_numpy(s["terminated"][rows]),
        )

    def sample_sequences(
        self, batch_size: int, length: int, generator: np.random.Generator
    ) -> SequenceBatch:
        """`batch_size` chunks of `length` consecutive transitions, each inside one episode;
        tensors `[B, L, ...]`.

        Every chunk that fits inside an episode is equally likely (drawn with replacement);
        chunks of an unfinished episode, and of the remaining part of an episode whose start a
        bounded buffer overwrote, count too.

        Raises:
            ValueError: if `batch_size` or `length` is below 1, or no episode stored has `length`
                transitions.
        """
        if batch_size < 1 or length < 1:
            raise ValueError(f"batch_size and length must be >= 1, got {batch_size}, {length}")
        starts = self._sequence_starts(length)
        if len(starts) == 0:
            raise ValueError(
                f"no episode in the replay buffer has {length} consecutive transitions "
                f"(longest: {self._longest_episode()} of {self._len} transitions stored); "
                "collect more data or ask for shorter sequences"
            )
        chosen = starts[generator.integers(0, len(starts), size=batch_size)]
        rows = self._physical_index(chosen[:, None] + np.arange(length))
        s = self._store
        return SequenceBatch(
            obs=torch.from_numpy(s["obs"][rows]),
            act=torch.from_numpy(s["act"][rows]),
            next_obs=torch.from_numpy(s["next_obs"][rows]),
            reward=torch.from_numpy(s["reward"][rows]),
            terminated=torch.from_numpy(s["terminated"][rows]),
        )

    def _episode_ids(self) -> NDArray[np.int64]:
        """Episode of each transition, `[N]`, in insertion order (without rotating storage)."""
        episode = self._store["episode"][: self._len]
        start = self._start()
        return episode if start == 0 else np.concatenate([episode[start:], episode[:start]])

    def _sequence_starts(self, length: int) -> NDArray[np.int64]:
        """Insertion-order indices where `length` transitions of one episode begin."""
        cached = self._starts_cache
        if cached is not None and cached[:2] == (self._version, length):
            return cached[2]
        if length > self._len:
            starts = np.zeros(0, dtype=np.int64)
        else:
            # Episode indices never decrease, so a chunk stays inside one episode exactly when
            # its first and last transitions share an index.
            episode = self._episode_ids()
            starts = np.flatnonzero(episode[: self._len - length + 1] == episode[length - 1 :])
        self._starts_cache = (self._version, length, starts)
        return starts

    def _longest_episode(self) -> int:
        if self._len == 0:
            return 0
        return int(np.unique(self._episode_ids(), return_counts=True)[1].max())

    def split(
        self, holdout_fraction: float, generator: np.random.Generator
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Random disjoint training and holdout indices covering every transition.

        Indices count in insertion order (index into `arrays()`), each set in random order. The
        holdout has `round(holdout_fraction * N)` transitions, but at least one when
        `holdout_fraction > 0` and at most `N - 1`, so that both sets are non-empty then.

        Raises:
            ValueError: if `holdout_fraction` is not in `[0, 1)` or the buffer is empty.
        """
        if not 0.0 <= holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
        if self._len == 0:
            raise ValueError("cannot split an empty replay buffer")
        n = self._len
        n_holdout = round(holdout_fraction * n)
        if holdout_fraction > 0.0:
            n_holdout = min(max(n_holdout, 1), n - 1)
        permutation = generator.permutation(n).astype(np.int64)
        return permutation[n_holdout:], permutation[:n_holdout]

    # ----------------------------------------------------------------- files
    def save(self, path: str | Path) -> None:
        """Write the buffer to one `.npz` file at `path` (the name is kept as given),
        atomically: a run killed while saving leaves the previous file intact.

        The file holds the arrays of `arrays()` plus scalar int64 metadata: `format_version`,
        `obs_dim`, `act_dim`, `capacity` (0: unbounded), `next_episode` and `position` (the
        ring position, where the next transition goes).
        """
        data = self.arrays()  # rotates a wrapped ring, so that `_pos` matches insertion order
        meta = {
            "format_version": _FORMAT_VERSION,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "capacity": 0 if self.capacity is None else self.capacity,
            "next_episode": self._next_episode,
            "position": self._pos,
        }
        payload: dict[str, Any] = dict(data)
        payload.update({key: np.array(value, dtype=np.int64) for key, value in meta.items()})
        with atomic_open(path, "wb") as handle:
            np.savez(handle, allow_pickle=False, **payload)

    @classmethod
    def load(cls, path: str | Path) -> ReplayBuffer:
        """Read a buffer written by `save`, exactly as it was: the same transitions, capacity,
        ring position and episode numbering. Never unpickles anything.

        Raises:
            FileNotFoundError: if there is no file at `path`.
            ValueError: naming the file, if it is not an `.npz` file, is truncated or corrupted,
                lacks an expected array, or its arrays' shapes, dtypes or values disagree.
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"replay buffer file {path} does not exist")
        if not path.is_file():
            raise ValueError(f"replay buffer file {path} is not a regular file")
        with open(path, "rb") as handle:  # a permission error surfaces here, as itself
            magic = handle.read(6)
            handle.seek(0)
            if magic == b"\x93NUMPY":
                raise ValueError(
                    f"replay buffer file {path} holds a single .npy array, not an .npz archive"
                )
            if magic[:2] != b"PK":  # numpy would call anything else pickled data
                raise ValueError(
                    f"replay buffer file {path} is not a readable .npz file: it is "
                    f"{'empty' if not magic else 'not a zip archive'}"
                )
            try:
                loaded = np.load(handle, allow_pickle=False)
            except Exception as exc:  # numpy raises ValueError, EOFError, OSError, ... here
                raise ValueError(
                    f"replay buffer file {path} is not a readable .npz file: {_reason(exc)}"
                ) from exc
            if not isinstance(loaded, np.lib.npyio.NpzFile):  # cannot happen after the checks
                raise ValueError(f"replay buffer file {path} is not an .npz archive")
            with loaded:
                missing = [k for k in (*FIELDS, *_META) if k not in loaded.files]
                if missing:
                    raise ValueError(
                        f"replay buffer file {path} lacks the arrays {missing} "
                        f"(it has {sorted(loaded.files)}); was it written by ReplayBuffer.save?"
                    )
                arrays: dict[str, NDArray[Any]] = {}
                for key in (*FIELDS, *_META):
                    try:
                        arrays[key] = loaded[key]
                    except Exception as exc:  # a damaged member: zipfile, zlib or numpy errors
                        raise ValueError(
                            f"replay buffer file {path}: array {key!r} cannot be read "
                            f"(the file is corrupted or holds pickled objects): {_reason(exc)}"
                        ) from exc
        try:
            return cls._from_arrays(arrays)
        except ValueError as exc:
            raise ValueError(f"replay buffer file {path} is inconsistent: {exc}") from None

    @classmethod
    def _from_arrays(cls, arrays: dict[str, NDArray[Any]]) -> ReplayBuffer:
        """A buffer from the arrays of a saved file, after checking that they agree."""
        meta: dict[str, int] = {}
        for key in _META:
            value = arrays[key]
            if value.shape != () or value.dtype.kind not in "iu":
                raise ValueError(f"{key} must be a scalar integer, got {value.dtype} {value.shape}")
            meta[key] = int(value)
        if meta["format_version"] != _FORMAT_VERSION:
            raise ValueError(
                f"format_version is {meta['format_version']}, this code reads {_FORMAT_VERSION}"
            )
        do, du, capacity = meta["obs_dim"], meta["act_dim"], meta["capacity"]
        if do < 1 or du < 1 or capacity < 0 or meta["next_episode"] < 0:
            raise ValueError(
                f"obs_dim {do} and act_dim {du} must be >= 1, capacity {capacity} and "
                f"next_episode {meta['next_episode']} >= 0"
            )
        n = len(arrays["obs"]) if arrays["obs"].ndim > 0 else -1
        expected: dict[str, tuple[tuple[int, ...], type[np.generic]]] = {
            "obs": ((n, do), np.float32),
            "act": ((n, du), np.float32),
            "next_obs": ((n, do), np.float32),
            "reward": ((n,), np.float32),
            "terminated": ((n,), np.bool_),
            "truncated": ((n,), np.bool_),
            "episode": ((n,), np.int64),
        }
        for name, (shape, dtype) in expected.items():
            a = arrays[name]
            if a.shape != shape or a.dtype != dtype:
                raise ValueError(
                    f"{name} is {a.dtype} {a.shape}, expected {np.dtype(dtype)} {shape} "
                    f"(obs_dim {do}, act_dim {du}, {n} transitions)"
                )
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                raise ValueError(f"{name} contains NaN or infinity")
        if capacity and n > capacity:
            raise ValueError(f"{n} transitions exceed the capacity {capacity}")
        expected_pos = n % capacity if capacity else n
        if meta["position"] != expected_pos:
            raise ValueError(f"position is {meta['position']}, expected {expected_pos}")
        episode = arrays["episode"]
        done = arrays["terminated"] | arrays["truncated"]
        if n > 0:
            if episode[0] < 0 or (np.diff(episode) != done[:-1]).any():
                raise ValueError(
                    "episode indices must start >= 0 and grow by one exactly after each "
                    "terminated or truncated transition"
                )
            if meta["next_episode"] != episode[-1] + done[-1]:
                raise ValueError(
                    f"next_episode is {meta['next_episode']}, but the last transition is of "
                    f"episode {episode[-1]} and {'ends' if done[-1] else 'does not end'} it"
                )
        buffer = cls(do, du, capacity or None)
        rows = max(n, min(cls.INITIAL_ROWS, capacity) if capacity else cls.INITIAL_ROWS)
        buffer._store = buffer._allocate(rows)
        for name in FIELDS:
            buffer._store[name][:n] = arrays[name]
        buffer._len, buffer._pos = n, meta["position"]
        buffer._next_episode = meta["next_episode"]
        return buffer


def _floats(name: str, value: Any, shape: tuple[int, ...]) -> NDArray[np.float32]:
    """`value` as float32 of `shape`, finite."""
    a = np.asarray(value)
    if a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}, expected {shape}")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} has dtype {a.dtype}, expected a real number type")
    with np.errstate(over="ignore", invalid="ignore"):
        single = a.astype(np.float32)
    finite = np.isfinite(single)
    if not finite.all():
        where = _first(~finite)
        bad = a[where]
        why = "NaN or infinity" if not np.isfinite(bad) else "a value beyond float32's range"
        at = f" at index {where}" if where else ""
        raise ValueError(f"{name} contains {why}{at}: {bad!r}")
    return single


def _flags(name: str, value: Any, shape: tuple[int, ...]) -> NDArray[np.bool_]:
    """`value` as bool of `shape`; numbers are accepted when each is 0 or 1."""
    a = np.asarray(value)
    if a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}, expected {shape}")
    if a.dtype == np.bool_:
        return a
    if a.dtype.kind not in "iuf":
        raise ValueError(f"{name} has dtype {a.dtype}, expected bool")
    valid = (a == 0) | (a == 1)
    if not valid.all():
        where = _first(~valid)
        at = f" at index {where}" if where else ""
        raise ValueError(f"{name} must be bool (or 0 or 1), got {a[where]!r}{at}")
    return a.astype(np.bool_)


def _first(mask: NDArray[np.bool_]) -> tuple[int, ...]:
    """The index of the first true entry of a non-empty `mask` (`()` for a 0-d one)."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


def _reason(exc: BaseException) -> str:
    """A one-line description of why reading failed."""
    if isinstance(exc, zipfile.BadZipFile):
        return f"damaged zip archive ({exc})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
