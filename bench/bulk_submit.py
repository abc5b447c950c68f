"""Bulk submission end to end: ``wharf bulk-index DIR`` of N packages on default settings, every
package checked in the sandbox.

    PYTHONPATH=. python -m bench.bulk_submit [--n 1000] [--broken 10] [--workers 2]

Writes N synthetic packages (``examples.bundles.write_packages``: linear regressors with
random weights and RKMEs of K = 50 points in d = 10, each with its semantic spec beside it;
``--broken`` of them have weights two features too wide, so their check rejects them), starts
a fresh embedded market with every setting at its default (SQLite catalog, file broker, local
store, rate limits on: 60 writes and 600 reads a minute per token) and W worker processes,
and runs ``wharf bulk-index DIR`` as its own process, first with the market's admin token,
then, on a second set of N packages, with a user's. Each run is timed from the command's
start to its exit. Then the catalog must hold every package as a learnware of that caller,
accepted or rejected, each with a check log in which the model ran in the bubblewrap sandbox;
the API's /metrics give the requests the command made and any 429 answers. The market's CPU
time (its processes and the sandboxed runs they waited for) per check, and the hypervisor's
steal, help read a time taken while other work shared the cores.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from wharf.cli.serve import LocalMarket
from wharf.client import WharfClient
from wharf.examples.bundles import write_packages
from wharf.market.catalog import Catalog, Learnware, User
from wharf.market.settings import Settings

from bench._common import cpu_ticks, descendants, load_average, table, write_results

SANDBOX_LINE = "INFO sandbox: bubblewrap"
RAN_LINE = "model run finished"


def _metrics(url: str) -> dict[tuple[str, str, str], int]:
    """Requests answered so far, by (method, route, status), from /metrics."""
    import httpx

    counts: dict[tuple[str, str, str], int] = {}
    pattern = re.compile(
        r"^wharf_http_request_duration_seconds_count\{(?P<labels>.*)\} (?P<n>[0-9.e+]+)$"
    )
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        m = pattern.match(line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m["labels"]))
            key = (labels["method"], labels["route"], labels["status"])
            if key[1] != "/metrics":
                counts[key] = int(float(m["n"]))
    return counts


def _cpu(pids: set[int]) -> float:
    """CPU seconds (user + system) of the processes ``pids`` and of their children that
    have ended (the sandboxed model runs, the pool processes a worker replaced)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return total / os.sysconf("SC_CLK_TCK")


def _delta(after: dict, before: dict) -> dict:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def _audit(data_dir: Path, owner: str, n: int) -> dict:
    """What the catalog holds of ``owner``'s learnwares: statuses, and the logs."""
    catalog = Catalog(Settings(data_dir=data_dir).catalog_url)
    try:
        with catalog.session(read_only=True) as s:
            user = s.query(User).filter(User.name == owner).one()
            rows = (
                s.query(Learnware.status, Learnware.check_log)
                .filter(Learnware.owner_id == user.id)
                .all()
            )
    finally:
        catalog.dispose()
    statuses = [str(status) for status, _ in rows]
    sandboxed = sum(1 for _, log in rows if log and SANDBOX_LINE in log and RAN_LINE in log)
    return {
        "learnwares": len(rows),
        "accepted": statuses.count("accepted"),
        "rejected": statuses.count("rejected"),
        "unchecked": sum(s not in ("accepted", "rejected") for s in statuses),
        "sandboxed": sandboxed,
        "complete": len(rows) == n and sandboxed == n,
    }


def run(market: LocalMarket, token: str, owner: str, folder: Path, n: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHARF_")}
    before = _metrics(market.url)
    cmd = [sys.executable, "-m", "wharf.cli.main", "bulk-index", str(folder)]
    cmd += ["--url", market.url, "--token", token, "--timeout", "7200"]
    pids = descendants({p.pid for p in market.procs})
    cpu0, ticks0 = _cpu(pids), cpu_ticks()
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    cpu = _cpu(descendants({p.pid for p in market.procs}) | pids) - cpu0
    ticks1 = cpu_ticks()
    steal = (ticks1[1] - ticks0[1]) / max(1, ticks1[0] - ticks0[0])
    requests = _delta(_metrics(market.url), before)
    summary = done.stdout.splitlines()[0] if done.stdout else done.stderr[-500:]
    reasons = sorted(
        {
            line.split(": rejected: ", 1)[1]
            for line in done.stdout.splitlines()
            if ": rejected: " in line
        }
    )
    return {
        "owner": owner,
        "code": done.returncode,
        "seconds": seconds,
        "cpu_per_check": cpu / n,
        "steal": steal,
        "load": load_average(),
        "summary": summary,
        "reasons": reasons,
        "posts": sum(v for (m, r, _), v in requests.items() if m == "POST"),
        "bulk_posts": sum(
            v for (m, r, _), v in requests.items() if m == "POST" and r == "/v1/bulk-submissions"
        ),
        "reads": sum(v for (m, _, _), v in requests.items() if m == "GET"),
        "refused_429": sum(v for (_, _, st), v in requests.items() if st == "429"),
        **_audit(market.data_dir, owner, n),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="packages per run (default 1000)")
    parser.add_argument("--broken", type=int, default=10, help="of them failing their check")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    args = parser.parse_args()

    for name in [k for k in os.environ if k.startswith("WHARF_")]:
        del os.environ[name]  # every setting at its default
    root = Path(tempfile.mkdtemp(prefix="bench-bulk-submit-"))
    broken = range(0, args.n, max(1, args.n // max(1, args.broken)))[: args.broken]
    rows, results = [], []
    try:
        t0 = time.perf_counter()
        for seed in (1, 2):
            write_packages(root / f"packages-{seed}", args.n, seed=seed, broken=broken)
        build_s = time.perf_counter() - t0
        with LocalMarket(root / "market", workers=args.workers) as market:
            with WharfClient(market.url, market.token) as admin:
                user_token = admin.create_token("bench", user="bench-user")["token"]
            for seed, (owner, token) in (
                (1, ("admin", market.token)),
                (2, ("bench-user", user_token)),
            ):
                result = run(market, token, owner, root / f"packages-{seed}", args.n)
                results.append(result)
                rows.append(
                    [
                        owner,
                        f"{result['seconds']:.1f} s",
                        f"{args.n / result['seconds']:.2f}",
                        f"{result['learnwares']} ({result['accepted']} accepted, "
                        f"{result['rejected']} rejected, {result['unchecked']} unchecked)",
                        f"{result['sandboxed']}",
                        f"{result['bulk_posts']} of {result['posts']}",
                        f"{result['reads']}",
                        f"{result['refused_429']}",
                        f"{result['cpu_per_check'] * 1000:.0f} ms",
                        f"{result['steal']:.0%}",
                        f"{result['load']}",
                        "pass" if result["complete"] and result["refused_429"] == 0 else "FAIL",
                    ]
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)

    body = (
        f"{args.n} packages per run ({len(broken)} built to fail their check), written in "
        f"{build_s:.1f} s for both runs; a fresh embedded market with every setting at its "
        f"default and {args.workers} worker processes (each takes checks, searches and "
        "index tasks, one at a time). `wharf bulk-index DIR` ran as its own process; the "
        "time is from its start to its exit, so it includes packing and uploading the tar, "
        "staging, every check and the report.\n\n"
        + table(
            [
                "caller",
                "time",
                "checks/s",
                "learnwares in the catalog",
                "logs showing the model run in bubblewrap",
                "POSTs (bulk submissions of all)",
                "GETs",
                "429 answers",
                "market CPU per check",
                "steal",
                "load average after",
                "every package checked",
            ],
            rows,
        )
        + "\n\nThe command's summary lines:\n\n"
        + "\n".join(f"- {r['owner']}: `{r['summary']}` (exit status {r['code']})" for r in results)
        + "\n\nWhy the check rejected the broken packages (from the command's report):\n\n"
        + "\n".join(f"- {reason}" for r in results for reason in r["reasons"][:1])
        + "\n"
    )
    write_results("bulk_submit", "Bulk submission: every package checked", body)


if __name__ == "__main__":
    main()
