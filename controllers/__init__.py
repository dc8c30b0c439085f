"""Decision making given a model: sampling planners, tree search, optimal-control solvers, the
MPC loop, and the contracts they share.

Planners reach models only through the structural protocols in `controllers.protocols`, so the
same planner runs on a learned ensemble, the true simulator or an analytic model. This package
imports nothing else of the toolkit. The solver functions `controllers.ilqr.ilqr` and
`controllers.box_qp.box_qp` are imported from their modules (exporting them here would hide
the modules of the same name).
"""

from controllers.box_qp import BoxQPResult
from controllers.cem import CEM, CEMConfig
from controllers.ilqr import ILQRConfig, ILQRPlanner, ILQRResult
from controllers.lqr import LQRSolution, lqr_gain, solve_dare, solve_lqr
from controllers.mcts import MCTS, MCTSConfig, action_grid
from controllers.mpc import MPC, MPCConfig, MPCStats
from controllers.mppi import MPPI, MPPIConfig, path_integral_weights
from controllers.protocols import (
    Controller,
    Dynamics,
    ModelDivergedError,
    Plan,
    Planner,
    SequenceDynamics,
    sequence_returns,
)
from controllers.random_shooting import RandomShooting, RandomShootingConfig
from controllers.sampling import colored_noise
from controllers.validation import ConfigError

__all__ = [
    "CEM",
    "MCTS",
    "MPC",
    "MPPI",
    "BoxQPResult",
    "CEMConfig",
    "ConfigError",
    "Controller",
    "Dynamics",
    "ILQRConfig",
    "ILQRPlanner",
    "ILQRResult",
    "LQRSolution",
    "MCTSConfig",
    "MPCConfig",
    "MPCStats",
    "MPPIConfig",
    "ModelDivergedError",
    "Plan",
    "Planner",
    "RandomShooting",
    "RandomShootingConfig",
    "SequenceDynamics",
    "action_grid",
    "colored_noise",
    "lqr_gain",
    "path_integral_weights",
    "sequence_returns",
    "solve_dare",
    "solve_lqr",
]
