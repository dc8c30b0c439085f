"""Runs mbrl-lib's planners inside mbrl-lib's own virtual environment (`mbrl==0.2.0`).

Started by benchmarks/peer_mbrl_lib.py as `python mbrl_lib_worker.py PROBLEM_FILE CONFIG_JSON`;
reads one JSON command a line on stdin and answers one JSON line on stdout. Two kinds of work:

On the shared pendulum problem (`benchmarks/peer_problem.py`), mbrl-lib's `CEMOptimizer` and
`MPPIOptimizer` ("cem", "mppi"), each inside its `TrajectoryOptimizer`, which warm-starts every
call from the last solution shifted by one step, as in MPC; the objective of each sequence
`[N, H, 1]` is minus its summed running cost from the given state:

- `{"op": "time", "optimizer": "cem", "calls": n}`: n calls from the problem's start,
  answered with their times in milliseconds;
- `{"op": "episode", "optimizer": "cem", "steps": n, "seed": s}`: a fresh optimizer runs an
  MPC episode, answered with its summed running cost.

With a `"pets"` entry in the config, PETS's planning step as mbrl-lib's PETS builds it: a
`GaussianMLP` ensemble wrapped in a `OneDTransitionRewardModel` (through
`mbrl.util.common.create_one_dim_tr_model`), with weights and input normaliser read from a
file of plain tensors (`benchmarks.peer_mbrl_lib.export_for_mbrl_lib`), a `ModelEnv` with the
cart-pole swing-up reward of `benchmarks/peer_cartpole.py`, and the agent of
`create_trajectory_optim_agent_for_model`:

- `{"op": "predict", "obs": [[...]], "act": [[...]]}`: every member's next-observation mean
  and variance `[E, B, do]`, to check the weights against the model they came from;
- `{"op": "reset", "seed": s}`: a new episode (the agent's warm start forgotten, the random
  generators seeded);
- `{"op": "act", "obs": [...]}`: the agent's action, and its planning time in milliseconds.

The toolkit's own package is also called `mbrl`: the repository is kept off `sys.path`, so that
`import mbrl` is mbrl-lib's.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[2]
sys.path[:] = [
    entry for entry in sys.path
    if Path(entry or os.getcwd()).resolve() != REPOSITORY
]

import gymnasium  # noqa: E402  # the peer's venv: gymnasium 0.26.3, omegaconf 2.3.0
import numpy as np  # noqa: E402
import omegaconf  # type: ignore[import-not-found]  # noqa: E402
import torch  # noqa: E402

# mbrl-lib, imported by name so that no type checker takes it for the toolkit's `mbrl`.
mbrl = importlib.import_module("mbrl")
for _submodule in ("mbrl.models", "mbrl.planning", "mbrl.util.common"):
    importlib.import_module(_submodule)

Objective = Callable[[torch.Tensor], torch.Tensor]


def load_module(name: str, path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pendulum_objective(problem: ModuleType, state: torch.Tensor) -> Objective:
    """The objective of sequences `[N, H, 1]` from `state` `[2]`: minus the summed running
    cost of the states they reach, `[N]`."""

    def returns(actions: torch.Tensor) -> torch.Tensor:
        values: torch.Tensor = problem.sequence_returns(state, actions)
        return values

    return returns


def trajectory_optimizer(
    problem: ModuleType, optimizer_cfg: dict[str, Any], horizon: int
) -> Any:
    """mbrl-lib's receding-horizon wrapper around the optimizer `optimizer_cfg` describes
    (a hydra config: `_target_` and the optimizer's arguments but the bounds)."""
    return mbrl.planning.TrajectoryOptimizer(
        omegaconf.OmegaConf.create(optimizer_cfg),
        np.array([problem.ACTION_LOW]),
        np.array([problem.ACTION_HIGH]),
        planning_horizon=horizon,
    )


class Pendulum:
    """mbrl-lib's optimizers on the shared problem, one warm `TrajectoryOptimizer` each.

    `optimizers` maps a name to `{"horizon": H, "optimizer": hydra config}`.
    """

    def __init__(self, problem: ModuleType, optimizers: dict[str, dict[str, Any]]) -> None:
        self.problem = problem
        self.configs = optimizers
        self.warm = {name: self.fresh(name) for name in optimizers}

    def fresh(self, name: str) -> Any:
        """A new `TrajectoryOptimizer` for the optimizer `name`."""
        spec = self.configs[name]
        return trajectory_optimizer(self.problem, spec["optimizer"], spec["horizon"])

    def time(self, name: str, calls: int) -> list[float]:
        optimizer = self.warm[name]
        start = torch.tensor(self.problem.START, dtype=torch.float32)
        times = []
        for _ in range(calls):
            began = time.perf_counter()
            optimizer.optimize(pendulum_objective(self.problem, start))
            times.append((time.perf_counter() - began) * 1000)
        return times

    def episode(self, name: str, steps: int, seed: int) -> float:
        torch.manual_seed(seed)
        optimizer = self.fresh(name)

        def command(state: torch.Tensor) -> np.ndarray:
            plan: np.ndarray = optimizer.optimize(pendulum_objective(self.problem, state))
            return plan[0]

        cost: float = self.problem.episode_cost(command, steps)
        return cost


class Pets:
    """mbrl-lib's PETS planning step through an ensemble with given weights."""

    def __init__(self, config: dict[str, Any]) -> None:
        exported = torch.load(config["weights"], weights_only=True)
        cartpole = load_module("peer_cartpole", config["reward"])
        obs_dim, act_dim = exported["obs_dim"], exported["act_dim"]
        model_cfg = omegaconf.OmegaConf.create({
            "dynamics_model": {
                "_target_": "mbrl.models.GaussianMLP",
                # hydra-core 1.3 instantiates nested configs unless told not to; GaussianMLP
                # instantiates its activation itself.
                "_recursive_": False,
                "device": "cpu",
                "num_layers": exported["num_layers"],
                "in_size": obs_dim + act_dim,
                "out_size": obs_dim,
                "ensemble_size": exported["ensemble_size"],
                "hid_size": exported["hid_size"],
                "deterministic": exported["deterministic"],
                "propagation_method": config["propagation_method"],
                "learn_logvar_bounds": False,
                "activation_fn_cfg": {"_target_": exported["activation"]},
            },
            "algorithm": {
                "learned_rewards": False,
                "target_is_delta": True,
                "normalize": True,
                "normalize_double_precision": True,
            },
            "overrides": {},
        })
        self.model = mbrl.util.common.create_one_dim_tr_model(model_cfg, (obs_dim,), (act_dim,))
        self.model.model.load_state_dict(exported["state_dict"])
        self.model.input_normalizer.mean = exported["input_mean"].to(torch.float64)
        self.model.input_normalizer.std = exported["input_std"].to(torch.float64)
        self.generator = torch.Generator()
        space = gymnasium.spaces.Box(
            np.float32(cartpole.ACTION_LOW), np.float32(cartpole.ACTION_HIGH), (act_dim,),
            dtype=np.float32,
        )
        env = _Spaces(
            gymnasium.spaces.Box(-np.inf, np.inf, (obs_dim,), dtype=np.float32), space
        )
        model_env = mbrl.models.ModelEnv(
            env, self.model, _never_terminates,
            lambda act, next_obs: cartpole.reward(act, next_obs).unsqueeze(-1),
            generator=self.generator,
        )
        self.agent = mbrl.planning.create_trajectory_optim_agent_for_model(
            model_env, omegaconf.OmegaConf.create(config["agent"]),
            num_particles=config["num_particles"],
        )

    def predict(self, obs: torch.Tensor, act: torch.Tensor) -> dict[str, Any]:
        with torch.no_grad():
            model_in = self.model._get_model_input(obs, act)
            delta, logvar = self.model.forward(model_in, use_propagation=False)
        mean = delta + obs
        var = None if logvar is None else logvar.exp().tolist()
        return {"mean": mean.tolist(), "var": var}

    def reset(self, seed: int) -> None:
        torch.manual_seed(seed)  # CEM's samples and the random_model propagation's draws
        self.generator.manual_seed(seed)  # the ModelEnv's Gaussian samples
        self.agent.reset()

    def act(self, obs: np.ndarray) -> dict[str, Any]:
        began = time.perf_counter()
        action = self.agent.act(obs)
        return {"action": np.asarray(action, dtype=float).tolist(),
                "ms": (time.perf_counter() - began) * 1000}


class _Spaces:
    """What `ModelEnv` reads of the real environment: its spaces."""

    def __init__(self, observation_space: Any, action_space: Any) -> None:
        self.observation_space = observation_space
        self.action_space = action_space


def _never_terminates(act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    return torch.zeros((next_obs.shape[0], 1), dtype=torch.bool)


def answer(request: dict[str, Any], pendulum: Pendulum, pets: Pets | None) -> dict[str, Any]:
    op = request["op"]
    if op == "time":
        return {"ms": pendulum.time(request["optimizer"], request["calls"])}
    if op == "episode":
        return {"cost": pendulum.episode(request["optimizer"], request["steps"], request["seed"])}
    if op in ("predict", "reset", "act") and pets is None:
        return {"error": f"{op!r} needs a 'pets' entry in the worker's config"}
    assert pets is not None
    if op == "predict":
        return pets.predict(torch.tensor(request["obs"]), torch.tensor(request["act"]))
    if op == "reset":
        pets.reset(request["seed"])
        return {}
    if op == "act":
        return pets.act(np.asarray(request["obs"], dtype=np.float32))
    return {"error": f"unknown op {op!r}"}


def main() -> None:
    if getattr(mbrl, "__version__", None) != "0.2.0":
        raise SystemExit(f"expected mbrl-lib 0.2.0, imported {mbrl.__file__}")
    problem = load_module("peer_problem", sys.argv[1])
    config = json.loads(sys.argv[2])
    torch.set_num_threads(1)
    torch.manual_seed(0)
    pendulum = Pendulum(problem, config.get("optimizers", {}))
    pets = Pets(config["pets"]) if "pets" in config else None
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply = answer(request, pendulum, pets)
        except Exception as err:  # reported to the caller, which raises it there
            reply = {"error": f"{type(err).__name__}: {err}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
