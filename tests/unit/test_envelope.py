"""The published contract: every event type enveloped as a CloudEvent, and documented."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from consumers.cloudevents import InvalidEvent, parse
from governance.published import CLOUDEVENT_TYPE_PREFIX, EVENT_TYPES, describe
from governance.relay.envelope import cloudevent, encode
from tests.unit.test_published import every_kind_of_event

DOCS = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def published_events() -> list[dict[str, object]]:
    events = every_kind_of_event()
    return [
        json.loads(encode(cloudevent(describe(position, e), "/governance")))
        for position, e in enumerate(events, start=7)
    ]


def test_every_event_is_a_valid_cloudevent_in_structured_mode() -> None:
    events = published_events()
    assert {e["type"] for e in events} == {
        CLOUDEVENT_TYPE_PREFIX + suffix for _, suffix in EVENT_TYPES.values()
    }
    for position, event in enumerate(events, start=7):
        assert parse(encode(event)) == event
        assert event["specversion"] == "1.0"
        assert event["source"] == "/governance"
        assert event["subject"] == "s1"
        assert event["datacontenttype"] == "application/json"
        assert event["position"] == position
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", str(event["time"]))
        assert str(event["type"]).endswith(".v1")
    assert len({e["id"] for e in events}) == len(events)


def test_the_id_does_not_depend_on_where_the_event_is_read() -> None:
    event = every_kind_of_event()[1]
    first = cloudevent(describe(5, event), "/governance")
    again = cloudevent(describe(900, event), "/elsewhere")
    assert first["id"] == again["id"]


def test_docs_describe_every_type_with_an_example_holding_its_fields() -> None:
    text = DOCS.read_text()
    examples = {}
    for block in re.findall(r"```json\n(.*?)```", text, flags=re.DOTALL):
        example = json.loads(block)
        if "specversion" in example:
            examples[example["type"]] = parse(block)
    for event in published_events():
        kind = str(event["type"])
        assert f"### `{kind}`" in text, f"docs/events.md does not document {kind}"
        assert kind in examples, f"docs/events.md has no example of {kind}"
        assert set(examples[kind]["data"]) == set(event["data"]), kind  # type: ignore[call-overload]
        assert set(examples[kind]) == set(event), kind
        for field in event["data"]:  # type: ignore[attr-defined]
            assert f"`{field}`" in text, f"docs/events.md does not describe the field {field}"


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"specversion": "0.3"}', "specversion"),
        (b'{"specversion": "1.0", "id": "x"}', "'source'"),
    ],
)
def test_consumers_refuse_what_is_not_our_contract(raw: bytes, says: str) -> None:
    with pytest.raises(InvalidEvent, match=says):
        parse(raw)


def test_the_fast_encoder_writes_what_the_standard_library_wrote() -> None:
    """orjson replaced json.dumps on the relay's hot path; the bytes on the topic are the same."""
    for position, event in enumerate(every_kind_of_event(), start=7):
        envelope = cloudevent(describe(position, event), "/governance")
        expected = json.dumps(
            envelope, default=str, separators=(",", ":"), ensure_ascii=False
        ).replace("+00:00", "Z")
        assert encode(envelope).decode() == expected
