"""The `governance` command: serve, migrate, project and issue tokens."""

from __future__ import annotations

import signal
import sys
from typing import Annotated

import typer
from pydantic import ValidationError

from governance.auth import Role, TokenCodec
from governance.config import Settings

cli = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        first = error.errors()[0]
        name = ".".join(str(p) for p in first["loc"]).upper()
        typer.echo(f"configuration error: GOVERNANCE_{name}: {first['msg']}", err=True)
        raise typer.Exit(2) from None


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default: settings)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: PORT or 8000)")] = None,
) -> None:
    """Serve the HTTP API (and, unless turned off, the projector in the same process)."""
    import uvicorn

    from governance.api.app import create_app

    settings = _settings()
    app = create_app(settings)
    uvicorn.run(app, host=host or settings.host, port=port or settings.port, log_level="info")


@cli.command()
def migrate() -> None:
    """Create the event store's and the read models' tables (run once before other processes)."""
    from governance.runtime import migrate as run_migrate

    run_migrate(_settings())
    typer.echo("tables are in place")


@cli.command()
def project() -> None:
    """Run the projector as its own process, until SIGTERM or SIGINT."""
    from governance.runtime import Runtime

    runtime = Runtime(_settings())
    # Stop at a batch boundary: the batch in flight commits or rolls back whole.
    signal.signal(signal.SIGTERM, lambda *_: runtime.close_soon())
    signal.signal(signal.SIGINT, lambda *_: runtime.close_soon())
    try:
        runtime.run_projector()
    finally:
        runtime.close()


@cli.command()
def token(
    sub: Annotated[str, typer.Option(help="Account id")],
    org: Annotated[str, typer.Option(help="Organization id")],
    role: Annotated[list[Role], typer.Option(help="Role; repeat for several")],
    site: Annotated[list[str] | None, typer.Option(help="Site id; repeat for several")] = None,
    ttl: Annotated[int | None, typer.Option(help="Lifetime in seconds")] = None,
) -> None:
    """Print a bearer token that a server started with the same settings accepts."""
    settings = _settings()
    codec = TokenCodec(settings.resolved_jwt_secret())
    typer.echo(
        codec.issue(
            sub=sub,
            org=org,
            roles=role,
            sites=site or [],
            ttl_seconds=ttl or settings.token_ttl_seconds,
        )
    )


def main() -> None:
    sys.exit(cli())
