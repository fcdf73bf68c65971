"""The relay's messages are byte for byte what the library's mapper and `describe` give.

The relay decodes rows with one orjson parse and reads the envelope straight from the event's
fields; the reference below is the plain way: the library's mapper, `describe`, `cloudevent`,
and each policy snapshot from the site the repository rebuilds at the event's version.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from governance.application import GovernanceApplication
from governance.audit.seal import RawRow, SealingSQLiteRecorder
from governance.domain.actor import Actor
from governance.domain.site import Site
from governance.eventstore import event_store_env
from governance.published import describe
from governance.relay.envelope import cloudevent, encode
from governance.relay.messages import Message, MessageWriter, Topics
from governance.relay.policy import changes_policy, policy_snapshot
from tests.conftest import make_settings
from tests.unit.test_published import aggregates_with_every_event

TOPICS = Topics("events", "policy")
SOURCE = "/governance"
SITE_EVENTS = get_topic(Site) + "."


@pytest.fixture(params=["popo", "sqlite"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> GovernanceApplication:
    """An event store holding every event type. In memory the rows carry UUIDs (as PostgreSQL's
    do); the embedded store gives its ids as text, which the decoder converts."""
    if request.param == "popo":
        env = {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    else:
        env = event_store_env(make_settings("sqlite", tmp_path), create_table=True)
    app = GovernanceApplication(env=env)
    app.save(*aggregates_with_every_event())
    # Text a JSON encoder must escape, or may write as it is.
    olga = Actor("olga", request_id='r "2"', on_behalf_of="ünïcode 🙂")
    site = Site.register("acme", "s2", 'Quote " back\\slash\ttab\nline', olga)
    site.approve_app("wiki", "Wiki ünïcode 🙂 \x7f", ["read", "write"], olga, reason="\x01")
    app.save(site)
    return app


def rows(app: GovernanceApplication) -> list[RawRow]:
    recorder = app.recorder
    if isinstance(recorder, SealingSQLiteRecorder):
        return recorder.select_raw(0, 1000, 1000)
    found = recorder.select_notifications(start=1, limit=1000)
    return [(n.id, n.originator_id, n.originator_version, n.topic, n.state) for n in found]


def reference(app: GovernanceApplication, page: list[RawRow]) -> list[Message]:
    out = []
    for position, originator_id, version, topic, state in page:
        event: Any = app.mapper.to_domain_event(StoredEvent(originator_id, version, topic, state))
        published = describe(position, event)
        key = published.site_id.encode()
        out.append(Message(TOPICS.events, key, encode(cloudevent(published, SOURCE))))
        if changes_policy(event):
            site: Site = app.repository.get(event.originator_id, version=event.originator_version)
            out.append(Message(TOPICS.policy, key, encode(policy_snapshot(site, published))))
    return out


def written(app: GovernanceApplication, page: list[RawRow]) -> list[Message]:
    return list(MessageWriter(app.mapper, app.repository, TOPICS, SOURCE)(page))


def test_every_event_type_is_sent_as_the_library_describes_it(app: GovernanceApplication) -> None:
    page = rows(app)
    expected = reference(app, page)
    assert len(expected) > len(page) > 20  # every type, and the policy snapshots
    assert written(app, page) == expected
    # A page read again after a failure, and one starting mid-site, give the same bytes.
    writer = MessageWriter(app.mapper, app.repository, TOPICS, SOURCE)
    assert list(writer(page)) == expected
    assert list(writer(page[3:])) == reference(app, page[3:])


Change = Callable[[bytes], bytes]
UNUSUAL: list[Change] = [
    # Another special value than the timestamp: only the library knows them all.
    lambda s: s.replace(
        b'"actor":', b'"x":{"_type_":"uuid_hex","_data_":"' + b"0" * 32 + b'"},"actor":'
    ),
    # An escaped character, and numbers orjson reads otherwise than json.
    lambda s: s.replace(b'"actor":"', b'"actor":"\\u0041\\ud83d\\ude42'),
    lambda s: s.replace(b'"actor":', b'"big":123456789012345678901234567890,"actor":'),
    lambda s: s.replace(b'"actor":', b'"small":-9223372036854775809,"actor":'),
    lambda s: s.replace(b'"actor":', b'"huge":1e400,"nan":NaN,"float":1.5e-7,"actor":'),
    # A timestamp that is not the library's datetime, or whose text `isoformat` would not write.
    lambda s: s.replace(b'"_type_":"datetime_iso"', b'"_type_":"decimal_str"'),
    *(
        lambda s, text=text: re.sub(rb'"_data_":"[^"]*"', b'"_data_":"' + text + b'"', s)
        for text in (
            b"2026-11-29T14:28:07.000000+00:00",
            b"2026-11-29T14:28:07+00:00",
            b"2026-11-29T14:28:07.171014+02:00",
            b"2026-11-29T14:28:07.171014",
            b"2026-W48-7T14:28:07.171014+00:00",
            b"2026-13-29T14:28:07.171014+00:00",
        )
    ),
]


@pytest.mark.parametrize("change", UNUSUAL)
def test_unusual_stored_states_are_sent_as_the_library_reads_them(
    app: GovernanceApplication, change: Change
) -> None:
    # Sites are left as stored: the reference's snapshots are of the sites in the store.
    page = [
        (at, id_, version, topic, state if topic.startswith(SITE_EVENTS) else change(state))
        for at, id_, version, topic, state in rows(app)
    ]
    assert page != rows(app)
    try:
        expected = reference(app, page)
    except Exception as error:  # noqa: BLE001 - the relay must fail the same way
        with pytest.raises(type(error)):
            written(app, page)
    else:
        assert written(app, page) == expected
