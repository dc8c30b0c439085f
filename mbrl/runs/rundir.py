"""Run directories: one folder per run, with its config, metrics, plots and video.

Files are written atomically (`mbrl.files`: to a temporary file in the same folder, then
renamed), so a run that is killed leaves either the old file or the new one, never half of one.

A run that resumes keeps one commit point per episode: `commit_checkpoint` writes everything an
episode saves into a hidden folder, records each file's SHA-256 in `manifest.json` last, and
renames the folder to `checkpoints/episode-NNNN` (the index of the episode it completes): the
rename is the commit, so a kill at any instant leaves the previous checkpoint or the new one,
whole. The files people look at in the run directory itself (`model.pt`, `metrics.csv`, ...)
are `publish`ed from the checkpoint afterwards, hard links where the file system has them;
`recover` puts all of that right when a killed run resumes: it removes unfinished folders and
temporary files, verifies the latest checkpoint, and publishes it again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from mbrl.config import load as load_config
from mbrl.errors import RunDirError
from mbrl.files import read_json, sync_folder, write_json

#: The folder of a run's committed checkpoints.
CHECKPOINTS = "checkpoints"
#: The file of a checkpoint that lists its other files' digests; written last.
MANIFEST = "manifest.json"
#: The files of a training run (PETS's, an adaptation's).
CONFIG = "config.json"
METRICS = "metrics.csv"
PROGRESS = "progress.json"
MODEL = "model.pt"
BUFFER = "replay_buffer.npz"
#: The files of a checkpoint that are also put in the run directory, for people and tools.
PUBLISHED = (MODEL, BUFFER, METRICS)
_COMMITTED = re.compile(r"episode-(\d+)")
T = TypeVar("T")


def check_out_folder(root: str | Path) -> Path:
    """`root` as a folder for run directories: it may exist as a folder or not at all.

    Raises:
        RunDirError: if `root` or one of its parents is a file.
    """
    path = Path(root)
    for folder in (path, *path.parents):
        if folder.exists() and not folder.is_dir():
            raise RunDirError(f"--out {root}: {folder} is a file, not a folder for run "
                              "directories")
    return path


def new_run_dir(root: str | Path, name: str) -> Path:
    """A fresh folder `root/<name>-<timestamp>` (made unique if it exists).

    Raises:
        RunDirError: if `root` is a file, or a folder where nothing can be created.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = check_out_folder(root) / f"{name.replace('/', '-')}-{stamp}"
    path, n = base, 1
    while path.exists():
        path, n = base.with_name(f"{base.name}-{n}"), n + 1
    try:
        path.mkdir(parents=True)
    except OSError as error:
        raise RunDirError(f"cannot create the run directory {path}: {error.strerror}") from None
    return path


def read_run_config(cls: type[T], path: Path, command: str) -> T:
    """The config dataclass `cls` of a run directory's `config.json` at `path`, written by
    `command` (for the message).

    Raises:
        RunDirError: naming the file, if it is missing or not a valid config.
    """
    if not path.is_file():
        raise RunDirError(f"{path} is missing (is {path.parent} a run directory of "
                          f"`{command}`?)")
    try:
        return load_config(cls, path)
    except ValueError as error:
        raise RunDirError(str(error)) from None


def read_run_file(reader: Callable[[Path], T], path: Path) -> T:
    """`reader(path)` of a file a run directory needs, its refusal of a missing or damaged
    file (`ValueError`) turned into `RunDirError`."""
    if not path.is_file():
        raise RunDirError(f"{path} is missing: the run directory is incomplete")
    try:
        return reader(path)
    except ValueError as error:
        raise RunDirError(str(error)) from None


def require_same_settings(config: Any, stored: Any, resumable: Sequence[str],
                          source: str) -> None:
    """Raise `RunDirError` unless the config dataclasses `config` and `stored` (read from
    `source`) agree but for the fields `resumable`, compared as config.json holds them (a
    tuple and the list it is written as are the same setting)."""
    mine, theirs = (json.loads(json.dumps(dataclasses.asdict(c))) for c in (config, stored))
    differ = [f"{name}: {theirs[name]!r} there, {mine[name]!r} here"
              for name in mine if name not in resumable and mine[name] != theirs[name]]
    if differ:
        raise RunDirError(
            f"resuming with settings that differ from {source} in {'; '.join(differ)}; of a "
            f"run's settings only {', '.join(resumable)} may change on resume")


def commit_checkpoint(run_dir: Path, episode: int, write: Callable[[Path], None]) -> Path:
    """Make `run_dir/checkpoints/episode-<episode>` hold exactly what `write(folder)` writes,
    all at once: written into a hidden folder, listed with digests in `manifest.json`, synced,
    then renamed into place. Returns the committed folder."""
    checkpoints = run_dir / CHECKPOINTS
    checkpoints.mkdir(exist_ok=True)
    final = checkpoints / f"episode-{episode:04d}"
    partial = checkpoints / f".episode-{episode:04d}.partial"
    if final.exists():
        raise FileExistsError(f"{final} is committed already")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    write(partial)
    write_json(partial / MANIFEST, {
        "episode": episode,
        "files": {p.name: _digest(p) for p in sorted(partial.iterdir()) if p.name != MANIFEST},
    })
    sync_folder(partial)
    os.rename(partial, final)
    sync_folder(checkpoints)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The committed checkpoint of the latest episode in `run_dir`, or None."""
    folder = run_dir / CHECKPOINTS
    if not folder.is_dir():
        return None
    committed = [p for p in folder.iterdir() if _COMMITTED.fullmatch(p.name) and p.is_dir()]
    return max(committed, key=lambda p: int(p.name.split("-")[1]), default=None)


def completed_episodes(run_dir: Path) -> int:
    """How many episodes of the run in `run_dir` are committed (0 if none)."""
    checkpoint = latest_checkpoint(run_dir)
    return 0 if checkpoint is None else checkpoint_episode(checkpoint) + 1


def checkpoint_episode(checkpoint: Path) -> int:
    """The index of the episode that `checkpoint` completes."""
    return int(checkpoint.name.split("-")[1])


def verify_checkpoint(checkpoint: Path) -> None:
    """Raise `RunDirError` unless every file listed in the checkpoint's manifest is there with
    the digest it was written with (a file changed, lost or replaced after the commit)."""
    manifest_path = checkpoint / MANIFEST
    manifest = read_json(manifest_path)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise RunDirError(f"{manifest_path} does not list the checkpoint's files")
    for name, digest in files.items():
        path = checkpoint / name
        if not path.is_file():
            raise RunDirError(f"{path} is missing: the checkpoint is damaged")
        if _digest(path) != digest:
            raise RunDirError(f"{path} was changed after it was written (its SHA-256 differs "
                              f"from {manifest_path}): the checkpoint is damaged")


def publish(checkpoint: Path, run_dir: Path, names: Iterable[str]) -> None:
    """Put the checkpoint's files `names` into `run_dir` too, each replaced atomically (a hard
    link where the file system allows, else a copy)."""
    for name in names:
        source, target = checkpoint / name, run_dir / name
        if target.exists() and os.path.samefile(source, target):
            continue  # published already (and rename() of one link over another does nothing)
        fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=f".{name}.", suffix=".tmp")
        os.close(fd)
        try:
            os.unlink(tmp)
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def discard_older_checkpoints(run_dir: Path, keep: Path) -> None:
    """Remove every checkpoint folder of `run_dir` but `keep`, and unfinished ones."""
    folder = run_dir / CHECKPOINTS
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path != keep and path.is_dir():
            shutil.rmtree(path)


def recover(run_dir: Path, published: Iterable[str]) -> Path | None:
    """Put a run directory that may have been killed at any instant back to its last commit:
    remove temporary files and unfinished or superseded checkpoints, verify the latest
    checkpoint and publish its files `published` again. Returns that checkpoint, or None if
    no episode was committed.

    Raises:
        RunDirError: if the latest checkpoint is damaged.
    """
    for stray in run_dir.glob(".*.tmp"):
        stray.unlink()
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is not None:
        verify_checkpoint(checkpoint)  # before removing anything a damaged run still has
        discard_older_checkpoints(run_dir, keep=checkpoint)
        publish(checkpoint, run_dir, published)
    elif (run_dir / CHECKPOINTS).is_dir():
        shutil.rmtree(run_dir / CHECKPOINTS)
    return checkpoint


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def tensorboard_writer(run_dir: Path, purge_after: int | None) -> Any:
    """A TensorBoard writer into `run_dir/tensorboard`, or None where it is not installed.

    `purge_after`: on resume, the last committed step; events logged after it (by episodes
    that were killed before their commit) are hidden, so the curves show each episode once.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # the `tensorboard` extra is optional
        return None
    purge_step = None if purge_after is None else purge_after + 1
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=purge_step)
