"""The chain's encoding, published heads, and the row diff behind `replay --check`."""

from __future__ import annotations

from uuid import UUID

import pytest

from governance.audit.seal import GENESIS, encode, link
from governance.audit.verify import Head
from projections.compare import diff_rows

OID = UUID("6f1c2a7e-52a4-4d55-9a57-1d1f0c2b8e31")


def test_every_field_is_in_the_encoding_and_ids_are_canonical() -> None:
    base = encode(7, OID, 2, "m:E", b"{}")
    assert encode(7, OID.hex, 2, "m:E", b"{}") == base  # hex as SQLite stores it
    variants = [
        encode(8, OID, 2, "m:E", b"{}"),
        encode(7, UUID(int=OID.int ^ 1), 2, "m:E", b"{}"),
        encode(7, OID, 3, "m:E", b"{}"),
        encode(7, OID, 2, "m:F", b"{}"),
        encode(7, OID, 2, "m:E", b"{ }"),
        # Length prefixes: moving a byte from the topic to the state changes the encoding.
        encode(7, OID, 2, "m:", b"E{}"),
    ]
    assert base not in variants and len(set(variants)) == len(variants)
    first = link(GENESIS, 1, OID, 1, "m:E", b"{}")
    assert link(first, 2, OID, 2, "m:E", b"{}") != link(GENESIS, 2, OID, 2, "m:E", b"{}")
    assert len(first) == 32


def test_a_published_head_reads_back() -> None:
    head = Head(42, bytes(range(32)))
    assert Head.parse(str(head)) == head
    assert str(head).endswith("@42")
    for bad in ("", "abc@1", f"{'0' * 64}@0", f"{'0' * 64}", f"{'g' * 64}@3", f"{'0' * 62}@3"):
        with pytest.raises(ValueError, match="HASH@POSITION"):
            Head.parse(bad)


def test_diff_finds_rows_only_on_one_side_even_out_of_step() -> None:
    live = [(1, "a"), (2, "b"), (3, "c"), (5, "e")]
    rebuilt = [(1, "a"), (3, "c"), (4, "d"), (5, "e"), (6, "f")]
    only_live, only_rebuilt, truncated = diff_rows(iter(live), iter(rebuilt))
    assert dict(only_live) == {(2, "b"): 1}
    assert dict(only_rebuilt) == {(4, "d"): 1, (6, "f"): 1}
    assert not truncated
    same = diff_rows(iter(live), iter(list(live)))
    assert not same[0] and not same[1]
    duplicates = diff_rows(iter([(1,), (1,)]), iter([(1,)]))
    assert dict(duplicates[0]) == {(1,): 1} and not duplicates[1]
    capped = diff_rows(iter([(i,) for i in range(100)]), iter([]), cap=10)
    assert capped[2] is True
