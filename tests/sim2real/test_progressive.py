"""Progressive networks: the source column stays bit-identical, and the new column, through
its lateral adapters, learns a target that differs from the source by a known offset."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from mbrl.learning.checkpoint import load_model, save_model
from mbrl.learning.models import EnsembleConfig, EnsembleDynamics
from mbrl.learning.training import TrainConfig, fit
from sim2real.progressive import ProgressiveEnsembleDynamics, load_progressive, save_progressive

CONFIG = EnsembleConfig(ensemble_size=3, hidden_size=32, hidden_layers=2, probabilistic=False,
                        weight_decay=0.0)
TRAIN = TrainConfig(max_epochs=150, patience=None, num_elites=3, batch_size=64,
                    bootstrap=False)
A = torch.tensor([[0.0, 0.1], [-0.1, 0.0]], dtype=torch.float64)
B = torch.tensor([[0.0], [0.2]], dtype=torch.float64)
OFFSET = torch.tensor([0.05, -0.08], dtype=torch.float64)  # the target's known difference


def transitions(n: int, seed: int, offset: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """`next = obs + A obs + B act (+ offset)`: the source system, or the target's."""
    generator = torch.Generator().manual_seed(seed)
    obs = torch.rand(n, 2, generator=generator, dtype=torch.float64) * 2 - 1
    act = torch.rand(n, 1, generator=generator, dtype=torch.float64) * 2 - 1
    next_obs = obs + obs @ A.T + act @ B.T + (0 if offset is None else offset)
    return obs.float(), act.float(), next_obs.float()


def error(model: EnsembleDynamics, data: tuple[torch.Tensor, ...]) -> float:
    obs, act, next_obs = data
    with torch.no_grad():
        mean = model.predict(obs, act).mean.mean(dim=0)
    return float(((mean - next_obs) ** 2).mean())


def trained_source() -> EnsembleDynamics:
    source = EnsembleDynamics(2, 1, CONFIG, torch.Generator().manual_seed(0))
    fit(source, *transitions(2000, 0), config=TRAIN, generator=torch.Generator().manual_seed(0))
    return source


def test_adaptation_leaves_the_source_model_bit_identical() -> None:
    source = trained_source()
    probe = transitions(64, 9)
    with torch.no_grad():
        before = source.predict(probe[0], probe[1]).mean.clone()
    state = {k: v.clone() for k, v in source.state_dict().items()}
    progressive = ProgressiveEnsembleDynamics(source, adapter_size=8)
    fit(progressive, *transitions(200, 1, OFFSET), config=TRAIN,
        generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        after = source.predict(probe[0], probe[1]).mean
    assert torch.equal(before, after)
    assert all(torch.equal(state[k], v) for k, v in source.state_dict().items())
    assert not any(p.requires_grad for p in source.parameters())
    assert any(p.requires_grad for p in progressive.lateral_in.parameters())


def test_the_new_column_learns_the_targets_offset_from_few_transitions() -> None:
    source = trained_source()
    target_test = transitions(500, 7, OFFSET)
    source_error = error(source, target_test)  # the offset, unmodelled: about 0.0044
    progressive = ProgressiveEnsembleDynamics(source, adapter_size=8)
    fit(progressive, *transitions(100, 2, OFFSET), config=TRAIN,
        generator=torch.Generator().manual_seed(2))
    assert source_error > 0.003
    assert error(progressive, target_test) < 0.1 * source_error
    # The offset is what the adapted model adds to the source's prediction, on average.
    obs, act, _ = target_test
    with torch.no_grad():
        adapted, original = progressive.predict(obs, act).mean, source.predict(obs, act).mean
    added = (adapted - original).mean(dim=(0, 1))
    torch.testing.assert_close(added.double(), OFFSET, atol=0.01, rtol=0.0)


def test_a_column_started_from_the_source_predicts_as_it_then_learns_the_offset() -> None:
    source = trained_source()
    target_test = transitions(500, 7, OFFSET)
    progressive = ProgressiveEnsembleDynamics(source, adapter_size=8, init="source")
    obs, act, _ = target_test
    with torch.no_grad():
        assert torch.equal(progressive.predict(obs, act).mean, source.predict(obs, act).mean)
    normalizer = progressive.input_normalizer.mean.clone()
    keep = dataclasses.replace(TRAIN, fit_normalizers=False)
    fit(progressive, *transitions(100, 2, OFFSET), config=keep,
        generator=torch.Generator().manual_seed(2))
    assert torch.equal(progressive.input_normalizer.mean, normalizer)  # the source's, kept
    assert error(progressive, target_test) < 0.1 * error(source, target_test)
    with pytest.raises(ValueError, match="init must be random or source"):
        ProgressiveEnsembleDynamics(source, init="copy")  # type: ignore[arg-type]


def test_a_progressive_checkpoint_round_trips_and_a_plain_loader_refuses_it(
        tmp_path: Path) -> None:
    source = trained_source()
    progressive = ProgressiveEnsembleDynamics(source, adapter_size=8)
    fit(progressive, *transitions(100, 2, OFFSET), config=TRAIN,
        generator=torch.Generator().manual_seed(2))
    save_progressive(progressive, tmp_path / "model.pt")
    loaded = load_progressive(tmp_path / "model.pt")
    probe = transitions(32, 5)
    with torch.no_grad():
        assert torch.equal(loaded.predict(probe[0], probe[1]).mean,
                           progressive.predict(probe[0], probe[1]).mean)
        assert torch.equal(loaded.source.predict(probe[0], probe[1]).mean,
                           source.predict(probe[0], probe[1]).mean)
    with pytest.raises(ValueError, match="do not fit the model its settings describe"):
        load_model(tmp_path / "model.pt")  # a plain ensemble has no second column
    save_model(source, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not a progressive model's checkpoint"):
        load_progressive(tmp_path / "plain.pt")
