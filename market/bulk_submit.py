"""Bulk submissions: many packages uploaded as one bundle, every one checked in the sandbox.

A user (any user) uploads a tar, or gzipped tar, of a *submission bundle* to
``POST /v1/bulk-submissions``::

    manifest.jsonl   one JSON object per line: {"package": "<its path in the tar>",
                     "semantic_spec": {...}}; "sha256" and "size", if given, are verified
                     (the manifest of an export works as it is: its other fields are ignored)
    <the packages>   learnware zips, at the paths the manifest names

The API stages it as it stages a trusted import (:func:`market.bulk.stage_upload`: the same
archive rules and size limits; the upload is one write of the rate limit), refuses it if it
has more than ``WHARF_BULK_SUBMIT_MAX_ENTRIES`` entries or would take the user past
``WHARF_MAX_PENDING_CHECKS`` checks waiting (:func:`checks_waiting`), and creates one ``index``
job whose request lists batches of :data:`BATCH_SIZE` lines. Nothing is accepted on trust:
each batch task (:func:`stage_batch`) validates its entries as a single submission is
validated (the semantic spec by the submission rules, a package within
``WHARF_MAX_UPLOAD_BYTES`` whose content is not in the market yet, or is the user's own
rejected learnware, which is then checked again under its id) and makes each valid one a
``pending`` learnware with a check job of its own on the check queue, a child of the bulk job
(``Job.parent_id``). Its package stays where it is in the uploaded tar (a *pack*,
:mod:`market.packages`), so staging writes no object per learnware. The check is exactly that
of a single submission: sandbox, spec bounds, everything.

The bulk job's progress is the share of its entries settled: refused when staged, or checked.
Each check settles its parent in the transaction that records its own end (:func:`settle`),
with the parent's row locked, so checks ending together count each other; the one that
leaves nothing to check finishes the bulk job with its result: one line per entry, accepted,
rejected (with the reason from its check log), refused (why), duplicate (of which
learnware, where the user may know it) or failed (its check could not run).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from wharf.market.catalog import (
    Catalog,
    DuplicateContent,
    Job,
    JobKind,
    JobState,
    Learnware,
    LearnwareStatus,
    Role,
    User,
    repo,
)
from wharf.market.catalog.bulk import packages_by_sha256
from wharf.market.catalog.storable import UNSTORABLE_TEXT, first_unstorable
from wharf.market.store import ObjectStore
from wharf.specification.errors import SemanticSpecError
from wharf.specification.jsonio import load_json
from wharf.specification.semantic import check_semantic_spec, check_text_lengths

from .bulk import StagedBatch, batch_lines, open_staged, staged_index
from .bundle import EntryRejected, clean_path

#: Manifest lines per staging task: small, so the first checks start within a second of the
#: upload while later batches are still being read.
BATCH_SIZE = 100
#: The key of a bulk submission's job request (its value: the uploaded file's name).
REQUEST_KEY = "bulk_submission"
#: A reason in the result is cut to this many characters (the check log has the rest).
MAX_REASON_CHARS = 300
#: What a 429 for the quota of pending checks asks the client to wait.
QUOTA_RETRY_S = 30

_UNFINISHED = (JobState.queued, JobState.running)
_CHUNK = 1 << 20


def is_bulk_submission(job: Job) -> bool:
    return job.kind == JobKind.index and bool((job.request or {}).get(REQUEST_KEY))


# -- quotas ----------------------------------------------------------------------------------


def checks_waiting(s: Session, owner_id: int) -> int:
    """The checks ``owner_id`` has queued or running, plus the entries of their bulk
    submissions that are not yet learnwares (still being staged): what counts against
    ``WHARF_MAX_PENDING_CHECKS``."""
    waiting = repo.unfinished_checks(s, owner_id)
    for job in repo.unfinished_jobs(s, owner_id, JobKind.index):
        request = job.request or {}
        if not request.get(REQUEST_KEY) or _staged(request):
            continue
        created = sum(repo.child_job_counts(s, job.id).values())
        waiting += max(0, int(request.get("entries", 0)) - created)
    return waiting


def _staged(request: dict[str, Any]) -> bool:
    return len(request.get("staged_batches", [])) >= len(request.get("batches", []))


# -- entries ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubmissionLine:
    """A manifest line of a submission bundle, its semantic spec in canonical form."""

    line: int
    package: str
    semantic_spec: dict[str, Any]
    sha256: str | None = None
    size: int | None = None


def read_line(line: int, text: str | bytes) -> SubmissionLine:
    """Parse one manifest line; :class:`EntryRejected` says what is wrong with it."""
    try:
        record = load_json(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EntryRejected(f"not a JSON object: {exc}") from None
    except RecursionError:
        raise EntryRejected("nested too deeply to be a manifest line") from None
    if not isinstance(record, dict):
        raise EntryRejected(f"a manifest line is a JSON object, got {type(record).__name__}")
    missing = [k for k in ("package", "semantic_spec") if k not in record]
    if missing:
        raise EntryRejected(f"missing field(s): {', '.join(missing)}")
    try:
        package = clean_path(record["package"])
    except ValueError as exc:
        raise EntryRejected(f"package: {exc}") from None
    sha256, size = record.get("sha256"), record.get("size")
    if sha256 is not None and (
        not isinstance(sha256, str) or len(sha256) != 64 or sha256.strip("0123456789abcdef")
    ):
        raise EntryRejected(f"sha256 must be 64 lower-case hex digits, got {sha256!r:.80}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise EntryRejected(f"size must be a positive byte count, got {size!r:.80}")
    return SubmissionLine(line, package, canonical_semantic(record["semantic_spec"]), sha256, size)


def canonical_semantic(data: Any) -> dict[str, Any]:
    """A submitted semantic spec in the canonical form the catalog keeps, after every rule of
    a single submission (``POST /v1/learnwares``): the reference's rules, the bounds on Name
    and Description, tags the catalog can store, text without NUL characters or unpaired
    surrogates."""
    if not isinstance(data, dict):
        raise EntryRejected(f"semantic_spec must be a JSON object, got {type(data).__name__}")
    try:
        spec = check_text_lengths(check_semantic_spec(data))
        canonical = spec.to_dict()
        repo.semantic_columns(canonical, spec)  # tags within the catalog's columns
    except SemanticSpecError as exc:
        where = exc.field if exc.field == "semantic_spec" else f"semantic_spec.{exc.field}"
        raise EntryRejected(f"{where}: {exc.reason}") from None
    except RecursionError:
        raise EntryRejected("semantic_spec is nested too deeply") from None
    except ValueError as exc:
        raise EntryRejected(str(exc)) from None
    bad = first_unstorable(canonical, "semantic_spec")
    if bad is not None:
        raise EntryRejected(f"{bad}: {UNSTORABLE_TEXT}")
    return canonical


def outcome(
    line: int,
    package: str | None,
    kind: str,
    reason: str | None = None,
    learnware_id: str | None = None,
) -> dict[str, Any]:
    """One entry of a bulk submission's result."""
    item: dict[str, Any] = {"line": line, "package": package, "outcome": kind}
    if learnware_id is not None:
        item["learnware_id"] = learnware_id
    if reason is not None:
        item["reason"] = reason[:MAX_REASON_CHARS]
    return item


def duplicate_outcome(
    line: int, package: str, existing: Learnware | None, user: User | None
) -> dict[str, Any]:
    """A package whose content the market holds already. As for a single submission, the
    learnware holding it is named only to whoever may see it: its owner, an admin, or anyone
    once it is accepted."""
    if existing is None:
        return outcome(line, package, "duplicate", "an identical package was being submitted")
    if existing.status == LearnwareStatus.accepted or (
        user is not None and (user.role == Role.admin or user.id == existing.owner_id)
    ):
        lid = repo.format_id(existing.id)
        return outcome(line, package, "duplicate", f"already in the market as learnware {lid}", lid)
    return outcome(
        line,
        package,
        "duplicate",
        "a package with this exact content was already submitted by another user and is not "
        "public; the market holds each package once",
    )


def check_reason(log: str | None) -> str:
    """Why a check rejected a learnware, in one line: the first failure its log names."""
    lines = [line.strip() for line in (log or "").splitlines() if line.strip()]
    for line in lines:
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[1] == "FAIL" and parts[2] != "REJECTED":
            return parts[2]
    for line in lines:
        if line.startswith("rejected:"):
            return line.removeprefix("rejected:").strip()
    return lines[-1] if lines else "rejected"


# -- staging ---------------------------------------------------------------------------------


@dataclass
class _Ready:
    line: SubmissionLine
    sha256: str
    size: int
    offset: int


@dataclass
class BatchOutcome:
    """What staging one batch did: the checks to send (job id, learnware id), whether every
    batch of the submission is now staged, and whether the bulk job ended."""

    checks: list[tuple[str, int]] = field(default_factory=list)
    staged: bool = False
    finished: bool = False
    prefix: str | None = None


def stage_batch(
    catalog: Catalog,
    store: ObjectStore,
    job_id: str,
    index: int,
    *,
    max_package_bytes: int,
) -> BatchOutcome:
    """Make the valid entries of batch ``index`` pending learnwares with check jobs; record
    the others as refused, in one catalog transaction. The caller sends the checks.

    Idempotent: a run after a worker died finds the batch recorded and returns its checks
    that are still queued, to be sent again (a check sent twice runs once).
    """
    with catalog.session(read_only=True) as s:
        job = repo.get_job(s, job_id)
        if job is None or job.state not in _UNFINISHED:
            return BatchOutcome()
        request, state, owner_id = dict(job.request or {}), job.state, job.owner_id
    if owner_id is None:
        with catalog.session() as s:
            repo.fail_job(s, job_id, "the user who sent the bulk submission no longer exists")
        return BatchOutcome(finished=True, prefix=request.get("prefix"))
    if state == JobState.queued:
        with catalog.session() as s:
            # Another batch may have started the job a moment ago; otherwise it has ended.
            started = repo.start_job(s, job_id) or repo.get_job(s, job_id)
            if started is None or started.state != JobState.running:
                return BatchOutcome()
            repo.set_progress(s, job_id, 0.0, f"staging {request['entries']} entries")
    prefix, pack = request["prefix"], request["pack"]
    result = BatchOutcome(prefix=prefix)
    if index in request.get("staged_batches", []):
        with catalog.session(read_only=True) as s:
            return _again(s, job_id, request, index, result)
    batch = StagedBatch(**request["batches"][index])
    refused, ready = _read_batch(store, prefix, batch, max_package_bytes)

    with catalog.session() as s:
        parent = repo.lock_job(s, job_id)
        if parent is None or parent.state != JobState.running:
            return BatchOutcome()
        request = dict(parent.request or {})
        done = list(request.get("staged_batches", []))
        if index in done:
            return _again(s, job_id, request, index, result)
        user = s.get(User, owner_id)
        present = packages_by_sha256(s, [r.sha256 for r in ready])
        for r in ready:
            found = present.get(r.sha256)
            existing = s.get(Learnware, found[0]) if found is not None else None
            if existing is not None and _own_rejected(existing, owner_id):
                # As for a single submission: the owner's rejected learnware sent again
                # (perhaps with a fixed semantic spec) is checked again under its id.
                repo.update_semantic(s, existing.id, r.line.semantic_spec)
                repo.replace_package(
                    s,
                    existing.id,
                    existing.content_sha256,
                    existing.package_key,
                    existing.package_size,
                    existing.package_offset,
                )
                child = repo.create_job(
                    s,
                    JobKind.check,
                    owner_id=owner_id,
                    learnware_id=existing.id,
                    parent_id=job_id,
                    request={"line": r.line.line, "package": r.line.package, "resubmitted": True},
                )
                result.checks.append((child.id, existing.id))
                continue
            if found is not None:
                refused.append(duplicate_outcome(r.line.line, r.line.package, existing, user))
                continue
            try:
                lw = repo.create_learnware(
                    s,
                    owner_id,
                    r.line.semantic_spec,
                    r.sha256,
                    pack,
                    r.size,
                    package_offset=r.offset,
                )
            except DuplicateContent as exc:  # another submission of the same bytes, just now
                existing = s.get(Learnware, exc.existing_id)
                refused.append(duplicate_outcome(r.line.line, r.line.package, existing, user))
                continue
            child = repo.create_job(
                s,
                JobKind.check,
                owner_id=owner_id,
                learnware_id=lw.id,
                parent_id=job_id,
                request={"line": r.line.line, "package": r.line.package},
            )
            result.checks.append((child.id, lw.id))
        done.append(index)
        request["staged_batches"] = sorted(done)
        parent.request = request
        interim = dict(parent.result or {})
        interim["not_submitted"] = sorted(
            [*interim.get("not_submitted", []), *refused], key=lambda o: o["line"]
        )
        parent.result = interim
        s.flush()
        result.staged = _staged(request)
        result.finished = _advance(s, parent)
    return result


def _own_rejected(existing: Learnware, owner_id: int) -> bool:
    return existing.owner_id == owner_id and existing.status == LearnwareStatus.rejected


def _again(
    s: Session, job_id: str, request: dict[str, Any], index: int, result: BatchOutcome
) -> BatchOutcome:
    """A batch that an earlier run staged (its worker died before it had sent every check):
    its checks still queued, to send again."""
    batches = request["batches"]
    first = batches[index]["first_line"]
    end = batches[index + 1]["first_line"] if index + 1 < len(batches) else float("inf")
    result.checks = [
        (c.id, c.learnware_id)
        for c in repo.child_jobs(s, job_id)
        if c.state == JobState.queued
        and c.learnware_id is not None
        and first <= int((c.request or {}).get("line", 0)) < end
    ]
    result.staged = _staged(request)
    return result


def _read_batch(
    store: ObjectStore, prefix: str, batch: StagedBatch, max_package_bytes: int
) -> tuple[list[dict[str, Any]], list[_Ready]]:
    """The batch's entries read and hashed: those refused (outcomes), and those ready to
    become learnwares."""
    members = staged_index(store, prefix)["members"]
    refused: list[dict[str, Any]] = []
    ready: list[_Ready] = []
    first_line: dict[str, int] = {}
    with open_staged(store, prefix) as bundle:
        lines = batch_lines(bundle, staged_index(store, prefix), batch)
        for number, text in lines:
            package = None
            try:
                entry = read_line(number, text)
                package = entry.package
                where = members.get(entry.package)
                if where is None:
                    raise EntryRejected(f"package {entry.package} is not in the bundle")
                offset, size = where
                if size == 0:
                    raise EntryRejected(f"package {entry.package} is empty")
                if size > max_package_bytes:
                    raise EntryRejected(
                        f"package {entry.package} is {size} bytes, over the limit of "
                        f"{max_package_bytes} (WHARF_MAX_UPLOAD_BYTES)"
                    )
                if entry.size is not None and entry.size != size:
                    raise EntryRejected(
                        f"package {entry.package} is {size} bytes but the manifest says "
                        f"{entry.size}"
                    )
                sha256 = _sha256(bundle, offset, size)
                if entry.sha256 is not None and entry.sha256 != sha256:
                    raise EntryRejected(
                        f"package {entry.package} has sha256 {sha256} but the manifest says "
                        f"{entry.sha256}"
                    )
            except EntryRejected as exc:
                refused.append(outcome(number, package, "refused", str(exc)))
                continue
            if sha256 in first_line:
                same = outcome(
                    number,
                    entry.package,
                    "duplicate",
                    f"the same package as line {first_line[sha256]} of this bundle",
                )
                refused.append({**same, "duplicate_of_line": first_line[sha256]})
                continue
            first_line[sha256] = number
            ready.append(_Ready(entry, sha256, size, offset))
    return refused, ready


def _sha256(bundle: Any, offset: int, size: int) -> str:
    digest = hashlib.sha256()
    bundle.seek(offset)
    left = size
    while left > 0:
        chunk = bundle.read(min(_CHUNK, left))
        if not chunk:
            raise EntryRejected("the bundle ends inside a package")
        digest.update(chunk)
        left -= len(chunk)
    return digest.hexdigest()


# -- settling --------------------------------------------------------------------------------


def settle(s: Session, child_job_id: str) -> str | None:
    """After a check job ended (in the same transaction): update the progress of the bulk
    submission it belongs to, and finish that when nothing is left to check. Returns the
    staged bundle's prefix when the bulk job ended (release it after the commit), else
    ``None`` (also for a check of no bulk submission)."""
    parent_id = s.scalar(select(Job.parent_id).where(Job.id == child_job_id))
    if parent_id is None:
        return None
    parent = repo.lock_job(s, parent_id)
    if parent is None or parent.state != JobState.running:
        return None
    return (parent.request or {}).get("prefix") if _advance(s, parent) else None


def _advance(s: Session, parent: Job) -> bool:
    """Record the bulk job's progress; finish it if every batch is staged and every check
    has ended. Whether it finished."""
    request = parent.request or {}
    counts = repo.child_job_counts(s, parent.id)
    unfinished = sum(counts.get(state, 0) for state in _UNFINISHED)
    if _staged(request) and unfinished == 0:
        return repo.finish_job(s, parent.id, summary(s, parent))
    entries = max(1, int(request.get("entries", 1)))
    not_submitted = len((parent.result or {}).get("not_submitted", []))
    checks = sum(counts.values())
    ended = checks - unfinished
    progress = min(0.99, (not_submitted + ended) / entries)
    stage = (
        f"checking: {ended} of {checks} checks ended"
        if _staged(request)
        else f"staging and checking: {ended} of {checks} checks ended so far"
    )
    repo.set_progress(s, parent.id, progress, stage)
    return False


def summary(s: Session, parent: Job) -> dict[str, Any]:
    """The bulk job's result: counts, and one outcome per manifest line, by line (a check
    not yet ended counts as ``pending``)."""
    outcomes = list((parent.result or {}).get("not_submitted", []))
    latest: dict[int, Job] = {}
    for child in repo.child_jobs(s, parent.id):  # oldest first: a check queued again wins
        latest[int((child.request or {}).get("line", 0))] = child
    ids = [c.learnware_id for c in latest.values() if c.learnware_id is not None]
    status = dict(_column(s, ids, Learnware.status))
    rejected = [i for i in ids if status.get(i) == LearnwareStatus.rejected]
    logs = dict(_column(s, rejected, Learnware.check_log))
    for line, child in latest.items():
        package = (child.request or {}).get("package")
        lid = child.learnware_id
        shown = repo.format_id(lid) if lid is not None else None
        said = (child.result or {}).get("status")
        if child.state == JobState.failed:
            item = outcome(line, package, "failed", child.error or "failed", shown)
        elif child.state == JobState.cancelled:
            item = outcome(line, package, "cancelled", child.error or "cancelled", shown)
        elif child.state in _UNFINISHED:
            item = outcome(line, package, "pending", None, shown)
        elif said == LearnwareStatus.accepted:
            item = outcome(line, package, "accepted", None, shown)
        elif said == LearnwareStatus.rejected:
            reason = check_reason(logs.get(lid)) if lid in logs else "rejected"
            item = outcome(line, package, "rejected", reason, shown)
        else:
            item = outcome(line, package, "failed", f"the check ended: {said}", shown)
        if (child.request or {}).get("resubmitted"):
            item["resubmitted"] = True  # the owner's rejected learnware, checked again
        outcomes.append(item)
    outcomes.sort(key=lambda o: o["line"])
    kinds = ("accepted", "rejected", "refused", "duplicate", "failed", "cancelled", "pending")
    counts = {k: sum(o["outcome"] == k for o in outcomes) for k in kinds}
    result = {
        "entries": int((parent.request or {}).get("entries", len(outcomes))),
        "submitted": len(latest),
        "accepted": counts["accepted"],
        "rejected": counts["rejected"],
        "refused": counts["refused"],
        "duplicates": counts["duplicate"],
        "failed": counts["failed"],
        "outcomes": outcomes,
    }
    for extra in ("cancelled", "pending"):  # only when some were: the usual result is unchanged
        if counts[extra]:
            result[extra] = counts[extra]
    return result


def _column(s: Session, ids: Iterable[int], column: Any) -> list[tuple[int, Any]]:
    wanted = sorted(set(ids))
    found: list[tuple[int, Any]] = []
    for start in range(0, len(wanted), 500):
        stmt = select(Learnware.id, column).where(Learnware.id.in_(wanted[start : start + 500]))
        found.extend((int(i), value) for i, value in s.execute(stmt))
    return found
