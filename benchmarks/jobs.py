"""Benchmark jobs: each job's result kept as JSON, so a killed benchmark continues where it
stopped; jobs run in worker processes that die with the benchmark, each when the jobs it needs
are done."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

#: prctl's option that makes the kernel signal a process when its parent dies.
PR_SET_PDEATHSIG = 1


@dataclass
class Job:
    """One unit of work: `function(*args)` returns its JSON-able result."""

    key: str
    function: Callable[..., dict[str, Any]]
    args: tuple[Any, ...]
    needs: list[str]


def start_worker() -> None:
    """One torch thread; and on Linux, die with the benchmark's process: a worker left running
    by a killed benchmark would write into run directories its rerun continues."""
    torch.set_num_threads(1)
    if sys.platform == "linux":
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:  # the benchmark died before the line above
            os._exit(1)


def result_path(work: Path, key: str) -> Path:
    """Where job `key` keeps its result."""
    return work / "results" / f"{key.replace('/', '__')}.json"


def run_jobs(planned: list[Job], work: Path, workers: int) -> dict[str, dict[str, Any]]:
    """Run the jobs not yet done (their results are `work/results/<key>.json`), each when the
    jobs it needs are done, at most `workers` at once, in the given order."""
    folder = work / "results"
    path = {job.key: result_path(work, job.key) for job in planned}
    done = {job.key: json.loads(path[job.key].read_text())
            for job in planned if path[job.key].exists()}
    pending = [job for job in planned if job.key not in done]
    running: dict[Future[dict[str, Any]], Job] = {}
    started = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"),
                             initializer=start_worker) as pool:
        while pending or running:
            for job in list(pending):
                if len(running) < workers and all(need in done for need in job.needs):
                    pending.remove(job)
                    running[pool.submit(job.function, *job.args)] = job
            if not running:
                raise RuntimeError(f"jobs wait on jobs that never ran: {pending[0].key}")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                done[job.key] = future.result()
                path[job.key].write_text(json.dumps(done[job.key]) + "\n")
                print(f"[{(time.monotonic() - started) / 60:5.1f} min] {job.key}: "
                      f"{json.dumps(done[job.key])[:120]}", flush=True)
    return done
