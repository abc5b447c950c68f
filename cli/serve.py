"""``wharf up`` and ``wharf worker``: run a market's processes on this machine.

:class:`LocalMarket` starts the API (uvicorn) and Celery worker processes with one shared set of
``WHARF_*`` settings — by default the embedded market: SQLite, a local object store and a
broker that needs no server, all in one data directory.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wharf.market.catalog import Catalog

TOKEN_FILE = "admin-token"
#: The queues a worker takes unless told (wharf.workers.app.QUEUES: its import is not free, and
#: ``wharf --help`` builds this parser).
ALL_QUEUES = "check,search,index"


class MarketNotStarted(RuntimeError):
    """The market's processes could not be started; the message says why."""


class PortInUse(MarketNotStarted):
    """The market's port is taken by another program (or another market)."""

    def __init__(self, host: str, port: int, holder: str):
        super().__init__(f"port {port} is in use ({holder}); pick another with --port")
        self.host, self.port = host, port


#: prctl(2) option: the signal a child gets when the thread that started it ends.
PR_SET_PDEATHSIG = 1
#: Signals that stop ``wharf up`` (and ``wharf demo``) and every process they started.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into :class:`KeyboardInterrupt`, as SIGINT already is, so
    ``with LocalMarket(...)`` stops the market's processes whichever signal ends the command
    (a closed terminal sends SIGHUP; ``kill`` and service managers send SIGTERM). Main thread
    only; the previous handlers come back on exit."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when its parent dies, even by SIGKILL
    (Linux's ``PR_SET_PDEATHSIG``), so a killed ``wharf up`` leaves nothing serving. ``None``
    elsewhere. The kernel sends the signal when the *thread* that started the child ends:
    start a market from a thread that outlives it (the main thread, normally)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child only calls it
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the call: follow it now
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="start a whole market on this machine (embedded by default)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--data-dir", default=os.environ.get("WHARF_DATA_DIR", "wharf-data"))
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("worker", help="run one Celery worker process")
    p.add_argument("--queues", default=ALL_QUEUES, help=f"comma-separated: {ALL_QUEUES}")
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
    from wharf.market.catalog import Role, repo

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


def check_port(host: str, port: int) -> None:
    """Raise :class:`PortInUse` if the API could not listen on ``host:port``: the same bind
    uvicorn makes (``SO_REUSEADDR``, so a closed connection's TIME_WAIT does not count)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise MarketNotStarted(f"cannot listen on {host!r}: {exc.strerror}") from None
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(host, port, _holder(host, port)) from None
            raise MarketNotStarted(
                f"cannot listen on {host}:{port} ({exc.strerror}); pick another with --port"
            ) from None


def _holder(host: str, port: int) -> str:
    """Who has the port, in words: a Wharf market, if one answers there."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}"
    import httpx

    try:
        info = httpx.get(f"{url}/openapi.json", timeout=1).json().get("info", {})
        if info.get("title") == "Wharf":
            return f"a Wharf market already answers at {url}"
    except (httpx.HTTPError, ValueError, AttributeError):
        pass
    return f"another program listens on {host}:{port}"


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
        """Start the processes and wait until the API is ready; on any failure (or a signal
        meanwhile) stop those started and raise."""
        check_port(self.host, self.port)  # before anything is created or started
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> LocalMarket:
        from wharf.market.catalog import Catalog
        from wharf.market.settings import Settings
        from wharf.workers.app import make_celery
        from wharf.workers.recovery import Requeued, requeue

        self.data_dir.mkdir(parents=True, exist_ok=True)
        logs = self.data_dir / "logs"
        logs.mkdir(exist_ok=True)
        settings = Settings(data_dir=self.data_dir)
        if self.n_workers:
            from wharf.market.checker import unavailable_reason

            problem = unavailable_reason(settings)
            if problem is not None:  # the workers would refuse to start, and say so in a log
                raise MarketNotStarted(
                    f"the workers cannot check submissions here: {problem}. Submitted models "
                    "only run in the sandbox (development only: WHARF_ALLOW_UNSANDBOXED=true)"
                )
        catalog = Catalog.create(settings.catalog_url)
        self.token = ensure_admin(catalog, self.data_dir, settings.token_max_days)
        # The market's workers have all stopped: what they ran, or what the embedded broker
        # forgot, is sent again (a broker not answering yet leaves it to the reconciler).
        try:
            self.requeued = requeue(catalog, make_celery(settings), settings, market_stopped=True)
        except Exception as exc:
            print(f"warning: unfinished work not sent again yet: {exc}", file=sys.stderr)
            self.requeued = Requeued()
        for i in range(self.n_workers):
            self._spawn(worker_command(ALL_QUEUES, 1, f"worker{i}@%h"), logs / f"worker{i}.log")
        self._spawn(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",  # the app is made in the server's process (api/main.py)
                "wharf.api.main:create_app",
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
                    cmd,
                    env=self.env,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, stopped as one
                    preexec_fn=_die_with_parent(),
                )
            )

    def _wait_ready(self, timeout: float = 60.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    self.stop()
                    if self._api_lost_its_port():  # taken between the check and the bind
                        raise PortInUse(self.host, self.port, "another program took it")
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

    def _api_lost_its_port(self) -> bool:
        api = self.procs[-1] if self.procs else None
        if api is None or api.poll() is None:
            return False
        try:
            tail = (self.data_dir / "logs" / "api.log").read_bytes()[-4096:]
        except OSError:
            return False
        return b"address already in use" in tail.lower()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to each process group, SIGKILL to those still there after ``timeout``
        seconds, or at once if a second interrupt comes meanwhile."""
        self._signal_groups(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        try:
            for p in self.procs:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            pass
        finally:
            self._signal_groups(signal.SIGKILL)  # what is left of each group, pool processes too
            for p in self.procs:
                p.wait()
            self.procs.clear()

    def _signal_groups(self, sig: signal.Signals) -> None:
        for p in self.procs:
            try:
                os.killpg(p.pid, sig)  # p.pid leads its group (start_new_session)
            except (ProcessLookupError, PermissionError):
                pass  # the group is gone

    def __enter__(self) -> LocalMarket:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def cmd_up(args: argparse.Namespace) -> int:
    """Run the market until a signal (Ctrl-C, SIGTERM, SIGHUP) or one of its processes ends;
    every process it started is stopped either way."""
    market = LocalMarket(args.data_dir, port=args.port, workers=args.workers, host=args.host)
    with stop_on_signals():
        try:
            market.start()  # stops what it started if it fails or is interrupted
        except KeyboardInterrupt as interrupt:
            _say(f"stopped ({_signal_name(interrupt)}) before the market was up")
            return 1
        try:
            print(f"Wharf is up at {market.url}  (API docs: {market.url}/docs)")
            print(f"admin token: {market.token}  (also in {market.data_dir / TOKEN_FILE})")
            print(f"export WHARF_URL={market.url} WHARF_TOKEN={market.token}")
            for line in market.requeued.lines() if market.requeued.sent else ():
                print(f"unfinished work sent again: {line}")
            print("press Ctrl-C to stop", flush=True)
            while all(p.poll() is None for p in market.procs):
                time.sleep(0.5)
            _say("a market process stopped; shutting down")
            return 1
        except KeyboardInterrupt as interrupt:
            _say(f"stopping ({_signal_name(interrupt)})…")
            return 0
        finally:
            market.stop()


def _signal_name(interrupt: KeyboardInterrupt) -> str:
    return str(interrupt.args[0]) if interrupt.args else "SIGINT"


def _say(message: str) -> None:
    """A line on stderr, which may be a terminal that has gone (SIGHUP)."""
    with contextlib.suppress(OSError):
        print(message, file=sys.stderr, flush=True)
