"""``wharf up`` and ``wharf worker``: run a market's processes on this machine.

:class:`LocalMarket` starts the API (uvicorn) and Celery worker processes with one shared set of
``WHARF_*`` settings — by default the embedded market: SQLite, a local object store and a
broker that needs no server, all in one data directory.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from wharf.market.catalog import Catalog, Role, repo
from wharf.workers.app import QUEUES, make_celery
from wharf.workers.recovery import requeue_interrupted_checks

TOKEN_FILE = "admin-token"


class MarketNotStarted(RuntimeError):
    """The market's processes could not be started; the message says why."""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="start a whole market on this machine (embedded by default)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--data-dir", default=os.environ.get("WHARF_DATA_DIR", "wharf-data"))
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("worker", help="run one Celery worker process")
    p.add_argument("--queues", default=",".join(QUEUES), help="comma-separated: check,search,index")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--name", default=None, help="worker node name")
    p.set_defaults(func=cmd_worker)


def worker_command(queues: str, concurrency: int, name: str | None) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "wharf.workers.tasks",
        "worker",
        "-Q",
        queues,
        "--concurrency",
        str(concurrency),
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
    ]
    if "search" not in queues.split(","):
        cmd += ["--max-tasks-per-child", "200"]  # bounded memory; no index to lose
    return cmd + (["-n", name] if name else [])


def cmd_worker(args: argparse.Namespace) -> int:
    os.execv(sys.executable, worker_command(args.queues, args.concurrency, args.name))
    return 0  # not reached


def ensure_admin(catalog: Catalog, data_dir: Path, max_days: int = 0) -> str:
    """The admin token of this data directory: reused if still valid, else created (to live
    ``max_days``, the market's token lifetime; 0: forever)."""
    path = data_dir / TOKEN_FILE
    with catalog.session() as s:
        if path.exists():
            token = path.read_text().strip()
            if repo.authenticate(s, token) is not None:
                return token
        admin = repo.get_user_by_name(s, "admin") or repo.create_user(s, "admin", Role.admin)
        expires = repo.token_expiry(None, max_days)
        token, _ = repo.create_token(s, admin.id, "wharf up", expires_at=expires)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalMarket:
    """API + workers as child processes; use as a context manager.

    Every ``WHARF_*`` variable of this process applies to them (database, broker, store…);
    ``data_dir`` is where the embedded defaults and the logs live.
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        port: int | None = None,
        workers: int = 2,
        host: str = "127.0.0.1",
        api_workers: int = 1,
    ):
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.host = host
        self.n_workers = workers
        self.api_workers = api_workers
        self.env = {**os.environ, "WHARF_DATA_DIR": str(self.data_dir)}
        self.procs: list[subprocess.Popen] = []
        self.token = ""

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LocalMarket:
        from wharf.market.settings import Settings

        self.data_dir.mkdir(parents=True, exist_ok=True)
        logs = self.data_dir / "logs"
        logs.mkdir(exist_ok=True)
        settings = Settings(data_dir=self.data_dir)
        if self.n_workers:
            from wharf.market.checker.sandbox import unavailable_reason

            problem = unavailable_reason(settings)
            if problem is not None:  # the workers would refuse to start, and say so in a log
                raise MarketNotStarted(
                    f"the workers cannot check submissions here: {problem}. Submitted models "
                    "only run in the sandbox (development only: WHARF_ALLOW_UNSANDBOXED=true)"
                )
        catalog = Catalog.create(settings.catalog_url)
        self.token = ensure_admin(catalog, self.data_dir, settings.token_max_days)
        self.requeued = requeue_interrupted_checks(catalog, make_celery(settings))
        for i in range(self.n_workers):
            self._spawn(
                worker_command(",".join(QUEUES), 1, f"worker{i}@%h"), logs / f"worker{i}.log"
            )
        self._spawn(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "wharf.api.main:app",
                "--http",
                "wharf.api.server:HttpProtocol",  # uvicorn's, with a header timeout (api/server.py)
                "--host",
                self.host,
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--workers",
                str(self.api_workers),
            ],
            logs / "api.log",
        )
        self._wait_ready()
        return self

    def _spawn(self, cmd: list[str], log: Path) -> None:
        with log.open("ab") as fh:
            self.procs.append(
                subprocess.Popen(
                    cmd, env=self.env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
                )
            )

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    self.stop()
                    raise MarketNotStarted(
                        f"a market process exited early; see {self.data_dir / 'logs'}"
                    )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise MarketNotStarted(f"the market did not become ready in {timeout} s")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs.clear()

    def __enter__(self) -> LocalMarket:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def cmd_up(args: argparse.Namespace) -> int:
    market = LocalMarket(args.data_dir, port=args.port, workers=args.workers, host=args.host)
    with market:
        print(f"Wharf is up at {market.url}  (API docs: {market.url}/docs)")
        print(f"admin token: {market.token}  (also in {market.data_dir / TOKEN_FILE})")
        print(f"export WHARF_URL={market.url} WHARF_TOKEN={market.token}")
        if market.requeued:
            print(f"checks interrupted earlier were queued again: {', '.join(market.requeued)}")
        print("press Ctrl-C to stop", flush=True)
        try:
            while all(p.poll() is None for p in market.procs):
                time.sleep(0.5)
            print("a market process stopped; shutting down", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\nstopping…", file=sys.stderr)
    return 0
