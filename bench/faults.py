"""Fault drills on a real market: killed workers, a killed API, Redis restarted, the object
store down. Each drill starts a fresh market in a temporary folder, does the damage while jobs
are in flight, and counts what became of every job.

Run: ``PYTHONPATH=. python -m bench.faults [--drills a,b,...] [--out bench/results/faults.md]``
(needs redis-server and bubblewrap; ``scripts/services`` installs them). About 7 minutes.

The drills (``--drills`` takes these names; all by default):

- ``check-worker``: 2 workers, 10 submissions whose model sleeps 2–3 s in ``predict``; while
  checks run, one whole worker (its process group: the Celery parent and its pool) is killed
  with SIGKILL. Only the workers' reaper can resume the check it held (Redis would hand the
  message to another worker after its visibility timeout, tens of minutes).
- ``check-pool``: the same market and submissions; three times in a row, every pool process
  running a check is killed (SIGKILL), the Celery parents staying up.
- ``search-worker``: 3 learnwares accepted first, then 50 searches queued while the workers
  are paused (their consumers, SIGSTOP: a search takes tens of milliseconds); a whole worker is
  killed as soon as
  they run.
- ``search-pool``: the same market; three times in a row, 20 searches are queued behind paused
  workers and the pool process running the first of them is killed (SIGKILL) as soon as it
  starts it, the Celery parents staying up.
- ``api-upload``: a 150 MiB package is uploaded to ``POST /v1/learnwares`` and the API is
  killed (SIGKILL, process group) while it writes the package into the store (its ``.part``
  file is there); the market is started again on the same data folder, and the same package
  submitted again.
- ``redis-aof``: Redis with AOF (``--appendonly yes``, as ``deploy/`` runs it); 10 checks and
  10 searches queued behind two busy workers, then Redis is killed with SIGKILL and started on
  the same folder and port.
- ``redis-nopersist``: the same with persistence off (``--appendonly no --save ""``): Redis
  comes back empty, and the workers' reconciler has to find the jobs whose message is gone.
- ``store-outage``: ``WHARF_STORE=s3`` against a moto server behind a TCP relay of the
  drill's; the relay closes its port and resets its connections for 30 s while checks run and
  clients keep submitting and searching, then listens on the same port again. moto itself keeps
  running (it holds its objects in memory), so the store comes back with its data.

Each job's outcome is read from the catalog: *finished* (succeeded), *failed with a reason*
(failed, with its error), *lost* (still queued or running 3 minutes after the fault ended).
*Time to recovery*: from the fault until every job submitted before or during it has ended.
*Disk left behind*, counted after the market has stopped: the scratch folders of worker
processes that are gone and any ``wharf-check-*`` folder in the market's temporary folder
(each drill gives the market a ``TMPDIR`` of its own; the workers' scratch folders are under
its ``wharf-scratch/``), and ``.part`` files in the local store. The workers sweep the folders
of dead processes as they go, and the API the ``.part`` files of a dead writer when it starts;
the notes say how much they swept. Processes of a drill still alive after it are counted, then
killed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from wharf.cli.serve import LocalMarket, free_port
from wharf.client import WharfClient
from wharf.examples.learnwares import Example, build_examples
from wharf.market.catalog import Catalog, repo
from wharf.market.settings import Settings
from wharf.specification import RKME
from wharf.specification.files import dumps_spec
from wharf.workers.app import QUEUES

from bench._common import command, load_average, machine, source_digest, table
from bench.bulk_import import _wait_for_workers

RESULTS = Path(__file__).resolve().parent / "results"
#: A job still queued or running this long after its fault ended is lost.
LOST_AFTER_S = 180.0
STORE_OUTAGE_S = 30.0
TERMINAL = ("succeeded", "failed")
S3_KEYS = {"access_key_id": "wharf-test", "secret_access_key": "wharf-test-secret"}
UTC = datetime.UTC


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(UTC)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- what a drill reports ---------------------------------------------------------------------


@dataclass
class Outcome:
    name: str
    submitted: int = 0
    finished: int = 0
    failed: list[str] = field(default_factory=list)  # the reasons
    lost: int = 0
    stray_check_dirs: int = 0
    stray_bytes: int = 0
    part_files: int | None = 0
    stray_processes: int = 0
    recovery_s: float | None = None
    recovery_note: str = ""
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    def row(self, title: str) -> list[str]:
        if self.error is not None:
            return [title, "—", "—", "—", "—", "—", f"drill failed: {self.error}"]
        reasons: dict[str, int] = {}
        for r in self.failed:
            reasons[_short(r)] = reasons.get(_short(r), 0) + 1
        failed = str(len(self.failed))
        if reasons:
            failed += " (" + "; ".join(f"{n}× {r}" for r, n in reasons.items()) + ")"
        disk = f"{self.stray_check_dirs}"
        if self.stray_bytes:
            disk += f" ({self.stray_bytes / 1024:.0f} KiB)"
        disk += f" / {self.part_files}" if self.part_files is not None else " / — (S3)"
        if self.recovery_s is None:
            recovery = self.recovery_note or "not recovered"
        else:
            recovery = f"{self.recovery_s:.1f} s" + (
                f" ({self.recovery_note})" if self.recovery_note else ""
            )
        return [
            title,
            str(self.submitted),
            str(self.finished),
            failed,
            str(self.lost),
            disk,
            recovery,
        ]


def _short(reason: str) -> str:
    first = reason.strip().splitlines()[0] if reason.strip() else "(no reason)"
    first = re.sub(r"(cannot reach S3) at \S+: .*", r"\1", first)
    return first if len(first) <= 60 else first[:57] + "…"


# -- services the drills start and stop --------------------------------------------------------


def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


class Redis:
    """A redis-server of the drill's own, so that it can be killed and started again on the
    same folder and port."""

    def __init__(self, folder: Path, *, aof: bool):
        self.dir = folder
        self.dir.mkdir(parents=True, exist_ok=True)
        self.aof = aof
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (scripts/services installs it)")
        persistence = ["--appendonly", "yes"] if self.aof else ["--appendonly", "no", "--save", ""]
        where = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        with (self.dir / "redis.log").open("ab") as fh:
            self.proc = subprocess.Popen(
                [binary, *where, *persistence], stdout=fh, stderr=subprocess.STDOUT
            )
        _wait_port(self.port)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def queued(self) -> dict[str, int]:
        """Messages waiting in each queue, and those delivered but not acknowledged."""
        import redis

        r = redis.Redis.from_url(self.url, socket_timeout=5)
        out = {q: int(r.llen(q)) for q in QUEUES}
        out["unacked"] = int(r.hlen("unacked"))
        return out


class StoreEndpoint:
    """A moto S3 server behind a TCP relay on a port of its own. ``down()`` closes the port and
    cuts every open connection, as a store that stopped would; ``up()`` listens on the same
    port again. moto keeps its objects in memory, so it stays running behind the relay: the
    store comes back with its data, as a restarted MinIO does with its disk."""

    def __init__(self, folder: Path):
        self.port = free_port()
        self.moto_port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        binary = Path(sys.executable).with_name("moto_server")
        with (folder / "moto.log").open("ab") as fh:
            self.moto = subprocess.Popen(
                [str(binary), "-H", "127.0.0.1", "-p", str(self.moto_port)],
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_port(self.moto_port, timeout=30)
        except Exception:
            self.moto.kill()
            self.moto.wait()
            raise
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: asyncio.AbstractServer | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.refused_while_down = 0
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self, coro, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.moto_port)
        except OSError:
            writer.transport.abort()
            return
        self.writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self.writers -= {writer, up_writer}

    async def _up(self) -> None:
        self.server = await asyncio.start_server(
            self._relay, "127.0.0.1", self.port, reuse_address=True
        )

    async def _down(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for w in list(self.writers):
            w.transport.abort()  # a reset, as from a server that went away
        self.writers.clear()

    def up(self) -> None:
        self._run(self._up())

    def down(self) -> None:
        self._run(self._down())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.down()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if self.moto.poll() is None:
            self.moto.kill()
            self.moto.wait()


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` set in os.environ (which LocalMarket hands to its processes), then undone."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# -- packages ----------------------------------------------------------------------------------


def slow_package(out_dir: Path, ex: Example, seconds: float, tag: str, pad_bytes: int = 0) -> Path:
    """The example's package with a model whose ``predict`` sleeps first, made distinct by a
    tag file (the market refuses the same content twice) and optionally padded."""
    out = out_dir / f"{ex.package.stem}-{tag}.zip"
    with zipfile.ZipFile(ex.package) as src, zipfile.ZipFile(out, "w") as dst:
        first = src.namelist()[0]
        top = first.split("/")[0] + "/" if "/" in first else ""  # one top folder, or none
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("__init__.py") and seconds > 0:
                sleep = f"        import time\n        time.sleep({seconds})\n"
                data = (
                    data.decode()
                    .replace("    def predict(self, X):\n", "    def predict(self, X):\n" + sleep)
                    .encode()
                )
            dst.writestr(info, data)
        dst.writestr(f"{top}DRILL.txt", tag)
        if pad_bytes:
            dst.writestr(f"{top}padding.bin", os.urandom(pad_bytes))
    return out


# -- reading the market ------------------------------------------------------------------------


@dataclass
class JobView:
    id: str
    kind: str
    state: str
    error: str | None
    worker: str | None
    worker_losses: int
    attempts: int
    started_at: datetime.datetime | None
    finished_at: datetime.datetime | None
    learnware_status: str | None
    learnware_id: int | None
    lost_messages: int = 0


def _aware(t: datetime.datetime | None) -> datetime.datetime | None:
    if t is not None and t.tzinfo is None:
        return t.replace(tzinfo=UTC)
    return t


def jobs(catalog: Catalog, ids: list[str]) -> list[JobView]:
    out = []
    with catalog.session(read_only=True) as s:
        for job_id in ids:
            j = repo.get_job(s, job_id)
            if j is None:
                continue
            lw = repo.get_learnware(s, j.learnware_id) if j.learnware_id is not None else None
            out.append(
                JobView(
                    j.id,
                    str(j.kind),
                    str(j.state),
                    j.error,
                    j.worker,
                    j.worker_losses or 0,
                    j.attempts or 0,
                    _aware(j.started_at),
                    _aware(j.finished_at),
                    str(lw.status) if lw is not None else None,
                    j.learnware_id,
                    int((j.request or {}).get(repo.LOST_MESSAGES, 0)),
                )
            )
    return out


def follow(catalog: Catalog, ids: list[str], lost_at: float, poll: float = 0.5) -> list[JobView]:
    """Poll until every job has ended, or until ``lost_at`` (monotonic); the last views."""
    while True:
        views = jobs(catalog, ids)
        if all(v.state in TERMINAL for v in views) or time.monotonic() >= lost_at:
            return views
        time.sleep(poll)


def tally(
    out: Outcome,
    views: list[JobView],
    fault_at: datetime.datetime,
    data_dir: Path,
    counted: set[str] | None = None,
) -> None:
    """Counts into ``out``; recovery time over the jobs in ``counted`` (default: all). Each
    lost job that had started is explained by the last market log lines naming it."""
    out.submitted += len(views)
    out.finished += sum(v.state == "succeeded" for v in views)
    out.failed += [v.error or "(no reason given)" for v in views if v.state == "failed"]
    lost = [v for v in views if v.state not in TERMINAL]
    out.lost += len(lost)
    if lost:
        described = ", ".join(
            f"{v.id[:8]} ({v.kind}, {v.state}, {v.attempts} attempt(s)"
            + (f", learnware {v.learnware_status}" if v.kind == "check" else "")
            + ")"
            for v in lost[:4]
        )
        more = f" and {len(lost) - 4} more" if len(lost) > 4 else ""
        out.notes.append(f"lost: {described}{more}")
    for v in lost:
        if v.attempts:
            lines = worker_log_lines(data_dir, (v.id,), 10_000)
            lines = sorted(lines, key=lambda x: x.split(": ", 1)[1][:24].lstrip("["))[-4:]
            out.notes.append(
                f"the last log lines on job {v.id[:8]}: "
                + " | ".join(f"`{_trim_log(line)}`" for line in lines)
            )
    relevant = [v for v in views if counted is None or v.id in counted]
    ends = [v.finished_at for v in relevant if v.finished_at is not None]
    if any(v.state not in TERMINAL for v in relevant):
        out.recovery_s = None
        out.recovery_note = f"{sum(v.state not in TERMINAL for v in relevant)} never ended"
        if ends:
            out.recovery_note += (
                f"; the others had by {(max(ends) - fault_at).total_seconds():.1f} s"
            )
        return
    if ends:
        out.recovery_s = max(0.0, (max(ends) - fault_at).total_seconds())


def _trim_log(line: str, keep: int = 150) -> str:
    """A log line without its date and Celery's task-id noise, at most ``keep`` characters."""
    name, _, text = line.partition(": ")
    text = re.sub(r"^\[?\d{4}-\d\d-\d\d (\d\d:\d\d:\d\d,\d+)", r"\1", text)
    text = re.sub(r"(cannot reach S3) at \S+: .*", r"\1 …", text)
    text = text.replace("`", "'")
    return f"{name}: {text[:keep]}" + ("…" if len(text) > keep else "")


def outcomes_text(views: list[JobView]) -> str:
    """``accepted 9, rejected 1`` / ``succeeded 50``, and how many lost a worker."""
    counts: dict[str, int] = {}
    for v in views:
        key = v.learnware_status if v.kind == "check" and v.state == "succeeded" else v.state
        key = f"{v.kind} {key}"
        counts[key] = counts.get(key, 0) + 1
    losses = sum(v.worker_losses for v in views)
    text = ", ".join(f"{k}: {n}" for k, n in sorted(counts.items()))
    return f"{text}; worker losses recorded on the jobs: {losses}"


def session_of(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[3])


def holder_proc(market: LocalMarket, worker: str) -> subprocess.Popen | None:
    """The worker process (a LocalMarket child, a session of its own) whose pool runs
    ``worker`` ("host:pid")."""
    pid = int(worker.rpartition(":")[2])
    sid = session_of(pid)
    return next((p for p in market.procs if p.pid in (pid, sid)), None)


def running(catalog: Catalog, ids: list[str], kind: str, min_age_s: float = 0.0) -> list[JobView]:
    t = now_utc()
    return [
        v
        for v in jobs(catalog, ids)
        if v.kind == kind
        and v.state == "running"
        and v.worker
        and v.started_at is not None
        and (t - v.started_at).total_seconds() >= min_age_s
    ]


def wait_for(pred: Callable[[], object], timeout: float, what: str, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(poll)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def disk_left(root: Path, data_dir: Path, out: Outcome) -> None:
    """What dead processes left on disk, after the market stopped (see the module)."""
    tmp = root / "tmp"
    stray = scratch_left(tmp)
    out.stray_check_dirs = len(stray)
    out.stray_bytes = sum(p.stat().st_size for d in stray for p in d.rglob("*") if p.is_file())
    if out.part_files is not None:  # None: the drill's store is S3
        objects = Settings(data_dir=data_dir).objects_dir
        out.part_files = len(list(objects.rglob("*.part"))) if objects.exists() else 0
    swept = worker_log_lines(data_dir, ("removed the scratch folders of",), 10_000)
    folders = sum(int(re.search(r"of (\d+) worker", line)[1]) for line in swept)
    mib = sum(float(re.search(r"\(([\d.]+) MiB\)", line)[1]) for line in swept)
    if folders:
        out.notes.append(
            f"the workers swept the scratch folders of {folders} dead process(es) as they went "
            f"({mib:.1f} MiB in all)"
        )


def scratch_left(tmp: Path) -> list[Path]:
    """Scratch folders of worker processes that are gone, and ``wharf-check-*`` folders
    outside any scratch folder, in the market's temporary folder ``tmp``."""
    if not tmp.exists():
        return []
    left = [d for d in tmp.glob("wharf-check-*") if d.is_dir()]
    for folder in tmp.glob("wharf-scratch/*/*"):
        pid = folder.name.partition("-")[0]
        if not (pid.isdigit() and Path(f"/proc/{pid}").exists()):
            left.append(folder)
    return left


def stray_processes(root: Path) -> list[int]:
    """Processes of this drill (its folder in their command line or environment) still alive."""
    needle = str(root).encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            environ = Path(f"/proc/{name}/environ").read_bytes()
        except OSError:
            continue
        if needle in cmdline or needle in environ:
            found.append(int(name))
    return found


def kill_strays(root: Path, out: Outcome) -> None:
    time.sleep(1.0)
    pids = stray_processes(root)
    out.stray_processes = len(pids)
    if pids:
        names = []
        for pid in pids:
            with contextlib.suppress(OSError):
                names.append(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode())
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        out.notes.append(
            f"{len(pids)} process(es) of the drill were still alive after the market stopped "
            f"({', '.join(sorted(set(names)))}); killed"
        )


def worker_log_lines(data_dir: Path, needles: tuple[str, ...], limit: int = 6) -> list[str]:
    """Lines of the market's logs that hold one of ``needles``."""
    lines = []
    for path in sorted((data_dir / "logs").glob("*.log")):
        with contextlib.suppress(OSError):
            for line in path.read_text(errors="replace").splitlines():
                if any(n in line for n in needles):
                    lines.append(f"{path.name}: {line.strip()}")
    return lines[:limit]


def _log_time(line: str) -> datetime.datetime | None:
    """The time at the start of a market log line (local time, as the logs write it)."""
    try:
        stamp = line.lstrip("[")[:23]
        return datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").astimezone(UTC)
    except ValueError:
        return None


def loss_notes(views: list[JobView], fault_at: datetime.datetime, data_dir: Path) -> list[str]:
    """For each job whose worker was lost: when it was sent again (the reaper's log line),
    started again and ended, counted from the fault."""
    notes = []
    lines = worker_log_lines(data_dir, ("is gone; sent again", "was lost; running it again"), 1000)

    def since(t: datetime.datetime | None) -> str:
        return f"{(t - fault_at).total_seconds():.1f} s" if t is not None else "never"

    for v in views:
        if v.worker_losses == 0:
            continue
        sent = [
            t
            for line in lines
            if v.id in line and (t := _log_time(line.split(": ", 1)[1])) and t >= fault_at
        ]
        notes.append(
            f"job {v.id[:8]} ({v.kind}, {v.worker_losses} worker loss(es), {v.attempts} "
            f"attempts): sent again by a reaper after {since(min(sent, default=None))}, "
            f"last started after {since(v.started_at)}, {v.state} after {since(v.finished_at)}"
        )
    return notes


def base_market(c: WharfClient, examples: list[Example], names: tuple[str, ...]) -> None:
    """Submit the examples called ``names`` and wait until each is accepted."""
    subs = [c.submit(ex.package, ex.semantic) for ex in examples if ex.name in names]
    for sub in subs:
        c.wait(sub["job_id"], timeout=240)
        status = c.learnware(sub["learnware_id"])["status"]
        if status != "accepted":
            raise RuntimeError(f"a base learnware was {status}: {c.log(sub['learnware_id'])}")


# -- the drills --------------------------------------------------------------------------------


@dataclass
class Ctx:
    root: Path
    examples: list[Example]
    pkgs: Path
    digits_spec: bytes  # RKME JSON of held-out digits (bytes: the SDK takes a str for a path)

    @property
    def data_dir(self) -> Path:
        return self.root / "m"

    def env(self, broker: str | None) -> dict[str, str]:
        (self.root / "tmp").mkdir(exist_ok=True)
        env = {"TMPDIR": str(self.root / "tmp"), "WHARF_RATE_LIMIT_ENABLED": "false"}
        if broker:
            env["WHARF_BROKER_URL"] = broker
        return env

    def catalog(self) -> Catalog:
        return Catalog(Settings(data_dir=self.data_dir).catalog_url)


def submit_slow(c: WharfClient, ctx: Ctx, n: int, tag: str, secs=(2.0, 3.0)) -> list[str]:
    ex = next(e for e in ctx.examples if e.name == "digits 0-4")
    ids = []
    for i in range(n):
        seconds = secs[0] + (secs[1] - secs[0]) * i / max(1, n - 1)
        pkg = slow_package(ctx.pkgs, ex, round(seconds, 2), f"{tag}{i}")
        ids.append(c.submit(pkg, ex.semantic)["job_id"])
    return ids


def drill_check_worker(ctx: Ctx, out: Outcome) -> None:
    redis = Redis(ctx.root / "redis", aof=True)
    redis.start()
    try:
        with environment(ctx.env(redis.url)):
            with LocalMarket(ctx.data_dir, workers=2) as m, WharfClient(m.url, m.token) as c:
                _wait_for_workers(m, 2)
                cat = ctx.catalog()
                t_sub = time.monotonic()
                ids = submit_slow(c, ctx, 10, "cw")
                victim = wait_for(lambda: running(cat, ids, "check", 0.5), 90, "a running check")[0]
                proc = holder_proc(m, victim.worker)
                assert proc is not None, victim.worker
                fault_at = now_utc()
                t_kill = time.monotonic()
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                log(f"killed worker pid {proc.pid} (group) holding job {victim.id}")
                views = follow(cat, ids, time.monotonic() + LOST_AFTER_S)
                tally(out, views, fault_at, m.data_dir)
                out.notes += loss_notes(views, fault_at, m.data_dir)
                out.notes.append(outcomes_text(views))
                out.notes.append(
                    f"the kill came {t_kill - t_sub:.1f} s after the first submission; the rest "
                    f"ran on the one remaining worker; Redis at the end: {redis.queued()}"
                )
    finally:
        redis.kill()
    disk_left(ctx.root, ctx.data_dir, out)


def drill_check_pool(ctx: Ctx, out: Outcome) -> None:
    redis = Redis(ctx.root / "redis", aof=True)
    redis.start()
    try:
        with environment(ctx.env(redis.url)):
            with LocalMarket(ctx.data_dir, workers=2) as m, WharfClient(m.url, m.token) as c:
                _wait_for_workers(m, 2)
                cat = ctx.catalog()
                ids = submit_slow(c, ctx, 10, "cp")
                killed: set[str] = set()
                first_fault: datetime.datetime | None = None
                for round_ in range(3):
                    victims = wait_for(
                        lambda: [
                            v for v in running(cat, ids, "check", 0.5) if v.worker not in killed
                        ],
                        120,
                        "a running check in a pool process not yet killed",
                    )
                    for v in victims:
                        first_fault = first_fault or now_utc()
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(v.worker.rpartition(":")[2]), signal.SIGKILL)
                        killed.add(v.worker)
                        log(f"round {round_ + 1}: killed pool process {v.worker} ({v.id[:8]})")
                    time.sleep(1.0)
                views = follow(cat, ids, time.monotonic() + LOST_AFTER_S)
                tally_rounds(out, views, len(killed), first_fault, m.data_dir)
    finally:
        redis.kill()
    disk_left(ctx.root, ctx.data_dir, out)


def tally_rounds(
    out: Outcome, views: list[JobView], killed: int, first_fault, data_dir: Path
) -> None:
    """:func:`tally` for the drills that kill pool processes in rounds."""
    tally(out, views, first_fault, data_dir)
    if out.recovery_s is not None:
        out.recovery_note = "from the first kill"
    out.notes.append(f"{killed} pool processes killed in 3 rounds; " + outcomes_text(views))
    out.notes += loss_notes(views, first_fault, data_dir)


@contextlib.contextmanager
def searchable_market(ctx: Ctx) -> Iterator[tuple[LocalMarket, WharfClient]]:
    """Redis (AOF), two workers, three digits learnwares accepted and both workers' index
    loaded; the market stopped and Redis killed afterwards."""
    redis = Redis(ctx.root / "redis", aof=True)
    redis.start()
    try:
        with environment(ctx.env(redis.url)):
            with LocalMarket(ctx.data_dir, workers=2) as m, WharfClient(m.url, m.token) as c:
                _wait_for_workers(m, 2)
                base_market(c, ctx.examples, ("digits 0-4", "digits 5-9", "digits even"))
                for _ in range(4):  # both workers load their index before the drill
                    c.wait(c.start_search(spec=ctx.digits_spec, top=3), timeout=120)
                yield m, c
    finally:
        redis.kill()


def drill_search_worker(ctx: Ctx, out: Outcome) -> None:
    with searchable_market(ctx) as (m, c):
        cat = ctx.catalog()
        # A search takes tens of milliseconds: the workers' consumers are paused while
        # the 50 are queued, so that the kill finds them queued and running.
        for p in m.procs[:2]:
            pause_consumer(p.pid)
        try:
            ids = [c.start_search(spec=ctx.digits_spec, top=3) for _ in range(50)]
        finally:
            for p in m.procs[:2]:
                os.kill(p.pid, signal.SIGCONT)
        # the queue is first in, first out: look at its head only, to kill quickly
        victim = wait_for(lambda: running(cat, ids[:8], "search"), 60, "a running search", 0.01)[0]
        proc = holder_proc(m, victim.worker)
        assert proc is not None, victim.worker
        fault_at = now_utc()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        done_before = sum(v.state in TERMINAL for v in jobs(cat, ids))
        log(f"killed worker pid {proc.pid} (group) holding search {victim.id}")
        views = follow(cat, ids, time.monotonic() + LOST_AFTER_S)
        tally(out, views, fault_at, m.data_dir)
        out.notes.append(f"{done_before} of the 50 searches had ended at the kill")
        out.notes += loss_notes(views, fault_at, m.data_dir)
        last_other = max(
            (x.finished_at for x in views if x.worker_losses == 0 and x.finished_at),
            default=None,
        )
        if last_other is not None:
            out.notes.append(
                "the searches the kill did not touch had all ended "
                f"{(last_other - fault_at).total_seconds():.1f} s after it"
            )
        out.notes.append(outcomes_text(views))
    disk_left(ctx.root, ctx.data_dir, out)


def pause_consumer(pid: int) -> None:
    """Pause a worker's Celery parent process (SIGSTOP; SIGCONT resumes it): it takes no
    message meanwhile. Its pool processes run on, so none is frozen inside a catalog
    transaction, which would hold up the API's writes."""
    os.kill(pid, signal.SIGSTOP)


def drill_search_pool(ctx: Ctx, out: Outcome) -> None:
    with searchable_market(ctx) as (m, c):
        cat = ctx.catalog()
        ids: list[str] = []
        killed: list[str] = []
        first_fault: datetime.datetime | None = None
        for round_ in range(3):
            for p in m.procs[:2]:
                pause_consumer(p.pid)
            try:
                batch = [c.start_search(spec=ctx.digits_spec, top=3) for _ in range(20)]
            finally:
                for p in m.procs[:2]:
                    os.kill(p.pid, signal.SIGCONT)
            ids += batch
            victim = wait_for(
                lambda b=batch: running(cat, b[:6], "search"), 60, "a running search", 0.01
            )[0]
            first_fault = first_fault or now_utc()
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(victim.worker.rpartition(":")[2]), signal.SIGKILL)
            killed.append(victim.worker)
            log(f"round {round_ + 1}: killed search pool process {victim.worker}")
            time.sleep(1.0)
        views = follow(cat, ids, time.monotonic() + LOST_AFTER_S)
        tally_rounds(out, views, len(killed), first_fault, m.data_dir)
    disk_left(ctx.root, ctx.data_dir, out)


def drill_api_upload(ctx: Ctx, out: Outcome) -> None:
    ex = next(e for e in ctx.examples if e.name == "digits 5-9")
    objects = Settings(data_dir=ctx.data_dir).objects_dir
    redis = Redis(ctx.root / "redis", aof=True)
    redis.start()
    caught: Path | None = None
    try:
        env = {**ctx.env(redis.url), "WHARF_MAX_UPLOAD_BYTES": str(400 << 20)}
        with environment(env):
            for attempt in range(3):  # the write lasts a fraction of a second: catch it
                pkg = slow_package(ctx.pkgs, ex, 0.0, f"upload{attempt}", pad_bytes=150 << 20)
                with LocalMarket(ctx.data_dir, workers=1) as m:
                    api = m.procs[-1]
                    sender = threading.Thread(
                        target=_upload, args=(m.url, m.token, pkg, ex.semantic), daemon=True
                    )
                    sender.start()
                    while sender.is_alive() and caught is None:
                        caught = next(objects.rglob("*.part"), None) if objects.exists() else None
                    if caught is not None:
                        fault_at = now_utc()
                        t_fault = time.monotonic()
                        os.killpg(api.pid, signal.SIGKILL)
                        api.wait()
                        log(f"killed the API while it wrote {caught.name} into the store")
                    sender.join(timeout=120)
                if caught is not None:
                    break
            if caught is None:
                raise RuntimeError("the store write was never caught in progress")
            size = caught.stat().st_size if caught.exists() else 0
            with ctx.catalog().session(read_only=True) as s:
                rows = sum(repo.learnware_counts(s).values()), sum(repo.job_counts(s).values())
            out.notes.append(
                f"at the kill: a {size / 2**20:.0f} MiB `.part` file in the store (of a 150 MiB "
                f"package), {rows[0]} learnware and {rows[1]} job row(s) in the catalog"
            )
            with LocalMarket(ctx.data_dir, workers=1) as m, WharfClient(m.url, m.token) as c:
                ready = time.monotonic() - t_fault
                swept = wait_for(lambda: not caught.exists(), 30, "the .part file swept")
                swept_s = time.monotonic() - t_fault
                sub = c.submit(pkg, ex.semantic)
                job = c.wait(sub["job_id"], timeout=LOST_AFTER_S)
                status = c.learnware(sub["learnware_id"])["status"]
                views = jobs(ctx.catalog(), [sub["job_id"]])
                tally(out, views, fault_at, m.data_dir)
                if out.recovery_s is not None:
                    out.recovery_note = "kill → market restarted → package resubmitted, accepted"
                out.notes.append(
                    f"market ready again {ready:.1f} s after the kill (restarted at once by the "
                    f"drill); the `.part` file was gone {swept_s:.1f} s after the kill "
                    f"({'swept by the API at its start' if swept else 'not swept'}); the "
                    f"resubmission's job {job['state']}, learnware {status}"
                )
                if status != "accepted":
                    out.notes.append(f"check log: {c.log(sub['learnware_id'])[-300:]}")
    finally:
        redis.kill()
    disk_left(ctx.root, ctx.data_dir, out)


def _upload(url: str, token: str, package: Path, semantic: dict) -> None:
    with contextlib.suppress(httpx.HTTPError), open(package, "rb") as fh:
        httpx.post(
            f"{url}/v1/learnwares",
            headers={"Authorization": f"Bearer {token}"},
            files={"package": ("p.zip", fh, "application/zip")},
            data={"semantic_spec": json.dumps(semantic)},
            timeout=120,
        )


def drill_redis(ctx: Ctx, out: Outcome, *, aof: bool) -> None:
    redis = Redis(ctx.root / "redis", aof=aof)
    redis.start()
    try:
        with environment(ctx.env(redis.url)):
            with LocalMarket(ctx.data_dir, workers=2) as m, WharfClient(m.url, m.token) as c:
                _wait_for_workers(m, 2)
                base_market(c, ctx.examples, ("digits 0-4", "digits 5-9"))
                cat = ctx.catalog()
                ids = submit_slow(c, ctx, 10, "rd", secs=(2.0, 2.0))
                ids += [c.start_search(spec=ctx.digits_spec, top=3) for _ in range(10)]
                wait_for(lambda: len(running(cat, ids, "check")) >= 2, 60, "two busy workers")
                time.sleep(1.5)  # AOF: fsync every second
                before = redis.queued()
                states = jobs(cat, ids)
                fault_at = now_utc()
                redis.kill()
                log(f"killed redis (AOF {'on' if aof else 'off'}); queues were {before}")
                time.sleep(1.0)
                redis.start()
                t_back = time.monotonic()
                after = redis.queued()
                # The API after the restart: the first enqueues.
                probes: list[tuple[int, float]] = []
                probe_ids: list[str] = []
                while time.monotonic() - t_back < 30:
                    t0 = time.monotonic()
                    r = c.http.post(
                        "/v1/searches",
                        files={"stat_spec": ("s.json", ctx.digits_spec, "application/json")},
                    )
                    probes.append((r.status_code, time.monotonic() - t0))
                    if r.status_code == 202:
                        probe_ids.append(r.json()["job_id"])
                        break
                    time.sleep(0.5)
                views = follow(cat, ids, time.monotonic() + LOST_AFTER_S)
                tally(out, views, fault_at, m.data_dir)
                pviews = follow(cat, probe_ids, time.monotonic() + 30)
                n_q = sum(s.state == "queued" for s in states)
                n_r = sum(s.state == "running" for s in states)
                out.notes.append(
                    f"at the kill: {n_q} job(s) queued and {n_r} running in the catalog; Redis "
                    f"held {before} (queue lengths; unacked = delivered, not acknowledged); "
                    f"after the restart: {after}"
                )
                out.notes.append(outcomes_text(views))
                out.notes.append(
                    "first enqueues after the restart: "
                    + ", ".join(f"{code} in {t * 1000:.0f} ms" for code, t in probes)
                    + (f"; that search {pviews[0].state}" if pviews else "")
                )
                resent = worker_log_lines(m.data_dir, ("its broker message is gone",), 10_000)
                if resent or not aof:
                    times = [
                        (t - fault_at).total_seconds()
                        for line in resent
                        if (t := _log_time(line.split(": ", 1)[1]))
                    ]
                    out.notes.append(
                        f"the workers' reconciler sent again {len(resent)} job(s) whose message "
                        "Redis had lost"
                        + (f", {min(times):.1f}–{max(times):.1f} s after the kill" if times else "")
                        + f"; lost messages recorded on the jobs: "
                        f"{sum(v.lost_messages for v in views)}"
                    )
                back = now_utc() - datetime.timedelta(seconds=time.monotonic() - t_back)
                reconnected = [
                    (t - back).total_seconds()
                    for line in worker_log_lines(m.data_dir, ("Connected to",), 1000)
                    if (t := _log_time(line.split(": ", 1)[1])) and t >= fault_at
                ]
                out.notes.append(
                    "the workers' consumers reconnected "
                    + ", ".join(f"{x:.1f} s" for x in sorted(reconnected))
                    + " after Redis was back; log: "
                    + " | ".join(
                        f"`{_trim_log(line, 110)}`"
                        for line in worker_log_lines(
                            m.data_dir, ("Connection to broker lost", "Restoring"), 2
                        )
                    )
                )
    finally:
        redis.kill()
    disk_left(ctx.root, ctx.data_dir, out)


def drill_store_outage(ctx: Ctx, out: Outcome) -> None:
    import boto3

    out.part_files = None  # no local store here
    stop = threading.Event()
    answers: list[tuple[str, float, float, int]] = []  # kind, sent at, took, status
    client_jobs: list[tuple[float, str]] = []
    store = StoreEndpoint(ctx.root / "s3")
    redis = Redis(ctx.root / "redis", aof=True)
    try:
        redis.start()
        bucket = "wharf-faults"
        boto3.client(
            "s3",
            endpoint_url=store.url,
            region_name="us-east-1",
            aws_access_key_id=S3_KEYS["access_key_id"],
            aws_secret_access_key=S3_KEYS["secret_access_key"],
        ).create_bucket(Bucket=bucket)
        s3_env = {
            "WHARF_STORE": "s3",
            "WHARF_S3_BUCKET": bucket,
            "WHARF_S3_ENDPOINT_URL": store.url,
            "WHARF_S3_ACCESS_KEY_ID": S3_KEYS["access_key_id"],
            "WHARF_S3_SECRET_ACCESS_KEY": S3_KEYS["secret_access_key"],
        }
        with environment({**ctx.env(redis.url), **s3_env}):
            with LocalMarket(ctx.data_dir, workers=2) as m, WharfClient(m.url, m.token) as c:
                _wait_for_workers(m, 2)
                base_market(c, ctx.examples, ("digits 0-4",))
                cat = ctx.catalog()
                ids = submit_slow(c, ctx, 8, "so", secs=(2.0, 2.0))
                ex = next(e for e in ctx.examples if e.name == "digits 5-9")
                extra = [slow_package(ctx.pkgs, ex, 0.0, f"out{i}") for i in range(40)]

                def client_loop(kind: str) -> None:
                    with WharfClient(m.url, m.token, timeout=120) as cc:
                        i = 0
                        while not stop.is_set():
                            t0 = time.monotonic()
                            try:
                                if kind == "submit":
                                    if i >= len(extra):
                                        return
                                    with open(extra[i], "rb") as fh:
                                        r = cc.http.post(
                                            "/v1/learnwares",
                                            files={"package": ("p.zip", fh, "application/zip")},
                                            data={"semantic_spec": json.dumps(ex.semantic)},
                                        )
                                    i += 1
                                else:
                                    r = cc.http.post(
                                        "/v1/searches",
                                        files={
                                            "stat_spec": (
                                                "s.json",
                                                ctx.digits_spec,
                                                "application/json",
                                            )
                                        },
                                    )
                                status = r.status_code
                                if status == 202:
                                    client_jobs.append((t0, r.json()["job_id"]))
                            except httpx.HTTPError:
                                status = 0
                            answers.append((kind, t0, time.monotonic() - t0, status))
                            time.sleep(1.0)

                wait_for(lambda: len(running(cat, ids, "check")) >= 1, 60, "a running check")
                threads = [
                    threading.Thread(target=client_loop, args=(k,), daemon=True)
                    for k in ("submit", "search")
                ]
                for t in threads:
                    t.start()
                time.sleep(3.0)
                fault_at = now_utc()
                t_down = time.monotonic()
                store.down()
                log("object store endpoint down")
                time.sleep(STORE_OUTAGE_S)
                store.up()
                t_up = time.monotonic()
                log("object store endpoint up")
                # clients go on until each kind has had a 202 after the outage (or 60 s)
                wait_for(
                    lambda: (
                        {k for k, t0, _, s in answers if t0 >= t_up and s == 202}
                        >= {"submit", "search"}
                    ),
                    60,
                    "a 202 of each kind after the outage",
                    0.2,
                )
                stop.set()
                for t in threads:
                    t.join(timeout=150)
                during = {j for t0, j in client_jobs if t0 < t_up}
                counted = set(ids) | during
                all_ids = ids + [j for _, j in client_jobs]
                views = follow(cat, all_ids, time.monotonic() + LOST_AFTER_S)
                tally(out, views, fault_at, m.data_dir, counted)
                if out.recovery_s is not None:
                    out.recovery_note = "from the outage's start; 30 s of it down"

                def share(pred) -> str:
                    sel = [a for a in answers if pred(a)]
                    codes: dict[int, int] = {}
                    for a in sel:
                        codes[a[3]] = codes.get(a[3], 0) + 1
                    worst = max((a[2] for a in sel), default=0.0)
                    return (
                        ", ".join(
                            f"{n}× {code or 'no answer'}" for code, n in sorted(codes.items())
                        )
                        + f" (slowest {worst:.1f} s)"
                    )

                out.notes.append(
                    "answers to requests sent during the outage: submissions "
                    + share(lambda a: a[0] == "submit" and t_down <= a[1] < t_up)
                    + "; searches "
                    + share(lambda a: a[0] == "search" and t_down <= a[1] < t_up)
                )
                first_ok = {
                    k: min(
                        (
                            a[1] + a[2] - t_up
                            for a in answers
                            if a[0] == k and a[1] >= t_up and a[3] == 202
                        ),
                        default=None,
                    )
                    for k in ("submit", "search")
                }
                out.notes.append(
                    "first 202 after the store came back: "
                    + ", ".join(
                        f"{k} {v:.1f} s" if v is not None else f"{k} none"
                        for k, v in first_ok.items()
                    )
                    + f"; 503 answers in all: {sum(a[3] == 503 for a in answers)}"
                )
                out.notes.append(outcomes_text(views))
                retries = worker_log_lines(m.data_dir, ("retry: Retry in",), 10_000)
                delays: dict[str, int] = {}
                for line in retries:
                    d = line.split("retry: Retry in ", 1)[1].split(":", 1)[0]
                    delays[d] = delays.get(d, 0) + 1
                out.notes.append(
                    f"the workers logged {len(retries)} task retries for StoreUnavailable, with "
                    "countdowns of "
                    + ", ".join(
                        f"{d} ×{n}" for d, n in sorted(delays.items(), key=lambda x: int(x[0][:-1]))
                    )
                )
                for v in views:
                    if v.state == "failed":
                        out.notes.append(
                            f"job {v.id[:8]} ({v.kind}) failed "
                            f"{(v.finished_at - fault_at).total_seconds():.1f} s into the outage "
                            f"after {v.attempts} attempt(s): {_short(v.error or '')}"
                            + (
                                f"; its learnware is left {v.learnware_status}"
                                if v.kind == "check"
                                else ""
                            )
                        )
                stuck = [
                    repo.format_id(v.learnware_id)
                    for v in views
                    if v.kind == "check" and v.state == "failed" and v.learnware_id is not None
                ]
                if stuck:
                    from wharf.workers.app import make_celery
                    from wharf.workers.recovery import requeue_interrupted_checks

                    t0 = time.monotonic()
                    again = requeue_interrupted_checks(
                        cat, make_celery(Settings(data_dir=m.data_dir))
                    )
                    final = {}
                    deadline = time.monotonic() + 120
                    while time.monotonic() < deadline:
                        final = {lid: c.learnware(lid)["status"] for lid in stuck}
                        if all(st not in ("pending", "checking") for st in final.values()):
                            break
                        time.sleep(0.5)
                    out.notes.append(
                        f"nothing queues the failed checks again by itself; `wharf admin requeue` "
                        f"(requeue_interrupted_checks) queued {len(again)} learnware(s) "
                        f"({', '.join(again) or 'none'}), and "
                        f"{sum(st == 'accepted' for st in final.values())} of the "
                        f"{len(stuck)} were accepted {time.monotonic() - t0:.1f} s later"
                    )
    finally:
        stop.set()
        redis.kill()
        store.close()
    disk_left(ctx.root, ctx.data_dir, out)


DRILLS: dict[str, tuple[str, Callable[[Ctx, Outcome], None]]] = {
    "check-worker": (
        "check worker SIGKILL (whole worker, 2 workers, 10 checks)",
        drill_check_worker,
    ),
    "check-pool": ("check pool processes SIGKILL (3 rounds)", drill_check_pool),
    "search-worker": ("search worker SIGKILL (whole worker, 50 searches)", drill_search_worker),
    "search-pool": ("search pool processes SIGKILL (3 rounds, 60 searches)", drill_search_pool),
    "api-upload": ("API SIGKILL mid-upload (writing to the store), restarted", drill_api_upload),
    "redis-aof": (
        "Redis kill -9 + restart, AOF on (10 checks + 10 searches)",
        lambda ctx, out: drill_redis(ctx, out, aof=True),
    ),
    "redis-nopersist": (
        "Redis kill -9 + restart, persistence off (10 checks + 10 searches)",
        lambda ctx, out: drill_redis(ctx, out, aof=False),
    ),
    "store-outage": ("object store (S3, moto) down 30 s", drill_store_outage),
}


DESCRIBE = {
    "check-worker": "Two workers, ten submissions whose model sleeps 2–3 s in `predict`; half a "
    "second into the first check, the worker process running it and its pool are killed "
    "together (`os.killpg(…, SIGKILL)`). Redis would hand its message to another worker only "
    "after the visibility timeout (21 min); the other worker's reaper has to resend it.",
    "check-pool": "Two workers, ten slow submissions; three times in a row every pool process "
    "running a check (the `host:pid` in its job row) is killed with SIGKILL, the Celery parent "
    "processes staying up and forking new pool processes.",
    "search-worker": "Two workers, three digits learnwares accepted and every index loaded; the "
    "workers' consumers (their Celery parent processes) are paused (SIGSTOP) while 50 searches "
    "are queued, resumed, and as soon as a search runs its whole worker is killed.",
    "search-pool": "Two workers, three digits learnwares accepted and every index loaded; three "
    "times in a row the workers' consumers are paused (SIGSTOP) while 20 searches are queued, "
    "resumed, and the pool process that starts the first of them is killed, the Celery parents "
    "staying up.",
    "api-upload": "One worker; a 150 MiB package is uploaded to `POST /v1/learnwares`, and the "
    "API's process group is killed as soon as its `.part` file appears in the store (the API "
    "has received the whole body and is writing the package). The market is started again on "
    "the same data folder, and the same package submitted.",
    "redis-aof": "Redis with `--appendonly yes` (fsync every second). Two learnwares accepted; "
    "then ten slow checks and ten searches are queued, and once both workers are busy (and 1.5 "
    "s later, for the AOF's fsync) Redis is killed with SIGKILL and started on the same folder "
    "and port a second later. Then the API is asked to enqueue a search.",
    "redis-nopersist": 'The same with `--appendonly no --save ""`: a restarted Redis is '
    "empty, and every message it held is gone. The workers' reconciler finds the queued jobs "
    "whose message is gone (`WHARF_JOB_LOST_AFTER_S`, 30 s, after they were sent) and sends them "
    "again.",
    "store-outage": "`WHARF_STORE=s3` against a moto server behind a TCP relay that the drill "
    "closes (listening port closed, open connections reset) for 30 s and opens again on the "
    "same port; moto keeps running behind it, so the objects survive, as a MinIO restart with its "
    "disk. Eight slow checks are in flight at the start (their packages uploaded before), and "
    "two clients keep submitting and searching, one request a second each, through the outage.",
}


def run_drill(name: str, examples: list[Example], digits_spec: bytes, keep: bool) -> Outcome:
    out = Outcome(name)
    root = Path(tempfile.mkdtemp(prefix=f"wharf-faults-{name}-"))
    ctx = Ctx(root, examples, root / "pkgs", digits_spec)
    ctx.pkgs.mkdir()
    t0 = time.monotonic()
    log(f"drill {name} in {root}")
    try:
        DRILLS[name][1](ctx, out)
    except Exception as exc:
        traceback.print_exc()
        out.error = f"{type(exc).__name__}: {str(exc)[:300]}"
    finally:
        kill_strays(root, out)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    log(f"drill {name} done in {time.monotonic() - t0:.0f} s: {out}")
    return out


def memory_total() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    return "unknown"


def report(results: list[tuple[str, Outcome]], started: str, wall_s: float) -> str:
    header = [
        "drill",
        "jobs submitted",
        "finished",
        "failed (reason)",
        "lost",
        "disk left after the sweep (scratch / .part)",
        "time to recovery",
    ]
    body = [
        "Jobs are checks and searches; *finished* = succeeded, *failed* = failed with the reason "
        f"shown, *lost* = still queued or running {LOST_AFTER_S:.0f} s after the fault ended. "
        "*Time to recovery*: from the fault until every job submitted before or during it had "
        "ended. Disk, after the market stopped: scratch folders of worker processes that are "
        "gone (and `wharf-check-*` folders) in the market's temporary folder, and `.part` files "
        "in the local store; what the market swept as it went is in the notes.",
        "",
        table(header, [out.row(DRILLS[name][0]) for name, out in results]),
        "",
        "## What happened",
        "",
    ]
    for name, out in results:
        body.append(f"**{DRILLS[name][0]}** (`{name}`). {DESCRIBE[name]}")
        body.append("")
        if out.stray_check_dirs:
            body.append(
                f"- {out.stray_check_dirs} scratch folder(s) ({out.stray_bytes / 1024:.0f} KiB) "
                "of dead worker processes stayed in the market's temporary folder"
            )
        if out.error:
            body.append(f"The drill itself failed: {out.error}.")
        for note in out.notes:
            body.append(f"- {note}")
        if out.stray_processes == 0 and not out.error:
            body.append("- no process of the drill outlived its market")
        body.append("")
    head = (
        "# Fault drills: killed processes and outages\n\n"
        f"- command: `{command('faults')}`\n"
        f"- date: {started} (whole run {wall_s / 60:.1f} min)\n"
        f"- machine: {machine()}, RAM: {memory_total()}\n"
        f"- load average at the end (1/5/15 min): {load_average()}\n"
        f"- specification/*.py digest: {source_digest()}\n\n"
    )
    return head + "\n".join(body).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drills", default=",".join(DRILLS), help=",".join(DRILLS))
    parser.add_argument("--out", default=str(RESULTS / "faults.md"))
    parser.add_argument("--keep", action="store_true", help="keep the drills' folders")
    args = parser.parse_args()
    names = [n.strip() for n in args.drills.split(",") if n.strip()]
    unknown = [n for n in names if n not in DRILLS]
    if unknown:
        parser.error(f"unknown drills: {', '.join(unknown)} (known: {', '.join(DRILLS)})")

    def interrupted(signum, frame):  # a SIGTERM cleans up as Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    for name in [k for k in os.environ if k.startswith("WHARF_")]:
        del os.environ[name]
    os.environ["WHARF_RATE_LIMIT_ENABLED"] = "false"

    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    t0 = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="wharf-faults-examples-"))
    try:
        examples = build_examples(scratch)
        digits = next(e for e in examples if e.name == "digits 5-9")
        digits_spec = dumps_spec(RKME(n_points=20, seed=1).fit(digits.X_test)).encode()
        results = [(n, run_drill(n, examples, digits_spec, args.keep)) for n in names]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    text = report(results, started, time.monotonic() - t0)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
