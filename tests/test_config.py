"""Garbage in a variable stops the start with a message naming the variable and the shape it wants."""

import pytest

from config import Settings


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("PORT", "eighty", "must be an integer, got 'eighty'"),
        ("WEB_CONCURRENCY", "2.5", "must be an integer, got '2.5'"),
        ("WEB_BODY_TIMEOUT", "0", "must be a number of seconds above 0, got '0'"),
        ("WEB_BODY_TIMEOUT", "nan", "must be a number of seconds above 0, got 'nan'"),
        ("WEB_BODY_TIMEOUT", "soon", "must be a number of seconds above 0, got 'soon'"),
        ("LEADPULSE_RATE_LIMIT_API", "5", "must be a rate like 600/minute, got '5'"),
    ],
)
def test_garbage_names_the_variable_and_what_it_wants(name, raw, expected):
    with pytest.raises(SystemExit) as stopped:
        Settings.from_env({name: raw})
    assert str(stopped.value) == f"configuration error: {name} {expected}"


def test_unset_or_empty_takes_the_default_and_good_values_are_read():
    assert Settings.from_env({"PORT": ""}).port == Settings.port
    s = Settings.from_env({"PORT": "8080", "WEB_BODY_TIMEOUT": "2.5"})
    assert (s.port, s.web_body_timeout) == (8080, 2.5)
