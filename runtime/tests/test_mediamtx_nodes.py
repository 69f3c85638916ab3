"""Several MediaMTX nodes: the setting, and which node a stream publishes to."""

from __future__ import annotations

import collections

import pytest

from framecast.runtime.mediamtx_nodes import (
    MediaMTXNode,
    choose_node,
    choose_viewer_node,
    configured_nodes,
    origins,
    parse_nodes,
)
from framecast.runtime.settings import SettingsError

A, B, C = (MediaMTXNode(name=n, rtsp=f"rtsp://{n}:8554", api=f"http://{n}:9997") for n in "abc")
DEFAULT = MediaMTXNode(name="default", rtsp="rtsp://127.0.0.1:8554")


def test_the_setting_lists_nodes_as_json_and_defaults_to_the_services_own_node() -> None:
    raw = '[{"name": "a", "rtsp": "rtsp://a:8554", "api": "http://a:9997"}, {"name": "b", "whep": "https://b/w"}]'
    assert [n.name for n in parse_nodes(raw)] == ["a", "b"]
    assert configured_nodes("", DEFAULT) == (DEFAULT,)


@pytest.mark.parametrize(("raw", "says"), [
    ("not json", "expected a JSON list"),
    ("[]", "lists no node"),
    ('[{"name": "a"}, {"name": "a"}]', "same name"),
    ('[{"name": "a b"}]', "use letters, digits"),
    ('[{"name": "a", "rtps": "rtsp://a"}]', "expected a JSON list"),  # a misspelt key is refused
    ('[{"name": "e", "edge_of": "e"}]', "every node is an edge"),
    ('[{"name": "a"}, {"name": "e", "edge_of": "x"}]', "must name a node without"),
    ('[{"name": "a"}, {"name": "e", "edge_of": "a"}, {"name": "f", "edge_of": "e"}]', "not from each other"),
])
def test_a_bad_node_list_is_one_clear_error_naming_the_variable(raw: str, says: str) -> None:
    with pytest.raises(SettingsError, match=f"FRAMECAST_MEDIAMTX_NODES.*{says}"):
        configured_nodes(raw, DEFAULT)


def test_the_least_loaded_node_that_answered_wins() -> None:
    assert choose_node([A, B, C], "cam1", loads={"a": 5, "b": 2, "c": 9}) == B
    assert choose_node([A, B, C], "cam1", loads={"a": 5, "c": 9}) == A, "a node that did not answer is passed over"


def test_without_loads_the_choice_is_stable_and_spreads() -> None:
    first = choose_node([A, B, C], "cam1")
    assert all(choose_node([A, B, C], "cam1") == first for _ in range(5))
    counts = collections.Counter(choose_node([A, B, C], f"cam{n}").name for n in range(300))  # type: ignore[union-attr]
    assert set(counts) == {"a", "b", "c"} and min(counts.values()) > 60


def test_a_lost_node_is_excluded_and_none_is_left_when_all_are() -> None:
    assert choose_node([A, B], "cam1", loads={"a": 0, "b": 9}, exclude={"a"}) == B
    assert choose_node([A, B], "cam1", exclude={"a", "b"}) is None


E1, E2 = (MediaMTXNode(name=n, edge_of="a") for n in ("e1", "e2"))
F = MediaMTXNode(name="f", edge_of="b")


def test_edges_are_not_where_encoders_publish() -> None:
    assert origins([A, E1, B, F]) == (A, B)


def test_a_quiet_stream_stays_on_its_origin_and_a_popular_one_spreads_over_its_edges() -> None:
    loads = {"a": 40, "b": 0, "e1": 12, "e2": 30, "f": 0}
    assert choose_viewer_node(A, [A, B, E1, E2, F], stream_readers=9, node_readers=loads, edge_after=10) == A
    assert choose_viewer_node(A, [A, B, E1, E2, F], stream_readers=10, node_readers=loads, edge_after=10) == E1, (
        "the least loaded of the origin and its own edges; b and f serve other origins")
    assert choose_viewer_node(A, [A, E1, E2], stream_readers=50, node_readers={"a": 40, "e2": 30},
                              edge_after=10) == E2, "an edge that did not answer is passed over"
    assert choose_viewer_node(A, [A, E1], stream_readers=50, node_readers={"a": 5, "e1": 5}, edge_after=0) == A
