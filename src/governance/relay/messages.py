"""What the relay sends for a page of the log: each event's CloudEvent and, after a policy
change, the site's policy snapshot, both keyed by site id.

This is the relay's own work per event, done under the same interpreter lock as the producer's,
so it is kept short. Most events (installs, requests: any but a site's own) go the plain way:
the stored state parsed once with orjson (`EventDecoder.fields`, which leaves to the library
every state it would read differently) and the envelope taken from it, with no event object.
A site's events are decoded into the library's objects, which the site folds need. Either way
the bytes are those of the library's mapper and `describe`: `tests/unit/test_relay_messages.py`
compares them for every event type.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import orjson
from eventsourcing.persistence import Mapper

from governance.audit.seal import RawRow
from governance.published import CLOUDEVENT_TYPES, describe, event_id
from governance.relay.envelope import (
    CloudEvent,
    encode,
    event_cloudevent,
    make_cloudevent,
)
from governance.relay.policy import SiteFolds, changes_policy, folded, policy_snapshot
from projections.decode import EventDecoder

# A stored UTC timestamp whose text is what `rfc3339` makes of it, once +00:00 is written Z:
# `datetime.isoformat` writes exactly this (its fraction only when not zero). Parsing and
# writing the time again cost more than all the rest of an envelope.
_ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.(?!000000)\d{6}\+00:00")


class Message(NamedTuple):  # one per message: a tuple is built faster than a dataclass
    topic: str
    key: bytes
    value: bytes


@dataclass(frozen=True)
class Topics:
    events: str
    policy: str


class MessageWriter:
    """Rows of the log, in order, to messages. It folds the sites it sees (for the snapshots),
    so a page read again after a failure is written as it was the first time."""

    def __init__(self, mapper: Mapper[Any], repository: Any, topics: Topics, source: str) -> None:
        self.decode = EventDecoder(mapper)
        self.topics = topics
        self.source = source
        self._sites = SiteFolds(repository)
        # The published classes whose events need no object: no site folds them.
        self._plain = {cls: kind for cls, kind in CLOUDEVENT_TYPES.items() if not folded(cls)}

    def __call__(self, rows: Sequence[RawRow]) -> Iterator[Message]:
        events = self.topics.events
        for row in rows:
            envelope = self._plain_cloudevent(row)
            if envelope is not None:
                # Only JSON's own types, as orjson read them: no option of `encode` applies.
                yield Message(events, envelope["subject"].encode(), orjson.dumps(envelope))
                continue
            event = self.decode(row)
            self._sites.follow(event)
            envelope = event_cloudevent(row[0], event, self.source)
            key = envelope["subject"].encode()
            yield Message(events, key, encode(envelope))
            if changes_policy(event):
                snapshot = policy_snapshot(self._sites.at(event), describe(row[0], event))
                yield Message(self.topics.policy, key, encode(snapshot))

    def _plain_cloudevent(self, row: RawRow) -> CloudEvent | None:
        """`event_cloudevent` of the row's event, built from its fields; None: build the event."""
        found = self.decode.fields(row)
        if found is None:
            return None
        cls, fields = found
        kind = self._plain.get(cls)
        time = fields["timestamp"]
        site_id = fields.get("site_id")
        if kind is None or type(site_id) is not str or not _ISO_UTC.fullmatch(time):
            return None
        try:
            datetime.fromisoformat(time)  # a date that exists, or the library's error
        except ValueError:
            return None
        # What is left, in the stored order, is the event's data (as `describe` gives it).
        del fields["timestamp"]
        originator_id = fields.pop("originator_id")
        version = fields.pop("originator_version")
        fields.pop("originator_topic", None)
        return make_cloudevent(
            row[0],
            event_id(originator_id, version),
            self.source,
            kind,
            time[:-6] + "Z",
            site_id,
            fields,
        )
