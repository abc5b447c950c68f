"""Commands that talk to a running market over HTTP: submit, update, delete, jobs, cancel, log,
search, download, token."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wharf.client import WharfError  # the SDK's errors only: httpx loads with the client

from . import admin as admin_local

if TYPE_CHECKING:
    from wharf.client import WharfClient
from .errors import CliError, input_file, output_file


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        default=os.environ.get("WHARF_URL", "http://127.0.0.1:8000"),
        help="market URL (default: $WHARF_URL or http://127.0.0.1:8000)",
    )
    p.add_argument(
        "--token", default=os.environ.get("WHARF_TOKEN"), help="API token (default: $WHARF_TOKEN)"
    )


def client_for(args: argparse.Namespace) -> WharfClient:
    from wharf.client import WharfClient

    return WharfClient(args.url, args.token)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="submit a learnware package")
    p.add_argument("package", help="the learnware zip")
    p.add_argument("--semantic", required=True, help="semantic spec JSON file")
    p.add_argument("--wait", action="store_true", help="wait for the check and print its outcome")
    add_common(p)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser(
        "update",
        help="send a new package or semantic spec for your learnware (a rejected one is "
        "checked again)",
    )
    p.add_argument("learnware_id")
    p.add_argument("--package", help="the new learnware zip")
    p.add_argument("--semantic", help="the new semantic spec JSON file")
    p.add_argument("--wait", action="store_true", help="wait for the check and print its outcome")
    add_common(p)
    p.set_defaults(func=cmd_update)

    p = sub.add_parser("delete", help="delete your learnware (its package can be submitted again)")
    p.add_argument("learnware_id")
    add_common(p)
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("jobs", help="show a job: a check's verdict, a search's results")
    p.add_argument("job_id")
    p.add_argument("--watch", action="store_true", help="follow its progress until it finishes")
    p.add_argument("--json", action="store_true", help="print the job as JSON")
    add_common(p)
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser(
        "cancel",
        help="cancel a queued or running job: yours, or any for an admin (a check's "
        "learnware is then rejected, to be sent again or deleted)",
    )
    p.add_argument("job_id")
    add_common(p)
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("log", help="print the check log of your learnware")
    p.add_argument("learnware_id")
    add_common(p)
    p.set_defaults(func=cmd_log)

    p = sub.add_parser("search", help="search the market for learnwares that fit your data")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--rkme", help="your RKME spec JSON")
    src.add_argument(
        "--data",
        help="your data (a table: .csv/.npy; images: .npy N×C×H×W; texts: .txt/.json): its "
        "RKME is computed here, and only the RKME is sent",
    )
    p.add_argument(
        "--type",
        choices=["auto", "table", "image", "text"],
        default="auto",
        help="with --data: the kind of data (default: from the file)",
    )
    p.add_argument(
        "--steps", type=int, default=None, help="with --data: fit steps (see wharf spec fit)"
    )
    p.add_argument(
        "--label", help="with --data: the CSV's label column, left out of the RKME (by name)"
    )
    p.add_argument(
        "--semantic",
        help="requirement semantic spec JSON file (`wharf spec describe CSV` starts one "
        "describing your columns, for a heterogeneous search)",
    )
    p.add_argument(
        "--hetero",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="search the learnwares whose columns differ from yours, through the market's "
        "map (--semantic must describe every column), or never (--no-hetero); by default "
        "when no learnware has your columns and --semantic describes them all",
    )
    p.add_argument("--top", type=int, default=None, help="at most this many single results")
    p.add_argument("--gamma", type=float, default=0.1, help="with --data: kernel parameter")
    p.add_argument("--json", action="store_true", help="print the raw result as JSON")
    add_common(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("download", help="download a learnware package")
    p.add_argument("learnware_id")
    p.add_argument("-o", "--output", required=True, help="the zip to write, or a folder")
    p.add_argument(
        "--original",
        action="store_true",
        help="the package's bytes as uploaded (by default: the layout the learnware package's "
        "loader reads, files at the root and the learnware's id in learnware.yaml)",
    )
    add_common(p)
    p.set_defaults(func=cmd_download)

    admin = sub.add_parser("admin", help="administration")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    admin_local.add_parsers(admin_sub)
    token = admin_sub.add_parser("token", help="API tokens").add_subparsers(
        dest="token_command", required=True
    )
    p = token.add_parser("create", help="create a token (admins: for any user)")
    p.add_argument("--name", required=True, help="a label for the token")
    p.add_argument("--user", help="the user it is for (created if new; admin only)")
    p.add_argument("--role", choices=["user", "admin"], help="role of a new user")
    p.add_argument(
        "--email", help="email of a new user (default USER@localhost), for the learnware client"
    )
    p.add_argument("--expires-in-days", type=int)
    add_common(p)
    p.set_defaults(func=cmd_token_create)
    p = token.add_parser("revoke", help="revoke a token")
    p.add_argument("token_id", type=int)
    add_common(p)
    p.set_defaults(func=cmd_token_revoke)


def _read_json(path: str) -> Any:
    try:
        return json.loads(input_file(path, "JSON file").read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise CliError(f"{path}: not UTF-8 text; a JSON file is expected") from None
    except json.JSONDecodeError as exc:
        raise CliError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None


def _progress(job: dict[str, Any]) -> None:
    stage = job.get("stage") or job["state"]
    print(
        f"\r  {job['state']:<9} {stage:<14} {100 * (job.get('progress') or 0):5.1f}%",
        end="",
        file=sys.stderr,
        flush=True,
    )


def cmd_submit(args: argparse.Namespace) -> int:
    package = input_file(args.package, "learnware zip")
    semantic = _read_json(args.semantic)
    with client_for(args) as client:
        sub = client.submit(package, semantic)
        print(f"learnware {sub['learnware_id']}: {sub['status']} (job {sub['job_id']})")
        if sub.get("resubmitted"):
            print(
                f"this package is your learnware {sub['learnware_id']}, which awaited a check "
                "(rejected, or its check never queued): it is checked again, with the semantic "
                "spec sent now",
                file=sys.stderr,
            )
        if not args.wait:
            return 0
        return _follow_check(client, sub["learnware_id"], sub["job_id"])


def cmd_update(args: argparse.Namespace) -> int:
    if args.package is None and args.semantic is None:
        raise CliError("give --package, --semantic or both: what to change")
    package = input_file(args.package, "learnware zip") if args.package else None
    semantic = _read_json(args.semantic) if args.semantic else None
    with client_for(args) as client:
        out = client.update(args.learnware_id, semantic_spec=semantic, package=package)
        if not out["job_id"]:
            print(f"learnware {out['learnware_id']}: updated; still {out['status']}")
            return 0
        print(f"learnware {out['learnware_id']}: {out['status']} (job {out['job_id']})")
        if not args.wait:
            return 0
        return _follow_check(client, out["learnware_id"], out["job_id"])


def _follow_check(client: WharfClient, learnware_id: str, job_id: str) -> int:
    """Wait for a check; print the verdict, and the log with what to do if it is rejected."""
    client.wait(job_id, on_progress=_progress)
    print(file=sys.stderr)
    lw = client.learnware(learnware_id)
    print(f"learnware {lw['id']}: {lw['status']}")
    if lw["status"] == "accepted":
        return 0
    log = client.log(lw["id"])
    print(log, end="")
    print(f"{_reason(log)}\n{_fix_hint(lw['id'])}", file=sys.stderr)
    return 1


def _reason(log: str) -> str:
    """The line of a check log that says why it failed: its first FAIL, without the time."""
    for line in log.splitlines():
        _, _, rest = line.partition(" ")
        level, _, message = rest.strip().partition(" ")
        if level == "FAIL" and message.strip() != "REJECTED":
            return f"rejected: {message.strip()}"
    last = [line.strip() for line in log.splitlines() if line.strip()]
    return f"rejected: {last[-1]}" if last else "rejected"


def _fix_hint(learnware_id: str) -> str:
    return (
        f"fix it: `wharf update {learnware_id} --package ZIP --semantic JSON` (either or both) "
        "checks it again"
    )


def cmd_delete(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        client.delete(args.learnware_id)
    print(f"learnware {args.learnware_id} deleted; its package can be submitted again")
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        print(client.log(args.learnware_id), end="")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        job = client.cancel(args.job_id)
    print(f"{job['kind']} job {job['id']}: cancelled")
    lid = job.get("learnware_id")
    if job["kind"] == "check" and lid:
        print(f"learnware {lid}: rejected, nothing judged; {_resend_hint(lid)}")
    return 0


def _resend_hint(learnware_id: str) -> str:
    return (
        f"to have it checked, `wharf update {learnware_id} --package ZIP` or submit the same "
        f"package again; or `wharf delete {learnware_id}`"
    )


def cmd_jobs(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        if args.watch:
            try:
                job = client.wait(args.job_id, on_progress=_progress)
            except Exception as exc:  # a failed job is shown like any other
                if type(exc).__name__ != "JobFailed":
                    raise
                job = client.job(args.job_id)
            finally:
                print(file=sys.stderr)
        else:
            job = client.job(args.job_id)
        if args.json:
            print(json.dumps(job, indent=2))
            return 0 if job["state"] != "failed" else 1
        return _print_job(client, job)


def _status_now(client: WharfClient, learnware_id: str) -> str:
    try:
        return client.learnware(learnware_id)["status"]
    except WharfError as exc:
        if exc.status != 404:
            raise
        return "deleted"


def _print_job(client: WharfClient, job: dict[str, Any]) -> int:
    """A job for people: a check's verdict on its learnware, a search's results, or the
    state of any other job. 1 for a failed job or a rejected learnware."""
    state, kind = job["state"], job["kind"]
    done = state in ("succeeded", "failed", "cancelled")
    where = f"{job.get('stage') or state}, {100 * (job.get('progress') or 0):.0f}%"
    lid = job.get("learnware_id")
    if kind == "check" and lid:
        if state == "failed":
            print(f"learnware {lid}: the check failed: {job.get('error')}")
            return 1
        if state == "cancelled":
            print(f"learnware {lid}: the check was {job.get('error') or 'cancelled'}")
            print(f"  {_resend_hint(lid)}")
            return 1
        if state == "queued":
            print(f"learnware {lid}: waiting for a check worker (job queued)")
            return 0
        if not done:
            print(f"learnware {lid}: being checked ({where})")
            return 0
        now = _status_now(client, lid)
        status = (job.get("result") or {}).get("status") or now
        if status != now:  # an older check: its log has been replaced since
            print(f"learnware {lid}: {status} by this check; {now} now")
        else:
            print(f"learnware {lid}: {status}")
            if status == "rejected":
                print(f"  {_reason(client.log(lid))}")
                print(f"  the whole log: wharf log {lid}; {_fix_hint(lid)}")
        return 1 if status == "rejected" else 0
    if state in ("failed", "cancelled"):
        print(f"{kind} job {job['id']}: {state}: {job.get('error')}")
        return 1
    if kind == "search" and state == "succeeded":
        print_results(job.get("result") or {})
        return 0
    print(f"{kind} job {job['id']}: {state}" + ("" if done else f" ({where})"))
    for key, value in (job.get("result") or {}).items():
        if isinstance(value, str | int | float):
            print(f"  {key}: {value}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    spec: Any = input_file(args.rkme, "RKME spec JSON") if args.rkme else None
    if args.data:
        from .spec import fit_file  # the RKME is computed here: raw data never leaves

        spec = fit_file(
            args.data,
            points=None,
            gamma=args.gamma,
            seed=0,
            device="auto",
            kind=args.type,
            steps=args.steps,
            label=args.label,
        )
    elif args.label is not None:
        raise CliError("--label names a column of --data's CSV; give --data")
    semantic = _read_json(args.semantic) if args.semantic else None
    if spec is None and semantic is None:
        raise CliError("give --rkme, --data or --semantic: what to search for")
    with client_for(args) as client:
        try:
            result = client.search(spec=spec, semantic=semantic, top=args.top, hetero=args.hetero)
        except WharfError as exc:
            if exc.status != 409:
                raise
            raise CliError(_no_hetero_map(exc)) from None
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_results(result)
    return 0


def _no_hetero_map(exc: WharfError) -> str:
    """A search's 409: the market has no heterogeneous map ready."""
    detail = str((exc.problem or {}).get("detail") or "")
    making = re.search(r"version (\d+) is being made", detail)
    if making:
        return (
            f"the market's heterogeneous map is not ready yet (version {making[1]} is being "
            "made); search again when it is (`wharf admin hetero status` shows it)"
        )
    return (
        "the market has no heterogeneous map yet, so a table whose columns differ from every "
        "learnware's cannot be searched; an admin trains one with `wharf admin hetero train`"
    )


def print_results(result: dict[str, Any]) -> None:
    hetero = result.get("hetero")
    if isinstance(hetero, dict):
        print(f"heterogeneous search (map version {hetero.get('map_version')})")
    singles = result.get("singles") or []
    if not singles:
        print("no matching learnware")
    else:
        print(f"{'learnware':<10} {'name':<32} {'MMD²':>10} {'score':>6} {'similarity':>10}")
        for m in singles:
            mmd = "" if m.get("mmd2") is None else f"{m['mmd2']:.5f}"
            score = "" if m.get("reference_score") is None else f"{m['reference_score']:.3f}"
            sim = "" if m.get("similarity") is None else f"{m['similarity']:.3f}"
            print(f"{m['id']:<10} {str(m.get('name', ''))[:32]:<32} {mmd:>10} {score:>6} {sim:>10}")
    mix = result.get("mixture")
    if mix:
        parts = ", ".join(f"{i} ({w:.2f})" for i, w in zip(mix["ids"], mix["weights"], strict=True))
        print(
            f"\nbest mixture: {parts}\n  MMD² {mix['mmd2']:.5f}, score "
            f"{mix['reference_score']:.3f}, similarity {mix['similarity']:.3f}"
        )


def cmd_download(args: argparse.Namespace) -> int:
    target = Path(args.output)
    if target.is_dir():  # into a folder, like cp
        target = target / f"learnware-{args.learnware_id}.zip"
    output_file(target)
    with client_for(args) as client:
        path = client.download(args.learnware_id, target, original=args.original)
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        out = client.create_token(
            args.name,
            user=args.user,
            role=args.role,
            expires_in_days=args.expires_in_days,
            email=args.email,
        )
    print(f"token {out['id']} for {out['user']}: {out['token']}")
    expires = f"; it expires at {out['expires_at']}" if out.get("expires_at") else ""
    print(f"store it now: it is not shown again{expires}", file=sys.stderr)
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        client.revoke_token(args.token_id)
    print(f"token {args.token_id} revoked")
    return 0
