"""PostgreSQL generations get their primary keys after the load, as the projections declare them."""

from __future__ import annotations

from projections.bulk import without_primary_key


def test_a_key_clause_is_taken_out_and_added_back() -> None:
    table, key = without_primary_key(
        "CREATE TABLE IF NOT EXISTS t (\n    a TEXT NOT NULL,\n    b INTEGER,\n"
        "    PRIMARY KEY (a, b)\n)"
    )
    assert table == "CREATE TABLE IF NOT EXISTS t (\n    a TEXT NOT NULL,\n    b INTEGER\n)"
    assert key == "ALTER TABLE t ADD PRIMARY KEY (a, b)"


def test_a_key_column_loses_only_its_key() -> None:
    table, key = without_primary_key(
        "CREATE TABLE t (\n    position BIGINT PRIMARY KEY,\n    site_id TEXT NOT NULL\n)"
    )
    assert table == "CREATE TABLE t (\n    position BIGINT,\n    site_id TEXT NOT NULL\n)"
    assert key == "ALTER TABLE t ADD PRIMARY KEY (position)"


def test_other_statements_are_left_alone() -> None:
    for statement in ("CREATE TABLE t (a TEXT)", "CREATE INDEX i ON t (a)"):
        assert without_primary_key(statement) == (statement, None)
