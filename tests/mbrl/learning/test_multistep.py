"""Multi-step prediction: zero error for the true model, error that grows for a wrong one,
windows that never cross episodes, and particles that reproduce a known spread."""

from __future__ import annotations

import torch

from mbrl.learning.data import ReplayBuffer
from mbrl.learning.models import EnsembleConfig, EnsembleDynamics, Prediction
from mbrl.learning.multistep import (
    TWO_STD_NOMINAL,
    gaussian_nll,
    normalised_rmse,
    rollout_mean,
    rollout_particles,
    windows,
    within_two_std,
)

#: A lightly damped rotation with an input: x' = A x + B u.
A = torch.tensor([[0.99, 0.1], [-0.1, 0.99]])
B = torch.tensor([[0.0], [0.1]])


class LinearModel:
    """An ensemble of `members` copies of `x' = A x + B u`, with an optional Gaussian
    variance `var` on every prediction."""

    def __init__(self, a: torch.Tensor, members: int = 1, var: float | None = None) -> None:
        self.a, self.members, self.var = a, members, var

    @property
    def num_members(self) -> int:
        return self.members

    def predict(self, obs: torch.Tensor, act: torch.Tensor) -> Prediction:
        mean = obs @ self.a.T + act @ B.T
        if mean.ndim == 2:
            mean = mean.expand(self.members, -1, -1)
        var = None if self.var is None else torch.full_like(mean, self.var)
        return Prediction(mean=mean, var=var)

    def loss(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def linear_episodes(episodes: int, steps: int, seed: int = 0) -> ReplayBuffer:
    """Episodes of the linear system under random inputs, each from a random start."""
    generator = torch.Generator().manual_seed(seed)
    buffer = ReplayBuffer(2, 1)
    for _ in range(episodes):
        x = torch.randn(2, generator=generator)
        for t in range(steps):
            u = torch.rand(1, generator=generator) * 2 - 1
            x_next = A @ x + B @ u
            buffer.add(x.numpy(), u.numpy(), x_next.numpy(), 0.0, False, t == steps - 1)
            x = x_next
    return buffer


def test_windows_start_only_where_the_horizon_fits_inside_an_episode() -> None:
    held_out = windows(linear_episodes(3, 10), horizon=4)
    assert held_out.obs.shape == (3 * 7, 2)
    assert held_out.act.shape == (21, 4, 1) and held_out.next_obs.shape == (21, 4, 2)
    assert held_out.episode.tolist() == [e for e in range(3) for _ in range(7)]
    assert windows(linear_episodes(3, 10), horizon=4, stride=3).obs.shape[0] == 7


def test_the_true_model_predicts_every_horizon_exactly() -> None:
    held_out = windows(linear_episodes(4, 40), horizon=20)
    prediction = rollout_mean(LinearModel(A, members=3), held_out.obs, held_out.act)
    error = normalised_rmse(prediction, held_out.next_obs, torch.ones(2))
    assert error.shape == (4 * 21, 20)
    assert float(error.max()) < 1e-5


def test_a_perturbed_model_errs_more_the_further_it_predicts() -> None:
    held_out = windows(linear_episodes(4, 40), horizon=20)
    wrong = LinearModel(A + torch.tensor([[0.0, 0.02], [-0.02, 0.0]]))  # rotates a bit faster
    error = normalised_rmse(rollout_mean(wrong, held_out.obs, held_out.act),
                            held_out.next_obs, torch.ones(2)).median(dim=0).values
    assert float(error[0]) > 1e-3
    assert bool((error[1:] > error[:-1]).all())
    assert float(error[-1]) > 10 * float(error[0])


def test_the_error_is_measured_in_units_of_the_scale() -> None:
    target = torch.zeros(5, 3, 2)
    prediction = torch.ones(5, 3, 2) * torch.tensor([2.0, 4.0])
    error = normalised_rmse(prediction, target, torch.tensor([2.0, 4.0]))
    assert torch.allclose(error, torch.ones(5, 3))


def test_particles_of_a_deterministic_ensemble_are_its_member_trajectories() -> None:
    held_out = windows(linear_episodes(2, 12), horizon=5)
    model = EnsembleDynamics(2, 1, EnsembleConfig(ensemble_size=3, hidden_size=8,
                                                  hidden_layers=2, probabilistic=False,
                                                  weight_decay=0.0))
    paths = rollout_particles(model, held_out.obs, held_out.act, 6, torch.Generator())
    assert paths.shape == (6, held_out.obs.shape[0], 5, 2)
    assert torch.equal(paths[0], paths[1]) and not torch.equal(paths[1], paths[2])
    # One member alone, fed its own predictions, follows the same path.
    x = held_out.obs
    for t in range(5):
        x = model.predict(x, held_out.act[:, t]).mean[2]
    assert torch.allclose(paths[5, :, -1], x, atol=1e-6)


def test_particles_of_the_true_model_with_known_noise_are_calibrated() -> None:
    held_out = windows(linear_episodes(8, 30), horizon=1)
    model = LinearModel(A, members=2, var=0.01)
    # The logged step plus the model's own noise: the truth is one more draw of the spread.
    noisy = held_out.next_obs + 0.1 * torch.randn(held_out.next_obs.shape,
                                                  generator=torch.Generator().manual_seed(1))
    paths = rollout_particles(model, held_out.obs, held_out.act, 400,
                              torch.Generator().manual_seed(0))
    coverage = float(within_two_std(paths, noisy).mean())
    assert abs(coverage - TWO_STD_NOMINAL) < 0.05
    nll = float(gaussian_nll(paths, noisy, torch.ones(2)).mean())
    expected = 0.5 * (1 + torch.log(torch.tensor(2 * torch.pi * 0.01)))  # a unit z^2 on average
    assert abs(nll - float(expected)) < 0.1
