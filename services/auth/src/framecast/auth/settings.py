"""The auth service's settings: where it listens, its keys, its tokens' issuer and audience."""

from __future__ import annotations

import os

from framecast.runtime.settings import Address, CommonSettings, Url


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
    mediamtx_api: Url = "http://127.0.0.1:9997"
    """MediaMTX's control API, where revoked tokens' live sessions are kicked (with a token we sign)."""

    def key_dir(self) -> str:
        """``auth_key_dir``, or the default under the user's state directory."""
        return self.auth_key_dir or default_key_dir()
