"""Domain randomisation: every episode (or step) on another robot, drawn from stated ranges.

Tobin et al. (2017) and Peng et al. (2018, "Sim-to-Real Transfer of Robotic Control with
Dynamics Randomization"): train across simulators whose physics, delays and sensor noise are
drawn from ranges wide enough to hold the real robot. `DomainRandomization` wraps any
`RobotEnv`:

    on reset (the draws come from the episode's own generator, so a seed fixes them):
        draw each physics scale in the config (mass, damping, friction, actuator gain) and
        set it on the robot; draw the action delay (whole control steps, and a fraction of
        one) and the observation noise; record the draw (`history`)
        fill the action queue with the delay's worth of null actions
    on each step:
        with `resample == "step"`: draw the physics scales and the noise again (not the delay)
        the action joins the queue; the one `delay` steps older acts
        with a control-rate range: this step lasts 1 / rate, in whole physics steps
        the first `fraction` of the step's physics steps still apply the action before it
        the observation gets gaussian noise of the drawn standard deviation

The fraction of a step and the control rate act through the physics steps, so they need a
robot stepped by them (`mujoco/...`: `physics_step`, `frame_skip`).

Ranges are uniform or log-uniform (`Range`), written in a JSON file (`RandomizationConfig`,
`load_randomization`); `PENG_2018` holds that paper's ranges for the parameters our robots
have. A range the robot cannot take (a parameter it does not have, a scale outside what its
simulator accepts) is refused when the wrapper is built, naming the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from controllers.validation import ConfigError, check_types, require
from envs.core import PHYSICS_PARAMS, Array, RobotEnv
from envs.wrappers import RobotWrapper
from mbrl.config import from_dict, load


@dataclass(frozen=True)
class Range:
    """A closed interval to draw one number from."""

    #: Lowest value.
    low: float
    #: Highest value (equal to `low`: that value, always).
    high: float
    #: "uniform", or "log-uniform" (uniform in the logarithm; both ends > 0), the natural law
    #: for a multiplicative scale (x0.25 is as far from x1 as x4).
    distribution: Literal["uniform", "log-uniform"] = "uniform"

    def __post_init__(self) -> None:
        check_types(self)
        require(self, "high", self.high >= self.low, "must be >= low")
        require(self, "low", self.distribution != "log-uniform" or self.low > 0,
                "must be > 0 for a log-uniform range")

    def draw(self, rng: np.random.Generator) -> float:
        """One value from the range."""
        if self.high == self.low:
            return self.low
        if self.distribution == "log-uniform":
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return float(rng.uniform(self.low, self.high))


@dataclass(frozen=True)
class RandomizationConfig:
    """What `DomainRandomization` draws, and when (null: left at the robot's nominal value)."""

    #: Scale of every body's mass (and inertia).
    mass_scale: Range | None = None
    #: Scale of every joint's damping.
    damping_scale: Range | None = None
    #: Scale of every contact's and joint's friction.
    friction_scale: Range | None = None
    #: Scale of every actuator's force per unit action.
    actuator_gain_scale: Range | None = None
    #: Whole control steps an action waits before it acts: an integer drawn uniformly from
    #: `[low, high]`.
    action_delay_steps: tuple[int, int] = (0, 0)
    #: A further delay, as a fraction of a control step in [0, 1): the previous action
    #: still acts for that share of each step's physics steps (`mujoco/` robots).
    action_delay_fraction: Range | None = None
    #: Control steps per second, drawn at every step (control-period jitter); each step lasts
    #: 1 / rate rounded to whole physics steps, at least one (`mujoco/` robots).
    control_rate_hz: Range | None = None
    #: Standard deviation of gaussian noise added to every observation entry.
    observation_noise_std: Range | None = None
    #: "episode": draw at each reset; "step": draw the physics scales and the noise at every
    #: step too (the delay stays the episode's).
    resample: Literal["episode", "step"] = "episode"

    def __post_init__(self) -> None:
        check_types(self)
        low, high = self.action_delay_steps if len(self.action_delay_steps) == 2 else (-1, -1)
        require(self, "action_delay_steps", len(self.action_delay_steps) == 2
                and all(isinstance(v, int) and not isinstance(v, bool)
                        for v in self.action_delay_steps) and 0 <= low <= high,
                "must be [low, high] whole steps with 0 <= low <= high")
        noise = self.observation_noise_std
        require(self, "observation_noise_std", noise is None or noise.low >= 0,
                "must not go below 0")
        fraction = self.action_delay_fraction
        require(self, "action_delay_fraction", fraction is None
                or (fraction.low >= 0 and fraction.high < 1), "must lie in [0, 1)")
        rate = self.control_rate_hz
        require(self, "control_rate_hz", rate is None or rate.low > 0, "must be > 0")

    @property
    def needs_physics_steps(self) -> bool:
        """Whether it acts inside a control step (a fraction of a delay, a control rate)."""
        return self.action_delay_fraction is not None or self.control_rate_hz is not None

    def physics(self) -> dict[str, Range]:
        """The physics scales this config draws, by their `RobotEnv.physics_params` names."""
        ranges = {name: getattr(self, name) for name in PHYSICS_PARAMS}
        return {name: value for name, value in ranges.items() if value is not None}


#: Peng et al. (2018), Table I, for the parameters our robots have: link masses x0.25-4,
#: joint damping x0.2-20, controller gains x0.5-2 (here the actuators' gain), the action
#: timestep 125-1000 Hz (here the control rate, at every step), observation noise (std 0.01
#: here). Drawn log-uniformly: each range is symmetric about its middle on a log scale.
PENG_2018 = RandomizationConfig(
    mass_scale=Range(0.25, 4.0, "log-uniform"),
    damping_scale=Range(0.2, 20.0, "log-uniform"),
    actuator_gain_scale=Range(0.5, 2.0, "log-uniform"),
    control_rate_hz=Range(125.0, 1000.0, "log-uniform"),
    observation_noise_std=Range(0.01, 0.01),
)

#: Named presets for `load_randomization`.
PRESETS = {"peng2018": PENG_2018}


class EnvWrapperPlugin:
    """What `mbrl` reaches through its "randomize" env wrapper (`mbrl.config.env_wrapper`):
    `mbrl train pets --randomize FILE` and `PETSConfig.randomize`."""

    @staticmethod
    def settings(source: str) -> dict[str, Any]:
        """A preset's or a file's settings, checked, as config.json holds them (lists)."""
        settings: dict[str, Any] = json.loads(json.dumps(
            dataclasses.asdict(load_randomization(source))))
        return settings

    @staticmethod
    def wrap(env: RobotEnv, settings: dict[str, Any]) -> RobotEnv:
        """`env` randomised by `settings` (`ConfigError` naming the field)."""
        return DomainRandomization(env, from_dict(RandomizationConfig, settings))


#: The entry point `randomize` of `mbrl.env_wrappers` (setup.cfg).
PLUGIN = EnvWrapperPlugin()


def load_randomization(source: str | Path) -> RandomizationConfig:
    """A preset by name (`PRESETS`) or a JSON file of `RandomizationConfig` settings.

    Raises:
        ConfigFileError: naming the file and the setting, for one that is refused.
    """
    if str(source) in PRESETS:
        return PRESETS[str(source)]
    return load(RandomizationConfig, source)


@dataclass(frozen=True)
class Draw:
    """What one episode (or step) was given."""

    #: Physics scales set on the robot.
    physics: dict[str, float]
    #: Whole control steps of action delay.
    action_delay_steps: int
    #: The further delay, a fraction of a control step.
    action_delay_fraction: float
    #: Standard deviation of the observation noise.
    observation_noise_std: float

    def record(self) -> dict[str, Any]:
        """Flat, for a metrics row: `physics.mass_scale`, ..., `action_delay_steps`, ..."""
        return {**{f"physics.{k}": v for k, v in self.physics.items()},
                "action_delay_steps": self.action_delay_steps,
                "action_delay_fraction": self.action_delay_fraction,
                "observation_noise_std": self.observation_noise_std}


class DomainRandomization(RobotWrapper):
    """`inner` with its physics, action delay and observation noise drawn from `config`
    (see the module docstring). A `RobotEnv` itself, so `rollout` and PETS take it;
    `get_state` is the inner simulator's, without the queue of delayed actions.

    Raises:
        ConfigError: naming the field, for a physics scale `inner` does not have or one of its
            range's ends that `inner` refuses, or a delay fraction or control rate on a robot
            not stepped by physics steps.
    """

    #: What is drawn, and when.
    config: RandomizationConfig
    #: Every draw, in order (the episode's first, then every step's with `resample="step"`).
    history: list[Draw]

    def __init__(self, inner: RobotEnv, config: RandomizationConfig) -> None:
        super().__init__(inner, inner.task, inner.control_timestep, inner.max_episode_steps)
        self.config = config
        self.history = []
        nominal = inner.physics_params()
        for name, value in config.physics().items():
            if name not in nominal:
                raise ConfigError(name, f"{inner.env_id} has no such physics parameter; it "
                                  f"has: {', '.join(nominal)}")
            for end in ("low", "high"):
                try:
                    inner.set_physics_params(**{name: getattr(value, end)})
                except ValueError as error:
                    raise ConfigError(f"{name}.{end}", str(error)) from None
        inner.set_physics_params(**nominal)
        self._physics_step = getattr(inner, "physics_step", None)
        if config.needs_physics_steps and (self._physics_step is None
                                           or not hasattr(inner, "frame_skip")):
            field_name = ("action_delay_fraction" if config.action_delay_fraction is not None
                          else "control_rate_hz")
            raise ConfigError(field_name, f"needs a robot stepped by physics steps (mujoco/), "
                              f"not {inner.env_id}")
        self._physics_dt = inner.control_timestep / int(getattr(inner, "frame_skip", 1))
        #: Physics steps of each step of the episode so far (with a control-rate range).
        self.step_substeps: list[int] = []
        self._null_action: Array = np.clip(0.0, inner.task.action_low, inner.task.action_high)
        self._queue: deque[Array] = deque()
        self._rng = np.random.default_rng(0)
        self._noise_std = 0.0

    @property
    def current(self) -> Draw | None:
        """The draw now in force (None before the first reset)."""
        return self.history[-1] if self.history else None

    def _draw(self, rng: np.random.Generator, delay_steps: int, delay_fraction: float) -> Draw:
        physics = {name: value.draw(rng) for name, value in self.config.physics().items()}
        noise = self.config.observation_noise_std
        draw = Draw(physics, delay_steps, delay_fraction,
                    0.0 if noise is None else noise.draw(rng))
        self.inner.set_physics_params(**physics)
        self._noise_std = draw.observation_noise_std
        self.history.append(draw)
        return draw

    def _reset(self, rng: np.random.Generator) -> Array:
        low, high = self.config.action_delay_steps
        delay = int(rng.integers(low, high + 1))
        fraction = self.config.action_delay_fraction
        self._draw(rng, delay, 0.0 if fraction is None else fraction.draw(rng))
        self._rng = rng
        self._queue = deque(self._null_action.copy() for _ in range(delay))
        self._previous = self._null_action.copy()
        self.step_substeps = []
        obs, _ = self.inner.reset(seed=int(rng.integers(2**31)))
        return self._observed(obs)

    def _step(self, action: Array) -> tuple[Array, float, bool]:
        current = self.current
        assert current is not None
        if self.config.resample == "step":
            current = self._draw(self._rng, current.action_delay_steps,
                                 current.action_delay_fraction)
        self._queue.append(action.copy())
        acting = self._queue.popleft()
        if self.config.needs_physics_steps:
            obs, reward, terminated = self._step_in_physics_steps(acting, current)
        else:
            obs, reward, terminated, _, _ = self.inner.step(acting)
        self._previous = acting
        return self._observed(obs), reward, terminated

    def _step_in_physics_steps(self, acting: Array, draw: Draw) -> tuple[Array, float, bool]:
        """One control step of this step's length, the previous action acting first for the
        drawn fraction of it."""
        inner: Any = self.inner
        nominal = int(inner.frame_skip)
        substeps = nominal
        if self.config.control_rate_hz is not None:
            period = 1.0 / self.config.control_rate_hz.draw(self._rng)
            substeps = max(1, round(period / self._physics_dt))
        self.step_substeps.append(substeps)
        lagging = math.floor(draw.action_delay_fraction * substeps)  # < substeps: f < 1
        assert self._physics_step is not None
        for _ in range(lagging):
            self._physics_step(self._previous)
        inner.frame_skip = substeps - lagging  # the rest of the step, then its outcome
        try:
            obs, reward, terminated, _, _ = inner.step(acting)
        finally:
            inner.frame_skip = nominal
        return obs, reward, terminated

    def episode_record(self) -> dict[str, float]:
        """The draw now in force, flat (`Draw.record`), and the mean control period of the
        episode's steps where it varies: what PETS writes beside each episode's metrics."""
        current = self.current
        record = {} if current is None else current.record()
        if self.step_substeps:
            record["mean_period_s"] = float(np.mean(self.step_substeps)) * self._physics_dt
        return record

    def _observed(self, obs: Array) -> Array:
        if self._noise_std == 0.0:
            return obs
        return obs + self._noise_std * self._rng.standard_normal(obs.shape)
