"""The pieces of the mbrl-lib comparison that need no peer venv: the plain-torch cart-pole
reward the worker scores with equals our task's, the exported ensemble predicts as ours does
when run as mbrl-lib's GaussianMLP runs it, and the settings map onto ours as stated.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from benchmarks.peer_mbrl_lib import (
    ACTIVATIONS,
    CARTPOLE_FILE,
    WORKER,
    MbrlLibCEM,
    MbrlLibMPPI,
    export_for_mbrl_lib,
    mbrl_lib_mppi_noise_std,
)
from envs.cartpole import CartpoleSwingupTask
from mbrl.learning.models import EnsembleConfig, EnsembleDynamics, EnsembleLinear


def load_by_path(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_peer_cartpole_reward_is_our_tasks() -> None:
    cartpole = load_by_path(CARTPOLE_FILE)
    generator = torch.Generator().manual_seed(0)
    obs = torch.randn((1000, 5), generator=generator, dtype=torch.float64)
    next_obs = torch.randn((1000, 5), generator=generator, dtype=torch.float64) * torch.tensor(
        [2.0, 1.0, 1.0, 3.0, 8.0], dtype=torch.float64
    )
    act = 1.5 * torch.randn((1000, 1), generator=generator, dtype=torch.float64)  # |a| > 1 too
    ours = CartpoleSwingupTask().reward(obs, act, next_obs)
    torch.testing.assert_close(cartpole.reward(act, next_obs), ours, rtol=1e-12, atol=1e-12)
    assert (cartpole.ACTION_LOW, cartpole.ACTION_HIGH) == (-1.0, 1.0)


def test_the_peer_files_import_nothing_of_the_toolkit() -> None:
    for path in (CARTPOLE_FILE, WORKER):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
        assert not imported & {"envs", "controllers", "mbrl", "sim2real", "benchmarks"}, path


def gaussian_mlp_forward(
    exported: dict[str, Any], obs: torch.Tensor, act: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Next-observation mean and variance `[E, B, do]` as mbrl-lib's OneDTransitionRewardModel
    and GaussianMLP compute them from the exported tensors (`_get_model_input`,
    `_default_forward`, `sample_1d`)."""
    state, obs_dim = exported["state_dict"], exported["obs_dim"]
    activations: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "torch.nn.SiLU": F.silu, "torch.nn.Tanh": torch.tanh,
    }
    activation = activations[exported["activation"]]
    x = ((torch.cat([obs, act], dim=1).double() - exported["input_mean"])
         / exported["input_std"]).float()
    for i in range(exported["num_layers"]):
        x = activation(x.matmul(state[f"hidden_layers.{i}.0.weight"])
                       + state[f"hidden_layers.{i}.0.bias"])
    out = x.matmul(state["mean_and_logvar.weight"]) + state["mean_and_logvar.bias"]
    mean = out[..., :obs_dim] + obs
    if exported["deterministic"]:
        return mean, None
    logvar = state["max_logvar"] - F.softplus(state["max_logvar"] - out[..., obs_dim:])
    logvar = state["min_logvar"] + F.softplus(logvar - state["min_logvar"])
    return mean, logvar.exp()


@pytest.mark.parametrize(("activation", "probabilistic"), [("silu", True), ("tanh", False)])
def test_an_exported_ensemble_predicts_as_ours_in_mbrl_libs_layout(
    tmp_path: Path, activation: str, probabilistic: bool
) -> None:
    config = EnsembleConfig(
        ensemble_size=3, hidden_size=16, hidden_layers=2, activation=activation,
        probabilistic=probabilistic, weight_decay=0.0,
    )
    model = EnsembleDynamics(5, 1, config, generator=torch.Generator().manual_seed(1))
    generator = torch.Generator().manual_seed(2)
    scale = torch.tensor([2.0, 0.5, 0.5, 3.0, 10.0, 1.0])
    model.input_normalizer.fit(scale * torch.randn((200, 6), generator=generator) + 0.3)
    model.output_normalizer.fit(0.1 * scale[:5] * torch.randn((200, 5), generator=generator))
    with torch.no_grad():  # members and log-variance bounds unlike their initial values
        for layer in model.layers:
            assert isinstance(layer, EnsembleLinear)
            layer.bias.normal_(0.0, 0.3, generator=generator)
        if model.min_log_var is not None and model.max_log_var is not None:
            model.min_log_var.sub_(torch.rand(5, generator=generator))
            model.max_log_var.add_(torch.rand(5, generator=generator))
    path = tmp_path / "ensemble.pt"
    export_for_mbrl_lib(model, path)

    exported = torch.load(path, weights_only=True)
    assert exported["activation"] == ACTIVATIONS[activation]
    assert (exported["ensemble_size"], exported["num_layers"], exported["hid_size"]) == (3, 2, 16)
    obs = 3 * torch.randn((64, 5), generator=generator)
    act = torch.rand((64, 1), generator=generator) * 2 - 1
    mean, var = gaussian_mlp_forward(exported, obs, act)
    with torch.no_grad():
        ours = model.predict(obs, act)
    torch.testing.assert_close(mean, ours.mean, rtol=1e-5, atol=1e-5)
    if probabilistic:
        assert var is not None and ours.var is not None
        torch.testing.assert_close(var, ours.var, rtol=1e-5, atol=1e-8)
    else:
        assert var is None and ours.var is None


def test_mbrl_libs_mppi_noise_has_the_stated_std() -> None:
    """mbrl-lib 0.2.0's sampling, written out: unit normals truncated at 2 (redrawn until
    inside), smoothed along the horizon; the sample std matches the closed form."""
    generator = torch.Generator().manual_seed(0)
    beta, samples, horizon = 0.9, 20000, 15
    noise = torch.randn((samples, horizon), generator=generator, dtype=torch.float64)
    while bool((outside := noise.abs() > 2).any()):
        noise[outside] = torch.randn(
            int(outside.sum()), generator=generator, dtype=torch.float64
        )
    smoothed = torch.empty_like(noise)
    smoothed[:, 0] = beta * noise[:, 0]
    for t in range(1, horizon):
        smoothed[:, t] = beta * noise[:, t] + (1 - beta) * smoothed[:, t - 1]
    std = mbrl_lib_mppi_noise_std(beta)
    assert float(smoothed[:, 5:].std()) == pytest.approx(std, rel=0.01)
    assert std == pytest.approx(0.7957, abs=1e-4)


def test_mbrl_libs_settings_map_onto_ours() -> None:
    cem = MbrlLibCEM()
    ours = cem.ours(action_range=2.0)
    assert (ours.population, ours.elites, ours.iterations, ours.horizon) == (350, 35, 5, 15)
    assert ours.momentum == 0.1 and ours.return_mean
    assert ours.initial_std == 0.25  # variance (range / 4)**2
    assert MbrlLibCEM(clipped_normal=True).initial_std(4.0) == 0.25  # std 1 of a range of 4
    assert MbrlLibCEM(population=101).elites == 11  # rounded up, as mbrl-lib does
    mppi = MbrlLibMPPI().ours(action_range=4.0)
    assert mppi.temperature == pytest.approx(1 / 0.9)
    assert mppi.noise_std == pytest.approx(mbrl_lib_mppi_noise_std(0.9) / 4.0)
    assert (mppi.population, mppi.iterations, mppi.horizon) == (350, 5, 15)
