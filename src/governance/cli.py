"""The `governance` command: serve, migrate, project, relay, consume, expire requests, issue
tokens, show the configuration, demo."""

from __future__ import annotations

import gc
import sys
from typing import TYPE_CHECKING, Annotated, Protocol

import typer
from pydantic import ValidationError

from governance import config_reference
from governance.audit import cli as audit_cli
from governance.auth import Role, TokenCodec
from governance.config import InsecureConfiguration, Settings
from governance.config_reference import explain
from governance.observability.logs import configure_logging
from governance.observability.shutdown import exit_cleanly_on_sigterm, on_stop_signals

if TYPE_CHECKING:
    from collections.abc import Callable

    from governance.observability.metrics import Metrics, MetricsServer

# Tracebacks never show local variables: they may hold the settings, and so the secrets.
cli = typer.Typer(
    no_args_is_help=True, add_completion=False, help=__doc__, pretty_exceptions_show_locals=False
)
cli.add_typer(audit_cli.audit, name="audit")
cli.command()(audit_cli.history)


def _settings() -> Settings:
    """The settings, or one line naming the bad variable and what it allows (exit code 2)."""
    try:
        return Settings()
    except ValidationError as error:
        typer.echo(explain(error), err=True)
        raise typer.Exit(2) from None


def _logging(settings: Settings) -> None:
    configure_logging(settings.log_format, settings.log_level)


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default: settings)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: PORT or 8000)")] = None,
) -> None:
    """Serve the HTTP API (and, unless turned off, the projector in the same process)."""
    import uvicorn

    from governance.api.app import create_app

    settings = _settings()
    _logging(settings)
    # The listener as given on the command line: in-process services call the API there.
    settings = settings.model_copy(
        update={"host": host or settings.host, "port": port or settings.port}
    )
    app = create_app(settings)
    exit_cleanly_on_sigterm()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # ours, set above: JSON lines by default
        log_level=settings.log_level,
        access_log=False,  # our middleware logs each request, with its id, route and account
        timeout_graceful_shutdown=settings.shutdown_timeout,
    )


@cli.command()
def migrate() -> None:
    """Create the event store's and the read models' tables (run once before other processes)."""
    from governance.runtime import migrate as run_migrate

    adopted = run_migrate(_settings())
    typer.echo("tables are in place")
    if adopted:
        typer.echo(f"sealed {adopted} events stored before the hash chain existed")


MetricsPort = Annotated[
    int | None,
    typer.Option(
        help="Serve /metrics here, 0 for any free port (default: GOVERNANCE_METRICS_PORT)"
    ),
]


@cli.command()
def project(metrics_port: MetricsPort = None) -> None:
    """Run the projector as its own process, until SIGTERM or SIGINT."""
    from governance.runtime import Runtime

    settings = _settings()
    _logging(settings)
    runtime = Runtime(settings)
    # Stops at a batch boundary: the batch in flight commits or rolls back whole.
    _run_worker(runtime, settings, metrics_port, runtime.run_projector)


class _Worker(Protocol):
    """A worker process's object: what `_run_worker` serves, stops and closes."""

    @property
    def metrics(self) -> Metrics: ...
    def close_soon(self) -> None: ...
    def close(self) -> None: ...


def _run_worker(
    worker: _Worker, settings: Settings, metrics_port: int | None, run: Callable[[], None]
) -> None:
    """Serve the worker's own /metrics and `run` it until SIGTERM or SIGINT; close both."""
    try:
        metrics = _serve_metrics(worker.metrics, settings, metrics_port)
    except typer.Exit:
        worker.close()
        raise
    on_stop_signals(worker.close_soon)
    try:
        run()
    finally:
        metrics.close()
        worker.close()


def _serve_metrics(metrics: Metrics, settings: Settings, port: int | None) -> MetricsServer:
    """A worker's own /metrics listener, or one line saying why not."""
    port = settings.metrics_port if port is None else port
    try:
        return metrics.serve(settings.host, port)
    except OSError as error:
        typer.echo(
            f"metrics: cannot listen on {settings.host}:{port} ({error.strerror});"
            " set GOVERNANCE_METRICS_PORT (or --metrics-port) to a free port, or 0 for any",
            err=True,
        )
        raise typer.Exit(2) from None


@cli.command("expire-requests")
def expire_requests() -> None:
    """Expire the app request cases open for longer than GOVERNANCE_APP_REQUEST_TTL_DAYS."""
    from governance.runtime import Runtime

    runtime = Runtime(_settings())
    try:
        runtime.projector.catch_up()  # decide on views that include every request so far
        expired = runtime.expire_requests()
    finally:
        runtime.close()
    typer.echo(f"expired {len(expired)} request case(s)" + "".join(f"\n{c}" for c in expired))


def _kafka_settings() -> Settings:
    settings = _settings()
    if settings.kafka_bootstrap_servers is None:
        typer.echo("configuration error: set KAFKA_BOOTSTRAP_SERVERS (host:port)", err=True)
        raise typer.Exit(2)
    _logging(settings)
    return settings


@cli.command()
def relay(metrics_port: MetricsPort = None) -> None:
    """Publish the event log to Kafka (CloudEvents), until SIGTERM or SIGINT."""
    from governance.relay.main import RelayProcess

    settings = _kafka_settings()
    process = RelayProcess(settings)
    # What start-up made lives as long as the process: keep the collector from rescanning it
    # for every few hundred events relayed (measured: ~7% of the relay's CPU).
    gc.freeze()
    # Stops at a batch boundary: a batch is either acknowledged and recorded, or sent again.
    _run_worker(process, settings, metrics_port, process.run)


@cli.command()
def consume(
    name: Annotated[str, typer.Argument(help="enforce-block or webhooks")],
    metrics_port: MetricsPort = None,
) -> None:
    """Run one consumer in its own Kafka consumer group, until SIGTERM or SIGINT."""
    from consumers.main import ConsumerProcess
    from consumers.wiring import NAMES

    if name not in NAMES:
        typer.echo(f"no consumer named {name!r}; choose one of: {', '.join(NAMES)}", err=True)
        raise typer.Exit(2)
    settings = _kafka_settings()
    process = ConsumerProcess(name, settings)
    # Stops after the records in hand: each is applied and committed, or left for redelivery.
    _run_worker(process, settings, metrics_port, process.run)


@cli.command()
def replay(
    check: Annotated[
        bool, typer.Option("--check", help="Rebuild into scratch tables and print differences")
    ] = False,
) -> None:
    """Rebuild every read model from position zero while serving, then switch to them."""
    from rich.console import Console

    from governance.replay import replay as run_replay

    raise typer.Exit(run_replay(_settings(), check=check, console=Console(stderr=True)))


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


@cli.command("config")
def show_config(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the reference page (docs/configuration.md)")
    ] = False,
) -> None:
    """Print the effective configuration, secrets masked (or every setting's reference)."""
    if markdown:
        typer.echo(config_reference.markdown(), nl=False)
        return
    for line in config_reference.effective(_settings()):
        typer.echo(line)


@cli.command()
def demo() -> None:
    """Fill an empty store with a populated organization, and print tokens and requests to try."""
    from governance.demo import DemoRefused, run_demo

    try:
        typer.echo(run_demo(_settings()))
    except DemoRefused as refusal:
        typer.echo(f"demo: {refusal}", err=True)
        raise typer.Exit(1) from None


def main() -> None:
    try:
        sys.exit(cli())
    except InsecureConfiguration as refusal:
        # One clear line, and never the value itself.
        print(f"configuration error: {refusal}", file=sys.stderr)
        sys.exit(2)
