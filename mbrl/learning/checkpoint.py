"""Saving and loading dynamics models: weights, normalisers and the settings that rebuild them.

The learned ensembles of PETS (Chua et al. 2018, "Deep Reinforcement Learning in a Handful of
Trials using Probabilistic Dynamics Models") are worth keeping between runs. A checkpoint is
one torch file holding a dict: a format tag and version, the constructor arguments of
`EnsembleDynamics` (dimensions and `EnsembleConfig` as plain values), its state dict (weights,
log-variance bounds, normalisers, elite members) and the caller's `extra` values.

Files are written atomically (`mbrl.runs.rundir.atomic_open`) and read with
`torch.load(weights_only=True)`, which restores tensors and plain containers and never runs
code from the file. Anything that is not a checkpoint of ours is refused with a `ValueError`
naming the file and what is wrong with it.
"""

from __future__ import annotations

import dataclasses
import errno
import pickle
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from controllers.policy import NeuralPolicy, PolicyConfig
from mbrl.files import atomic_open
from mbrl.learning.models import EnsembleConfig, EnsembleDynamics
from mbrl.learning.rssm import RSSM, RSSMConfig

#: The tag that marks a checkpoint written by `save_model`.
FORMAT = "mbrl.EnsembleDynamics"
#: The tag that marks a policy checkpoint written by `save_policy`.
POLICY_FORMAT = "mbrl.NeuralPolicy"
#: The tag that marks a latent model checkpoint written by `save_rssm`.
RSSM_FORMAT = "mbrl.RSSM"
#: The newest format version this code writes and reads.
VERSION = 1
#: How every file written by `torch.save` begins.
ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint file holds."""

    #: The rebuilt model with its weights, normalisers and elites.
    model: EnsembleDynamics
    #: The values given as `extra` to `save_model`.
    extra: dict[str, Any]


def save_model(
    model: EnsembleDynamics, path: str | Path, extra: Mapping[str, Any] | None = None
) -> None:
    """Write `model` (and `extra`: tensors, numbers, strings, None, and lists, tuples and
    str-keyed dicts of them) to `path`, atomically: a failed write leaves the old file."""
    extra = dict(extra or {})
    _check_plain("extra", extra)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "obs_dim": model.obs_dim,
        "act_dim": model.act_dim,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra,
    }
    with atomic_open(path, "wb") as handle:
        torch.save(payload, handle)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> EnsembleDynamics:
    """The model saved at `path` by `save_model`, on `device`.

    Raises:
        FileNotFoundError: if there is no file at `path`.
        ValueError: if the file is not one of our checkpoints or does not fit together
            (truncated, corrupted, not a torch file, a torch file from elsewhere, weights whose
            shapes the saved settings do not give, non-finite weights).
    """
    return load_checkpoint(path, device).model


#: Rebuilds a model of a subclass of `EnsembleDynamics` (its weights loaded afterwards) from
#: the saved dimensions, settings and `extra` values.
Builder = Callable[[int, int, EnsembleConfig, dict[str, Any]], EnsembleDynamics]


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu",
                    build: Builder | None = None) -> Checkpoint:
    """The model and extra values saved at `path`; raises as `load_model` does. `build`
    rebuilds a subclass's model (`sim2real.progressive` saves one); the default, a plain
    `EnsembleDynamics`."""
    path = Path(path)
    payload = _read(path)
    _check_payload(path, payload, FORMAT, "save_model", _MODEL_ENTRIES)
    try:
        config = EnsembleConfig.from_dict(payload["config"])
        if build is None:
            model = EnsembleDynamics(payload["obs_dim"], payload["act_dim"], config)
        else:
            model = build(payload["obs_dim"], payload["act_dim"], config, payload["extra"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: the saved model settings are invalid: {err}") from err
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, ValueError) as err:
        problems = "; ".join(line.strip() for line in str(err).splitlines()[1:] if line.strip())
        raise ValueError(
            f"{path}: the saved weights do not fit the model its settings describe: "
            f"{problems or err}"
        ) from err
    return Checkpoint(model=model.to(device), extra=payload["extra"])


def _read(path: Path, what: str = "model checkpoint") -> Any:
    """`torch.load(path, weights_only=True)`, with its errors turned into clear ones."""
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, f"no {what}", str(path))
    if not path.is_file():
        raise ValueError(f"{path} is not a file")
    with path.open("rb") as handle:  # errors opening the file are the system's, not ours
        is_zip = handle.read(4) == ZIP_MAGIC
        handle.seek(0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. about the pickle protocol of foreign files
                return torch.load(handle, map_location="cpu", weights_only=True)
        except Exception as err:  # torch and pickle raise many kinds for a damaged file
            if isinstance(err, pickle.UnpicklingError) and "Unsupported global" in str(err):
                problem = (
                    "it holds Python objects other than tensors and plain containers, "
                    "which are never unpickled"
                )
                raise ValueError(
                    f"{path} is not a {what}: {problem} ({_detail(err)})"
                ) from err
            if is_zip:
                problem = "truncated or corrupted (a damaged torch zip archive)"
            else:
                problem = "not a readable torch file (another format, or damaged)"
            raise ValueError(f"{path} is {problem}: {type(err).__name__}: {_detail(err)}") from err


_MODEL_ENTRIES = {"obs_dim": int, "act_dim": int, "config": dict, "state_dict": dict,
                  "extra": dict}
_POLICY_ENTRIES = {"obs_dim": int, "act_dim": int, "config": dict, "state_dict": dict,
                   "extra": dict}


def save_policy(
    policy: NeuralPolicy, path: str | Path, extra: Mapping[str, Any] | None = None
) -> None:
    """Write `policy` (weights, normaliser, bounds, std, settings) and `extra` (plain values,
    as for `save_model`) to `path`, atomically."""
    extra = dict(extra or {})
    _check_plain("extra", extra)
    payload = {
        "format": POLICY_FORMAT,
        "version": VERSION,
        "obs_dim": policy.obs_dim,
        "act_dim": policy.act_dim,
        "config": policy.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in policy.state_dict().items()},
        "extra": extra,
    }
    with atomic_open(path, "wb") as handle:
        torch.save(payload, handle)


def load_policy(path: str | Path) -> tuple[NeuralPolicy, dict[str, Any]]:
    """The policy saved at `path` by `save_policy`, and its `extra` values.

    Raises:
        FileNotFoundError: if there is no file at `path`.
        ValueError: naming the file, for anything that is not one of our policy checkpoints
            or does not fit together (as `load_model`).
    """
    path = Path(path)
    payload = _read(path, what="policy checkpoint")
    _check_payload(path, payload, POLICY_FORMAT, "save_policy", _POLICY_ENTRIES)
    state = payload["state_dict"]
    try:
        config = PolicyConfig.from_dict(payload["config"])
        policy = NeuralPolicy(payload["obs_dim"], payload["act_dim"], state["action_low"],
                              state["action_high"], config)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: the saved policy settings are invalid: {err}") from err
    try:
        policy.load_state_dict(state)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"{path}: the saved weights do not fit the policy its settings "
                         f"describe: {' '.join(str(err).split())}") from err
    return policy, payload["extra"]


_RSSM_ENTRIES = {"act_dim": int, "channels": int, "config": dict, "state_dict": dict,
                 "extra": dict}


def save_rssm(model: RSSM, path: str | Path, optimiser: torch.optim.Optimizer | None = None,
              extra: Mapping[str, Any] | None = None) -> None:
    """Write a latent model (its settings and weights), the state of its `optimiser` (so
    that training resumes exactly) and `extra` (plain values) to `path`, atomically."""
    extra = dict(extra or {})
    if optimiser is not None:
        extra["optimiser"] = _plain_optimiser_state(optimiser.state_dict())
    _check_plain("extra", extra)
    payload = {
        "format": RSSM_FORMAT,
        "version": VERSION,
        "act_dim": model.act_dim,
        "channels": model.channels,
        "config": dataclasses.asdict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra,
    }
    with atomic_open(path, "wb") as handle:
        torch.save(payload, handle)


def load_rssm(path: str | Path, optimiser_factory: Callable[[RSSM], torch.optim.Optimizer]
              | None = None) -> tuple[RSSM, torch.optim.Optimizer | None, dict[str, Any]]:
    """The latent model saved at `path` by `save_rssm`; with `optimiser_factory`, an optimiser
    of its parameters with the saved state (None without); and the `extra` values.

    Raises:
        FileNotFoundError: if there is no file at `path`.
        ValueError: naming the file, for anything that is not one of our latent model
            checkpoints or does not fit together (as `load_model`).
    """
    path = Path(path)
    payload = _read(path)
    _check_payload(path, payload, RSSM_FORMAT, "save_rssm", _RSSM_ENTRIES)
    try:
        config = RSSMConfig(**payload["config"])
        model = RSSM(payload["act_dim"], config, channels=payload["channels"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: the saved model settings are invalid: {err}") from err
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"{path}: the saved weights do not fit the model its settings "
                         f"describe: {' '.join(str(err).split())}") from err
    extra = dict(payload["extra"])
    saved_state = extra.pop("optimiser", None)
    optimiser = None
    if optimiser_factory is not None:
        optimiser = optimiser_factory(model)
        if saved_state is None:
            raise ValueError(f"{path} holds no optimiser state to resume training from")
        try:
            optimiser.load_state_dict(_optimiser_state(saved_state))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: the saved optimiser state does not fit: {err}") from err
    return model, optimiser, extra


def _plain_optimiser_state(state: dict[str, Any]) -> dict[str, Any]:
    """An optimiser's `state_dict` with its integer keys as strings (plain to save)."""
    return {"state": {str(k): v for k, v in state["state"].items()},
            "param_groups": state["param_groups"]}


def _optimiser_state(plain: dict[str, Any]) -> dict[str, Any]:
    return {"state": {int(k): v for k, v in plain["state"].items()},
            "param_groups": plain["param_groups"]}


_KINDS = {FORMAT: "model checkpoint", POLICY_FORMAT: "policy checkpoint",
          RSSM_FORMAT: "latent model checkpoint"}


def _check_payload(path: Path, payload: Any, fmt: str, writer: str,
                   expected: Mapping[str, type]) -> None:
    """Raise unless `payload` has the layout `writer` writes (format tag `fmt`)."""
    label = _KINDS[fmt]
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        what = type(payload).__name__
        if isinstance(payload, dict):
            what = f"dict without the format tag {fmt!r}"
            if payload.get("format") in _KINDS:
                what = f"checkpoint of another kind ({payload['format']})"
        raise ValueError(
            f"{path} is a torch file but not a {label} written by "
            f"mbrl.learning.checkpoint.{writer}: it holds a {what}"
        )
    version = payload.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{path}: invalid checkpoint format version {version!r}")
    if version > VERSION:
        raise ValueError(
            f"{path} was written by a newer version of this code (format version {version}; "
            f"this one reads up to {VERSION})"
        )
    for key, kind in expected.items():
        if not isinstance(payload.get(key), kind):
            raise ValueError(
                f"{path}: checkpoint entry {key!r} should be a {kind.__name__}, "
                f"got {type(payload.get(key)).__name__}"
            )
    for name, value in payload["state_dict"].items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise ValueError(f"{path}: the state dict holds a {type(value).__name__} at {name!r}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ValueError(f"{path}: the saved {name!r} holds NaN or infinite values")


def _check_plain(where: str, value: Any) -> None:
    """Raise TypeError unless `value` is something `torch.load(weights_only=True)` restores."""
    if value is None or isinstance(value, str | bool | int | float | torch.Tensor):
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_plain(f"{where}[{i}]", item)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a non-string key {key!r}")
            _check_plain(f"{where}[{key!r}]", item)
        return
    raise TypeError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}; a checkpoint holds "
        f"only tensors, numbers, strings, None, and lists, tuples and dicts of them"
    )


def _detail(err: BaseException) -> str:
    """The telling line of an error's message, at most 200 characters.

    For the weights-only unpickler that is the line after "WeightsUnpickler error:" (its first
    lines advise loading with `weights_only=False`, which we never do).
    """
    text = str(err)
    _, marker, rest = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (rest if marker else text).splitlines() if line.strip()]
    return lines[0][:200] if lines else repr(err)
