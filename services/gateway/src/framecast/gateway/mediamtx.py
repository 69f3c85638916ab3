"""The gateway's view of a MediaMTX path: is it live, with which video codec and profile, read by how many.

The control-API client itself is ``framecast.runtime.mediamtx_api`` (shared with auth); this
module holds only what the gateway makes of a path it reports (docs/mediamtx.md, "Control API").
"""

from __future__ import annotations

from typing import NamedTuple

from framecast.runtime.mediamtx_api import Path

__all__ = ["VIDEO_CODECS", "PathHealth", "path_health"]

VIDEO_CODECS = frozenset(
    {"AV1", "VP9", "VP8", "H265", "H264", "MPEG-4 Video", "MPEG-1/2 Video", "M-JPEG"}
)


class PathHealth(NamedTuple):
    live: bool
    codec: str
    profile: str
    readers: int


def path_health(path: Path) -> PathHealth:
    """Whether a real source feeds the path, its video codec and profile, and how many read it.

    ``online`` matters besides ``available``: with ``alwaysAvailable`` an offline filler is
    available but not live.
    """
    video = next((t for t in path.tracks2 if t.codec in VIDEO_CODECS), None)
    props = video.codecProps if video is not None else None
    return PathHealth(
        live=path.available and path.online,
        codec=video.codec if video is not None else "",
        profile=str(props.profile) if props is not None else "",
        readers=len(path.readers),
    )
