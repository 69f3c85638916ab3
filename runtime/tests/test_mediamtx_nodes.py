"""Several MediaMTX nodes: the setting, and which node a stream publishes to."""

from __future__ import annotations

import collections

import pytest

from framecast.runtime.mediamtx_nodes import MediaMTXNode, choose_node, configured_nodes, parse_nodes
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
