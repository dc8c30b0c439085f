"""Pieces shared by the sampling planners (random shooting, CEM, MPPI).

Action bounds and warm starts are checked the same way everywhere; noise is white or colored
(power-law) along the time axis; a deadline stops the iterations before one that would end
late. Colored noise follows Pinneri et al. (2020), "Sample-efficient Cross-Entropy Method for
Real-time Planning" (iCEM), who sample it as in Timmer and König (1995), "On generating power
law noise". Shapes: `N` samples, `H` horizon, `du` action dimension.
"""

from __future__ import annotations

import time

import torch

from controllers.protocols import Dynamics, ModelDivergedError, SequenceDynamics
from controllers.validation import checked_bounds, checked_warm_start


class SamplingPlanner:
    """What every sampling planner holds: the dynamics, the box bounds, the horizon, the
    generator (a fixed seed gives a fixed plan; seed 0 when none is given) and the dtype of
    the sampled actions and the plan. By default that dtype follows the dynamics (their
    `dtype` attribute: float32 for a learned model, so that samples, rollouts and the plan
    stay in the model's precision without a cast per replan), and is float64 for dynamics
    that state none (the simulator).
    """

    def __init__(
        self,
        dynamics: Dynamics | SequenceDynamics,
        action_low: torch.Tensor,
        action_high: torch.Tensor,
        horizon: int,
        generator: torch.Generator | None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.dynamics = dynamics
        if dtype is None:
            dtype = getattr(dynamics, "dtype", None) or torch.float64
        self.action_low, self.action_high = checked_bounds(action_low, action_high, dtype)
        self.horizon = horizon
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)


def diverged(planner: str, rollouts: int) -> ModelDivergedError:
    """The error of a sampling planner none of whose `rollouts` gave a finite return."""
    return ModelDivergedError(
        f"{planner}: all {rollouts} rollouts returned NaN or infinity; the dynamics diverge "
        "from this state, so no plan can be ranked"
    )


def initial_mean(
    low: torch.Tensor, high: torch.Tensor, horizon: int, warm_start: torch.Tensor | None
) -> torch.Tensor:
    """Where sampling starts, `[H, du]` in the bounds' dtype: the warm start clamped into
    bounds, else mid-range.

    Raises:
        ValueError: naming `warm_start` if its shape is wrong or it is not finite.
    """
    shape = (horizon, low.shape[0])
    if warm_start is None:
        return ((low + high) / 2).expand(shape).clone()
    return checked_warm_start(warm_start, shape).to(low.dtype).clamp(low, high)


def colored_noise(
    shape: tuple[int, int, int],
    beta: float,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Gaussian noise `[N, H, du]`, power spectrum along `H` proportional to `1 / f**beta`.

    `beta = 0` is white noise, exactly `torch.randn(shape)`; iCEM uses 2 to 3 (red noise: slow,
    smooth action sequences). Each sequence of each action dimension is a stationary Gaussian
    process of variance 1 at every step, so a standard deviation scales it as it scales white
    noise. The spectrum is drawn in the frequency domain (independent Gaussian real and
    imaginary parts, amplitude `f**(-beta/2)`) and brought back by an inverse real FFT; the
    zero frequency, which a power law cannot give, gets the lowest frequency's amplitude.
    """
    n, horizon, du = shape
    if beta == 0.0:
        return torch.randn(shape, generator=generator, dtype=dtype)
    freqs = torch.fft.rfftfreq(horizon, dtype=dtype)  # [F], F = H // 2 + 1
    freqs[0] = 1.0 / horizon
    amplitude = freqs ** (-beta / 2)
    # DC, and Nyquist for an even H, are real bins: they appear once in the two-sided spectrum,
    # the others twice (as k and -k). Dividing by the two-sided mean power gives variance 1.
    real_bin = torch.zeros_like(freqs, dtype=torch.bool)
    real_bin[0] = True
    if horizon % 2 == 0:
        real_bin[-1] = True
    multiplicity = torch.where(real_bin, 1.0, 2.0).to(dtype)
    amplitude = amplitude / torch.sqrt((multiplicity * amplitude**2).sum() / horizon)
    # A white unit-variance sequence has E|X_k|^2 = H per bin: all of it on the real part of
    # a real bin, half on each part of a complex one.
    real_std = amplitude * torch.sqrt(horizon / multiplicity)
    imag_std = torch.where(real_bin, 0.0, real_std)
    real = torch.randn((n, freqs.shape[0], du), generator=generator, dtype=dtype)
    imag = torch.randn((n, freqs.shape[0], du), generator=generator, dtype=dtype)
    spectrum = torch.complex(real * real_std[:, None], imag * imag_std[:, None])
    return torch.fft.irfft(spectrum, n=horizon, dim=1)


def next_iteration_ends_late(deadline: float | None, iteration_s: float) -> bool:
    """Whether an iteration of `iteration_s` seconds, started now, would end past `deadline`.

    `deadline` is a `time.perf_counter()` time in seconds; `None` means no deadline. The
    planners pass their slowest iteration so far: a cautious guess of the next one's length.
    """
    return deadline is not None and time.perf_counter() + iteration_s > deadline
