"""Learning for robot control: replay data, dynamics models, training, the algorithms that close
the loop, and the `mbrl` command. Builds on `envs` and `controllers`.
"""

from mbrl.true_model_mpc import TrueModelMPCConfig, run_true_model_mpc

__all__ = ["TrueModelMPCConfig", "run_true_model_mpc"]
