"""The AsyncAPI document in docs/ is the one the code generates today."""

from __future__ import annotations

import json
from pathlib import Path

from framecast.proto import asyncapi, subjects
from framecast.runtime.cli import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"


def test_docs_asyncapi_is_current() -> None:
    assert DOC.read_text() == asyncapi.render(), "run `make asyncapi` and commit docs/asyncapi.json"


def test_document_describes_every_subject(tmp_path: Path) -> None:
    out = tmp_path / "asyncapi.json"
    assert main(["proto", "asyncapi", "--output", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["asyncapi"].startswith("3.")
    addresses = {c["address"] for c in doc["channels"].values()}
    for subject in (subjects.STREAM_START, subjects.STREAM_STOP, subjects.ENCODER_CLAIM, subjects.AUTH_TOKEN_ISSUE):
        assert subject in addresses
    assert "framecast.events.stream.{stream_id}" in addresses
    start = doc["components"]["schemas"]["StartStream"]
    assert "stream_id" in start["required"]
    assert doc["operations"]["streamStart"]["reply"]["channel"]["$ref"] == "#/channels/streamStartReply"
