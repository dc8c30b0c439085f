"""The replay buffer keeps transitions in order, samples them, and saves them safely."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mbrl.learning.data import FIELDS, ReplayBuffer, SequenceBatch, TransitionBatch

DO, DU = 3, 2


def transitions(start: int, count: int) -> dict[str, np.ndarray]:
    """`count` transitions numbered from `start`: obs[:, 0] is the number, never terminal."""
    k = np.arange(start, start + count, dtype=np.float64)
    obs = np.stack([k, -k, np.ones_like(k)], axis=1)
    return {
        "obs": obs,
        "act": np.stack([k / 10, k / 20], axis=1),
        "next_obs": obs + 1.0,
        "reward": k / 100,
        "terminated": np.zeros(count, dtype=bool),
        "truncated": np.zeros(count, dtype=bool),
    }


def fill_episodes(buffer: ReplayBuffer, lengths: list[int], first_episode: int = 0) -> None:
    """One episode per length, obs `[episode, step, 0]`; ends alternate terminated/truncated."""
    for offset, length in enumerate(lengths):
        e = first_episode + offset
        for t in range(length):
            last = t == length - 1
            buffer.add(
                np.array([e, t, 0.0]),
                np.array([0.5, -0.5]),
                np.array([e, t + 1, 0.0]),
                float(t),
                terminated=last and e % 2 == 0,
                truncated=last and e % 2 == 1,
            )


# --------------------------------------------------------------------------- storage
def test_growth_past_the_initial_size_keeps_every_transition() -> None:
    buffer = ReplayBuffer(DO, DU)
    n = ReplayBuffer.INITIAL_ROWS * 2 + 100
    data = transitions(0, n)
    single = ReplayBuffer.INITIAL_ROWS + 50
    for i in range(single):  # single adds across the first doubling, then batches past another
        buffer.add(*(data[name][i] for name in FIELDS[:6]))
    for lo in range(single, n, 700):
        buffer.add_batch(*(data[name][lo : lo + 700] for name in FIELDS[:6]))
    assert len(buffer) == n
    stored = buffer.arrays()
    for name in FIELDS[:6]:
        np.testing.assert_array_equal(stored[name], data[name].astype(stored[name].dtype))
    assert stored["obs"].dtype == np.float32 and stored["episode"].dtype == np.int64
    assert buffer.num_episodes == 1


def test_a_ring_buffer_keeps_the_newest_transitions_in_order() -> None:
    buffer = ReplayBuffer(DO, DU, capacity=5)
    data = transitions(0, 12)
    for i in range(7):
        buffer.add(*(data[name][i] for name in FIELDS[:6]))
    buffer.add_batch(*(data[name][7:12] for name in FIELDS[:6]))  # wraps mid-batch
    assert len(buffer) == 5
    np.testing.assert_array_equal(buffer.arrays()["obs"][:, 0], [7, 8, 9, 10, 11])
    buffer.add(*(data[name][0] for name in FIELDS[:6]))  # overwrites the oldest, 7
    np.testing.assert_array_equal(buffer.arrays()["obs"][:, 0], [8, 9, 10, 11, 0])
    # A batch larger than the whole buffer leaves its own newest rows.
    buffer.add_batch(*(transitions(100, 13)[name] for name in FIELDS[:6]))
    np.testing.assert_array_equal(buffer.arrays()["obs"][:, 0], np.arange(108, 113))


def test_a_ring_buffer_larger_than_the_initial_size_grows_then_wraps() -> None:
    capacity = ReplayBuffer.INITIAL_ROWS + 300
    buffer = ReplayBuffer(DO, DU, capacity=capacity)
    for lo in range(0, 2000, 400):
        buffer.add_batch(*(transitions(lo, 400)[name] for name in FIELDS[:6]))
    assert len(buffer) == capacity
    np.testing.assert_array_equal(buffer.arrays()["obs"][:, 0], np.arange(2000 - capacity, 2000))


def test_arrays_are_read_only_views() -> None:
    buffer = ReplayBuffer(DO, DU)
    buffer.add_batch(*(transitions(0, 4)[name] for name in FIELDS[:6]))
    with pytest.raises(ValueError, match="read-only"):
        buffer.arrays()["reward"][0] = 5.0


def test_episodes_end_after_terminated_and_after_truncated() -> None:
    buffer = ReplayBuffer(DO, DU)
    assert buffer.num_episodes == 0
    fill_episodes(buffer, [3, 2, 1, 4])  # ends: terminated, truncated, terminated, truncated
    stored = buffer.arrays()
    np.testing.assert_array_equal(stored["episode"], [0, 0, 0, 1, 1, 2, 3, 3, 3, 3])
    np.testing.assert_array_equal(stored["terminated"].nonzero()[0], [2, 5])
    np.testing.assert_array_equal(stored["truncated"].nonzero()[0], [4, 9])
    assert buffer.num_episodes == 4 and buffer.next_episode == 4
    # The same in one batch, after an unfinished episode.
    batch = ReplayBuffer(DO, DU)
    rows = transitions(0, 6)
    rows["terminated"][[1]] = True
    rows["truncated"][[2, 5]] = True
    batch.add_batch(*(rows[name] for name in FIELDS[:6]))
    np.testing.assert_array_equal(batch.arrays()["episode"], [0, 0, 1, 2, 2, 2])
    assert batch.next_episode == 3


def test_a_wrapped_ring_counts_only_the_episodes_it_still_holds() -> None:
    buffer = ReplayBuffer(DO, DU, capacity=6)
    fill_episodes(buffer, [4, 4, 3])
    np.testing.assert_array_equal(buffer.arrays()["episode"], [1, 1, 1, 2, 2, 2])
    assert buffer.num_episodes == 2 and buffer.next_episode == 3


# --------------------------------------------------------------------------- validation
def test_a_wrong_shape_is_refused_naming_the_field() -> None:
    buffer = ReplayBuffer(5, 1)
    ok: dict[str, Any] = {
        "obs": np.zeros(5), "act": np.zeros(1), "next_obs": np.zeros(5), "reward": 0.0,
        "terminated": False, "truncated": False,
    }
    with pytest.raises(ValueError, match=re.escape("obs has shape (4,), expected (5,)")):
        buffer.add(**{**ok, "obs": np.zeros(4)})
    with pytest.raises(ValueError, match=re.escape("act has shape (1, 1), expected (1,)")):
        buffer.add(**{**ok, "act": np.zeros((1, 1))})
    with pytest.raises(ValueError, match=re.escape("reward has shape (1,), expected ()")):
        buffer.add(**{**ok, "reward": [0.0]})
    batch = {k: np.stack([np.asarray(v)] * 3) for k, v in ok.items()}
    with pytest.raises(ValueError, match=re.escape("next_obs has shape (2, 5), expected (3, 5)")):
        buffer.add_batch(**{**batch, "next_obs": np.zeros((2, 5))})
    with pytest.raises(ValueError, match=re.escape("obs has shape (5,), expected (B, 5)")):
        buffer.add_batch(**{**batch, "obs": np.zeros(5)})
    with pytest.raises(ValueError, match="truncated must be bool"):
        buffer.add(**{**ok, "truncated": 0.5})
    assert len(buffer) == 0


def test_nan_and_infinity_are_refused_naming_the_field() -> None:
    buffer = ReplayBuffer(DO, DU)
    data = transitions(0, 4)
    for name, bad in [("obs", np.nan), ("next_obs", np.inf), ("act", -np.inf), ("reward", np.nan)]:
        rows = {k: v.copy() for k, v in data.items()}
        rows[name][2] = bad
        with pytest.raises(ValueError, match=f"^{name} contains NaN or infinity at index"):
            buffer.add_batch(*(rows[k] for k in FIELDS[:6]))
        with pytest.raises(ValueError, match=f"^{name} contains NaN or infinity"):
            buffer.add(*(rows[k][2] for k in FIELDS[:6]))
    with pytest.raises(ValueError, match="reward contains a value beyond float32's range"):
        buffer.add(data["obs"][0], data["act"][0], data["next_obs"][0], 1e300, False, False)
    assert len(buffer) == 0  # a refused batch adds nothing


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(DO, DU, capacity=0)
    with pytest.raises(ValueError, match="obs_dim"):
        ReplayBuffer(0, DU)


# --------------------------------------------------------------------------- sampling
def test_samples_have_the_documented_shapes_and_are_reproducible() -> None:
    buffer = ReplayBuffer(DO, DU)
    fill_episodes(buffer, [30, 20])
    batch = buffer.sample(64, np.random.default_rng(3))
    assert isinstance(batch, TransitionBatch)
    assert batch.obs.shape == (64, DO) and batch.next_obs.shape == (64, DO)
    assert batch.act.shape == (64, DU)
    assert batch.reward.shape == (64,) and batch.terminated.shape == (64,)
    assert batch.obs.dtype == batch.act.dtype == batch.reward.dtype == torch.float32
    assert batch.terminated.dtype == torch.bool
    # Rows stay together: reward is the step, which obs[:, 1] and next_obs[:, 1] also encode.
    torch.testing.assert_close(batch.reward, batch.obs[:, 1])
    torch.testing.assert_close(batch.next_obs[:, 1], batch.obs[:, 1] + 1)
    again = buffer.sample(64, np.random.default_rng(3))
    for name in ("obs", "act", "next_obs", "reward", "terminated"):
        assert torch.equal(getattr(batch, name), getattr(again, name))
    other = buffer.sample(64, np.random.default_rng(4))
    assert not torch.equal(batch.obs, other.obs)


def test_sampling_an_empty_buffer_fails_clearly() -> None:
    buffer = ReplayBuffer(DO, DU)
    with pytest.raises(ValueError, match="empty replay buffer"):
        buffer.sample(8, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"no episode .* has 2 consecutive transitions"):
        buffer.sample_sequences(8, 2, np.random.default_rng(0))


@pytest.mark.parametrize("capacity", [None, 45])
def test_sequences_never_cross_an_episode_boundary(capacity: int | None) -> None:
    buffer = ReplayBuffer(DO, DU, capacity=capacity)
    fill_episodes(buffer, [5, 12, 3, 9, 7, 15, 6])  # 57 transitions: a ring of 45 wraps
    length = 6
    batch = buffer.sample_sequences(500, length, np.random.default_rng(0))
    assert isinstance(batch, SequenceBatch)
    assert batch.obs.shape == (500, length, DO) and batch.act.shape == (500, length, DU)
    assert batch.reward.shape == batch.terminated.shape == (500, length)
    episode, step = batch.obs[..., 0], batch.obs[..., 1]
    assert bool((episode == episode[:, :1]).all()), "a chunk mixes episodes"
    assert bool((step.diff(dim=1) == 1).all()), "a chunk skips or repeats steps"
    torch.testing.assert_close(batch.obs[:, 1:], batch.next_obs[:, :-1])
    assert not bool(batch.terminated[:, :-1].any())
    # Episodes 0 and 2 are too short (3 < 6); so are the 5 steps of episode 1 a ring of 45 keeps.
    seen = set(episode[:, 0].long().tolist())
    assert seen == ({1, 3, 4, 5, 6} if capacity is None else {3, 4, 5, 6})
    with pytest.raises(ValueError, match=r"has 16 consecutive transitions \(longest: 15"):
        buffer.sample_sequences(2, 16, np.random.default_rng(0))


def test_sequences_are_reproducible_and_see_new_data() -> None:
    buffer = ReplayBuffer(DO, DU)
    fill_episodes(buffer, [10, 10])
    first = buffer.sample_sequences(16, 4, np.random.default_rng(1))
    assert torch.equal(first.obs, buffer.sample_sequences(16, 4, np.random.default_rng(1)).obs)
    fill_episodes(buffer, [30], first_episode=2)  # the cached chunk starts must be refreshed
    later = buffer.sample_sequences(400, 4, np.random.default_rng(1))
    assert 2 in set(later.obs[:, 0, 0].long().tolist())


def test_split_is_a_random_partition() -> None:
    buffer = ReplayBuffer(DO, DU, capacity=50)
    buffer.add_batch(*(transitions(0, 80)[name] for name in FIELDS[:6]))
    train, holdout = buffer.split(0.2, np.random.default_rng(0))
    assert len(train) == 40 and len(holdout) == 10
    assert train.dtype == holdout.dtype == np.int64
    np.testing.assert_array_equal(np.sort(np.concatenate([train, holdout])), np.arange(50))
    again = buffer.split(0.2, np.random.default_rng(0))
    np.testing.assert_array_equal(again[0], train)
    assert len(buffer.split(0.0, np.random.default_rng(0))[1]) == 0
    assert len(buffer.split(0.001, np.random.default_rng(0))[1]) == 1
    with pytest.raises(ValueError, match="holdout_fraction"):
        buffer.split(1.0, np.random.default_rng(0))


# --------------------------------------------------------------------------- files
@pytest.mark.parametrize("capacity", [None, 16])
def test_save_and_load_restore_the_buffer_exactly(tmp_path: Path, capacity: int | None) -> None:
    buffer = ReplayBuffer(DO, DU, capacity=capacity)
    fill_episodes(buffer, [7, 5, 9])  # unfinished: the last episode ends in the middle
    buffer.add(np.array([3.0, 9, 0]), np.zeros(DU), np.array([3.0, 10, 0]), 9.0, False, False)
    path = tmp_path / "replay.npz"
    buffer.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["replay.npz"]  # no temporary left over
    loaded = ReplayBuffer.load(path)
    assert (loaded.obs_dim, loaded.act_dim, loaded.capacity) == (DO, DU, capacity)
    assert len(loaded) == len(buffer) and loaded.num_episodes == buffer.num_episodes
    assert loaded.next_episode == buffer.next_episode == 3
    for name in FIELDS:
        np.testing.assert_array_equal(loaded.arrays()[name], buffer.arrays()[name])
        assert loaded.arrays()[name].dtype == buffer.arrays()[name].dtype
    assert torch.equal(
        loaded.sample(32, np.random.default_rng(5)).obs,
        buffer.sample(32, np.random.default_rng(5)).obs,
    )
    # A resumed run goes on where the saved one stopped: the same episode, then new ones.
    for b in (buffer, loaded):
        b.add(np.array([3.0, 10, 0]), np.zeros(DU), np.array([3.0, 11, 0]), 1.0, True, False)
        fill_episodes(b, [2], first_episode=4)
    for name in FIELDS:
        np.testing.assert_array_equal(loaded.arrays()[name], buffer.arrays()[name])
    assert loaded.arrays()["episode"][-4:].tolist() == [3, 3, 4, 4]
    assert loaded.next_episode == 5


def test_an_empty_buffer_round_trips(tmp_path: Path) -> None:
    ReplayBuffer(DO, DU, capacity=3).save(tmp_path / "empty.npz")
    loaded = ReplayBuffer.load(tmp_path / "empty.npz")
    assert len(loaded) == 0 and loaded.capacity == 3 and loaded.num_episodes == 0


def saved(tmp_path: Path) -> Path:
    buffer = ReplayBuffer(DO, DU)
    fill_episodes(buffer, [40, 30])
    path = tmp_path / "replay.npz"
    buffer.save(path)
    return path


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape("nothing.npz")):
        ReplayBuffer.load(tmp_path / "nothing.npz")


def test_a_truncated_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = saved(tmp_path)
    content = path.read_bytes()
    for keep in (len(content) // 2, len(content) - 10, 0):
        path.write_bytes(content[:keep])
        with pytest.raises(ValueError, match=f"{re.escape(str(path))} is not a readable .npz"):
            ReplayBuffer.load(path)


def test_a_corrupted_member_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = saved(tmp_path)
    content = bytearray(path.read_bytes())
    member = content.index(b"\x93NUMPY")  # the first array's .npy header, inside the zip
    content[member + 20 : member + 60] = b"#" * 40
    path.write_bytes(bytes(content))
    with pytest.raises(ValueError, match=re.escape(str(path))):
        ReplayBuffer.load(path)


def test_a_text_file_named_npz_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.npz"
    path.write_text("episode,reward\n0,1.5\n")
    with pytest.raises(ValueError, match=f"{re.escape(str(path))} is not a readable .npz"):
        ReplayBuffer.load(path)
    np.save(tmp_path / "single.npy", np.zeros(3))
    (tmp_path / "single.npy").rename(path)
    with pytest.raises(ValueError, match=re.escape("holds a single .npy array")):
        ReplayBuffer.load(path)


class _Trap:
    """Unpickling this creates the file `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_an_object_array_is_refused_and_never_unpickled(tmp_path: Path) -> None:
    path = saved(tmp_path)
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    marker = tmp_path / "unpickled"
    arrays["obs"] = np.array([_Trap(marker)], dtype=object)
    np.savez(path, **arrays)  # np.savez pickles object arrays
    with pytest.raises(ValueError, match=re.escape(str(path))):
        ReplayBuffer.load(path)
    assert not marker.exists()


def test_missing_arrays_are_named(tmp_path: Path) -> None:
    path = saved(tmp_path)
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files if k not in ("reward", "position")}
    np.savez(path, **arrays)
    with pytest.raises(
        ValueError, match=f"{re.escape(str(path))} lacks the arrays \\['reward', 'position'\\]"
    ):
        ReplayBuffer.load(path)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("act", np.zeros((70, 3), np.float32), r"act is float32 \(70, 3\), expected float32"),
        ("reward", np.zeros(70), r"reward is float64 \(70,\), expected float32"),
        ("episode", np.zeros(70, np.int64), "episode indices must"),
        ("next_episode", np.array(7), "next_episode is 7"),
        ("position", np.array(3), "position is 3, expected 70"),
        ("obs_dim", np.zeros(2, np.int64), "obs_dim must be a scalar integer"),
    ],
)
def test_inconsistent_arrays_are_refused(
    tmp_path: Path, key: str, value: np.ndarray, message: str
) -> None:
    path = saved(tmp_path)
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays[key] = value
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=f"{re.escape(str(path))} is inconsistent: {message}"):
        ReplayBuffer.load(path)
