"""Progressive networks for dynamics models: adapt to a new robot without forgetting the old.

Rusu et al. (2016), "Progressive Neural Networks": the source column is frozen, a new column
learns the target, and lateral adapters carry the source column's features into it. Layer i
of the new column (k = 2) computes

    h_i = f( W_i h_{i-1}  +  U_i sigma( V_i (alpha_i * h_{i-1}^source) ) )

with `alpha_i` a learned scale (one per member, initialised at 0.1), `V_i` a projection to a
few adapter units, `sigma` the activation and `U_i` the projection into layer i. The first
layer has no lateral input (both columns see the same inputs).

The new column starts as Rusu et al.'s does, from random weights (`init="random"`), or as a
copy of the source column with the adapters' output projections `U_i` at zero
(`init="source"`): the model then predicts exactly as the source until the target data move
it, the source column still frozen. With a few target episodes this matters: planning through
a random-init column fitted on one 10 s episode lost most of the source model's return in the
transfer benchmark (`benchmarks/sim2real.py`). `ProgressiveEnsembleDynamics`
is an `EnsembleDynamics` whose network is this new column, so `fit`, `predict`, PETS's
planning problem and the checkpoints take it; the source ensemble is held inside it, its
parameters frozen and its input normalisation its own, so the source model's predictions,
and everything planned through it, stay bit-identical whatever the adaptation does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from mbrl.learning.checkpoint import load_checkpoint, save_model
from mbrl.learning.models import EnsembleConfig, EnsembleDynamics, EnsembleLinear

#: Initial value of the adapters' scales alpha (Rusu et al. draw it from {1, 0.1, 0.01}).
ALPHA_INIT = 0.1


class ProgressiveEnsembleDynamics(EnsembleDynamics):
    """A new column over a frozen `source` ensemble (see the module docstring).

    Args:
        source: the trained source-domain model; frozen here (`requires_grad` off).
        adapter_size: units of each lateral adapter's projection `V_i`.
        generator: the source of the new column's initial weights.
        init: "random" (Rusu et al.) or "source": the new column a copy of the source
            column and every `U_i` zero, so the model starts as the source (train it with
            `TrainConfig(fit_normalizers=False)` to keep the source's normalisers too).
    """

    def __init__(self, source: EnsembleDynamics, adapter_size: int = 16,
                 generator: torch.Generator | None = None,
                 init: Literal["random", "source"] = "random") -> None:
        if adapter_size < 1:
            raise ValueError(f"adapter_size must be >= 1, got {adapter_size}")
        if init not in ("random", "source"):
            raise ValueError(f"init must be random or source, got {init!r}")
        generator = generator if generator is not None else torch.Generator().manual_seed(1)
        super().__init__(source.obs_dim, source.act_dim, source.config, generator)
        #: Units of each adapter's projection.
        self.adapter_size = adapter_size
        for parameter in source.parameters():
            parameter.requires_grad_(False)
        self.source = source
        # Start from the source's statistics; `fit` sets the new column's from target data.
        self.input_normalizer.load_state_dict(source.input_normalizer.state_dict())
        self.output_normalizer.load_state_dict(source.output_normalizer.state_dict())
        E, width = source.config.ensemble_size, source.config.hidden_size
        later = [layer for layer in self.layers[1:] if isinstance(layer, EnsembleLinear)]
        self.alphas = nn.Parameter(torch.full((len(later), E, 1, 1), ALPHA_INIT))
        self.lateral_in = nn.ModuleList(
            EnsembleLinear(E, width, adapter_size, generator) for _ in later)
        self.lateral_out = nn.ModuleList(
            EnsembleLinear(E, adapter_size, layer.out_features, generator) for layer in later)
        if init == "source":  # every weight, bound and statistic of the source's network
            unexpected = self.load_state_dict(source.state_dict(), strict=False).unexpected_keys
            assert not unexpected, unexpected
            with torch.no_grad():
                for projection in self.lateral_out:
                    for parameter in projection.parameters():
                        parameter.zero_()

    def _mlp(self, x: torch.Tensor, members: torch.Tensor | None,
             inplace: bool) -> torch.Tensor:
        """The new column on inputs normalised by it, with the source column's hidden
        features (on inputs normalised by the source) through the adapters."""
        raw = self.input_normalizer.denormalize(x)
        source_features = self._source_hidden(self.source.input_normalizer.normalize(raw),
                                              members)
        first, *later = self.layers
        h = self._activation(first(x, members), inplace)
        for i, layer in enumerate(later):
            alpha = self.alphas[i] if members is None else self.alphas[i].index_select(0, members)
            lateral = self.lateral_out[i](
                self._activation(self.lateral_in[i](alpha * source_features[i], members),
                                 False), members)
            z = layer(h, members) + lateral
            h = z if i == len(later) - 1 else self._activation(z, inplace)
        return h

    def _source_hidden(self, x: torch.Tensor, members: torch.Tensor | None) -> list[torch.Tensor]:
        """The source column's hidden activations, one per hidden layer, `[E, B, width]`."""
        features = []
        with torch.no_grad():
            for layer in list(self.source.layers)[:-1]:
                x = self._activation(layer(x, members), False)  # the same function
                features.append(x)
        return features


#: The `extra` key that marks a progressive model's checkpoint.
KIND = "progressive"


def save_progressive(model: ProgressiveEnsembleDynamics, path: str | Path) -> None:
    """Write `model` (both columns, the adapters, the normalisers) as a model checkpoint
    (atomic, loaded without running code from the file)."""
    save_model(model, path, extra={"kind": KIND, "adapter_size": model.adapter_size})


def load_progressive(path: str | Path) -> ProgressiveEnsembleDynamics:
    """The progressive model saved at `path` by `save_progressive`.

    Raises:
        ValueError: naming the file, for one that is not a progressive model's checkpoint.
    """
    def build(obs_dim: int, act_dim: int, config: EnsembleConfig,
              extra: dict[str, Any]) -> EnsembleDynamics:
        if extra.get("kind") != KIND or not isinstance(extra.get("adapter_size"), int):
            raise ValueError("not a progressive model's checkpoint (no adapter settings)")
        return ProgressiveEnsembleDynamics(EnsembleDynamics(obs_dim, act_dim, config),
                                           extra["adapter_size"])

    model = load_checkpoint(path, build=build).model
    assert isinstance(model, ProgressiveEnsembleDynamics)
    return model
