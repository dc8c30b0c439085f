"""Risk-sensitive scores of action sequences whose return is uncertain.

A planner that scores each candidate by K returns (K sampled models: simulator copies with
drawn physics, or an ensemble's members and particles) needs one number per candidate. EPOpt
(Rajeswaran et al. 2017, "EPOpt: Learning Robust Neural Network Policies Using Model
Ensembles") takes the conditional value at risk: the mean of the worst epsilon fraction.

    score(U) = mean over k of R[k]                       ("mean", the risk-neutral one)
             | min over k of R[k]                        ("worst")
             | mean of the ceil(epsilon K) lowest R[k]   ("cvar")
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch

#: How the K returns of a sequence become its score.
Objective = Literal["mean", "worst", "cvar"]

#: The objectives, for option lists and errors.
OBJECTIVES: tuple[str, ...] = get_args(Objective)


def check_objective(objective: str, epsilon: float) -> None:
    """Refuse an unknown objective, or an epsilon outside (0, 1].

    Raises:
        ValueError: naming the field.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if not 0.0 < epsilon <= 1.0:
        raise ValueError(f"epsilon must be in (0, 1], got {epsilon}")


def aggregate_returns(returns: torch.Tensor, objective: Objective,
                      epsilon: float = 0.1) -> torch.Tensor:
    """Scores `[N]` of returns `[K, N]` (K models, N sequences) under `objective`; for "cvar",
    the mean of the `ceil(epsilon K)` lowest returns of each sequence (EPOpt's objective).

    Raises:
        ValueError: for an unknown objective or epsilon outside (0, 1].
    """
    check_objective(objective, epsilon)
    if objective == "mean":
        return returns.mean(dim=0)
    if objective == "worst":
        return returns.min(dim=0).values
    lowest = math.ceil(epsilon * returns.shape[0])
    return returns.sort(dim=0).values[:lowest].mean(dim=0)
