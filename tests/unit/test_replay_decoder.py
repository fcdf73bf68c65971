"""A replay's orjson decoder gives exactly the library's events, or lets the library decode."""

from __future__ import annotations

from typing import Any

import pytest

from governance.application import GovernanceApplication
from governance.audit.seal import RawRow
from governance.domain.actor import Actor
from governance.domain.grant import InstalledBy
from governance.domain.site import UserInstalls
from projections.decode import EventDecoder, stored


@pytest.fixture
def app() -> GovernanceApplication:
    app = GovernanceApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    admin = Actor("olga", request_id="req-1")
    app.register_site("acme", "s1", "One", admin)
    app.install_app("s1", "wiki", "Wiki ünïcode 🙂", ["read"], Actor("ann"), InstalledBy.USER)
    app.install_app("s1", "chat", "Chat", [], Actor("ben"), InstalledBy.ADMIN)
    app.set_user_installs(s1 := "s1", UserInstalls.BLOCKED, admin, reason="tab\there")
    app.install_app(s1, "crm", "CRM", ["a", "b"], Actor("cat"), InstalledBy.USER)
    app.remove_app(s1, "wiki", admin, "unvetted", connected=True)
    app.uninstall_app(s1, "chat", Actor("ben"))
    return app


def rows(app: GovernanceApplication) -> list[RawRow]:
    found = app.recorder.select_notifications(start=1, limit=100)
    return [(n.id, n.originator_id, n.originator_version, n.topic, n.state) for n in found]


def same(first: Any, second: Any) -> bool:
    return (
        type(first) is type(second)
        and list(vars(first).items()) == list(vars(second).items())
        and all(type(vars(first)[k]) is type(v) for k, v in vars(second).items())
    )


def test_every_event_decodes_as_the_library_decodes_it(app: GovernanceApplication) -> None:
    decode = EventDecoder(app.mapper)
    found = rows(app)
    assert len(found) >= 7
    for row in found:
        assert same(decode(row), app.mapper.to_domain_event(stored(row)))


@pytest.mark.parametrize(
    "change",
    [
        # Another special value than the timestamp: only the library knows them all.
        lambda s: s.replace(
            b'"actor":', b'"x":{"_type_":"uuid_hex","_data_":"' + b"0" * 32 + b'"},"actor":'
        ),
        # An escaped character, and a number too large for orjson.
        lambda s: s.replace(b'"actor":"', b'"actor":"\\u0041'),
        lambda s: s.replace(b'"actor":', b'"big":123456789012345678901234567890,"actor":'),
        lambda s: s.replace(b'"actor":', b'"small":-9223372036854775809,"actor":'),
        lambda s: s.replace(b'"actor":', b'"huge":1e400,"nan":NaN,"actor":'),
        # A timestamp that is not the library's datetime.
        lambda s: s.replace(b'"_type_":"datetime_iso"', b'"_type_":"decimal_str"'),
        lambda s: s.replace(b'"_data_":"20', b'"_data_":"20-13'),  # and a time that cannot be
    ],
)
def test_unusual_states_are_decoded_by_the_library(app: GovernanceApplication, change: Any) -> None:
    decode = EventDecoder(app.mapper)
    at, originator_id, version, topic, state = rows(app)[1]
    changed = change(state)
    assert changed != state
    row = (at, originator_id, version, topic, changed)
    try:
        expected = app.mapper.to_domain_event(stored(row))
    except Exception as error:  # noqa: BLE001 - the decoder must fail the same way
        with pytest.raises(type(error)):
            decode(row)
    else:
        assert same(decode(row), expected)
