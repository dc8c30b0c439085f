"""The frame replay: frames stored once, chunks that never cross an episode, safe files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mbrl.learning.frames import FrameReplay

SHAPE = (3, 4, 5)


def _frame(episode: int, step: int) -> np.ndarray:
    """A frame whose pixels say which episode and step it is."""
    return np.full(SHAPE, 10 * episode + step, dtype=np.uint8)


def _filled(lengths: list[int]) -> FrameReplay:
    replay = FrameReplay(SHAPE, act_dim=2)
    for e, steps in enumerate(lengths):
        replay.start_episode(_frame(e, 0))
        for t in range(steps):
            replay.add_step(np.array([e, t], dtype=float), reward=100 * e + t,
                            next_frame=_frame(e, t + 1), last=t == steps - 1)
    return replay


def test_each_frame_is_stored_once_and_chunks_stay_inside_one_episode() -> None:
    replay = _filled([3, 7, 5])
    assert len(replay) == 3 + 7 + 5 + 3 and replay.steps == 15 and replay.num_episodes == 3
    chunks = replay.sample(400, length=4, rng=np.random.default_rng(0))
    assert chunks.frames.shape == (400, 5, *SHAPE) and chunks.actions.shape == (400, 4, 2)
    values = chunks.frames[:, :, 0, 0, 0].numpy().astype(int)
    episode, first_step = values[:, 0] // 10, values[:, 0] % 10
    # Consecutive frames of one episode; a_t and r_t belong to frame o_t.
    np.testing.assert_array_equal(values, values[:, :1] + np.arange(5))
    np.testing.assert_array_equal(chunks.actions[:, :, 0].numpy(),
                                  np.broadcast_to(episode[:, None], (400, 4)))
    np.testing.assert_array_equal(chunks.actions[:, :, 1].numpy(), first_step[:, None]
                                  + np.arange(4))
    np.testing.assert_array_equal(chunks.rewards.numpy(), 100 * episode[:, None]
                                  + first_step[:, None] + np.arange(4))
    # The 3-step episode holds no 4-step chunk; every start of the others is drawn.
    starts = set(zip(episode.tolist(), first_step.tolist(), strict=True))
    assert starts == {(1, k) for k in range(4)} | {(2, k) for k in range(2)}


def test_save_and_load_round_trip_and_an_open_episode_continues(tmp_path: Path) -> None:
    replay = _filled([4])
    replay.start_episode(_frame(1, 0))
    replay.add_step(np.zeros(2), 1.0, _frame(1, 1))
    replay.save(tmp_path / "frames.npz")
    loaded = FrameReplay.load(tmp_path / "frames.npz")
    assert len(loaded) == len(replay) and loaded.num_episodes == 2
    loaded.add_step(np.zeros(2), 2.0, _frame(1, 2), last=True)
    chunk = loaded.sample(1, length=2, rng=np.random.default_rng(3))
    assert chunk.frames.shape == (1, 3, *SHAPE)
    (tmp_path / "bad.npz").write_bytes(b"not a numpy file")
    with pytest.raises(ValueError, match=r"bad\.npz is not a frame replay file"):
        FrameReplay.load(tmp_path / "bad.npz")


@pytest.mark.parametrize("call, problem", [
    (lambda r: r.start_episode(np.zeros(SHAPE, dtype=np.float32)), "frame must be uint8"),
    (lambda r: r.start_episode(np.zeros((4, 5, 3), dtype=np.uint8)),
     r"frame must be \[3, 4, 5\] \(C, H, W\)"),
    (lambda r: (r.start_episode(_frame(0, 0)),
                r.add_step(np.array([np.nan, 0.0]), 0.0, _frame(0, 1))), "action must be finite"),
    (lambda r: r.add_step(np.zeros(2), 0.0, _frame(0, 1)), "before start_episode"),
    (lambda r: r.sample(1, length=3, rng=np.random.default_rng(0)), "no episode holds 3 steps"),
])
def test_bad_input_is_named(call: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        call(FrameReplay(SHAPE, act_dim=2))  # type: ignore[operator]


def test_memory_of_a_hundred_thousand_64x64_frames() -> None:
    replay = FrameReplay((3, 64, 64), act_dim=1)
    replay.start_episode(np.zeros((3, 64, 64), dtype=np.uint8))
    # 12,288 bytes of pixels and 17 of the rest per frame: 1.23 GB for 100,000.
    assert replay.nbytes == 12_288 + 17
    assert (replay.nbytes * 100_000) / 1e9 == pytest.approx(1.23, abs=0.005)
