"""The message contract: every published event as a CloudEvent 1.0 in structured JSON mode.

docs/events.md documents it for downstream teams. The attributes come only from
`governance.published.describe`, so an event type registered there is published with no change
here. Changing what an attribute or a data field means is a breaking change: publish a new type
version instead (new fields may be added).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

import orjson

from governance.published import CLOUDEVENT_TYPES, ENVELOPE, PublishedEvent, event_id

SPEC_VERSION = "1.0"
DATA_CONTENT_TYPE = "application/json"
# How a CloudEvent in structured mode announces itself (the Kafka `content-type` header).
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
# The extension attribute holding the event's position in the global log (an integer that only
# grows; ids of one site's events also arrive in this order).
POSITION = "position"

CloudEvent = dict[str, Any]


def make_cloudevent(
    position: int, event_id: str, source: str, kind: str, time: str, site_id: str, data: Any
) -> CloudEvent:
    """The one layout of a published event (every way of building one ends here)."""
    return {
        "specversion": SPEC_VERSION,
        "id": event_id,
        "source": source,
        "type": kind,
        "time": time,
        "subject": site_id,
        "datacontenttype": DATA_CONTENT_TYPE,
        POSITION: position,
        "data": data,
    }


def cloudevent(event: PublishedEvent, source: str) -> CloudEvent:
    return make_cloudevent(
        event.position,
        event.event_id,
        source,
        event.cloudevent_type,
        rfc3339(event.occurred_at),
        event.site_id,
        event.data,
    )


def event_cloudevent(position: int, event: Any, source: str) -> CloudEvent:
    """`cloudevent(describe(position, event), source)`, read straight from the event's fields.

    The relay builds one per event; the `PublishedEvent` in between cost more than the rest of
    the envelope. `tests/unit/test_relay_messages.py` holds the two equal for every event type.
    """
    fields = vars(event)
    return make_cloudevent(
        position,
        event_id(fields["originator_id"], fields["originator_version"]),
        source,
        CLOUDEVENT_TYPES[type(event)],
        rfc3339(fields["timestamp"]),
        fields["site_id"],
        {key: value for key, value in fields.items() if key not in ENVELOPE},
    )


# orjson writes what json.dumps(separators=(",", ":"), ensure_ascii=False) wrote, three times
# faster (the relay encodes every event): UTC times end in Z, UUIDs and enums as their values.
_ORJSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS


def encode(event: CloudEvent) -> bytes:
    return orjson.dumps(event, default=_jsonable, option=_ORJSON_OPTIONS)


def rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _jsonable(value: object) -> object:
    """The few non-JSON types an event field may hold, written the way the event store does."""
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot publish a {type(value).__name__} in an event's data")
