"""EPOpt's risk objectives on a known set of returns."""

from __future__ import annotations

import pytest
import torch

from controllers.risk import aggregate_returns

RETURNS = torch.tensor([[1.0, 5.0], [2.0, 6.0], [3.0, 7.0], [4.0, 8.0], [10.0, 0.0]],
                       dtype=torch.float64)  # [K, N]


def test_the_objectives_on_a_known_set_of_returns() -> None:
    assert aggregate_returns(RETURNS, "mean").tolist() == [4.0, 5.2]
    assert aggregate_returns(RETURNS, "worst").tolist() == [1.0, 0.0]
    # CVaR at 0.4 of 5 models: the mean of the 2 lowest returns of each sequence.
    assert aggregate_returns(RETURNS, "cvar", 0.4).tolist() == [1.5, 2.5]
    assert aggregate_returns(RETURNS, "cvar", 0.1).tolist() == [1.0, 0.0]  # ceil: one model
    assert aggregate_returns(RETURNS, "cvar", 1.0).tolist() == [4.0, 5.2]  # all: the mean
    with pytest.raises(ValueError, match="epsilon must be in"):
        aggregate_returns(RETURNS, "cvar", 0.0)
    with pytest.raises(ValueError, match="objective must be one of mean, worst, cvar"):
        aggregate_returns(RETURNS, "median")  # type: ignore[arg-type]
