"""Domain randomisation: reproducible draws inside their ranges, exact action delays,
observation noise of the drawn size, and bad ranges refused by name."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import envs
from controllers.validation import ConfigError
from mbrl.config import ConfigFileError, from_dict
from sim2real.randomization import (
    PENG_2018,
    DomainRandomization,
    RandomizationConfig,
    Range,
    load_randomization,
)

ENV = "mujoco/cartpole-swingup"


def randomized(config: RandomizationConfig, env_id: str = ENV) -> DomainRandomization:
    return DomainRandomization(envs.make(env_id), config)


def twin(env: DomainRandomization) -> envs.RobotEnv:
    """The nominal robot, put in the randomised one's current simulator state."""
    plain = envs.make(ENV)
    plain.reset(seed=0)
    plain.set_state(env.inner.get_state())
    return plain


def test_draws_are_reproducible_from_the_seed_and_inside_their_ranges() -> None:
    env = randomized(PENG_2018)
    draws = []
    for seed in range(200):
        env.reset(seed=seed)
        assert env.current is not None
        draws.append(env.current)
        assert env.inner.physics_params()["mass_scale"] == env.current.physics["mass_scale"]
    for draw in draws:
        assert 0.25 <= draw.physics["mass_scale"] <= 4.0
        assert 0.2 <= draw.physics["damping_scale"] <= 20.0
        assert 0.5 <= draw.physics["actuator_gain_scale"] <= 2.0
        assert draw.observation_noise_std == 0.01
    env.reset(seed=17)
    assert env.current == draws[17]  # the same seed, the same robot
    assert len({d.physics["mass_scale"] for d in draws}) == 200
    assert len(env.history) == 201


def test_log_uniform_draws_are_uniform_in_the_logarithm() -> None:
    rng = np.random.default_rng(0)
    log_uniform, uniform = Range(0.25, 4.0, "log-uniform"), Range(0.25, 4.0)
    logs = np.log([log_uniform.draw(rng) for _ in range(4000)])
    values = np.array([uniform.draw(rng) for _ in range(4000)])
    assert abs(np.mean(logs < 0.0) - 0.5) < 0.03  # half below x1, half above
    assert abs(np.mean(values < 0.25 + 3.75 / 2) - 0.5) < 0.03
    assert abs(np.mean(values < 1.0) - 0.75 / 3.75) < 0.03
    assert Range(2.0, 2.0, "log-uniform").draw(rng) == 2.0


@pytest.mark.parametrize("delay", [1, 2, 3])
def test_an_action_delay_holds_each_action_back_by_exactly_that_many_steps(delay: int) -> None:
    wrapped = randomized(RandomizationConfig(action_delay_steps=(delay, delay)))
    wrapped.reset(seed=5)
    plain = twin(wrapped)  # the same start as the wrapped robot
    actions = np.random.default_rng(1).uniform(-1, 1, size=(30, 1))
    shifted = np.concatenate([np.zeros((delay, 1)), actions])[:30]
    for given, acting in zip(actions, shifted, strict=True):
        obs, reward, *_ = wrapped.step(given)
        expected, expected_reward, *_ = plain.step(acting)
        np.testing.assert_array_equal(obs, expected)
        assert reward == expected_reward


def test_observation_noise_has_the_drawn_size_and_leaves_the_reward_alone() -> None:
    env = randomized(RandomizationConfig(observation_noise_std=Range(0.05, 0.05)))
    env.reset(seed=0)
    plain = twin(env)
    errors = []
    for _ in range(400):
        obs, reward, *_ = env.step(np.array([0.3]))
        exact, exact_reward, *_ = plain.step(np.array([0.3]))
        errors.append(obs - exact)
        assert reward == exact_reward  # the reward is the true state's
    assert np.std(errors) == pytest.approx(0.05, rel=0.1)
    quiet = randomized(RandomizationConfig())
    first, _ = quiet.reset(seed=0)
    np.testing.assert_array_equal(first, quiet.inner.observe())


def test_per_step_resampling_draws_the_physics_at_every_step_but_keeps_the_delay() -> None:
    env = randomized(RandomizationConfig(mass_scale=Range(0.5, 2.0), action_delay_steps=(0, 3),
                                         resample="step"))
    env.reset(seed=3)
    for _ in range(5):
        env.step(np.array([0.0]))
    masses = [d.physics["mass_scale"] for d in env.history]
    assert len(masses) == 6 and len(set(masses)) == 6
    assert len({d.action_delay_steps for d in env.history}) == 1


def test_a_config_file_and_the_preset_load_and_bad_ranges_are_named(tmp_path: Path) -> None:
    path = tmp_path / "dr.json"
    path.write_text(json.dumps({"mass_scale": {"low": 0.5, "high": 2.0,
                                               "distribution": "log-uniform"},
                                "action_delay_steps": [0, 2], "resample": "step"}))
    config = load_randomization(path)
    assert config.mass_scale == Range(0.5, 2.0, "log-uniform")
    assert config.action_delay_steps == (0, 2)
    assert load_randomization("peng2018") is PENG_2018
    bad = {
        '{"mass": {"low": 1, "high": 2}}': "mass: unknown RandomizationConfig setting",
        '{"mass_scale": {"low": 2, "high": 1}}': "mass_scale.high: must be >= low",
        '{"mass_scale": {"low": 0, "high": 1, "distribution": "log-uniform"}}':
            "mass_scale.low: must be > 0 for a log-uniform range",
        '{"mass_scale": {"low": 1, "high": 2, "distribution": "normal"}}':
            "mass_scale.distribution: must be one of",
        '{"action_delay_steps": [2, 1]}': "action_delay_steps: must be [low, high] whole steps",
        '{"observation_noise_std": {"low": -1, "high": 0}}':
            "observation_noise_std: must not go below 0",
        '{"action_delay_fraction": {"low": 0.5, "high": 1.0}}':
            "action_delay_fraction: must lie in [0, 1)",
        '{"control_rate_hz": {"low": 0, "high": 100}}': "control_rate_hz: must be > 0",
    }
    for text, message in bad.items():
        path.write_text(text)
        with pytest.raises(ConfigFileError, match=re.escape(message)):
            load_randomization(path)
    with pytest.raises(ConfigError, match="friction_scale: dmc/cartpole-swingup has no such"):
        randomized(RandomizationConfig(friction_scale=Range(0.5, 2.0)), "dmc/cartpole-swingup")
    with pytest.raises(ConfigError, match=r"mass_scale\.high: .* must be > 0 and <= 100"):
        randomized(from_dict(RandomizationConfig, {"mass_scale": {"low": 1, "high": 200}}))


def test_a_fractional_delay_applies_the_previous_action_for_that_share_of_the_step() -> None:
    # The cart-pole steps 5 physics steps a control step: a delay of 0.4 of a step means the
    # previous action acts for the first 2 of them.
    from envs.dynamics import joint_state

    env = randomized(RandomizationConfig(action_delay_fraction=Range(0.4, 0.4)))
    env.reset(seed=2)
    plain = twin(env)
    previous = np.zeros(1)
    for action in np.random.default_rng(3).uniform(-1, 1, size=(20, 1)):
        env.step(action)
        for substep in range(5):
            plain.physics_step(previous if substep < 2 else action)  # type: ignore[attr-defined]
        previous = action
        np.testing.assert_array_equal(joint_state(env), joint_state(plain))
    assert env.inner.frame_skip == 5  # type: ignore[attr-defined]  # restored


def test_a_control_rate_sets_each_steps_length_in_physics_steps() -> None:
    from envs.dynamics import joint_state

    env = randomized(RandomizationConfig(control_rate_hz=Range(250.0, 250.0)))  # 4 ms
    env.reset(seed=4)
    plain = twin(env)
    for _ in range(10):
        env.step(np.array([0.5]))
        for _ in range(2):
            plain.physics_step(np.array([0.5]))  # type: ignore[attr-defined]
    np.testing.assert_array_equal(joint_state(env), joint_state(plain))
    assert env.step_substeps == [2] * 10
    jittered = randomized(PENG_2018)
    jittered.reset(seed=0)
    for _ in range(200):
        jittered.step(np.array([0.0]))
    assert set(jittered.step_substeps) == {1, 2, 3, 4}  # 1 to 8 ms of 2 ms physics steps
    with pytest.raises(ConfigError, match="action_delay_fraction: needs a robot stepped by"):
        randomized(RandomizationConfig(action_delay_fraction=Range(0.1, 0.2)),
                   "dmc/cartpole-swingup")


def test_the_wrappers_report_the_physics_the_robot_has_now() -> None:
    env = envs.ActionRepeat(randomized(RandomizationConfig(mass_scale=Range(1.5, 1.5))), 2)
    env.reset(seed=0)
    assert env.physics_params()["mass_scale"] == 1.5  # as drawn, through both wrappers
