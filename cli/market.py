"""Commands that talk to a running market over HTTP: submit, jobs, search, download, token."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from wharf.client import WharfClient

from . import admin as admin_local


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
    return WharfClient(args.url, args.token)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="submit a learnware package")
    p.add_argument("package", help="the learnware zip")
    p.add_argument("--semantic", required=True, help="semantic spec JSON file")
    p.add_argument("--wait", action="store_true", help="wait for the check and print its outcome")
    add_common(p)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("jobs", help="show a job (check or search)")
    p.add_argument("job_id")
    p.add_argument("--watch", action="store_true", help="follow its progress until it finishes")
    add_common(p)
    p.set_defaults(func=cmd_jobs)

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
    p.add_argument("--semantic", help="requirement semantic spec JSON file")
    p.add_argument("--top", type=int, default=None, help="at most this many single results")
    p.add_argument("--gamma", type=float, default=0.1, help="with --data: kernel parameter")
    p.add_argument("--json", action="store_true", help="print the raw result as JSON")
    add_common(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("download", help="download a learnware package")
    p.add_argument("learnware_id")
    p.add_argument("-o", "--output", required=True)
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
    p.add_argument("--expires-in-days", type=int)
    add_common(p)
    p.set_defaults(func=cmd_token_create)
    p = token.add_parser("revoke", help="revoke a token")
    p.add_argument("token_id", type=int)
    add_common(p)
    p.set_defaults(func=cmd_token_revoke)


def _read_json(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"error: cannot read {path}: {exc}") from None


def _progress(job: dict[str, Any]) -> None:
    stage = job.get("stage") or job["state"]
    print(
        f"\r  {job['state']:<9} {stage:<14} {100 * (job.get('progress') or 0):5.1f}%",
        end="",
        file=sys.stderr,
        flush=True,
    )


def cmd_submit(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        sub = client.submit(args.package, _read_json(args.semantic))
        print(f"learnware {sub['learnware_id']}: {sub['status']} (job {sub['job_id']})")
        if not args.wait:
            return 0
        client.wait(sub["job_id"], on_progress=_progress)
        print(file=sys.stderr)
        lw = client.learnware(sub["learnware_id"])
        print(f"learnware {lw['id']}: {lw['status']}")
        if lw["status"] != "accepted":
            print(client.log(lw["id"]), end="")
            return 1
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        if args.watch:
            job = client.wait(args.job_id, on_progress=_progress)
            print(file=sys.stderr)
        else:
            job = client.job(args.job_id)
    print(json.dumps(job, indent=2))
    return 0 if job["state"] != "failed" else 1


def cmd_search(args: argparse.Namespace) -> int:
    spec: Any = args.rkme
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
        )
    semantic = _read_json(args.semantic) if args.semantic else None
    if spec is None and semantic is None:
        raise SystemExit("error: give --rkme, --data or --semantic")
    with client_for(args) as client:
        result = client.search(spec=spec, semantic=semantic, top=args.top)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_results(result)
    return 0


def print_results(result: dict[str, Any]) -> None:
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
    with client_for(args) as client:
        path = client.download(args.learnware_id, args.output)
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        out = client.create_token(
            args.name, user=args.user, role=args.role, expires_in_days=args.expires_in_days
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
