"""`framecast nats sdk-user`: a CV worker's NATS user, narrowed to its stream ids, from the list
users.conf's shared sdk user is made of. tests/test_deploy_nats.py runs it in a real cluster."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from framecast.proto import nats_users, subjects
from framecast.proto.nats_users import sdk_permissions, sdk_user
from framecast.runtime.cli import main

USERS_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nats" / "users.conf"


def _allowed(block: str, direction: str) -> tuple[str, ...]:
    found = re.search(rf"{direction}: \{{ allow: \[(.*?)\] \}}", block, re.S)
    assert found, f"no {direction} list"
    return tuple(re.findall(r'"([^"]+)"', found.group(1)))


def test_users_conf_sdk_user_is_the_shared_form_of_the_list() -> None:
    entry = re.search(r"\{\n\s*user: sdk\n(.*?)\n    \}\n", USERS_CONF.read_text(), re.S)
    assert entry, "no sdk user in users.conf"
    shared = sdk_permissions()
    assert _allowed(entry.group(1), "publish") == shared.publish
    assert _allowed(entry.group(1), "subscribe") == shared.subscribe


def test_a_workers_user_is_the_shared_one_with_its_stream_ids_for_every_stream() -> None:
    shared, own = sdk_permissions(), sdk_permissions("worker-a", ["cam-a"])
    assert tuple(s.replace("cam-a", "*") for s in own.publish) == shared.publish
    assert tuple(s.replace("cam-a", "*").replace("worker-a", "sdk") for s in own.subscribe) == shared.subscribe


def test_the_command_prints_a_user_allowed_only_its_streams(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nats", "sdk-user", "worker-a", "cam-a", "cam-b", "cam-a"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out == sdk_user("worker-a", ["cam-a", "cam-b"])
    assert "FRAMECAST_SDK_USER_WORKER_A = {\n" in out
    assert '  user: "worker-a"\n  password: $FRAMECAST_NATS_WORKER_A_PASSWORD\n' in out
    publish, subscribe = _allowed(out, "publish"), _allowed(out, "subscribe")
    for stream_id in ("cam-a", "cam-b"):
        assert {subjects.frames(stream_id), subjects.stream_control(stream_id), subjects.state_key(stream_id),
                subjects.events(stream_id)} <= set(publish)
        assert subjects.stream_control(stream_id) in subscribe
    assert publish.count(subjects.frames("cam-a")) == 1
    assert "_INBOX.worker-a.>" in subscribe
    # Wildcards only where no stream id can be spelled out: encoders' ids, consumer names, inboxes.
    wildcards = {s for s in (*publish, *subscribe) if "*" in s or ">" in s}
    assert wildcards == {
        subjects.encoder_heartbeat("*"),
        subjects.encoder_claim("*"),
        "_INBOX.worker-a.>",
        "$JS.API.CONSUMER.INFO.KV_framecast_streams.>",
        "$JS.FC.KV_framecast_streams.>",
        "$JS.API.CONSUMER.CREATE.KV_framecast_streams.*.$KV.framecast_streams.cam-a",
        "$JS.API.CONSUMER.CREATE.KV_framecast_streams.*.$KV.framecast_streams.cam-b",
    }
    assert not any(s.startswith(("framecast.auth.", "_INBOX.sdk")) for s in (*publish, *subscribe))
    assert subjects.ENCODER_CLAIM not in subscribe and subjects.frames("cam-a") not in subscribe


@pytest.mark.parametrize(("argv", "says"), [
    (["worker-a"], "name at least one stream id"),
    (["worker-a", "cam-a", "cam.b"], "'cam.b' is not a stream id"),
    (["worker-a", "cam*"], "'cam*' is not a stream id"),
    (["worker a", "cam-a"], "'worker a' is not a user name"),
    (["", "cam-a"], "'' is not a user name"),
    (["gateway", "cam-a"], "taken by framecast's own gateway user"),
    (["SDK", "cam-a"], "taken by framecast's own sdk user"),
])
def test_bad_input_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], says: str) -> None:
    assert main(["nats", "sdk-user", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("framecast nats sdk-user: ") and says in err and err.count("\n") == 1, err


def test_variable_names() -> None:
    assert nats_users.password_variable("gateway") == "FRAMECAST_NATS_GATEWAY_PASSWORD"
    assert nats_users.password_variable("lab-2_b") == "FRAMECAST_NATS_LAB_2_B_PASSWORD"
    assert nats_users.user_variable("lab-2_b") == "FRAMECAST_SDK_USER_LAB_2_B"
