"""The MediaMTX nodes a framecast deployment publishes to and sends viewers to.

One node by default, described by each service's own FRAMECAST_MEDIAMTX_* settings. With
FRAMECAST_MEDIAMTX_NODES (a JSON list) there are several: the encoder places each stream on one
(the least loaded by its control API, else a stable choice by the stream id) and again on
another when its node stops answering; the stream's record names the node
(``StreamRecord.mediamtx_node``), the gateway sends that stream's viewers there, and auth ends
a revoked token's sessions on every node.

A node with ``edge_of`` is an edge: nothing publishes to it; it pulls a stream from its origin
(the node it names) when its first viewer asks, by MediaMTX's own on-demand proxying
(``deploy/mediamtx/mediamtx-edge.yml``), and the gateway spreads a popular stream's viewers
over the origin and its edges (``choose_viewer_node``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping

import msgspec

NODES_VARIABLE = "FRAMECAST_MEDIAMTX_NODES"
DEFAULT_NODE = "default"


class MediaMTXNode(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    """Names the node in stream records and logs: letters, digits, ``-``, ``_``."""
    rtsp: str = ""
    """Where encoders publish (``rtsp://host:8554``)."""
    api: str = ""
    """Its control API (``http://host:9997``)."""
    whep: str = ""
    """Its WebRTC base as browsers reach it (a stream plays at ``<whep>/<id>/whep``)."""
    hls: str = ""
    """Its HLS base as browsers reach it."""
    edge_of: str = ""
    """The origin node this edge pulls its streams from; empty for a node encoders publish to."""


_decoder = msgspec.json.Decoder(list[MediaMTXNode])


def parse_nodes(raw: str) -> tuple[MediaMTXNode, ...]:
    """The nodes of FRAMECAST_MEDIAMTX_NODES; ``ValueError`` says what is wrong with them."""
    try:
        nodes = tuple(_decoder.decode(raw))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"expected a JSON list of {{\"name\", \"rtsp\", \"api\", \"whep\", \"hls\", \"edge_of\"}} "
                         f"objects ({exc})") from None
    if not nodes:
        raise ValueError("lists no node")
    names = [node.name for node in nodes]
    for name in names:
        if not name or not all(c.isascii() and (c.isalnum() or c in "-_") for c in name):
            raise ValueError(f"node name {name!r}: use letters, digits, '-' and '_'")
    if len(set(names)) != len(names):
        raise ValueError("two nodes have the same name")
    origins = {node.name for node in nodes if not node.edge_of}
    if not origins:
        raise ValueError("every node is an edge: encoders need a node without \"edge_of\" to publish to")
    for node in nodes:
        if node.edge_of and node.edge_of not in origins:
            raise ValueError(f"node {node.name!r}: \"edge_of\" must name a node without \"edge_of\" "
                             f"(edges pull from an origin, not from each other), not {node.edge_of!r}")
    return nodes


def origins(nodes: Collection[MediaMTXNode]) -> tuple[MediaMTXNode, ...]:
    """The nodes encoders publish to: every node that is not an edge."""
    return tuple(node for node in nodes if not node.edge_of)


def configured_nodes(raw: str, default: MediaMTXNode) -> tuple[MediaMTXNode, ...]:
    """A service's nodes: FRAMECAST_MEDIAMTX_NODES when set, else ``default`` (its own settings).
    Raises ``SettingsError`` naming the variable."""
    from .settings import SettingsError

    if not raw:
        return (default,)
    try:
        return parse_nodes(raw)
    except ValueError as exc:
        raise SettingsError(NODES_VARIABLE, str(exc)) from None


def choose_node(nodes: Collection[MediaMTXNode], stream_id: str, *, loads: Mapping[str, int] | None = None,
                exclude: Collection[str] = ()) -> MediaMTXNode | None:
    """Where ``stream_id`` should publish: the node with the fewest paths among ``loads`` (those
    whose control API answered), ties and unknown loads settled by rendezvous hashing on the
    stream id, so the choice is stable while the nodes are. ``None`` when every node is excluded."""
    candidates = [node for node in nodes if node.name not in exclude]
    if not candidates:
        return None
    known = loads or {}
    answered = [node for node in candidates if node.name in known]
    if answered:
        fewest = min(known[node.name] for node in answered)
        candidates = [node for node in answered if known[node.name] == fewest]
    return min(candidates, key=lambda node: hashlib.blake2b(f"{stream_id}/{node.name}".encode(),
                                                            digest_size=8).digest())


def choose_viewer_node(origin: MediaMTXNode, nodes: Collection[MediaMTXNode], *, stream_readers: int,
                       node_readers: Mapping[str, int], edge_after: int) -> MediaMTXNode:
    """Where the next viewer of a stream on ``origin`` plays it.

    The origin keeps a stream's viewers while it serves fewer than ``edge_after`` of them
    (``stream_readers``): an edge's pull costs the origin a reader, so a quiet stream is not worth
    one. After that each viewer goes to the node with the fewest readers in all
    (``node_readers``) among the origin and those of its edges that answer (an edge missing from
    ``node_readers`` is down), the origin winning ties.
    """
    if stream_readers < edge_after:
        return origin
    candidates = [origin] + [node for node in nodes if node.edge_of == origin.name and node.name in node_readers]
    return min(candidates, key=lambda node: node_readers.get(node.name, 0))
