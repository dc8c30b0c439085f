"""Decision making given a model: sampling planners, the MPC loop, and the contracts they share.

Planners reach models only through the structural protocols in `controllers.protocols`, so the
same planner runs on a learned ensemble, the true simulator or an analytic model. This package
imports nothing else of the toolkit.
"""

from controllers.cem import CEM, CEMConfig
from controllers.mpc import MPC, MPCConfig, MPCStats
from controllers.mppi import MPPI, MPPIConfig, path_integral_weights
from controllers.protocols import (
    Controller,
    Dynamics,
    Plan,
    Planner,
    SequenceDynamics,
    sequence_returns,
)
from controllers.random_shooting import RandomShooting, RandomShootingConfig
from controllers.sampling import colored_noise

__all__ = [
    "CEM",
    "MPC",
    "MPPI",
    "CEMConfig",
    "Controller",
    "Dynamics",
    "MPCConfig",
    "MPCStats",
    "MPPIConfig",
    "Plan",
    "Planner",
    "RandomShooting",
    "RandomShootingConfig",
    "SequenceDynamics",
    "colored_noise",
    "path_integral_weights",
    "sequence_returns",
]
