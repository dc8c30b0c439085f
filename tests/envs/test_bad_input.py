"""Bad input is refused with a message that names the problem, never a deep traceback."""

from __future__ import annotations

import numpy as np
import pytest

import envs


@pytest.fixture(scope="module")
def cartpole() -> envs.RobotEnv:
    env = envs.make("dmc/cartpole-swingup")
    env.reset(seed=0)
    return env


def test_unknown_id_lists_the_valid_ids() -> None:
    with pytest.raises(envs.UnknownEnvError) as error:
        envs.make("dmc/cartpole-swingupp")
    message = str(error.value)
    assert "dmc/cartpole-swingupp" in message
    for env_id in envs.registry():
        assert env_id in message
    assert isinstance(error.value, KeyError) and isinstance(error.value, ValueError)


def test_wrong_action_shape_names_env_and_expected_shape(cartpole: envs.RobotEnv) -> None:
    with pytest.raises(ValueError, match=r"dmc/cartpole-swingup.*shape \(2,\).*expected \(1,\)"):
        cartpole.step(np.zeros(2))
    with pytest.raises(ValueError, match=r"expected \(1,\)"):
        cartpole.step(np.zeros((1, 1)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_action_is_refused(cartpole: envs.RobotEnv, bad: float) -> None:
    with pytest.raises(ValueError, match=r"dmc/cartpole-swingup.*NaN or infinity"):
        cartpole.step(np.array([bad]))


def test_negative_mass_is_refused_and_nothing_changes(cartpole: envs.RobotEnv) -> None:
    with pytest.raises(ValueError, match=r"mass_scale=-1.0 is out of range.*must be > 0"):
        cartpole.set_physics_params(mass_scale=-1.0)
    with pytest.raises(ValueError, match="out of range"):
        cartpole.set_physics_params(damping_scale=float("nan"))
    with pytest.raises(ValueError, match="out of range"):
        cartpole.set_physics_params(actuator_gain_scale=1e6)
    assert cartpole.physics_params()["mass_scale"] == 1.0


def test_unknown_or_absent_physics_parameter_is_refused(cartpole: envs.RobotEnv) -> None:
    with pytest.raises(ValueError, match=r"'gravity' .*unknown name.*mass_scale"):
        cartpole.set_physics_params(gravity=2.0)
    # The dm_control cart-pole touches nothing: it has no friction to scale.
    with pytest.raises(ValueError, match=r"'friction_scale' .*has none"):
        cartpole.set_physics_params(friction_scale=2.0)


def test_state_of_the_wrong_shape_or_with_nan_is_refused(cartpole: envs.RobotEnv) -> None:
    state = cartpole.get_state()
    with pytest.raises(ValueError, match=r"state has shape \(3,\), expected"):
        cartpole.set_state(state[:3])
    state[2] = np.nan
    with pytest.raises(ValueError, match="state contains NaN"):
        cartpole.set_state(state)


def test_step_before_reset_is_refused() -> None:
    env = envs.make("mujoco/cartpole-swingup")
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.zeros(1))


def test_bad_wrapper_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="action_repeat must be an int >= 1"):
        envs.make("mujoco/cartpole-swingup", action_repeat=0)
    with pytest.raises(ValueError, match="max_episode_steps must be >= 1"):
        envs.make("mujoco/cartpole-swingup", max_episode_steps=0)
