"""Auditors' commands: `governance audit export|verify|head` and `governance history`."""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from governance.config import Settings

audit = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Export the audit trail and check that the stored log was not tampered with.",
)

_MOMENT = "ISO 8601, e.g. 2026-01-31T12:00:00Z (without a zone: UTC)"


def _settings() -> Settings:
    from governance.cli import _settings as read_settings

    return read_settings()


def _moment(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        typer.echo(f"{option}: expected {_MOMENT}, got {value!r}", err=True)
        raise typer.Exit(2) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@audit.command()
def export(
    form: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
    site: Annotated[str | None, typer.Option(help="Only this site's events")] = None,
    org: Annotated[str | None, typer.Option(help="Only this organization's events")] = None,
    since: Annotated[str | None, typer.Option(help=f"From this moment on: {_MOMENT}")] = None,
    until: Annotated[str | None, typer.Option(help=f"Before this moment: {_MOMENT}")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout)")
    ] = None,
) -> None:
    """Stream every event (the API's fields) as JSON Lines or CSV, in constant memory."""
    from governance.audit.export import Format, Selection, records, write
    from governance.runtime import Runtime

    try:
        chosen = Format(form)
    except ValueError:
        typer.echo("--format: expected jsonl or csv", err=True)
        raise typer.Exit(2) from None
    selection = Selection(org, site, _moment(since, "--since"), _moment(until, "--until"))
    runtime = Runtime(_settings(), create_tables=False)
    with ExitStack() as stack:
        stack.callback(runtime.close)
        out: TextIO = sys.stdout
        if output is not None:
            out = stack.enter_context(output.open("w", encoding="utf-8", newline=""))
        app = runtime.application
        count = write(records(app.recorder, app.mapper, selection), out, chosen)
    if output is not None:
        typer.echo(f"exported {count} events to {output}", err=True)


@audit.command("verify")
def verify_command(
    head: Annotated[
        str | None, typer.Option(help="A head published earlier (HASH@POSITION) to check against")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
) -> None:
    """Recompute the hash chain over the stored log; exit 1 at the first tampered position."""
    from governance.audit.verify import chain_store, verify

    published = _head(head) if head else None
    result = verify(chain_store(_settings()), published)
    if as_json:
        typer.echo(json.dumps(result_json(result)))
    elif result.problem is None:
        where = f" up to position {result.head.position}" if result.head else ""
        typer.echo(f"intact: {result.checked} events verified{where}")
        if result.head is not None:
            typer.echo(f"head: {result.head}")
        if published is not None:
            typer.echo(f"matches the published head {published}")
    else:
        problem = result.problem
        typer.echo(f"TAMPERED at position {problem.position} ({problem.kind}): {problem.message}")
        typer.echo(f"{result.checked} events before it verified")
    raise typer.Exit(0 if result.intact else 1)


def _head(text: str) -> Any:
    from governance.audit.verify import Head

    try:
        return Head.parse(text)
    except ValueError as error:
        typer.echo(f"--head: {error}", err=True)
        raise typer.Exit(2) from None


def result_json(result: Any) -> dict[str, Any]:
    problem = result.problem
    return {
        "intact": result.intact,
        "checked": result.checked,
        "head": (
            {"position": result.head.position, "hash": result.head.hash.hex()}
            if result.head
            else None
        ),
        "problem": (
            {"position": problem.position, "kind": str(problem.kind), "message": problem.message}
            if problem
            else None
        ),
    }


@audit.command("head")
def head_command() -> None:
    """Verify the log, then print its head (HASH@POSITION) for you to publish elsewhere."""
    from governance.audit.verify import chain_store, verify

    result = verify(chain_store(_settings()))
    if result.problem is not None:
        typer.echo(
            f"not printing a head: the log was tampered with at position"
            f" {result.problem.position} ({result.problem.kind}); run `governance audit verify`",
            err=True,
        )
        raise typer.Exit(1)
    if result.head is None:
        typer.echo("the log is empty: nothing to publish yet", err=True)
        raise typer.Exit(1)
    typer.echo(str(result.head))


def history(
    site: Annotated[str, typer.Option(help="Site id")],
    as_of: Annotated[
        str | None, typer.Option("--as-of", help=f"Show it as it was then: {_MOMENT}")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Print a site's policy and connected apps, now or as they were at --as-of."""
    from governance.audit.point_in_time import site_at

    moment = _moment(as_of, "--as-of")
    state = site_at(_settings(), site, moment)
    if state is None:
        typer.echo(f"no site {site!r}" + (" at that time" if moment else ""), err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(state.as_json(), indent=2) if as_json else state.as_text())
