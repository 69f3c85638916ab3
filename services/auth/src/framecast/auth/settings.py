"""The auth service's settings: where it listens, its keys, its tokens' issuer and audience."""

from __future__ import annotations

import os
from typing import Annotated

from msgspec import Meta

from framecast.runtime.mediamtx_nodes import MediaMTXNode, configured_nodes
from framecast.runtime.settings import Address, CommonSettings, SettingsError, Url, env_name

from .keys import DEFAULT_PUBLISH_AHEAD_S, DEFAULT_ROTATE_EVERY_S

MIN_RELAY_SECRET_LENGTH = 32


def default_key_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "framecast", "keys")


class AuthSettings(CommonSettings, kw_only=True, frozen=True):
    auth_addr: Address = "127.0.0.1:8081"
    """Where the hook (POST /mediamtx/auth) and the JWKS (GET /.well-known/jwks.json) listen."""
    auth_key_dir: str = ""
    """Directory of the signing keys (0600 files); default ~/.local/state/framecast/keys."""
    auth_issuer: str = "framecast"
    """The ``iss`` of every token (MediaMTX's authJWTIssuer when it verifies them itself)."""
    auth_audience: str = "mediamtx"
    """The ``aud`` of every token (MediaMTX's authJWTAudience)."""
    auth_rotate_every_s: Annotated[float, Meta(ge=0, description="a number of seconds, 0 or above")] = (
        DEFAULT_ROTATE_EVERY_S
    )
    """Seconds each signing key signs before this service brings in the next; 0: never on its own.
    Replicas that share keys copied from one place (a Kubernetes Secret) set 0 and rotate
    centrally with ``framecast auth rotate-key``, or each would rotate its own copy."""
    mediamtx_api: Url = "http://127.0.0.1:9997"
    """MediaMTX's control API, where revoked tokens' live sessions are kicked (with a token we sign)."""
    mediamtx_nodes: str = ""
    """Several MediaMTX nodes, as JSON (docs/operations.md, "Several MediaMTX nodes"): a revoked
    token's sessions are ended on each; empty: the one node of FRAMECAST_MEDIAMTX_API."""

    auth_relay_secret: str = ""
    """The password edge MediaMTX nodes pull from their origin with, as the user
    ``framecast-relay`` (docs/operations.md, "Edges"); at least 32 characters. Empty: no edge
    may pull, and every relay attempt is refused."""

    def __post_init__(self) -> None:
        self.nodes()
        if self.auth_relay_secret and len(self.auth_relay_secret) < MIN_RELAY_SECRET_LENGTH:
            raise SettingsError(env_name("auth_relay_secret"),
                                f"must be at least {MIN_RELAY_SECRET_LENGTH} characters (e.g. `openssl rand -hex 24`)")
        if 0 < self.auth_rotate_every_s <= DEFAULT_PUBLISH_AHEAD_S:
            raise SettingsError(
                env_name("auth_rotate_every_s"),
                f"must be 0 (no automatic rotation) or above {DEFAULT_PUBLISH_AHEAD_S:.0f}: a new key is "
                "published that long before it signs, for MediaMTX's one-hour JWKS cache",
            )

    def nodes(self) -> tuple[MediaMTXNode, ...]:
        return configured_nodes(self.mediamtx_nodes, MediaMTXNode(name="default", api=self.mediamtx_api))

    def key_dir(self) -> str:
        """``auth_key_dir``, or the default under the user's state directory."""
        return self.auth_key_dir or default_key_dir()
