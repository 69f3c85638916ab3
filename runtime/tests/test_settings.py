"""Settings come from FRAMECAST_* variables; a bad one is named with what is wrong."""

from __future__ import annotations

import pytest

from framecast.runtime.settings import Address, CommonSettings, SettingsError, load, parse_address


class Example(CommonSettings, kw_only=True, frozen=True):
    addr: Address = "127.0.0.1:8080"
    workers: int = 1
    api_key: str = ""


def test_defaults_without_environment() -> None:
    settings = load(Example, {})
    assert settings.nats_url == "nats://127.0.0.1:4222"
    assert settings.addr == "127.0.0.1:8080"


def test_values_are_converted() -> None:
    settings = load(Example, {"FRAMECAST_WORKERS": "3", "FRAMECAST_OTEL_CONSOLE": "true", "FRAMECAST_ADDR": "[::1]:9"})
    assert settings.workers == 3 and settings.otel_console is True
    assert parse_address(settings.addr) == ("::1", 9)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("FRAMECAST_ADDR", "nope", "expected host:port"),
        ("FRAMECAST_WORKERS", "many", "Expected `int`"),
        ("FRAMECAST_NATS_URL", "localhost", "expected an absolute URL"),
        ("FRAMECAST_LOG_LEVEL", "loud", "expected one of debug, info, warning, error"),
        ("FRAMECAST_OTEL_CONSOLE", "maybe", "expected true or false"),
    ],
)
def test_bad_value_names_the_variable(variable: str, value: str, expected: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load(Example, {variable: value})
    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable}: {value!r} is not valid")
    assert expected in str(caught.value)


def test_secret_values_are_not_echoed() -> None:
    with pytest.raises(SettingsError) as caught:
        load(Example, {"FRAMECAST_API_KEY": "1"} | {"FRAMECAST_WORKERS": "x"})
    assert caught.value.variable == "FRAMECAST_WORKERS"
    class Secretive(CommonSettings, kw_only=True, frozen=True):
        api_key: int = 0
    with pytest.raises(SettingsError) as caught:
        load(Secretive, {"FRAMECAST_API_KEY": "hunter2"})
    assert "hunter2" not in str(caught.value)
