"""The replay's flat JSON decoding gives exactly what the library's decoder gives."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast
from uuid import uuid4

import pytest
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import JSONTranscoder, TranscodingNotRegisteredError

from governance.application import GovernanceApplication
from governance.eventstore import FlatJSONTranscoder, fast_mapper
from tests.unit.test_published import every_kind_of_event


@pytest.fixture
def library() -> JSONTranscoder:
    mapper = GovernanceApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper
    assert type(mapper.transcoder) is JSONTranscoder
    return mapper.transcoder


def test_every_kind_of_event_decodes_the_same() -> None:
    mapper = GovernanceApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper
    fast = fast_mapper(mapper)
    assert isinstance(fast.transcoder, FlatJSONTranscoder)
    for event in every_kind_of_event():
        stored = mapper.to_stored_event(cast(DomainEventProtocol[Any], event))
        slow, quick = mapper.to_domain_event(stored), fast.to_domain_event(stored)
        assert type(quick) is type(slow)
        assert vars(quick) == vars(slow)
        assert [type(v) for v in vars(quick).values()] == [type(v) for v in vars(slow).values()]


def test_what_is_not_flat_goes_to_the_library(library: JSONTranscoder) -> None:
    flat = FlatJSONTranscoder(library)
    samples = [
        {"at": datetime.now(UTC), "id": uuid4(), "n": Decimal("1.5"), "tags": ["a", "b"]},
        {"nested": {"id": uuid4(), "at": datetime.now(UTC)}},
        {"rows": [{"id": uuid4()}], "deep": [[1, 2]]},
        {"looks_custom": {"_type_": "x", "other": 1}},
        [1, 2, {"id": uuid4()}],
        "text",
    ]
    for sample in samples:
        data = library.encode(sample)
        assert flat.decode(data) == library.decode(data)
    unknown = b'{"v": {"_type_": "nope", "_data_": "x"}}'
    with pytest.raises(TranscodingNotRegisteredError):
        library.decode(unknown)
    with pytest.raises(TranscodingNotRegisteredError):
        flat.decode(unknown)
