"""``wharf bulk-index PATH``: many learnwares into a market at once.

Without ``--trusted``, PATH is a directory of learnware zips (or a manifest listing them):
they are packed into tars of up to ``--chunk`` packages, each uploaded to
``POST /v1/bulk-submissions`` (one write of the rate limit), and the market checks every
package in its sandbox, as it checks ``wharf submit``; nothing skips the check. The command
follows the checks and prints each package's outcome. A tar the market refuses for the
user's quota of pending checks is sent again as checks end; a market without bulk
submissions (or ``--one-by-one``) gets each package through ``POST /v1/learnwares``, paced by
its rate limits.

With ``--trusted`` (admins), PATH is a bundle (``wharf admin export``): it is packed into one
tar, uploaded to ``POST /v1/bulk-imports`` and imported without checks, batch by batch.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from wharf.client import WharfError  # the SDK's errors only: httpx loads with the client

from .market import add_common, client_for

if TYPE_CHECKING:
    from wharf.client import WharfClient

MANIFEST = "manifest.jsonl"
#: The states of a job that has ended (the SDK's, without importing it).
ENDED = ("succeeded", "failed", "cancelled")

#: Where a package's semantic spec may be: next to it, or inside the zip.
SIDECARS = ("{stem}.json", "{stem}.semantic.json")
INSIDE = ("semantic_spec.json", "semantic.json")
T = TypeVar("T")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bulk-index",
        help="submit many learnwares: packages to check, or a trusted bundle (admins)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "path",
        help="a directory of learnware zips (each with <name>.json, its semantic spec, beside "
        "it or semantic_spec.json inside), a manifest (JSON lines with 'package' and "
        "'semantic_spec'), or with --trusted a bundle directory from 'wharf admin export'",
    )
    p.add_argument(
        "--trusted",
        action="store_true",
        help="import PATH, a bundle, without checks (admin token; for migrating a market)",
    )
    p.add_argument(
        "--chunk",
        type=int,
        default=1000,
        help="packages per bulk submission (default 1000; fewer if the market asks)",
    )
    p.add_argument(
        "--one-by-one",
        action="store_true",
        help="submit each package through POST /v1/learnwares instead (markets without bulk "
        "submissions), paced by the market's rate limits",
    )
    p.add_argument(
        "--threads", type=int, default=4, help="concurrent submissions with --one-by-one"
    )
    p.add_argument(
        "--timeout", type=float, default=None, help="give up waiting after this many seconds"
    )
    add_common(p)
    p.set_defaults(func=cmd_bulk_index)


def cmd_bulk_index(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if not path.exists():
        raise SystemExit(f"error: {path} does not exist")
    with client_for(args) as client:
        if args.trusted:
            return trusted_import(client, path, timeout=args.timeout)
        return submit_all(
            client,
            path,
            chunk=max(1, args.chunk),
            one_by_one=args.one_by_one,
            threads=max(1, args.threads),
            timeout=args.timeout,
        )


def progress_bar(**kwargs: Any) -> Any:
    """A tqdm progress bar (tqdm is imported when a command shows one, not for every command)."""
    from tqdm import tqdm

    return tqdm(disable=None, **kwargs)


# -- trusted: one bundle upload -------------------------------------------------------------


def trusted_import(client: WharfClient, bundle: Path, *, timeout: float | None = None) -> int:
    if not (bundle / MANIFEST).is_file():
        raise SystemExit(
            f"error: {bundle} holds no {MANIFEST}: is it a bundle (wharf admin export)?"
        )
    with tempfile.TemporaryDirectory(prefix="wharf-bundle-") as tmp:
        tar_path = pack_bundle(bundle, Path(tmp) / "bundle.tar")
        size = tar_path.stat().st_size
        with (
            tar_path.open("rb") as fh,
            progress_bar(total=size, unit="B", unit_scale=True, desc="upload") as bar,
        ):
            from tqdm.utils import CallbackIOWrapper

            accepted = client.bulk_import(CallbackIOWrapper(bar.update, fh, "read"), trusted=True)
    job_id, entries = accepted["job_id"], accepted["entries"]
    print(f"bulk import job {job_id}: {entries} learnwares in {accepted['batches']} batches")
    job = follow_job(client, job_id, entries, timeout=timeout)
    if job["state"] != "succeeded":
        print(f"error: the import failed: {job.get('error')}", file=sys.stderr)
        return 1
    return print_report(job["result"])


def pack_bundle(bundle: Path, out: Path) -> Path:
    """The bundle's regular files in an uncompressed tar, the manifest first (packages are
    zips already: compressing again costs more time than it saves)."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(bundle / MANIFEST, arcname=MANIFEST, recursive=False, filter=_plain)
        for file in sorted(bundle.rglob("*")):
            rel = file.relative_to(bundle).as_posix()
            if rel == MANIFEST or file.name.startswith(".") or file.is_symlink():
                continue
            if rel.startswith("reference/"):  # an export's copies for people: not imported
                continue
            if file.is_file():
                tar.add(file, arcname=rel, recursive=False, filter=_plain)
    return out


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Whole-second times and no owner names: a plain ustar header, no PAX record per file.
    info.mtime = int(info.mtime)
    info.uname = info.gname = ""
    return info


def follow_job(
    client: WharfClient, job_id: str, entries: int, *, timeout: float | None = None
) -> dict[str, Any]:
    """Poll a bulk-import job to its end, with a progress bar of learnwares."""
    deadline = _deadline(timeout)
    with progress_bar(total=entries, unit="learnware", desc="import") as bar:
        while True:
            _check_deadline(deadline, f"the import (job {job_id})")
            job = _patient(lambda: client.job(job_id), deadline=deadline)
            bar.update(max(0, round((job.get("progress") or 0) * entries) - bar.n))
            if job["state"] in ENDED:
                if job["state"] == "succeeded":
                    bar.update(entries - bar.n)
                return job
            time.sleep(0.25)


def print_report(result: dict[str, Any]) -> int:
    """Print an import's summary; 0 unless entries were rejected."""
    print(
        f"imported {result['imported']} of {result['entries']}: "
        f"{result['duplicates']} already in the market (skipped), {result['rejected']} rejected"
    )
    for d in result.get("duplicate_entries", [])[:20]:
        where = d.get("existing_learnware") or f"line {d.get('duplicate_of_line')}"
        print(f"  line {d['line']}: duplicate of {where}")
    for r in result.get("rejected_entries", []):
        print(f"  line {r['line']}: rejected: {r['reason']}")
    listed = len(result.get("rejected_entries", []))
    if result["rejected"] > listed:
        print(f"  … and {result['rejected'] - listed} more rejected")
    return 0 if result["rejected"] == 0 else 1


# -- untrusted: every package checked -------------------------------------------------------

#: Seconds between two looks at the running bulk-submission jobs.
JOB_POLL_S = 1.0


@dataclass
class Item:
    package: Path
    semantic: dict[str, Any] | None = None
    problem: str | None = None  # why it cannot be submitted
    outcome: str = "failed"  # accepted | rejected | refused | duplicate | failed
    detail: str = ""
    learnware_id: str | None = None
    job_id: str | None = None


def find_items(path: Path) -> list[Item]:
    """The packages to submit: the zips of a directory, or the lines of a manifest."""
    if path.is_dir():
        return [_from_sidecar(zip_path) for zip_path in sorted(path.glob("*.zip"))]
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            package = path.parent / record["package"]
        except (ValueError, KeyError, TypeError) as exc:
            item = Item(path / f"line-{number}", problem=f"{path} line {number}: {exc!r}")
            items.append(item)
            continue
        if isinstance(record.get("semantic_spec"), dict):
            items.append(Item(package, record["semantic_spec"]))
        elif isinstance(record.get("semantic"), str):
            items.append(_with_semantic(Item(package), path.parent / record["semantic"]))
        else:
            items.append(_from_sidecar(package))
    return items


def _from_sidecar(package: Path) -> Item:
    item = Item(package)
    for pattern in SIDECARS:
        candidate = package.with_name(pattern.format(stem=package.stem))
        if candidate.is_file():
            return _with_semantic(item, candidate)
    try:
        with zipfile.ZipFile(package) as zf:
            names = set(zf.namelist())
            tops = {n.split("/")[0] for n in names if "/" in n}
            for name in INSIDE:
                for inside in (name, *(f"{top}/{name}" for top in sorted(tops))):
                    if inside in names:
                        item.semantic = json.loads(zf.read(inside))
                        return item
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        item.problem = f"cannot read {package.name}: {exc}"
        return item
    item.problem = (
        f"no semantic spec: put {package.stem}.json beside it, or semantic_spec.json inside it"
    )
    return item


def _with_semantic(item: Item, path: Path) -> Item:
    try:
        item.semantic = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        item.problem = f"cannot read the semantic spec {path}: {exc}"
    return item


def submit_all(
    client: WharfClient,
    path: Path,
    *,
    chunk: int = 1000,
    one_by_one: bool = False,
    threads: int = 4,
    timeout: float | None = None,
) -> int:
    items = find_items(path)
    if not items:
        raise SystemExit(f"error: no learnware packages (*.zip) in {path}")
    todo = [item for item in items if item.problem is None]
    for item in items:
        if item.problem is not None:
            item.outcome, item.detail = "refused", item.problem
    deadline = _deadline(timeout)
    if todo and not one_by_one:
        try:
            BulkSubmitter(client, chunk, deadline).run(todo)
        except _NoBulkSubmissions:
            print("this market takes no bulk submissions: submitting one by one", file=sys.stderr)
            one_by_one = True
    if todo and one_by_one:
        submit_one_by_one(client, todo, threads=threads, deadline=deadline)
    return _summary(items)


class _NoBulkSubmissions(Exception):
    """The market has no ``POST /v1/bulk-submissions`` (an older market)."""


@dataclass
class _Submission:
    job_id: str
    items: list[Item]  # manifest line i + 1 is items[i]


class BulkSubmitter:
    """Uploads the packages in tars of at most ``chunk`` and follows their jobs to the end.

    A tar the market refuses for the user's quota of pending checks (429) is cut to the room
    the market reports, or sent again once enough of the running checks have ended (or its
    ``Retry-After`` has passed); one refused for its number of packages (413) makes every
    tar as small as the market says. A tar refused as a whole for one of its packages (422)
    is submitted package by package, so each package gets its own answer.
    """

    def __init__(self, client: WharfClient, chunk: int, deadline: float | None):
        self.client = client
        self.chunk = chunk
        self.deadline = deadline
        self.queue: deque[list[Item]] = deque()
        self.running: list[_Submission] = []
        self.done = 0  # packages settled: of the jobs that ended, and those sent one by one
        self.progress = 0  # and of the running jobs, as of the last look
        self.not_before = 0.0  # no upload before this time …
        self.after_progress: int | None = None  # … unless this many packages have settled

    def run(self, todo: list[Item]) -> None:
        self._cut(todo, self.chunk)
        with progress_bar(total=len(todo), unit="package", desc="check") as bar:
            while self.queue or self.running:
                _check_deadline(self.deadline, f"{len(todo) - self.progress} checks")
                if self.queue and self._may_send():
                    self._send()
                self.progress = self._poll()
                bar.update(self.progress - bar.n)
                if self.running or (self.queue and not self._may_send()):
                    time.sleep(JOB_POLL_S)

    def _cut(self, items: list[Item], size: int) -> None:
        self.chunk = size
        self.queue = deque(items[i : i + size] for i in range(0, len(items), size))

    def _may_send(self) -> bool:
        if time.monotonic() >= self.not_before:
            return True
        return self.after_progress is not None and self.progress >= self.after_progress

    def _wait(self, seconds: float, *, until_settled: int | None = None) -> None:
        self.not_before = time.monotonic() + seconds
        self.after_progress = (
            self.progress + until_settled if until_settled and self.running else None
        )

    def _send(self) -> None:
        group = self.queue.popleft()
        try:
            accepted = self._upload(group)
        except WharfError as exc:
            self._refused(group, exc)
            return
        self.running.append(_Submission(accepted["job_id"], group))
        print(
            f"bulk submission {accepted['job_id']}: {accepted['entries']} packages",
            file=sys.stderr,
        )

    def _refused(self, group: list[Item], exc: WharfError) -> None:
        problem = exc.problem or {}
        if exc.status in (404, 405) and not self.running and not self.done:
            raise _NoBulkSubmissions from None
        if exc.status == 429 and "max_pending_checks" in problem:  # the user's quota
            room = int(problem["max_pending_checks"]) - int(problem.get("pending_checks", 0))
            if 0 < room < len(group):
                self.queue.extendleft([group[room:], group[:room]])
                return
            self.queue.appendleft(group)
            self._wait(exc.retry_after or 30.0, until_settled=len(group) - max(0, room))
            return
        if exc.status in (429, 503):  # the write budget, or a market busy for a moment
            self.queue.appendleft(group)
            self._wait(exc.retry_after or 5.0)
            return
        if exc.status == 413 and len(group) > 1:  # too many packages, or too many bytes
            size = len(group) // 2
            for key in ("max_entries", "max_pending_checks"):
                if isinstance(problem.get(key), int) and 0 < problem[key] < len(group):
                    size = problem[key]
            self._cut([*group, *(item for rest in self.queue for item in rest)], size)
            return
        if exc.status in (413, 422):  # one package spoils the tar: each gets an answer
            print(
                f"the market refused a tar of {len(group)} packages ({exc}); submitting them "
                "one by one",
                file=sys.stderr,
            )
            submit_one_by_one(self.client, group, threads=1, deadline=self.deadline)
            self.done += len(group)
            return
        raise exc

    def _upload(self, group: list[Item]) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="wharf-submit-") as tmp:
            tar_path = pack_submission(group, Path(tmp) / "submission.tar")
            return self.client.bulk_submit(tar_path)

    def _poll(self) -> int:
        """Look at each running job once; how many packages are settled in all."""
        partly = 0
        for sub in list(self.running):
            job = _patient(lambda sub=sub: self.client.job(sub.job_id), deadline=self.deadline)
            if job["state"] in ENDED:
                if job["state"] == "succeeded":
                    _record_outcomes(sub.items, job.get("result") or {})
                else:
                    _record_failure(sub.items, job)
                self.running.remove(sub)
                self.done += len(sub.items)
            else:
                partly += min(len(sub.items), round((job.get("progress") or 0) * len(sub.items)))
        return self.done + partly


def pack_submission(items: list[Item], out: Path) -> Path:
    """A submission bundle of ``items`` as a tar: manifest line i + 1 names
    ``packages/<i>.zip``, a copy of ``items[i].package``."""
    lines = [
        json.dumps(
            {
                "package": f"packages/{i}.zip",
                "semantic_spec": item.semantic,
                "file": item.package.name,
            },
            ensure_ascii=False,
        )
        for i, item in enumerate(items)
    ]
    manifest = ("\n".join(lines) + "\n").encode()
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mtime = len(manifest), int(time.time())
        tar.addfile(info, io.BytesIO(manifest))
        for i, item in enumerate(items):
            tar.add(item.package, arcname=f"packages/{i}.zip", recursive=False, filter=_plain)
    return out


def _record_outcomes(items: list[Item], result: dict[str, Any]) -> None:
    for entry in result.get("outcomes", []):
        line = entry.get("line")
        if not isinstance(line, int) or not 1 <= line <= len(items):
            continue
        item = items[line - 1]
        item.outcome = entry.get("outcome", "failed")
        item.detail = entry.get("reason") or ""
        item.learnware_id = entry.get("learnware_id")
        same = entry.get("duplicate_of_line")
        if isinstance(same, int) and 1 <= same <= len(items):
            item.detail = f"the same package as {items[same - 1].package.name}"


def _record_failure(items: list[Item], job: dict[str, Any]) -> None:
    said = "was cancelled" if job["state"] == "cancelled" else "failed"
    for item in items:
        item.outcome, item.detail = "failed", f"the bulk submission {said}: {job.get('error')}"


# -- one by one: POST /v1/learnwares per package --------------------------------------------

#: Check jobs polled per round (checks finish roughly in submission order), and at most
#: this many polls a second: well inside a token's read budget (600 a minute by default).
POLL_WINDOW = 8
POLLS_PER_SECOND = 4


def submit_one_by_one(
    client: WharfClient, todo: list[Item], *, threads: int, deadline: float | None
) -> None:
    """Submit each package like ``wharf submit``, a few at a time, waiting out the write
    budget (429) for as long as it takes, then follow the checks."""
    pacer = _Pacer()
    with (
        progress_bar(total=len(todo), unit="package", desc="submit") as bar,
        ThreadPoolExecutor(threads) as pool,
    ):

        def submit(item: Item) -> None:
            _submit(client, item, pacer, deadline)
            bar.update(1)

        list(pool.map(submit, todo))
    waiting = deque(item for item in todo if item.job_id is not None)
    with progress_bar(total=len(waiting), unit="check", desc="check") as bar:
        while waiting:
            _check_deadline(deadline, f"{len(waiting)} checks")
            started, finished = time.monotonic(), 0
            window = list(waiting)[:POLL_WINDOW]
            for item in window:
                job = _patient(lambda item=item: client.job(item.job_id), deadline=deadline)
                if job["state"] in ENDED:
                    _record(client, item, job, deadline)
                    waiting.remove(item)
                    finished += 1
            bar.update(finished)
            pause = len(window) / POLLS_PER_SECOND - (time.monotonic() - started)
            if waiting and pause > 0:
                time.sleep(pause)


def _submit(client: WharfClient, item: Item, pacer: _Pacer, deadline: float | None) -> None:
    try:
        sub = _patient(
            lambda: client.submit(item.package, item.semantic or {}), deadline=deadline, pacer=pacer
        )
    except WharfError as exc:
        if exc.status == 409:
            item.outcome = "duplicate"
            # The market names the learnware only to those who may see it.
            item.learnware_id = exc.problem.get("existing_learnware")
            item.detail = (
                f"already in the market as learnware {item.learnware_id}"
                if item.learnware_id
                else str(exc.problem.get("detail", exc))
            )
        elif exc.status in (413, 422):
            item.outcome, item.detail = "refused", str(exc)
        else:
            item.detail = str(exc)
        return
    except OSError as exc:
        item.outcome, item.detail = "refused", f"cannot read {item.package}: {exc}"
        return
    item.learnware_id, item.job_id = sub["learnware_id"], sub["job_id"]


def _record(client: WharfClient, item: Item, job: dict[str, Any], deadline: float | None) -> None:
    if job["state"] in ("failed", "cancelled"):
        said = "failed" if job["state"] == "failed" else "was cancelled"
        item.detail = f"the check {said}: {job.get('error')}"
        return
    item.outcome = (job.get("result") or {}).get("status", "failed")
    if item.outcome == "rejected":
        item.detail = _reason(_patient(lambda: client.log(item.learnware_id), deadline=deadline))


def _reason(log: str) -> str:
    """The first failure a check log names (the market's bulk results say the same)."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for line in lines:
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[1] == "FAIL" and parts[2] != "REJECTED":
            return parts[2]
    return lines[-1] if lines else "rejected"


def _summary(items: list[Item]) -> int:
    counts = {k: sum(i.outcome == k for i in items) for k in OUTCOMES}
    print(
        f"accepted {counts['accepted']}, rejected {counts['rejected']}, "
        f"refused {counts['refused']}, failed {counts['failed']}, "
        f"already in the market {counts['duplicate']} (of {len(items)})"
    )
    for item in items:
        if item.outcome != "accepted":
            lid = f" (learnware {item.learnware_id})" if item.learnware_id else ""
            print(f"  {item.package.name}{lid}: {item.outcome}: {item.detail}")
    return 0 if counts["rejected"] == counts["refused"] == counts["failed"] == 0 else 1


#: Outcomes of a package, as the summary counts them.
OUTCOMES = ("accepted", "rejected", "refused", "failed", "duplicate")


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _check_deadline(deadline: float | None, what: str) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise SystemExit(f"error: gave up waiting for {what} (--timeout); it goes on in the market")


class _Pacer:
    """Writes shared by threads: after a 429, none is sent before its ``Retry-After`` is over,
    so the threads do not stampede the budget as it frees up one request at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._not_before = 0.0

    def wait(self) -> None:
        while True:
            with self._lock:
                left = self._not_before - time.monotonic()
                if left <= 0:
                    return
            time.sleep(left)

    def back_off(self, seconds: float) -> None:
        with self._lock:
            # A little spread, so the waiting threads come back one after another.
            until = time.monotonic() + seconds + random.uniform(0, 0.5)
            self._not_before = max(self._not_before, until)


def _patient(
    call: Callable[[], T],
    *,
    deadline: float | None = None,
    pacer: _Pacer | None = None,
    tries_503: int = 10,
) -> T:
    """``call()``, waiting out rate limits (429) for as long as the market asks (until the
    deadline, if any) and a busy queue (503) ``tries_503`` times."""
    unavailable = 0
    while True:
        if pacer is not None:
            pacer.wait()
        try:
            return call()
        except WharfError as exc:
            if exc.status == 503:
                unavailable += 1
                if unavailable >= tries_503:
                    raise
            elif exc.status != 429:
                raise
            wait = exc.retry_after if exc.retry_after is not None else 2.0
            if deadline is not None and time.monotonic() + wait > deadline:
                raise
            if pacer is not None:
                pacer.back_off(wait)
            else:
                time.sleep(wait)
