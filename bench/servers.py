"""Starting the processes a benchmark measures, and driving them with wrk."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2

from bench.report import median


def require(tool: str, package: str) -> bool:
    """Whether `tool` is on PATH, installing its Debian package first when it is not."""
    if shutil.which(tool):
        return True
    print(f"== installing {package} with apt-get (for {tool})", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        if subprocess.run(command, env=env, check=False).returncode != 0:
            return False
    return shutil.which(tool) is not None


PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx2.get(url, timeout=1)
            return
        except httpx2.TransportError:
            time.sleep(0.1)
    raise TimeoutError(url)


@contextmanager
def process(
    command: list[str], env: dict[str, str], ready_url: str, *, timeout: float = 30
) -> Iterator[int]:
    """A server process (its pid), once `ready_url` answers; terminated on the way out."""
    proc = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(ready_url, timeout)
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@dataclass(frozen=True)
class Load:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int


@dataclass(frozen=True)
class Server:
    url: str
    pid: int


@contextmanager
def uvicorn(app_spec: str, env: dict[str, str], *, factory: bool = False) -> Iterator[Server]:
    """One uvicorn process with the options every HTTP figure uses (the baseline's too)."""
    port = free_port()
    command = [PYTHON, "-m", "uvicorn", app_spec, "--port", str(port)]
    command += ["--workers", "1", "--log-level", "warning", "--no-access-log"]
    if factory:
        command.append("--factory")
    url = f"http://127.0.0.1:{port}"
    with process(command, env, url + "/docs", timeout=120) as pid:
        yield Server(url, pid)


@dataclass(frozen=True)
class Run:
    load: Load
    cpu_us: float  # the server process's CPU time (all its threads) per request answered


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(
    url: str,
    headers: dict[str, str],
    seconds: int,
    connections: int,
    script: Path | None = None,
    pid: int | None = None,
) -> Run:
    """One wrk run (one thread); with `pid`, also the server's CPU time per request.

    CPU per request hardly depends on what else the shared machine runs, unlike rates and
    latencies, which is why it is printed beside them.
    """
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    if script is not None:
        command += ["-s", str(script)]
    before = cpu_seconds(pid) if pid is not None else 0.0
    out = subprocess.run([*command, url], check=True, capture_output=True, text=True).stdout
    used = cpu_seconds(pid) - before if pid is not None else 0.0
    answered = re.search(r"(\d+) requests in", out)
    count = int(answered.group(1)) if answered else 0
    return Run(parse_wrk(out), used / count * 1e6 if count else 0.0)


def parse_wrk(out: str) -> Load:
    def millis(text: str) -> float:
        match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
        if match is None:
            raise ValueError(f"wrk printed a latency I cannot read: {text!r}")
        units = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
        return float(match.group(1)) * units[match.group(2)]

    def find(pattern: str) -> str:
        match = re.search(pattern, out, re.M)
        if match is None:
            raise ValueError(f"wrk printed no {pattern!r}:\n{out}")
        return match.group(1)

    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return Load(
        float(find(r"Requests/sec:\s+([\d.]+)")),
        millis(find(r"^\s+50%\s+(\S+)")),
        millis(find(r"^\s+99%\s+(\S+)")),
        int(errors.group(1)) if errors else 0,
    )


def medians(runs: list[Run]) -> Load:
    loads = [run.load for run in runs]
    return Load(
        median([load.requests_per_second for load in loads]),
        median([load.p50_ms for load in loads]),
        median([load.p99_ms for load in loads]),
        sum(load.non_2xx for load in loads),
    )


def cpu_median(runs: list[Run]) -> float:
    return median([run.cpu_us for run in runs])
