"""The gateway's configuration: where it listens, who may call it, where MediaMTX is.

Read once at start-up from FRAMECAST_* variables (``framecast.runtime.settings.load``). Viewer
authentication fails closed: with neither an identity provider (JWKS) nor an API key the
gateway refuses to start, unless FRAMECAST_GATEWAY_AUTH=none turns authentication off on purpose.
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from framecast.runtime.mediamtx_nodes import MediaMTXNode, configured_nodes
from framecast.runtime.settings import Address, CommonSettings, SettingsError, Url, env_name

__all__ = ["GatewaySettings"]

HttpUrlOrEmpty = Annotated[
    str, Meta(pattern=r"^(https?://\S+)?$", description="an http(s) URL, or empty")
]
Seconds = Annotated[float, Meta(gt=0, description="a number of seconds above 0")]
MIN_API_KEY_LENGTH = 16


class GatewaySettings(CommonSettings, kw_only=True, frozen=True):
    """Settings of ``framecast gateway``; each field is read from FRAMECAST_<FIELD>."""

    gateway_addr: Address = "127.0.0.1:8080"
    """host:port of the HTTP API, live events and player page."""
    gateway_auth: Literal["required", "none"] = "required"
    """required: every API call needs a JWT or the API key; none: no authentication (tests only)."""
    gateway_api_key: str = ""
    """Development: one key (Bearer or X-Api-Key) that allows everything; make demo prints one."""
    gateway_jwks_url: HttpUrlOrEmpty = ""
    """The identity provider's JWKS; viewers then authenticate with its bearer JWTs."""
    gateway_issuer: str = ""
    """The ``iss`` a viewer JWT must carry (required with FRAMECAST_GATEWAY_JWKS_URL)."""
    gateway_audience: str = ""
    """The ``aud`` a viewer JWT must carry (required with FRAMECAST_GATEWAY_JWKS_URL)."""
    gateway_streams_claim: str = "framecast_streams"
    """JWT claim listing the stream ids a viewer may watch and control (["*"]: all)."""
    gateway_jwks_cache_s: Seconds = 300.0
    """How long fetched identity-provider keys are used before they are fetched again."""
    gateway_request_timeout_s: Seconds = 5.0
    """How long the gateway waits for capture or auth to answer over NATS."""
    gateway_keepalive_s: Seconds = 15.0
    """Seconds between keep-alive comments on an idle event stream."""
    mediamtx_api: Url = "http://127.0.0.1:9997"
    """MediaMTX's control API, polled to confirm that streams are live."""
    mediamtx_api_token: str = ""
    """Bearer token for MediaMTX's control API (a JWT allowing the ``api`` action); empty: none."""
    mediamtx_poll_s: Seconds = 1.0
    """Seconds between two polls of MediaMTX's control API."""
    public_whep_base: Url = "http://127.0.0.1:8889"
    """MediaMTX's WebRTC base URL as browsers reach it; a stream plays at <base>/<id>/whep."""
    public_hls_base: Url = "http://127.0.0.1:8888"
    """MediaMTX's HLS base URL as browsers reach it; a stream plays at <base>/<id>/index.m3u8."""
    mediamtx_nodes: str = ""
    """Several MediaMTX nodes, as JSON: ``[{"name": "a", "rtsp": ..., "api": ..., "whep": ..., "hls": ...}]``
    (docs/operations.md, "Several MediaMTX nodes"); empty: the one node of the settings here."""
    gateway_edge_after: Annotated[int, Meta(ge=0, description="a whole number, 0 or above")] = 10
    """Viewers a stream's origin node serves before the gateway spreads the next ones over it and
    its edges (nodes with ``edge_of``), each to the one with the fewest readers."""

    def __post_init__(self) -> None:
        self.nodes()
        if self.gateway_auth == "none":
            return
        if self.gateway_api_key and len(self.gateway_api_key) < MIN_API_KEY_LENGTH:
            raise SettingsError(
                env_name("gateway_api_key"),
                f"(value hidden) is too short: use at least {MIN_API_KEY_LENGTH} random characters",
            )
        if self.gateway_jwks_url:
            for field in ("gateway_issuer", "gateway_audience"):
                if not getattr(self, field):
                    raise SettingsError(
                        env_name(field),
                        f"must be set when {env_name('gateway_jwks_url')} is, so that tokens "
                        "of other issuers or services are refused",
                    )
        elif not self.gateway_api_key:
            raise SettingsError(
                env_name("gateway_jwks_url"),
                "no viewer authentication is configured: set it (with FRAMECAST_GATEWAY_ISSUER and "
                "FRAMECAST_GATEWAY_AUDIENCE) for your identity provider, or FRAMECAST_GATEWAY_API_KEY "
                "for development; FRAMECAST_GATEWAY_AUTH=none turns authentication off (tests only)",
            )

    def nodes(self) -> tuple[MediaMTXNode, ...]:
        """The MediaMTX nodes viewers are sent to (one unless FRAMECAST_MEDIAMTX_NODES lists several)."""
        return configured_nodes(self.mediamtx_nodes, MediaMTXNode(
            name="default", api=self.mediamtx_api, whep=self.public_whep_base, hls=self.public_hls_base))
