"""Ensemble dynamics models, their training and their checkpoints: known answers first.

A deterministic ensemble fits a known function, a probabilistic one recovers a known noise
level, bootstrap samples make members differ, elites are the best members on the holdout,
checkpoints round-trip exactly and refuse anything else, bad data and shapes are named.
"""

from __future__ import annotations

import dataclasses
import pathlib
from pathlib import Path
from typing import IO, Any

import pytest
import torch

import mbrl.learning.models
from mbrl.learning.checkpoint import load_checkpoint, load_model, save_model
from mbrl.learning.models import (
    DynamicsModel,
    EnsembleConfig,
    EnsembleDynamics,
    EnsembleLinear,
    Normalizer,
)
from mbrl.learning.training import FitReport, TrainConfig, fit


def small_config(**changes: Any) -> EnsembleConfig:
    settings: dict[str, Any] = {
        "ensemble_size": 3,
        "hidden_size": 64,
        "hidden_layers": 2,
        "weight_decay": 0.0,
        "probabilistic": False,
        "learning_rate": 1e-2,
    }
    return EnsembleConfig(**(settings | changes))


def smooth_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`next_obs = obs + 0.1 sin(3 obs) + 0.05 act`, obs in [-2, 2]^2, act in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.rand(n, 2, generator=g) * 4 - 2
    act = torch.rand(n, 1, generator=g) * 2 - 1
    return obs, act, obs + 0.1 * torch.sin(3 * obs) + 0.05 * act


def noise_std(x: torch.Tensor) -> torch.Tensor:
    return 0.05 + 0.1 * x.abs()


def noisy_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """1-D obs in [-1, 1] with Gaussian noise of std `0.05 + 0.1 |obs|` on the next one."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.rand(n, 1, generator=g) * 2 - 1
    act = torch.rand(n, 1, generator=g) * 2 - 1
    noise = noise_std(obs) * torch.randn(n, 1, generator=g)
    return obs, act, obs + 0.1 * torch.sin(3 * obs) + 0.05 * act + noise


def trained(
    config: EnsembleConfig, train: TrainConfig, data: tuple[torch.Tensor, ...], seed: int = 0
) -> tuple[EnsembleDynamics, FitReport]:
    obs = data[0]
    model = EnsembleDynamics(
        obs.shape[1], data[1].shape[1], config, torch.Generator().manual_seed(seed)
    )
    report = fit(model, *data, config=train, generator=torch.Generator().manual_seed(seed))
    return model, report


# Known answers -------------------------------------------------------------------------------


def test_a_deterministic_ensemble_fits_a_known_function() -> None:
    model, report = trained(
        small_config(),
        TrainConfig(batch_size=32, max_epochs=60, patience=10, num_elites=3),
        smooth_data(1000, seed=1),
    )
    obs, act, next_obs = smooth_data(500, seed=2)
    with torch.no_grad():
        prediction = model.predict(obs, act)
    assert prediction.var is None and prediction.mean.shape == (3, 500, 2)
    test_mse = (prediction.mean - next_obs).square().mean(dim=(1, 2))
    # The sine term alone has variance ~4.3e-3: every member explains > 97.5% of it.
    assert max(report.holdout_mse) < 1e-4, report
    assert bool((test_mse < 1e-4).all()), test_mse
    assert report.epochs == len(report.train_loss) == len(report.holdout_error_history)
    assert report.train_loss[-1] < report.train_loss[0]


def test_a_probabilistic_ensemble_recovers_a_known_noise_level() -> None:
    model, report = trained(
        small_config(probabilistic=True, learning_rate=3e-3),
        TrainConfig(batch_size=64, max_epochs=60, patience=5, num_elites=3),
        noisy_data(3000, seed=1),
    )
    x = torch.tensor([[-0.8], [-0.5], [-0.25], [0.25], [0.5], [0.8]])
    with torch.no_grad():
        prediction = model.predict(x, torch.zeros(6, 1))
    assert prediction.var is not None and prediction.var.shape == (3, 6, 1)
    predicted_std = prediction.var.mean(dim=0).sqrt()  # the members' mean aleatoric variance
    relative_error = (predicted_std / noise_std(x) - 1).abs()
    assert bool((relative_error < 0.25).all()), relative_error.squeeze(1)
    assert report.holdout_nll is not None and report.holdout_nll_mean is not None


def test_bootstrap_samples_make_identically_initialised_members_differ() -> None:
    data = noisy_data(600, seed=3)
    far = torch.tensor([[3.0], [-3.0]])  # out of the data's range [-1, 1]
    spreads = {}
    for bootstrap in (False, True):
        model = EnsembleDynamics(1, 1, small_config(ensemble_size=4))
        with torch.no_grad():  # every member starts from member 0's weights
            for layer in model.layers:
                assert isinstance(layer, EnsembleLinear)
                layer.weight.copy_(layer.weight[:1].clone().expand_as(layer.weight))
        train = TrainConfig(
            batch_size=32, max_epochs=8, patience=None, num_elites=4, bootstrap=bootstrap
        )
        fit(model, *data, config=train, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            spreads[bootstrap] = float(model.predict(far, torch.zeros(2, 1)).mean.std(dim=0).max())
    assert spreads[False] < 1e-6, spreads  # same data, same minibatches: identical members
    assert spreads[True] > 1e-3, spreads


def test_elites_are_the_members_with_the_lowest_holdout_error() -> None:
    model = EnsembleDynamics(2, 1, small_config(ensemble_size=4))
    with torch.no_grad():  # member 2 starts far off and cannot catch up in two epochs
        model.layers[-1].bias[2] += 5.0
    train = TrainConfig(batch_size=64, max_epochs=2, patience=None, num_elites=3)
    report = fit(model, *smooth_data(500, seed=4), config=train)
    ranked = sorted(range(4), key=lambda member: report.holdout_error[member])
    assert report.elites == tuple(sorted(ranked[:3])) == (0, 1, 3)
    assert model.elite_members.tolist() == [0, 1, 3]
    obs, act, _ = smooth_data(7, seed=5)
    with torch.no_grad():
        everyone = model.predict(obs, act)
        elites = model.predict(obs, act, elites_only=True)
        member_wise = model.predict(obs.expand(3, 7, 2), act.expand(3, 7, 1), elites_only=True)
    assert elites.mean.shape == (3, 7, 2)
    torch.testing.assert_close(elites.mean, everyone.mean[[0, 1, 3]])
    torch.testing.assert_close(member_wise.mean, elites.mean)


def test_the_holdout_error_is_the_mse_over_each_dimensions_spread_of_change() -> None:
    model, _ = trained(small_config(), TrainConfig(batch_size=64, max_epochs=3, patience=None,
                                                       num_elites=3),
                       smooth_data(400, seed=8))
    obs, act, next_obs = smooth_data(50, seed=9)
    mse, normalized, _ = model.eval_score(obs, act, next_obs)
    with torch.no_grad():
        predicted = model.predict(obs, act).mean  # [E, B, do]
    error = predicted - next_obs  # [E, B, do], observation units
    std = model.output_normalizer.std  # [do], of the training split's changes
    torch.testing.assert_close(normalized, (error / std).square().mean(dim=(1, 2)))
    torch.testing.assert_close(mse, error.square().mean(dim=(1, 2)))


def test_snapshot_selection_does_not_depend_on_the_units_of_a_dimension() -> None:
    # Measuring one dimension in units 1000 times smaller (a velocity against a cosine) leaves
    # the normalised fit as it was: the same stopping epoch, the same snapshots, the same
    # elites. In raw MSE the large dimension would choose them alone.
    train = TrainConfig(batch_size=64, max_epochs=40, patience=3, num_elites=2)
    obs, act, next_obs = smooth_data(600, seed=10)
    scale = torch.tensor([1.0, 1000.0])
    _, plain = trained(small_config(), train, (obs, act, next_obs))
    _, scaled = trained(small_config(), train, (obs * scale, act, next_obs * scale))
    assert scaled.epochs == plain.epochs and scaled.best_epochs == plain.best_epochs
    assert scaled.elites == plain.elites
    torch.testing.assert_close(torch.tensor(scaled.holdout_error_history),
                               torch.tensor(plain.holdout_error_history), rtol=1e-3, atol=1e-6)
    assert scaled.holdout_mse_mean > 1e4 * plain.holdout_mse_mean
    # Raw-unit selection (mbrl-lib's) lets the large dimension choose: another fit.
    raw = dataclasses.replace(train, selection="raw")
    _, raw_plain = trained(small_config(), raw, (obs, act, next_obs))
    _, raw_scaled = trained(small_config(), raw, (obs * scale, act, next_obs * scale))
    assert (raw_scaled.epochs, raw_scaled.best_epochs) != (raw_plain.epochs,
                                                           raw_plain.best_epochs)


def test_members_keep_their_best_weights_and_patience_stops_training() -> None:
    # Holdout MSE stops improving once the noise dominates it; patience then ends training.
    _, report = trained(
        small_config(),
        TrainConfig(batch_size=64, max_epochs=100, patience=3, num_elites=2),
        noisy_data(1000, seed=6),
    )
    assert report.stopped_early and report.epochs < 100
    assert report.epochs - max(report.best_epochs) == 3  # the last improvement, then 3 more
    history = torch.tensor(report.holdout_error_history)  # [epochs, E]
    for member, epoch in enumerate(report.best_epochs):
        best = history[epoch - 1, member]
        # The restored weights score what they scored at their best epoch...
        assert report.holdout_error[member] == pytest.approx(float(best), rel=1e-6)
        # ... and no later epoch beat that by the improvement threshold (1%).
        assert bool((history[epoch:, member] >= 0.99 * best).all())


def test_same_seed_same_weights() -> None:
    data = smooth_data(300, seed=7)
    train = TrainConfig(batch_size=64, max_epochs=3, patience=None, num_elites=2)
    first, report_a = trained(small_config(probabilistic=True), train, data, seed=11)
    second, report_b = trained(small_config(probabilistic=True), train, data, seed=11)
    other, _ = trained(small_config(probabilistic=True), train, data, seed=12)
    assert report_a == report_b
    for name, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[name]), name
    assert not torch.equal(first.layers[0].weight, other.layers[0].weight)


def test_the_ensemble_is_a_dynamics_model_with_bounded_log_variance() -> None:
    model = EnsembleDynamics(2, 1, small_config(probabilistic=True))
    assert isinstance(model, DynamicsModel) and model.num_members == 3
    with torch.no_grad():
        _, log_var = model(1e4 * torch.randn(50, 2), 1e4 * torch.randn(50, 1))
    assert log_var is not None
    assert float(log_var.max()) <= 0.5 + 1e-3 and float(log_var.min()) >= -10.0 - 1e-3


@pytest.mark.parametrize("member_wise", [False, True])
def test_planning_without_gradients_gives_the_training_forward_pass(member_wise: bool) -> None:
    """Large no-grad batches go through the layers a block of rows at a time, for speed; the
    numbers must be those of the whole-batch pass that training uses."""
    model = EnsembleDynamics(2, 1, small_config(probabilistic=True))
    block = mbrl.learning.models.BLOCK_FLOATS
    rows = 3 * block // (model.num_members * model.config.hidden_size) + 7
    shape = (model.num_members, rows) if member_wise else (rows,)
    obs, act = torch.randn(*shape, 2), torch.randn(*shape, 1)
    with torch.no_grad():
        blocked_mean, blocked_log_var = model(obs, act)
    whole_mean, whole_log_var = model(obs, act)
    assert blocked_log_var is not None and whole_log_var is not None
    torch.testing.assert_close(blocked_mean, whole_mean.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(blocked_log_var, whole_log_var.detach(), rtol=1e-5, atol=1e-6)


def test_gradients_flow_through_predictions_and_float64_inputs_are_accepted() -> None:
    model = EnsembleDynamics(2, 1, small_config(probabilistic=True))
    obs = torch.randn(4, 2, dtype=torch.float64)  # planners sample in float64
    act = torch.zeros(4, 1, requires_grad=True)
    prediction = model.predict(obs, act)
    assert prediction.var is not None and prediction.mean.dtype == torch.float32
    (prediction.mean.sum() + prediction.var.sum()).backward()
    assert act.grad is not None and bool(torch.isfinite(act.grad).all())
    assert float(act.grad.abs().sum()) > 0


def test_normalizer_standardises_and_leaves_constant_dimensions_unscaled() -> None:
    x = torch.stack([torch.linspace(-1, 3, 101), torch.full((101,), 7.0)], dim=1)
    normalizer = Normalizer(2)
    normalizer.fit(x)
    z = normalizer.normalize(x)
    torch.testing.assert_close(z[:, 0].mean(), torch.tensor(0.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(z[:, 0].std(unbiased=False), torch.tensor(1.0))
    assert float(normalizer.std[1]) == 1.0 and float(normalizer.mean[1]) == 7.0
    torch.testing.assert_close(normalizer.denormalize(z), x)
    assert set(normalizer.state_dict()) == {"mean", "std"}


# Checkpoints ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted() -> EnsembleDynamics:
    """A probabilistic model with non-trivial normalisers and two elites of three."""
    obs, act, next_obs = smooth_data(300, seed=8)
    data = (10 * obs + 3, 0.5 * act - 1, 10 * next_obs + 3)
    train = TrainConfig(batch_size=64, max_epochs=2, patience=None, num_elites=2)
    model, _ = trained(small_config(probabilistic=True), train, data)
    return model


def test_a_saved_model_predicts_exactly_the_same_after_loading(
    fitted: EnsembleDynamics, tmp_path: Path
) -> None:
    path = tmp_path / "model.pt"
    save_model(fitted, path, extra={"env": "cartpole", "step": 7, "returns": [1.0, 2.5]})
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary left
    checkpoint = load_checkpoint(path)
    loaded = checkpoint.model
    assert checkpoint.extra == {"env": "cartpole", "step": 7, "returns": [1.0, 2.5]}
    assert loaded.config == fitted.config and loaded.elite_members.tolist() == [
        *fitted.elite_members.tolist()
    ]
    assert float(loaded.input_normalizer.std[0]) > 5  # fitted, not the default 1
    obs, act, _ = smooth_data(20, seed=9)
    with torch.no_grad():
        for elites_only in (False, True):
            before = fitted.predict(10 * obs + 3, act, elites_only=elites_only)
            after = loaded.predict(10 * obs + 3, act, elites_only=elites_only)
            assert torch.equal(before.mean, after.mean)
            assert before.var is not None and after.var is not None
            assert torch.equal(before.var, after.var)
    assert isinstance(load_model(path), EnsembleDynamics)


def test_a_failed_save_keeps_the_old_file_and_leaves_no_temporary(
    fitted: EnsembleDynamics, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "model.pt"
    save_model(fitted, path)
    old = path.read_bytes()

    def dies_mid_write(obj: object, handle: IO[bytes]) -> None:
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(OSError, match="disk full"):
        save_model(fitted, path)
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    monkeypatch.undo()
    assert load_model(path).elite_members.tolist() == fitted.elite_members.tolist()


def test_extra_values_must_be_plain(fitted: EnsembleDynamics, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"extra\['where'\] is a pathlib"):
        save_model(fitted, tmp_path / "model.pt", extra={"where": pathlib.PurePosixPath("x")})
    assert not list(tmp_path.iterdir())


def test_a_missing_checkpoint_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothing-here\.pt"):
        load_model(tmp_path / "nothing-here.pt")


def _truncated(path: Path, model: EnsembleDynamics) -> None:
    save_model(model, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _plain_tensor(path: Path, model: EnsembleDynamics) -> None:
    torch.save(torch.ones(3), path)


def _foreign_dict(path: Path, model: EnsembleDynamics) -> None:
    torch.save({"weights": torch.randn(4, 4), "step": 3}, path)


def _bare_state_dict(path: Path, model: EnsembleDynamics) -> None:
    torch.save(model.state_dict(), path)


def _python_object(path: Path, model: EnsembleDynamics) -> None:
    torch.save(pathlib.PurePosixPath("/etc/passwd"), path)


def _text(path: Path, model: EnsembleDynamics) -> None:
    path.write_text("obs_dim: 2\nact_dim: 1\n")


def _empty(path: Path, model: EnsembleDynamics) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize(
    ("write", "problem"),
    [
        (_truncated, "truncated"),
        (_plain_tensor, "not a model checkpoint.*Tensor"),
        (_foreign_dict, "not a model checkpoint.*format tag"),
        (_bare_state_dict, "not a model checkpoint.*format tag"),
        (_python_object, "Python objects other than tensors"),
        (_text, "not a readable torch file"),
        (_empty, "not a readable torch file"),
    ],
)
def test_anything_but_our_checkpoint_is_refused_with_a_clear_error(
    write: Any, problem: str, fitted: EnsembleDynamics, tmp_path: Path
) -> None:
    path = tmp_path / "model.pt"
    write(path, fitted)
    with pytest.raises(ValueError, match=f"model.pt.*{problem}"):
        load_model(path)


def _rewrite(path: Path, change: Any) -> None:
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda p: p["config"].update(hidden_size=16), "do not fit.*size mismatch"),
        (lambda p: p.update(obs_dim=3), "do not fit.*size mismatch"),
        (lambda p: p["config"].update(hidden_layers=0), "settings are invalid.*hidden_layers"),
        (lambda p: p["config"].update(colour="red"), "settings are invalid.*colour"),
        (lambda p: p["state_dict"].pop("layers.0.bias"), "do not fit.*layers.0.bias"),
        (lambda p: p["state_dict"]["layers.0.weight"].fill_(torch.nan), "NaN"),
        (lambda p: p["state_dict"].update(elite_members=torch.tensor([0, 9])), r"\[0, 3\)"),
        (lambda p: p.update(version=99), "newer version"),
    ],
)
def test_a_checkpoint_that_does_not_fit_together_is_refused(
    change: Any, problem: str, fitted: EnsembleDynamics, tmp_path: Path
) -> None:
    path = tmp_path / "model.pt"
    save_model(fitted, path)
    _rewrite(path, change)
    with pytest.raises(ValueError, match=f"model.pt.*{problem}"):
        load_model(path)


# Bad data and shapes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "row", "value", "message"),
    [
        ("obs", 17, torch.nan, "obs contains NaN at row 17"),
        ("act", 0, torch.nan, "act contains NaN at row 0"),
        ("next_obs", 3, torch.inf, "next_obs contains inf at row 3"),
        ("next_obs", 17, -torch.inf, "next_obs contains inf at row 17"),
    ],
)
def test_non_finite_data_stops_training_naming_the_field_and_row(
    field: str, row: int, value: float, message: str
) -> None:
    obs, act, next_obs = smooth_data(50, seed=10)
    data = {"obs": obs, "act": act, "next_obs": next_obs}
    data[field][row, 0] = value
    model = EnsembleDynamics(2, 1, small_config())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        fit(model, data["obs"], data["act"], data["next_obs"], TrainConfig(num_elites=3))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_wrong_shapes_are_named() -> None:
    model = EnsembleDynamics(2, 1, small_config())
    obs, act, next_obs = smooth_data(8, seed=11)
    train = TrainConfig(num_elites=3)
    cases = [
        (lambda: model.predict(torch.zeros(8, 3), act), r"obs must be \[B, 2\] or \[3, B, 2\]"),
        (lambda: model.predict(obs, torch.zeros(8)), r"act must be \[B, 1\]"),
        (lambda: model.predict(torch.zeros(4, 8, 2), act), r"obs .* got shape \(4, 8, 2\)"),
        (lambda: model.predict(obs, act[:5]), "same batch size"),
        (lambda: model.loss(obs, act, next_obs[:, :1]), "next_obs must be"),
        (lambda: fit(model, obs, torch.zeros(8, 2), next_obs, train), r"act must be \[N, 1\]"),
        (lambda: fit(model, obs, act, next_obs[:7], train), "same number of rows"),
        (lambda: fit(model, obs, act, next_obs, TrainConfig(num_elites=4)), "num_elites"),
        (lambda: model.set_elites([0, 0]), "unique"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    model.set_elites([2, 0])
    with pytest.raises(ValueError, match=r"obs must be \[B, 2\] or \[2, B, 2\]"):
        model.predict(obs.expand(3, 8, 2), act, elites_only=True)


def test_configs_are_checked() -> None:
    with pytest.raises(ValueError, match=r"weight_decay: must be one number, or one per layer "
                       r"\(hidden_layers \+ 1 = 3\)"):
        EnsembleConfig(hidden_layers=2)
    with pytest.raises(ValueError, match="activation"):
        EnsembleConfig(activation="sigmoid")
    with pytest.raises(ValueError, match="training would not end"):
        TrainConfig(max_epochs=None, patience=None)
    config = EnsembleConfig()
    assert EnsembleConfig.from_dict(config.to_dict()) == config
