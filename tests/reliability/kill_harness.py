"""SIGKILL a PETS run at chosen file-system operations, resume it, and compare with a run never
stopped. Run as a program by `test_kill_and_resume.py`:

    python -m tests.reliability.kill_harness SPEC.json RESULT.json

SPEC holds `config` (a PETSConfig as a dict), `root` (a folder for the runs) and `kill_at`
(1-based indices of file-system operations, "all", or `{"start": s, "step": k}`). The program
makes the reference run, never stopped, which lists every operation; then, for each index, it
forks a child that runs from scratch and kills itself with SIGKILL just before that operation,
and a child that resumes what it left. A file-system operation is any call that changes what
is in the run directory or makes it durable: creating a file, writing it to disk (fsync),
renaming, linking, unlinking, making or removing a folder.

RESULT lists, for each index, the operation, how the killed child ended, and the resumed run's
metrics, buffer and model digests (or its error), beside the reference's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

torch.set_num_threads(1)  # before any work: the children are forked from this process

from mbrl.algorithms.pets import PETSConfig, train_pets  # noqa: E402
from mbrl.config import from_dict  # noqa: E402
from mbrl.learning.checkpoint import load_model  # noqa: E402
from mbrl.learning.data import ReplayBuffer  # noqa: E402

_HOOKED = ("replace", "rename", "link", "unlink", "remove", "mkdir", "rmdir", "fsync", "open")


_ORIGINALS = {name: getattr(os, name) for name in _HOOKED}


def install_hook(run_dir: Path, on_operation: Callable[[str, str], None]) -> None:
    """Call `on_operation(name, path)` before every file-system operation of this process on
    `run_dir` or inside it (other folders, such as torch's caches, are left out)."""
    prefix = str(run_dir)

    def target(name: str, args: tuple[Any, ...]) -> str | None:
        if name == "open":
            flags = args[1] if len(args) > 1 else 0
            if not flags & os.O_CREAT:  # reading is not an operation on the disk's state
                return None
        path = str(args[0])
        if name == "fsync":
            path = os.readlink(f"/proc/self/fd/{args[0]}")
        return path if path.startswith(prefix) else None

    for name, original in _ORIGINALS.items():

        def hooked(*args: Any, _name: str = name, _original: Any = original, **kw: Any) -> Any:
            path = target(_name, args)
            if path is not None:
                on_operation(_name, path[len(prefix):])
            return _original(*args, **kw)

        setattr(os, name, hooked)


def remove_hook() -> None:
    for name, original in _ORIGINALS.items():
        setattr(os, name, original)


def summary(run_dir: Path, rows: list[dict[str, float]]) -> dict[str, Any]:
    """What must be identical between two runs: metrics without timings, the buffer's arrays
    and the model's weights, as digests."""
    buffer = ReplayBuffer.load(run_dir / "replay_buffer.npz").arrays()
    model = load_model(run_dir / "model.pt").state_dict()
    return {
        "rows": [{k: ("nan" if v != v else v) for k, v in r.items() if k != "plan_ms"}
                 for r in rows],
        "buffer": {k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in buffer.items()},
        "model": {k: hashlib.sha256(v.numpy().tobytes()).hexdigest() for k, v in model.items()},
        "leftovers": sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*")
                            if p.name.endswith((".tmp", ".partial"))),
        "checkpoints": sorted(p.name for p in (run_dir / "checkpoints").iterdir()),
    }


def in_child(work: Callable[[], None]) -> int:
    """Run `work` in a forked child; its wait status."""
    pid = os.fork()
    if pid == 0:
        try:
            work()
            code = 0
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


def main(spec_path: str, result_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    config = from_dict(PETSConfig, spec["config"])
    root = Path(spec["root"])
    out = root / "out"
    out.mkdir(parents=True, exist_ok=True)

    # The reference runs here, so that the children start warm (torch, matplotlib).
    operations: list[list[str]] = []
    install_hook(root / "reference", lambda name, path: operations.append([name, path]))
    reference_rows = train_pets(config, root / "reference")
    remove_hook()
    reference_result = summary(root / "reference", reference_rows)
    every = range(1, len(operations) + 1)
    kill_at = spec["kill_at"]
    if kill_at == "all":
        kill_at = every
    elif isinstance(kill_at, dict):  # {"start": s, "step": k}: every k-th from the s-th
        kill_at = every[kill_at["start"] - 1::kill_at["step"]]

    cases = []
    for index in kill_at:
        run_dir = root / f"killed-{index}"

        def killed(index: int = index, run_dir: Path = run_dir) -> None:
            count = 0

            def operation(name: str, path: str) -> None:
                nonlocal count
                count += 1
                if count == index:
                    os.kill(os.getpid(), signal.SIGKILL)

            install_hook(run_dir, operation)
            train_pets(config, run_dir)

        status = in_child(killed)
        case: dict[str, Any] = {
            "index": index, "operation": operations[index - 1],
            "killed_by_sigkill": os.WIFSIGNALED(status)
            and os.WTERMSIG(status) == signal.SIGKILL,
        }

        def resumed(run_dir: Path = run_dir, index: int = index) -> None:
            try:
                rows = train_pets(config, run_dir, resume=True)
                result = summary(run_dir, rows)
            except ValueError as error:  # the run's refusal, which the test judges
                result = {"error": f"{type(error).__name__}: {error}"}
            (out / f"resumed-{index}.json").write_text(json.dumps(result))

        case["resume_status"] = in_child(resumed)
        resumed_file = out / f"resumed-{index}.json"
        case["resumed"] = json.loads(resumed_file.read_text()) if resumed_file.exists() else None
        cases.append(case)
        shutil.rmtree(run_dir, ignore_errors=True)
    Path(result_path).write_text(json.dumps(
        {"operations": operations, "reference": reference_result, "cases": cases}, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:3])
