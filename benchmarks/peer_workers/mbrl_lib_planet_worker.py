"""Times mbrl-lib's PlaNet gradient step inside mbrl-lib's own virtual environment (`mbrl==0.2.0`).

Started by benchmarks/planet_speed.py as `python mbrl_lib_planet_worker.py PROBLEM_FILE
CONFIG_JSON` (the problem file is not used); reads one JSON command a line on stdin and answers
one JSON line on stdout. The config gives the model's sizes and the batch:
`{"belief": 200, "latent": 30, "hidden": 200, "depth": 32, "batch": 50, "length": 51,
"action_size": 1, "seed": 0}`. The model is mbrl-lib's `PlaNetModel` with the encoder and
decoder of its PlaNet example config (`conf/dynamics_model/planet.yaml`, scaled by `depth`),
trained by its own `update` (loss, backward, gradient clipping at 1000, Adam at 1e-3, eps
1e-4, as PlaNet) on one fixed batch of random uint8 frames.

- `{"op": "time", "steps": n, "threads": k}`: n gradient steps on k torch threads, answered
  with their times in milliseconds.

The toolkit's own package is also called `mbrl`: the repository is kept off `sys.path`, so that
`import mbrl` is mbrl-lib's.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[2]
sys.path[:] = [
    entry for entry in sys.path
    if Path(entry or os.getcwd()).resolve() != REPOSITORY
]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mbrl.models import PlaNetModel  # type: ignore[import-not-found]  # noqa: E402
from mbrl.types import TransitionBatch  # type: ignore[import-not-found]  # noqa: E402


def build(config: dict[str, Any]) -> tuple[Any, torch.optim.Optimizer, Any]:
    d = config["depth"]
    encoder = ((3, d, 4, 2), (d, 2 * d, 4, 2), (2 * d, 4 * d, 4, 2), (4 * d, 8 * d, 4, 2))
    embedding = 32 * d
    decoder = ((embedding, 1, 1), ((embedding, 4 * d, 5, 2), (4 * d, 2 * d, 5, 2),
                                   (2 * d, d, 6, 2), (d, 3, 6, 2)))
    generator = torch.Generator().manual_seed(config["seed"])
    torch.manual_seed(config["seed"])
    model = PlaNetModel(
        obs_shape=(3, 64, 64), obs_encoding_size=embedding, encoder_config=encoder,
        decoder_config=decoder, latent_state_size=config["latent"],
        action_size=config["action_size"], belief_size=config["belief"],
        hidden_size_fcs=config["hidden"], device="cpu", min_std=0.1, free_nats=3.0,
        rng=generator,
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-4)
    rng = np.random.default_rng(config["seed"])
    b, t = config["batch"], config["length"]
    obs = rng.integers(0, 256, size=(b, t, 3, 64, 64)).astype(np.uint8)
    act = rng.uniform(-1, 1, size=(b, t, config["action_size"])).astype(np.float32)
    rewards = rng.uniform(0, 1, size=(b, t)).astype(np.float32)
    dones = np.zeros((b, t), dtype=bool)
    batch = TransitionBatch(obs, act, obs, rewards, dones, dones)
    return model, optimiser, batch


def main() -> None:
    config = json.loads(sys.argv[2])
    model, optimiser, batch = build(config)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["op"] != "time":
                raise ValueError(f"unknown op {request['op']!r}")
            torch.set_num_threads(int(request["threads"]))
            times = []
            for _ in range(int(request["steps"])):
                started = time.perf_counter()
                model.update(batch, optimiser)
                times.append((time.perf_counter() - started) * 1e3)
            answer: dict[str, Any] = {"ms": times}
        except Exception as error:  # the benchmark reports it; the worker keeps serving
            answer = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
