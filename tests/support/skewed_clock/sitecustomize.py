"""Start-up hook that moves this Python process's wall clock by FRAMECAST_TEST_CLOCK_SKEW_S seconds.

Why: services on different hosts disagree about the time, and only a whole process with its
own clock shows what that does (a time namespace moves only the monotonic clocks, not the
wall clock). Python imports ``sitecustomize`` at start-up from ``sys.path``, so a test puts
this directory on ``PYTHONPATH`` of the service it starts. ``time.time``/``time.time_ns`` and
``datetime.now``/``utcnow`` (what pyjwt and the services read) move; the monotonic clock, which
only measures intervals, does not.
"""

from __future__ import annotations

import datetime as _datetime
import os
import time as _time

_SKEW_S = float(os.environ.get("FRAMECAST_TEST_CLOCK_SKEW_S", "0") or 0)

if _SKEW_S:
    _real_time, _real_time_ns = _time.time, _time.time_ns
    _time.time = lambda: _real_time() + _SKEW_S
    _time.time_ns = lambda: _real_time_ns() + int(_SKEW_S * 1e9)

    class _SkewedDatetime(_datetime.datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def, override]
            return super().now(tz) + _datetime.timedelta(seconds=_SKEW_S)

        @classmethod
        def utcnow(cls):  # type: ignore[no-untyped-def, override]
            return super().utcnow() + _datetime.timedelta(seconds=_SKEW_S)

    _datetime.datetime = _SkewedDatetime  # type: ignore[misc]
