"""MediaMTX's permission language: the ``mediamtx_permissions`` claim and what it grants.

Why: the claim is what MediaMTX reads in ``authMethod: jwt`` (docs/mediamtx.md, "JWT"), and
the hook applies the same rules, so a permission means the same thing in either auth mode.

Path patterns follow MediaMTX exactly: empty matches any path, ``~`` introduces a regular
expression searched anywhere in the path (anchor it with ``^…$``), anything else is an exact,
case-sensitive comparison. Go's RE2 and Python's ``re`` differ; handled here: ``\\d``, ``\\w``,
``\\s`` and ``\\b`` are ASCII-only as in RE2, and patterns using what RE2 rejects (lookaround,
backreferences, conditionals, atomic groups) never match, as an invalid pattern never
matches in MediaMTX (so, wrongly, does one with ``\\\\1``, an escaped backslash and a
digit). Remaining differences (paths are ASCII, so they are rare): Python rejects RE2's ``\\z``,
``\\pN``/``\\p{…}`` and ``(?<name>…)``, so such a pattern never matches here while it may in
MediaMTX; ``[[:alpha:]]`` means something else to Python; possessive quantifiers are accepted
here but rejected by RE2. Our issuer writes exact paths only.

Actions match exactly: a ``read`` permission does not cover ``playback`` (MediaMTX takes the
first permission whose action *equals* the request's), so viewer tokens carry both.
"""

from __future__ import annotations

import functools
import re
from typing import Literal, get_args

import msgspec

Action = Literal["publish", "read", "playback", "api", "metrics", "pprof"]
ACTIONS: frozenset[str] = frozenset(get_args(Action))
"""Every action MediaMTX sends to the hook (``internal/conf/auth_action.go``)."""
PATH_ACTIONS: frozenset[str] = frozenset({"publish", "read", "playback"})
"""Actions whose permissions are checked against the path; for the others it is ignored."""
SERVICE_ACTIONS: frozenset[str] = frozenset({"api", "metrics", "pprof"})

_RE2_UNSUPPORTED = re.compile(r"\(\?(?:[=!>(]|<[=!]|P=)|\\[1-9]")


class Permission(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One entry of ``mediamtx_permissions``; unknown fields invalidate the token, as in MediaMTX."""

    action: Action
    path: str = ""

    def matches(self, action: str, path: str) -> bool:
        """MediaMTX's rule: the action is equal and, for path actions, the path matches."""
        if action != self.action:
            return False
        return action not in PATH_ACTIONS or path_matches(self.path, path)


def path_matches(pattern: str, path: str) -> bool:
    """Whether a permission path admits ``path`` (docs/mediamtx.md, "JWT")."""
    if not pattern:
        return True
    if pattern.startswith("~"):
        regex = _compile(pattern[1:])
        return regex is not None and regex.search(path) is not None
    return pattern == path


@functools.lru_cache(maxsize=256)
def _compile(expression: str) -> re.Pattern[str] | None:
    """The compiled pattern, or ``None`` where RE2 (hence MediaMTX) would reject it."""
    if _RE2_UNSUPPORTED.search(expression):
        return None
    try:
        return re.compile(expression, re.ASCII)
    except re.error:
        return None
