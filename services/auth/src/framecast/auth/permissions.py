"""MediaMTX's permission language: the ``mediamtx_permissions`` claim and what it grants.

Why: the claim is what MediaMTX reads in ``authMethod: jwt`` (docs/mediamtx.md, "JWT"), and
the hook applies the same rules, so a permission means the same thing in either auth mode.

Path patterns follow MediaMTX exactly: empty matches any path, ``~`` introduces a regular
expression searched anywhere in the path (anchor it with ``^…$``), anything else is an exact,
case-sensitive comparison. MediaMTX compiles the expression with Go's ``regexp`` (RE2 syntax),
and so do we, with Google's RE2 (``google-re2``): the same syntax (``\\d`` ASCII-only,
``\\pN``, ``\\z``, ``[[:alpha:]]``, ``(?P<name>…)``; no lookaround or backreferences), and
above all the same cost: time linear in the path's length, whatever a token's pattern is, so
no pattern can stall the event loop (Python's backtracking ``re`` took seconds on
``(a+)+$``). A pattern RE2 rejects never matches, as an invalid one never matches in MediaMTX;
so does ``\\C`` (any byte), which only C++ RE2 accepts, and one whose compiled form needs more
than ``_MAX_PATTERN_MEMORY`` (a hostile pattern cannot make us hold much memory). Our issuer
writes exact paths only.

Actions match exactly: a ``read`` permission does not cover ``playback`` (MediaMTX takes the
first permission whose action *equals* the request's), so viewer tokens carry both.
"""

from __future__ import annotations

import functools
import re
from typing import Literal, get_args

import msgspec
import re2

Action = Literal["publish", "read", "playback", "api", "metrics", "pprof"]
ACTIONS: frozenset[str] = frozenset(get_args(Action))
"""Every action MediaMTX sends to the hook (``internal/conf/auth_action.go``)."""
PATH_ACTIONS: frozenset[str] = frozenset({"publish", "read", "playback"})
"""Actions whose permissions are checked against the path; for the others it is ignored."""
SERVICE_ACTIONS: frozenset[str] = frozenset({"api", "metrics", "pprof"})

_GO_UNSUPPORTED = re.compile(r"(?<!\\)(?:\\\\)*\\C")
"""``\\C`` not preceded by an escaping backslash: C++ RE2 takes it, Go's regexp does not."""
_MAX_PATTERN_MEMORY = 1 << 20
_options = re2.Options()
_options.max_mem = _MAX_PATTERN_MEMORY
_options.log_errors = False


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
def _compile(expression: str) -> re2._Regexp | None:
    """The compiled pattern, or ``None`` where Go's regexp (hence MediaMTX) would reject it."""
    if _GO_UNSUPPORTED.search(expression):
        return None
    try:
        return re2.compile(expression, _options)
    except re2.error:
        return None
