"""Server settings: read from CONTROLROOM_* variables, overridden by flags, a bad value named."""

from __future__ import annotations

import pytest

from controlroom.config import Settings
from controlroom.errors import ConfigError


def test_defaults_environment_and_overrides() -> None:
    assert Settings.load(env={}).hold_seconds == 600.0
    env = {"CONTROLROOM_HOLD_SECONDS": "2.5", "CONTROLROOM_PORT": "9000"}
    loaded = Settings.load(env=env)
    assert (loaded.hold_seconds, loaded.port) == (2.5, 9000)
    assert Settings.load(env=env, port=9100).port == 9100  # a flag wins over the environment


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"CONTROLROOM_HOLD_SECONDS": "0"},
            "CONTROLROOM_HOLD_SECONDS='0': must be a number of seconds from 1",
        ),
        ({"CONTROLROOM_HOLD_SECONDS": "90000"}, "CONTROLROOM_HOLD_SECONDS='90000'"),
        ({"CONTROLROOM_HOLD_SECONDS": "ten"}, "CONTROLROOM_HOLD_SECONDS='ten'"),
        ({"CONTROLROOM_PORT": "70000"}, "CONTROLROOM_PORT='70000': must be a port number"),
        ({"CONTROLROOM_ABANDON_AFTER_SECONDS": "-1"}, "must be a positive number"),
        ({"CONTROLROOM_DATABASE_URL": "mysql://x/y"}, "CONTROLROOM_DATABASE_URL='mysql://x/y'"),
    ],
)
def test_a_bad_value_is_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        Settings.load(env=env)
