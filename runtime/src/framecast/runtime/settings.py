"""Configuration from FRAMECAST_* environment variables, validated once at start-up.

Each service declares one msgspec Struct of settings; field ``nats_url`` is read from
``FRAMECAST_NATS_URL`` and so on. A bad value stops the service with one line naming the
variable and what is wrong with it (never echoing values of secret-looking variables).
"""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta

from framecast.proto.errors import FramecastError

PREFIX = "FRAMECAST_"
_SECRET = re.compile(r"KEY|SECRET|TOKEN|PASSWORD", re.IGNORECASE)

Address = Annotated[
    str,
    Meta(
        pattern=r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$",
        description="host:port, e.g. 127.0.0.1:8080 or [::1]:8080",
    ),
]
Url = Annotated[str, Meta(pattern=r"^[a-z][a-z0-9+.-]*://\S+$", description="an absolute URL")]
LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["auto", "json", "text"]

S = TypeVar("S", bound=msgspec.Struct)


class SettingsError(FramecastError):
    """One environment variable holds a value the service cannot use."""

    exit_code = 2

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        self.problem = problem
        super().__init__(f"{variable}: {problem}")


class CannotListen(FramecastError):
    """A valid ``host:port`` setting that cannot be bound (busy, or not an address of this host)."""

    def __init__(self, variable: str, address: str, reason: str) -> None:
        self.variable = variable
        self.address = address
        self.reason = reason
        super().__init__(f"cannot listen on {address}: {reason}; stop what uses it or set {variable}")


class CommonSettings(msgspec.Struct, kw_only=True, frozen=True):
    """Settings every framecast service reads."""

    nats_url: Url = "nats://127.0.0.1:4222"
    """NATS server(s) to connect to."""
    log_level: LogLevel = "info"
    """debug, info, warning or error."""
    log_format: LogFormat = "auto"
    """json, text, or auto (json unless standard error is a terminal)."""
    otel_console: bool = False
    """Print spans and metrics to standard output (for debugging without a collector)."""
    health_addr: str = ""
    """host:port for GET /healthz and /readyz; empty for none."""
    instance_id: str = ""
    """Name of this instance in events and traces; defaults to <service>-<host>-<pid>."""
    host_id: str = ""
    """Which host this is for placing streams: producers and encoders with the same one share
    memory. Default: this machine's hostname, boot and /dev/shm (framecast.frames.host_identity)."""


def env_name(field: str) -> str:
    return PREFIX + field.upper()


def load(settings_type: type[S], environ: Mapping[str, str] | None = None) -> S:
    """Build ``settings_type`` from the environment; raise ``SettingsError`` on the first bad one."""
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(settings_type, include_extras=True)
    info = msgspec.inspect.type_info(settings_type)
    values: dict[str, Any] = {}
    for field in info.fields:
        variable = env_name(field.name)
        if variable not in environ:
            continue
        raw = environ[variable]
        try:
            values[field.name] = msgspec.convert(raw, hints[field.name], strict=False)
        except msgspec.ValidationError as exc:
            shown = "(value hidden)" if _SECRET.search(variable) else repr(raw)
            detail = _describe(hints[field.name]) or str(exc).split(" - at ")[0]
            raise SettingsError(variable, f"{shown} is not valid: {detail}") from None
    try:
        return settings_type(**values)
    except (TypeError, ValueError) as exc:
        raise SettingsError(PREFIX + "*", str(exc)) from None


def _describe(hint: Any) -> str:
    """The human description of a field type (instead of msgspec's regex text)."""
    if typing.get_origin(hint) is Literal:
        return "expected one of " + ", ".join(map(str, typing.get_args(hint)))
    if hint is bool:
        return "expected true or false (or 1 or 0)"
    for meta in typing.get_args(hint)[1:]:
        if isinstance(meta, Meta) and meta.description:
            return f"expected {meta.description}"
    return ""


def parse_address(address: str) -> tuple[str, int]:
    """Split a validated ``host:port`` (IPv6 hosts in brackets)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)
