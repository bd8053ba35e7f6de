"""Which ASGI server should run homepocket.asgi:application? Measure granian, uvicorn and daphne.

What it measures: requests per second and closed-loop latency (p50, p99) of ONE server worker
process, as the embedded mode runs it, loaded by wrk (`-t1 -c<connections> --latency`, 100
connections by default) on two endpoints:

- `GET /health`: an async Django view answering a small JSON body: the server's own cost plus
  Django's request path and middleware, nothing else;
- `GET /api/v1/books/<book_id>/devices` with `Authorization: Bearer <device token>`: a DRF (sync)
  view that verifies the device's EdDSA JWT against its key in SQLite and lists the book's devices.

Each (server, endpoint) pair gets a warm-up run, then a measured run, of --duration seconds each.
Two more uvicorn variants, with bench.settings_lean, show what Django's MiddlewareMixin
middlewares cost under ASGI (each hops to a thread for process_request and process_response):
`uvicorn-mixin` puts the admin's six MiddlewareMixin middlewares on the API paths too, and
`uvicorn-lean` keeps only our natively async request context middleware. wrk runs on the same
machine and shares its cores with the server, so the figures rank servers on one machine; they
are not a capacity figure. The CPU used by the server, by wrk and by other processes is measured
during each measured run; a run disturbed by other processes is measured again once.

Set-up: a temporary HOMEPOCKET_VAR_DIR (SQLite database, secrets) in the embedded mode, then
`manage.py migrate`; for each server: start it on a free 127.0.0.1 port with LOG_LEVEL=WARNING,
wait for /health, create a book with its first device through homepocket_client, mint a device
token, check that each endpoint answers 200, run wrk, and stop the server (SIGTERM; its process
group is killed only if it has not exited after STOP_TIMEOUT_SECONDS).

Usage: .venv/bin/python bench/asgi_servers.py [--duration 10] [--connections 100]
           [--servers granian,uvicorn,daphne,uvicorn-mixin,uvicorn-lean]
Needs wrk (Debian: apt-get install wrk). Prints markdown tables and writes
var/bench/asgi_servers.json (--json). The command and the figures are recorded in docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import datetime
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # homepocket_client, when run as `python bench/asgi_servers.py`

from homepocket_client import DeviceIdentity, HomePocketClient, device_token_mint  # noqa: E402

HOST = "127.0.0.1"
APP = "homepocket.asgi:application"
PYTHON = sys.executable
START_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 15
TOKEN_LIFETIME_SECONDS = 3600
# wrk drops a request slower than its --timeout from the latency figures (default 2 s): a long
# timeout keeps slow answers in p99 instead of hiding them as "timeout" errors.
WRK_TIMEOUT = "10s"
# A measured run during which other processes (a test suite, a build) kept more than this many
# cores busy is run again, once, and the least disturbed attempt kept (marked if still over);
# at most REMEASURE_BUDGET times per script run, so that it stays under five minutes.
OTHER_LOAD_CORES = 0.15
REMEASURE_BUDGET = 3
# wrk's Lua `done` hook: exact figures as one JSON line, no parsing of its human-readable units.
WRK_REPORT_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, '
    .. '"write_errors": %d, "non_2xx_3xx": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, '
    .. '"p99_us": %d, "max_us": %d, "mean_us": %.1f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""
# The figures are for the embedded mode: variables that switch to the distributed one are dropped.
DISTRIBUTED_ENV = ("DATABASE_URL", "REDIS_URL", "S3_BUCKET", "CELERY_BROKER_URL", "PROMETHEUS_MULTIPROC_DIR")
PACKAGES = (
    "granian", "uvicorn", "uvloop", "httptools", "daphne", "twisted",
    "django", "djangorestframework", "channels", "asgiref", "pyjwt", "cryptography",
)  # fmt: skip


@dataclass(frozen=True)
class Server:
    name: str
    settings: str
    description: str
    env: tuple[tuple[str, str], ...] = ()

    def argv(self, port: int) -> list[str]:
        if self.name == "granian":
            return [
                PYTHON, "-m", "granian", "--interface", "asgi", "--host", HOST, "--port", str(port),
                "--workers", "1", "--loop", "uvloop", "--log-level", "warning", "--no-access-log", APP,
            ]  # fmt: skip
        if self.name.startswith("uvicorn"):
            return [
                PYTHON, "-m", "uvicorn", APP, "--host", HOST, "--port", str(port), "--workers", "1",
                "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                "--log-level", "warning",
            ]  # fmt: skip
        if self.name == "daphne":
            return [PYTHON, "-m", "daphne", "--bind", HOST, "--port", str(port), "--verbosity", "0", APP]
        raise ValueError(self.name)


SERVERS = {
    s.name: s
    for s in (
        Server("granian", "homepocket.settings", "granian --interface asgi --loop uvloop"),
        Server("uvicorn", "homepocket.settings", "uvicorn --loop uvloop --http httptools"),
        Server("daphne", "homepocket.settings", "Twisted"),
        Server(
            "uvicorn-mixin",
            "bench.settings_lean",
            "uvicorn as above, the six MiddlewareMixin middlewares on the API paths",
            (("BENCH_MIDDLEWARE", "mixin"),),
        ),
        Server(
            "uvicorn-lean",
            "bench.settings_lean",
            "uvicorn as above, only request_context_middleware",
            (("BENCH_MIDDLEWARE", "lean"),),
        ),
    )
}
ENDPOINTS = ("health", "devices")


@dataclass
class Result:
    server: str
    settings: str
    endpoint: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    cpu_cores: dict  # mean cores busy during the measured run: server, wrk, other processes
    wrk: dict

    @property
    def disturbed(self) -> bool:
        return self.cpu_cores["other"] > OTHER_LOAD_CORES


class Progress:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", flush=True)


def main() -> int:
    args = _parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk).", file=sys.stderr)
        return 2
    say = Progress()
    var_dir = Path(tempfile.mkdtemp(prefix="hp-bench-"))
    results: list[Result] = []
    try:
        env = _server_env(var_dir)
        say(f"var dir {var_dir}: migrating")
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=REPO, env=env, check=True, timeout=120
        )
        lua = var_dir / "report.lua"
        lua.write_text(WRK_REPORT_LUA)
        budget = [REMEASURE_BUDGET]
        for name in args.servers:
            results += _bench_server(SERVERS[name], env, var_dir, lua, args, say, budget)
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)
    machine = _machine()
    say("done")
    print()
    print(_results_table(results))
    lean_table = _middleware_table(results)
    if lean_table:
        print()
        print(lean_table)
    print()
    print(_cpu_table(results))
    _write_json(args.json, args, machine, results)
    say(f"wrote {args.json}")
    failed = [r for r in results if r.errors]
    if failed:
        print(f"errors in {len(failed)} run(s): see the errors column", file=sys.stderr)
        return 1
    return 0


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of each warm-up and measured run")
    parser.add_argument("--connections", type=int, default=100, help="wrk connections (one wrk thread)")
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help=f"comma-separated, among {', '.join(SERVERS)} (default: all)",
    )
    parser.add_argument(
        "--json", type=Path, default=REPO / "var" / "bench" / "asgi_servers.json", help="where to write the results"
    )
    args = parser.parse_args()
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = [s for s in args.servers if s not in SERVERS]
    if unknown or not args.servers:
        parser.error(f"unknown server(s) {unknown}; choose among {', '.join(SERVERS)}")
    return args


def _server_env(var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_ENV}
    env.update(
        HOMEPOCKET_VAR_DIR=str(var_dir),
        LOG_LEVEL="WARNING",
        DEBUG="0",
        DJANGO_SETTINGS_MODULE="homepocket.settings",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p),
    )
    return env


def _bench_server(
    server: Server, env: dict, var_dir: Path, lua: Path, args, say: Progress, remeasure_budget: list[int]
) -> list[Result]:
    port = _free_port()
    base_url = f"http://{HOST}:{port}"
    log_path = var_dir / f"{server.name}.log"
    say(f"{server.name}: starting on {base_url} ({server.settings})")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            server.argv(port),
            cwd=REPO,
            env={**env, "DJANGO_SETTINGS_MODULE": server.settings, **dict(server.env)},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a worker it forks can be found and stopped
            preexec_fn=_die_with_parent,
        )
    try:
        started = time.monotonic()
        _wait_healthy(process, base_url, log_path)
        say(f"{server.name}: healthy after {time.monotonic() - started:.1f}s (pid {process.pid})")
        token, devices_url = _book_with_token(base_url)
        say(f"{server.name}: book created, device token minted")
        targets = {"health": (f"{base_url}/health", None), "devices": (devices_url, token)}

        def measure(endpoint: str, url: str, bearer: str | None) -> Result:
            meter = CpuMeter(process.pid)
            report = _wrk(url, bearer, lua, args, process, log_path)
            result = _result(server, endpoint, report, meter.cores())
            cpu = result.cpu_cores
            say(
                f"{server.name} {endpoint}: {result.requests_per_second:,.0f} req/s, p50 {result.p50_ms:.1f} ms, "
                f"p99 {result.p99_ms:.1f} ms, errors {result.errors}; CPU cores: server {cpu['server']:.2f}, "
                f"wrk {cpu['wrk']:.2f}, other processes {cpu['other']:.2f}"
            )
            return result

        results = []
        for endpoint in ENDPOINTS:
            url, bearer = targets[endpoint]
            _check_ok(url, bearer)
            _wrk(url, bearer, lua, args, process, log_path)  # warm-up, discarded
            result = measure(endpoint, url, bearer)
            if result.disturbed and remeasure_budget[0] > 0:
                remeasure_budget[0] -= 1
                say(f"other processes used {result.cpu_cores['other']:.2f} cores: measuring again")
                again = measure(endpoint, url, bearer)
                if again.cpu_cores["other"] < result.cpu_cores["other"]:
                    result = again
            if result.disturbed:
                say(f"warning: {server.name} {endpoint} stays disturbed by other processes (marked * in the table)")
            results.append(result)
        return results
    finally:
        say(f"{server.name}: {_stop(process)}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: a server started here gets SIGTERM if this script dies, so no orphan
    # keeps the port (homepocket.process_guard does the same; importing homepocket here would
    # import Celery and Django into the load-generating process).
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)


def _wait_healthy(process: subprocess.Popen, base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(f"{base_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"no healthy /health within {START_TIMEOUT_SECONDS}s:\n{_tail(log_path)}")


def _book_with_token(base_url: str) -> tuple[str, str]:
    identity = DeviceIdentity.new("bench device")
    with HomePocketClient(base_url) as client:
        book = client.create_book(identity)
    token = device_token_mint(
        identity.key, device_id=book.device_id, book_id=book.book_id, lifetime_seconds=TOKEN_LIFETIME_SECONDS
    )
    return token, f"{base_url}/api/v1/books/{book.book_id}/devices"


def _check_ok(url: str, bearer: str | None) -> None:
    # wrk counts a 401 as fast as a 200: make sure the endpoint answers before measuring it.
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {bearer}"} if bearer else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    if status != 200:
        raise RuntimeError(f"{url} answered {status}: {body[:500]!r}")


def _wrk(url: str, bearer: str | None, lua: Path, args, process: subprocess.Popen, log_path: Path) -> dict:
    argv = [
        "wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "--latency", "--timeout", WRK_TIMEOUT,
        "-s", str(lua),
    ]  # fmt: skip
    if bearer:
        argv += ["-H", f"Authorization: Bearer {bearer}"]
    completed = subprocess.run(
        [*argv, url], capture_output=True, text=True, timeout=args.duration + 60, check=True
    )
    if process.poll() is not None:
        raise RuntimeError(f"the server died under load ({process.returncode}):\n{_tail(log_path)}")
    line = next((row for row in completed.stdout.splitlines() if row.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"no report from wrk:\n{completed.stdout}\n{completed.stderr}")
    return json.loads(line.removeprefix("WRK_JSON "))


def _result(server: Server, endpoint: str, report: dict, cpu_cores: dict) -> Result:
    errors = sum(report[k] for k in ("connect_errors", "read_errors", "write_errors", "non_2xx_3xx", "timeouts"))
    return Result(
        server=server.name,
        settings=server.settings,
        endpoint=endpoint,
        requests_per_second=report["requests"] / (report["duration_us"] / 1e6),
        p50_ms=report["p50_us"] / 1000,
        p99_ms=report["p99_us"] / 1000,
        requests=report["requests"],
        errors=errors,
        cpu_cores=cpu_cores,
        wrk=report,
    )


class CpuMeter:
    """CPU used between its creation and cores(): by the server's process group, wrk, and the rest.

    On a shared 2-core machine anything else running (a test suite, a build) takes cycles from the
    server or wrk; "other" says how much, so a disturbed run can be seen and repeated.
    """

    def __init__(self, server_pgid: int) -> None:
        self.pgid = server_pgid
        self.started = time.monotonic()
        self.machine = self._machine_busy_seconds()
        self.server = self._group_seconds()
        self.children = self._children_seconds()

    def cores(self) -> dict[str, float]:
        elapsed = time.monotonic() - self.started
        machine = self._machine_busy_seconds() - self.machine
        server = self._group_seconds() - self.server
        wrk = self._children_seconds() - self.children  # wrk is the only child reaped meanwhile
        return {
            "server": round(server / elapsed, 2),
            "wrk": round(wrk / elapsed, 2),
            "other": round(max(0.0, machine - server - wrk) / elapsed, 2),
        }

    @staticmethod
    def _machine_busy_seconds() -> float:
        # /proc/stat "cpu": user nice system idle iowait irq softirq steal, in clock ticks
        ticks = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
        return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")

    def _group_seconds(self) -> float:
        ticks = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # exited meanwhile
            if int(fields[2]) == self.pgid:  # pgrp; utime and stime include the process's threads
                ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _children_seconds() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime


def _stop(process: subprocess.Popen) -> str:
    """SIGTERM to the server, then SIGKILL to its process group if it or a worker lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(STOP_TIMEOUT_SECONDS)
        # uvicorn re-raises the SIGTERM it handled after its graceful shutdown: -15 is clean too.
        outcome = "stopped cleanly" if code in (0, -signal.SIGTERM) else f"stopped with exit code {code}"
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return f"killed: did not stop within {STOP_TIMEOUT_SECONDS}s of SIGTERM"
    if _group_alive(process.pid):
        os.killpg(process.pid, signal.SIGKILL)
        outcome += "; killed a leftover child"
    return outcome


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _results_table(results: list[Result]) -> str:
    by_key = {(r.server, r.endpoint): r for r in results}
    rows = [
        "| server | /health req/s | p50 ms | p99 ms | /devices req/s | p50 ms | p99 ms | errors |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name in dict.fromkeys(r.server for r in results):
        cells = [f"{name} ({SERVERS[name].description})"]
        errors = 0
        for endpoint in ENDPOINTS:
            r = by_key.get((name, endpoint))
            mark = "*" if r and r.disturbed else ""
            cells += [f"{r.requests_per_second:,.0f}{mark}", f"{r.p50_ms:.1f}", f"{r.p99_ms:.1f}"] if r else ["-"] * 3
            errors += r.errors if r else 0
        rows.append("| " + " | ".join(cells + [str(errors)]) + " |")
    if any(r.disturbed for r in results):
        rows.append(f"\n\\* other processes kept more than {OTHER_LOAD_CORES} cores busy during this run.")
    return "\n".join(rows)


def _middleware_table(results: list[Result]) -> str | None:
    """uvicorn with each middleware stack; the time a stack adds per request over the lean one."""
    by_key = {(r.server, r.endpoint): r for r in results}
    stacks = {
        "uvicorn-mixin": "the six MiddlewareMixin middlewares (uvicorn-mixin)",
        "uvicorn": "the project's settings (uvicorn)",
        "uvicorn-lean": "request_context_middleware only (uvicorn-lean)",
    }
    present = [name for name in stacks if any(r.server == name for r in results)]
    if "uvicorn-lean" not in present or len(present) < 2:
        return None
    rows = [
        "| middleware on the API paths | /health req/s | added per request vs lean "
        "| /devices req/s | added per request vs lean |",
        "|---|--:|--:|--:|--:|",
    ]
    for name in present:
        cells = [stacks[name]]
        for endpoint in ENDPOINTS:
            r, lean = by_key.get((name, endpoint)), by_key.get(("uvicorn-lean", endpoint))
            if r is None or lean is None:
                cells += ["-", "-"]
                continue
            # One saturated worker: 1 / throughput is the mean time the server spends per request.
            added_us = 1e6 / r.requests_per_second - 1e6 / lean.requests_per_second
            cells += [f"{r.requests_per_second:,.0f}", "-" if r is lean else f"{added_us:+,.0f} µs"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _cpu_table(results: list[Result]) -> str:
    rows = [
        "| server | endpoint | server CPU (cores) | wrk CPU (cores) | other processes (cores) |",
        "|---|---|--:|--:|--:|",
    ]
    for r in results:
        c = r.cpu_cores
        rows.append(f"| {r.server} | /{r.endpoint} | {c['server']:.2f} | {c['wrk']:.2f} | {c['other']:.2f} |")
    return "\n".join(rows)


def _machine() -> dict:
    def first(path: str, key: str, separator: str) -> str | None:
        try:
            for line in Path(path).read_text().splitlines():
                name, found, value = line.partition(separator)
                if found and name.strip() == key:
                    return value.strip().strip('"')
        except OSError:
            pass
        return None

    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()
    mem_kib = first("/proc/meminfo", "MemTotal", ":")
    return {
        "nproc": os.cpu_count(),
        "cpu": first("/proc/cpuinfo", "model name", ":"),
        "memory_gib": round(int(mem_kib.split()[0]) / 2**20, 1) if mem_kib else None,
        "os": first("/etc/os-release", "PRETTY_NAME", "="),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
        "wrk": wrk[0] if wrk else None,
    }


def _git_state() -> dict:
    # Others edit the tree while benchmarks run: say which code was measured.
    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True).stdout.rstrip("\n")

    return {"commit": git("rev-parse", "HEAD"), "changed_files": git("status", "--porcelain").splitlines()}


def _write_json(path: Path, args, machine: dict, results: list[Result]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.relpath(PYTHON, REPO), "bench/asgi_servers.py", *sys.argv[1:]]),
        "git": _git_state(),
        "duration_seconds": args.duration,
        "connections": args.connections,
        "wrk_threads": 1,
        "machine": machine,
        "results": [{**asdict(r), "disturbed": r.disturbed} for r in results],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
