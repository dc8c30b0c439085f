"""Known answer for the demo job: CEM-MPC on the exact physics swings the cart-pole up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mbrl.experiments.plan import TrueModelMPCConfig, run_true_model_mpc


@pytest.mark.slow
def test_cem_mpc_on_the_true_physics_swings_the_cart_pole_up(tmp_path: Path) -> None:
    summary = run_true_model_mpc(TrueModelMPCConfig(video=False), tmp_path)
    cart_x, cos_theta = summary["final_obs"][0], summary["final_obs"][1]
    assert cos_theta > 0.95, f"the pole should end upright, cos(theta) = {cos_theta}"
    assert abs(cart_x) < 2.5
    # Upright and still for the last second earns about 2 per control step (2 substeps).
    assert summary["return"] > 120
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 200
