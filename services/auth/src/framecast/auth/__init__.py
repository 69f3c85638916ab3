"""framecast auth: every MediaMTX access decision, the JWT signing keys, the JWKS and token issuance."""

from .app import create_app
from .hook import Decision, HookRequest, decide
from .keys import KeyStore, KeyStoreError
from .permissions import Permission, path_matches
from .ratelimit import FailureLimiter
from .revocation import Revocation, RevocationError, Revocations, revocation_of_token, revoke
from .service import AuthService, lifespan
from .settings import AuthSettings
from .tokens import TokenError, TokenIssuer, TokenRequestError, TokenVerifier, VerifiedToken

__all__ = [
    "AuthService",
    "AuthSettings",
    "Decision",
    "FailureLimiter",
    "HookRequest",
    "KeyStore",
    "KeyStoreError",
    "Permission",
    "Revocation",
    "RevocationError",
    "Revocations",
    "TokenError",
    "TokenIssuer",
    "TokenRequestError",
    "TokenVerifier",
    "VerifiedToken",
    "create_app",
    "decide",
    "lifespan",
    "path_matches",
    "revocation_of_token",
    "revoke",
]
