"""A learned ensemble as planning dynamics, with PETS's trajectory sampling.

Chua et al. (2018), "Deep Reinforcement Learning in a Handful of Trials using Probabilistic
Dynamics Models", section 4.2. Each candidate action sequence is scored by `P` particles that
start at the current observation and are propagated through the ensemble:

- `TS1`: every particle draws a new member uniformly at every step;
- `TS_INFINITY`: every particle keeps one member for the whole horizon (each candidate's
  particles are spread evenly over the members);
- `EXPECTATION`: one deterministic particle per candidate follows the members' mean prediction.

With a probabilistic ensemble, a particle's next observation is sampled from its member's
Gaussian; with a deterministic one it is the member's mean. A candidate's return is the mean
over its particles of the summed task reward (steps after a termination count nothing), or,
for a risk-averse planner, the worst particle's or the CVaR of the worst epsilon fraction of
particles (EPOpt's objective over the models the particles sample, `controllers.risk`).
Shapes: `N` candidates, `H` horizon, `P` particles, `E` members, `do`/`du` obs/action dims.
"""

from __future__ import annotations

import enum
from typing import Protocol

import torch

from controllers.risk import Objective, aggregate_returns, check_objective


class Propagation(enum.Enum):
    """How particles move through the ensemble members (PETS section 4.2)."""

    TS1 = "ts1"
    TS_INFINITY = "tsinf"
    EXPECTATION = "expectation"


class EnsemblePrediction(Protocol):
    """What an ensemble's `predict` returns: next observations `mean [E, B, do]` and their
    variance `var [E, B, do]` (None for a deterministic ensemble)."""

    @property
    def mean(self) -> torch.Tensor: ...

    @property
    def var(self) -> torch.Tensor | None: ...


class Ensemble(Protocol):
    """The part of a dynamics ensemble that propagation needs."""

    @property
    def num_members(self) -> int: ...

    def predict(self, obs: torch.Tensor, act: torch.Tensor) -> EnsemblePrediction:
        """Member-wise prediction from `obs [E, B, do]`, `act [E, B, du]`."""
        ...


class TaskFunctions(Protocol):
    """A task's batched reward and termination (`envs.Task` satisfies it)."""

    def reward(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        ...

    def terminated(
        self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor
    ) -> torch.Tensor: ...


class ModelDynamics:
    """`controllers.SequenceDynamics` (and `Dynamics`) over a learned ensemble.

    Args:
        model: the ensemble; its `predict` takes member-first batches `[E, B, d]`.
        task: the task's torch reward and termination.
        particles: P, particles per candidate; a multiple of the ensemble size for the
            trajectory-sampling modes, and 1 for `EXPECTATION`.
        propagation: see `Propagation`.
        generator: the source of member draws and Gaussian samples.
        dtype: the precision particles are propagated and scored in (the model's); returns
            are given in the dtype of the candidate actions.
        objective: how a candidate's P particle returns become its score: "mean" (PETS),
            "worst" or "cvar" (`controllers.risk`).
        epsilon: the fraction of the worst particles "cvar" averages.
    """

    def __init__(
        self,
        model: Ensemble,
        task: TaskFunctions,
        particles: int = 20,
        propagation: Propagation = Propagation.TS_INFINITY,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        objective: Objective = "mean",
        epsilon: float = 0.1,
    ) -> None:
        members = model.num_members
        check_objective(objective, epsilon)
        if propagation is Propagation.EXPECTATION and particles != 1:
            raise ValueError(f"EXPECTATION propagates one particle per candidate, got {particles}")
        if propagation is not Propagation.EXPECTATION and (
            particles < members or particles % members
        ):
            raise ValueError(
                f"particles ({particles}) must be a positive multiple of the ensemble size "
                f"({members}) for {propagation.name}"
            )
        self.model = model
        #: Entries of an observation, the state this dynamics steps.
        self.state_dim: int | None = getattr(model, "obs_dim", None)
        self.task = task
        self.particles = particles
        self.propagation = propagation
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.dtype = dtype
        self.objective: Objective = objective
        self.epsilon = epsilon

    @torch.no_grad()
    def sequence_returns(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Score `[N]` of each candidate `[N, H, du]` from one observation `[do]`: its particles'
        mean return, or their worst or CVaR under a risk-averse `objective`.

        Particles are laid out particle-major, `[P, N]` flattened, so that splitting them into
        `E` equal blocks gives every member `P / E` particles of every candidate (TS-infinity).
        """
        n, horizon, _ = actions.shape
        members, p = self.model.num_members, self.particles
        dtype = self.dtype
        obs = state.to(dtype).expand(p * n, -1)
        particle_actions = actions.to(dtype).repeat(p, 1, 1)  # [P*N, H, du], particle-major
        returns = torch.zeros(p * n, dtype=dtype, device=actions.device)
        alive = torch.ones(p * n, dtype=dtype, device=actions.device)
        noise: torch.Tensor | None = None  # [H, P*N, do], drawn at once when first needed
        for t in range(horizon):
            act = particle_actions[:, t]
            prediction, order = self._predict(obs, act, members)
            next_obs = prediction.mean
            if prediction.var is not None and self.propagation is not Propagation.EXPECTATION:
                if noise is None:
                    noise = torch.randn(
                        (horizon, *next_obs.shape), generator=self.generator,
                        dtype=next_obs.dtype, device=next_obs.device,
                    )
                next_obs = torch.addcmul(next_obs, prediction.var.sqrt(), noise[t])
            next_obs = self._particle_major(next_obs, obs.shape, order)
            returns = returns + alive * self.task.reward(obs, act, next_obs).to(dtype)
            alive = alive * (~self.task.terminated(obs, act, next_obs)).to(dtype)
            obs = next_obs
        scores = aggregate_returns(returns.reshape(p, n), self.objective, self.epsilon)
        return scores.to(actions.dtype)

    def _predict(
        self, obs: torch.Tensor, act: torch.Tensor, members: int
    ) -> tuple[EnsemblePrediction, torch.Tensor | None]:
        """The members' predictions for particles `[P*N, do]` under actions `[P*N, du]`, as
        `[E, P*N/E, do]` (`[E, P*N, do]` for `EXPECTATION`), and the particle order they are in
        (None: particle-major, as given)."""
        if self.propagation is Propagation.EXPECTATION:
            shape = (members, *obs.shape)
            return self.model.predict(obs.expand(shape), act.expand(members, *act.shape)), None
        order = None
        if self.propagation is Propagation.TS1:  # a fresh member for every particle
            order = torch.randperm(obs.shape[0], generator=self.generator, device=obs.device)
            obs, act = obs[order], act[order]
        prediction = self.model.predict(
            obs.reshape(members, -1, obs.shape[-1]), act.reshape(members, -1, act.shape[-1])
        )
        return prediction, order

    def _particle_major(
        self, next_obs: torch.Tensor, shape: torch.Size, order: torch.Tensor | None
    ) -> torch.Tensor:
        """Sampled next observations back to particles `[P*N, do]` in particle-major order."""
        if self.propagation is Propagation.EXPECTATION:
            return next_obs.mean(dim=0).to(self.dtype)
        next_obs = next_obs.reshape(shape).to(self.dtype)
        if order is not None:
            next_obs = next_obs[torch.argsort(order)]
        return next_obs

    @torch.no_grad()
    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The members' mean next observation `[B, do]` of `state [B, do]`, `action [B, du]`."""
        members = self.model.num_members
        prediction = self.model.predict(
            state.expand(members, *state.shape), action.expand(members, *action.shape)
        )
        return prediction.mean.mean(dim=0).to(state.dtype)

    def reward(
        self, state: torch.Tensor, action: torch.Tensor, next_state: torch.Tensor
    ) -> torch.Tensor:
        """The task's reward `[B]`."""
        return self.task.reward(state, action, next_state)
