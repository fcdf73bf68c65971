"""Faults against a real broker of our own: every event still applied exactly once downstream.

A private single-node broker (scripts/kafka.sh on GOVERNANCE_FAULT_KAFKA_PORT, default 29192) is
started and stopped here, so the shared one is never disturbed. `kafka.sh stop` deletes the
broker's data: after "stop, then start" the broker is empty, so the check is what the relay
delivers to a downstream ledger across both lives of the broker: every event id once, each
site's events in order. PostgreSQL only (the production set-up); the SQLite relay is covered by
test_relay.py.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import psycopg
import pytest
from fastapi.testclient import TestClient

from consumers.cloudevents import CloudEvent
from consumers.kafka_source import KafkaSource, open_consumer
from consumers.processing import Effect, Processor
from governance.api.app import create_app
from governance.auth import Role, TokenCodec
from governance.config import Settings
from governance.domain.actor import Actor
from governance.domain.site import Site, UserInstalls
from governance.published import describe
from governance.relay.main import RelayProcess
from governance.relay.positions import open_positions
from governance.runtime import Runtime, migrate
from projections.store import PostgresViewStore, Tx
from tests.conftest import Tokens, drop_schema, make_settings
from tests.e2e.conftest import free_port, wait_until_ready
from tests.support.kafka import Reader, reading

pytestmark = [
    pytest.mark.kafka,
    # While the broker is away, kafka-python's failed bootstraps leave sockets for the garbage
    # collector to close; that is its business, not a fault of the code under test.
    pytest.mark.filterwarnings("ignore:unclosed <socket:ResourceWarning"),
]

ROOT = Path(__file__).resolve().parents[2]
# Below the ephemeral range, where no client socket of this suite can hold it (see test_outage).
PORT = os.environ.get("GOVERNANCE_FAULT_KAFKA_PORT", "29192")
GOVERNANCE = [sys.executable, "-m", "governance"]


class PrivateBroker:
    def __init__(self) -> None:
        self.env = {**os.environ, "GOVERNANCE_TEST_KAFKA_PORT": PORT}
        self.env.pop("KAFKA_BOOTSTRAP_SERVERS", None)  # or kafka.sh would use the shared one
        self.address = ""

    def start(self) -> None:
        self.address = self._script("start")

    def stop(self) -> None:
        self._script("stop")

    def _script(self, command: str) -> str:
        done = subprocess.run(
            ["bash", str(ROOT / "scripts" / "kafka.sh"), command],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


@pytest.fixture(scope="module")
def broker(kafka_servers: str) -> Iterator[PrivateBroker]:
    # kafka_servers: like every Kafka test, this one fails (never skips) without the variable.
    own = PrivateBroker()
    own.start()
    yield own
    own.stop()


@pytest.fixture(autouse=True)
def _collect_sockets() -> Iterator[None]:
    yield
    gc.collect()  # while this module's warning filter still applies


@pytest.fixture
def faulty(broker: PrivateBroker, tmp_path: Path) -> Iterator[Settings]:
    run = uuid.uuid4().hex[:8]
    settings = make_settings(
        "postgres",
        tmp_path,
        kafka_bootstrap_servers=broker.address,
        events_topic=f"f-{run}.events",
        policy_topic=f"f-{run}.site-policy",
        consumer_group_prefix=f"f-{run}.",
        kafka_timeout=3.0,
        relay_idle_wait=0.05,
        relay_batch_size=25,
    )
    migrate(settings)
    yield settings
    drop_schema(settings)


def process_env(settings: Settings) -> dict[str, str]:
    assert settings.database_url is not None and settings.jwt_secret is not None
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "GOVERNANCE_DATABASE_SCHEMA": settings.database_schema,
        "GOVERNANCE_DATA_DIR": str(settings.data_dir),
        "GOVERNANCE_JWT_SECRET": settings.jwt_secret.get_secret_value(),
        "KAFKA_BOOTSTRAP_SERVERS": str(settings.kafka_bootstrap_servers),
        "GOVERNANCE_EVENTS_TOPIC": settings.events_topic,
        "GOVERNANCE_POLICY_TOPIC": settings.policy_topic,
        "GOVERNANCE_CONSUMER_GROUP_PREFIX": settings.consumer_group_prefix,
        "GOVERNANCE_KAFKA_TIMEOUT": str(settings.kafka_timeout),
        "GOVERNANCE_RELAY_BATCH_SIZE": str(settings.relay_batch_size),
        "GOVERNANCE_RELAY_IDLE_WAIT": str(settings.relay_idle_wait),
    }


class Ledger:
    """A downstream effect: one row per event applied, written with the processed mark."""

    name = "ledger"
    tables = ("CREATE TABLE IF NOT EXISTS ledger (event_id TEXT PRIMARY KEY, position BIGINT)",)

    def __init__(self) -> None:
        # Every delivery as it came, repeats included: (site, position, event id).
        self.delivered: list[tuple[str, int, str]] = []

    def wants(self, event: CloudEvent) -> bool:
        self.delivered.append((event["subject"], event["position"], event["id"]))
        return True

    def react(self, event: CloudEvent) -> Effect:
        def record(tx: Tx) -> None:
            tx.execute(
                "INSERT INTO ledger (event_id, position) VALUES (%(e)s, %(p)s)",
                {"e": event["id"], "p": event["position"]},
            )

        return record


@dataclass
class Downstream:
    """The ledger fed from its own consumer group by the production Kafka loop, in a thread."""

    settings: Settings
    ledger: Ledger = field(default_factory=Ledger)

    def __post_init__(self) -> None:
        assert self.settings.database_url is not None
        self.views = PostgresViewStore(
            self.settings.database_url, self.settings.database_schema, pool_size=2
        )
        self.processor = Processor(self.views, self.ledger)
        self.processor.create_tables()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._source: KafkaSource | None = None

    def start(self) -> None:
        self._stop = threading.Event()
        servers = str(self.settings.kafka_bootstrap_servers)
        group = self.settings.consumer_group_prefix + "ledger"
        consumer = open_consumer(servers, self.settings.events_topic, group, self._stop)
        self._source = KafkaSource(consumer, self.processor, retry_max=1.0)
        self._thread = threading.Thread(target=self._source.run, args=(self._stop,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None and self._source is not None
        self._thread.join(timeout=30)
        self._source.close()

    def applied(self) -> list[tuple[str, int]]:
        with self.views.read() as tx:
            rows = tx.all("SELECT event_id, position FROM ledger ORDER BY position")
        return [(row["event_id"], int(row["position"])) for row in rows]

    def wait_for(self, count: int, timeout: float = 60) -> None:
        wait_until(lambda: len(self.applied()) >= count, timeout, f"{count} events applied")

    def close(self) -> None:
        self.views.close()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def logged(runtime: Runtime) -> list[tuple[str, int]]:
    recorder, mapper = runtime.application.recorder, runtime.application.mapper
    notifications = recorder.select_notifications(start=1, limit=100_000)
    return [(describe(n.id, mapper.to_domain_event(n)).event_id, n.id) for n in notifications]


def assert_in_order_per_site(delivered: list[tuple[str, int, str]]) -> None:
    """Each site's events arrive in log order; a repeat may follow, never overtake."""
    first_seen: dict[str, list[int]] = {}
    seen: set[str] = set()
    for site, position, event_id in delivered:
        if event_id not in seen:
            seen.add(event_id)
            first_seen.setdefault(site, []).append(position)
    for site, positions in first_seen.items():
        assert positions == sorted(positions), f"site {site} out of order: {positions}"


def assert_exactly_once(downstream: Downstream, runtime: Runtime) -> None:
    assert sorted(downstream.applied()) == sorted(logged(runtime))


class RelayThread:
    def __init__(self, settings: Settings) -> None:
        self.process = RelayProcess(settings)
        self.thread = threading.Thread(target=self.process.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.process.close_soon()
        self.thread.join(timeout=30)
        self.process.close()


def relay_position(settings: Settings) -> int:
    positions = open_positions(settings)
    try:
        return positions.get()
    finally:
        positions.close()


def many_events(runtime: Runtime, sites: int, toggles: int) -> None:
    """`sites` sites, each blocked and allowed `toggles` times, saved in one go."""
    admin = Actor("olga")
    registered = [Site.register("acme", f"s{n}", f"Site {n}", admin) for n in range(sites)]
    for site in registered:
        for _ in range(toggles):
            site.set_user_installs(UserInstalls.BLOCKED, admin)
            site.set_user_installs(UserInstalls.ALLOWED, admin)
    runtime.application.save(*registered)


def test_kafka_down_commands_accepted_then_everything_delivered_in_order(
    broker: PrivateBroker, faulty: Settings
) -> None:
    runtime = Runtime(faulty)
    downstream = Downstream(faulty)
    relay = RelayThread(faulty)
    try:
        with TestClient(create_app(runtime=runtime)) as http:
            admin = Tokens(runtime).header("olga", Role.ORG_ADMIN)
            sites = ["s1", "s2", "s3"]
            for site in sites:
                put = http.put(f"/v1/orgs/acme/sites/{site}", json={"name": site}, headers=admin)
                assert put.status_code == 201
            downstream.start()
            downstream.wait_for(len(sites))
            downstream.stop()  # this broker's life ends: its consumer group goes with it
            threads = threading.active_count()

            broker.stop()
            for round_ in range(4):
                for site in sites:
                    state = "blocked" if round_ % 2 == 0 else "allowed"
                    body = {"state": state, "reason": f"round {round_}"}
                    changed = http.put(
                        f"/v1/sites/{site}/policy/user-installs", json=body, headers=admin
                    )
                    assert changed.status_code == 200, changed.text  # accepted without Kafka
            head = runtime.application.head_position()
            time.sleep(1)
            assert relay_position(faulty) == len(sites) < head  # nothing acknowledged meanwhile

            broker.start()  # empty: the relay creates the topics and sends what was not acked
            downstream.start()
            downstream.wait_for(head)
            wait_until(lambda: relay_position(faulty) == head, 30, "relay position at head")
            downstream.stop()
            assert threading.active_count() == threads  # the retries leaked no client threads
            assert_exactly_once(downstream, runtime)
            assert_in_order_per_site(downstream.ledger.delivered)
    finally:
        relay.stop()
        downstream.close()
        runtime.close()


def test_relay_killed_mid_batch_resumes_and_nothing_is_lost(
    faulty: Settings, broker: PrivateBroker
) -> None:
    runtime = Runtime(faulty)
    many_events(runtime, sites=10, toggles=30)
    head = runtime.application.head_position()
    downstream = Downstream(faulty)
    env = process_env(faulty)
    relay = subprocess.Popen([*GOVERNANCE, "relay"], env=env, stderr=subprocess.DEVNULL)
    try:
        with reading(broker.address, faulty.events_topic) as topic:
            wait_until(lambda: bool(children_of(relay.pid)), 60, "the relay's pages process")
            pages_process = children_of(relay.pid)
            kill_mid_batch(relay, topic, faulty)
            killed_at = relay_position(faulty)
            assert killed_at < head  # it died with work left
            # Its pages process reads the pipe as closed and ends: no orphan keeps reading.
            wait_until(lambda: not any(map(running, pages_process)), 30, "the orphan's end")
            downstream.start()

            relay = subprocess.Popen([*GOVERNANCE, "relay"], env=env, stderr=subprocess.DEVNULL)
            downstream.wait_for(head)
            wait_until(lambda: relay_position(faulty) == head, 30, "relay position at head")
            relay.send_signal(signal.SIGTERM)
            assert relay.wait(timeout=30) == 0  # a clean stop at a batch boundary
            downstream.stop()
            on_topic = [e["id"] for e in topic.wait_for(len(downstream.ledger.delivered))]
        # The batch it died in went out again: repeats on the topic, none applied twice.
        assert len(on_topic) > len(set(on_topic)) == head
        assert_exactly_once(downstream, runtime)
        assert_in_order_per_site(downstream.ledger.delivered)
    finally:
        if relay.poll() is None:
            relay.kill()
            relay.wait()
        downstream.close()
        runtime.close()


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc: no tool needed)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def running(pid: int) -> bool:
    """Whether `pid` still runs (a zombie, ended but not yet reaped by its new parent, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def kill_mid_batch(relay: subprocess.Popen[bytes], topic: Reader, settings: Settings) -> None:
    """SIGKILL the relay at a moment when the broker holds events it has not recorded.

    The relay is frozen (SIGSTOP) at short intervals; while it is frozen its recorded position
    cannot move, so once the reader has caught up with the broker, "the topic holds a position
    past the recorded one" is a fact about that moment: it was mid-batch. Then it dies.
    """
    wait_until(lambda: bool(topic.records), 60, "the relay's first messages")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        relay.send_signal(signal.SIGSTOP)
        time.sleep(0.2)  # the reader fetches what the broker acknowledged
        seen = max(e["position"] for e in topic.events())
        if seen > relay_position(settings):
            relay.send_signal(signal.SIGKILL)
            relay.wait(timeout=10)
            return
        relay.send_signal(signal.SIGCONT)
        time.sleep(0.005)
    raise TimeoutError("the relay was never caught between publishing and recording")


def test_consumer_killed_before_it_committed_applies_each_removal_once(
    faulty: Settings, tmp_path: Path
) -> None:
    port = free_port()
    env = process_env(faulty) | {"PORT": str(port)}
    url = f"http://127.0.0.1:{port}"
    relay = RelayThread(faulty)
    processes: list[subprocess.Popen[bytes]] = []
    with (tmp_path / "processes.log").open("wb") as log:
        try:
            processes.append(subprocess.Popen([*GOVERNANCE, "serve"], env=env, stderr=log))
            wait_until_ready(url, processes[0])
            admin, user = Credentials(faulty).admin, Credentials(faulty).user
            apps = [f"app-{n:02}" for n in range(30)]
            with httpx2.Client(base_url=url, timeout=10) as http:
                http.put("/v1/orgs/acme/sites/s1", json={"name": "One"}, headers=admin)
                for app_id in apps:
                    body = {"app_id": app_id, "app_name": app_id, "scopes": ["read"]}
                    assert http.post(
                        "/v1/sites/s1/installations", json=body, headers=user
                    ).is_success
                kept = {"app_id": "admin-tool", "app_name": "Admin Tool", "scopes": []}
                assert http.post("/v1/sites/s1/installations", json=kept, headers=admin).is_success
                consumer = start_consumer(env, log)
                processes.append(consumer)
                body = {"state": "blocked", "existing_user_installs": "remove"}
                blocked = http.put("/v1/sites/s1/policy/user-installs", json=body, headers=admin)
                assert blocked.status_code == 200

                wait_until(lambda: removals(faulty) >= 1, 60, "a first removal")
                consumer.send_signal(signal.SIGKILL)
                consumer.wait(timeout=10)
                assert processed(faulty) == 0  # killed before its processed mark and commit
                assert removals(faulty) < len(apps)  # and before it finished

                processes.append(start_consumer(env, log))
                wait_until(lambda: processed(faulty) == 1, 60, "the block processed")
                head = str(head_position(faulty))
                listed = http.get(
                    "/v1/sites/s1/connected-apps", params={"min_position": head}, headers=admin
                ).json()["apps"]
                history = http.get(
                    "/v1/sites/s1/history", params={"limit": "1000"}, headers=admin
                ).json()["events"]
        finally:
            for process in processes:
                if process.poll() is None:
                    process.terminate()
            for process in processes:
                process.wait(timeout=15)
            relay.stop()
    assert [a["app_id"] for a in listed] == ["admin-tool"]
    removed = [e["app_id"] for e in history if e["type"] == "AppRemoved"]
    assert sorted(removed) == apps  # every user app removed, and each exactly once
    assert {e["on_behalf_of"] for e in history if e["type"] == "AppRemoved"} == {"olga"}


@dataclass
class Credentials:
    settings: Settings

    def _header(self, sub: str, *roles: Role, sites: tuple[str, ...] = ()) -> dict[str, str]:
        codec = TokenCodec(self.settings.resolved_jwt_secret())
        token = codec.issue(sub=sub, org="acme", roles=roles, sites=sites)
        return {"Authorization": f"Bearer {token}"}

    @property
    def admin(self) -> dict[str, str]:
        return self._header("olga", Role.ORG_ADMIN)

    @property
    def user(self) -> dict[str, str]:
        return self._header("ann", Role.USER, sites=("s1",))


def start_consumer(env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*GOVERNANCE, "consume", "enforce-block"], env=env, stderr=log)


def _count(settings: Settings, query: str) -> int:
    assert settings.database_url is not None
    with psycopg.connect(
        settings.database_url, options=f"-c search_path={settings.database_schema}"
    ) as conn:
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def removals(settings: Settings) -> int:
    return _count(
        settings,
        "SELECT count(*) FROM governance_events WHERE topic LIKE '%:Site.AppRemoved'",
    )


def head_position(settings: Settings) -> int:
    return _count(settings, "SELECT max(notification_id) FROM governance_events")


def processed(settings: Settings) -> int:
    return _count(
        settings, "SELECT count(*) FROM processed_events WHERE consumer = 'enforce-block'"
    )
