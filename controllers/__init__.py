"""Decision making given a model: sampling planners, the MPC loop, and the contracts they share.

Planners reach models only through the structural protocols in `controllers.protocols`, so the
same planner runs on a learned ensemble, the true simulator or an analytic model. This package
imports nothing else of the toolkit.
"""

from controllers.cem import CEM, CEMConfig
from controllers.mpc import MPC, MPCConfig
from controllers.protocols import (
    Controller,
    Dynamics,
    Plan,
    Planner,
    SequenceDynamics,
    sequence_returns,
)

__all__ = [
    "CEM",
    "MPC",
    "CEMConfig",
    "Controller",
    "Dynamics",
    "MPCConfig",
    "Plan",
    "Planner",
    "SequenceDynamics",
    "sequence_returns",
]
