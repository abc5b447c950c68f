"""A bounded load test of the market service: enqueue latency at 100 concurrent clients, then
every job it queued carried through to the end.

Run: ``PYTHONPATH=. python -m bench.load [--clients 100] [--rate 1.0] [--seconds 20] [--warmup 5]``
(needs Redis on 127.0.0.1:6379; uses database 14 and empties it)

Phase 1 (latency): the API (uvicorn with ``--api-workers`` processes, 2 by default) on a Redis
broker with the embedded SQLite catalog and local store, and no worker running, so every
request is only validated, recorded and queued. ``--clients`` clients, each with its own API
token (so each has its own rate-limit budget, as real users do), send requests at ``--rate``
per second each, at random (exponential) intervals, for ``--seconds`` seconds: an open load,
bounded in time and count, that does not slow down when the API does. The mix: 60 % semantic
searches, 30 % searches with an RKME (a 20-point spec in 64 features), 10 % submissions of a
distinct 30 KB package. Latency is measured per request by the client, on the same 2 cores.
The same load runs ``--warmup`` seconds first, unmeasured (its jobs are drained and checked
like the others): a cold API spends its first second opening database and broker connections
and starting threads for the first burst of clients, which is not the steady state measured.

Phase 2 (nothing lost): two worker processes start and drain the queues; every job that got a
202 must finish (every submission accepted, every search with a result). The target: enqueue
p99 ≤ 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

from ._common import cpu_seconds, cpu_ticks, descendants, table, verdict, write_results
from .service import variant

REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/14")


async def client_loop(http, deadline, rate, payloads, rng, out, job_ids):
    next_at = time.monotonic() + rng.expovariate(rate)
    while True:
        now = time.monotonic()
        if next_at > deadline:
            return
        if next_at > now:
            await asyncio.sleep(next_at - now)
        kind = rng.choices(["semantic", "spec", "submit"], weights=[6, 3, 1])[0]
        form = aiohttp.FormData()
        if kind == "semantic":
            form.add_field("semantic_spec", payloads["semantic"])
            path = "/v1/searches"
        elif kind == "spec":
            form.add_field(
                "stat_spec", payloads["spec"], filename="spec.json", content_type="application/json"
            )
            path = "/v1/searches"
        else:
            form.add_field("semantic_spec", payloads["lw_semantic"])
            form.add_field(
                "package", payloads["package"](), filename="p.zip", content_type="application/zip"
            )
            path = "/v1/learnwares"
        started = time.monotonic()
        async with http.post(path, data=form) as r:
            body = await r.read()
        out.append((kind, time.monotonic() - started, r.status))
        if r.status == 202:
            job_ids.append((kind, json.loads(body)["job_id"]))
        next_at += rng.expovariate(rate)


async def load(
    url, tokens, seconds, rate, payloads, warmup=0.0, snapshot=lambda: None
) -> tuple[list, list, float, list]:
    """Run the clients for ``warmup`` seconds (latencies not kept), then ``seconds``; returns
    the measured requests, every job queued, the measured phase's length and what
    ``snapshot()`` returned at its start and end."""
    out: list = []
    job_ids: list = []
    marks: list = []
    # aiohttp rather than httpx: the clients share the 2 cores with the API, and httpx spent
    # about twice the CPU per request. Each client has its own session (one connection).
    clients = [
        aiohttp.ClientSession(
            base_url=url,
            headers={"Authorization": f"Bearer {t}"},
            timeout=aiohttp.ClientTimeout(total=30),
            connector=aiohttp.TCPConnector(limit=1),
        )
        for t in tokens
    ]
    # Each opens its connection before the clock starts.
    for response in await asyncio.gather(*(http.get("/healthz") for http in clients)):
        response.release()
    rngs = [random.Random(i) for i in range(len(clients))]
    measured = 0.0
    for phase, length in (("warm-up", warmup), ("measured", seconds)):
        if length <= 0:
            continue
        t0 = time.monotonic()
        deadline = t0 + length
        kept = out if phase == "measured" else []
        if phase == "measured":
            marks.append(snapshot())
        await asyncio.gather(
            *(
                client_loop(http, deadline, rate, payloads, rng, kept, job_ids)
                for http, rng in zip(clients, rngs, strict=True)
            )
        )
        measured = time.monotonic() - t0
    marks.append(snapshot())
    await asyncio.gather(*(http.close() for http in clients))
    return out, job_ids, measured, marks


def pct(values, p) -> str:
    return f"{1e3 * float(np.percentile(values, p)):.1f}" if values else "—"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rate", type=float, default=1.0, help="requests/s per client")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--warmup", type=float, default=5.0, help="seconds of the same load before the clock"
    )
    parser.add_argument("--api-workers", type=int, default=2)
    args = parser.parse_args()

    import redis
    from wharf.cli.serve import LocalMarket, worker_command
    from wharf.examples.learnwares import build_examples
    from wharf.market.catalog import Catalog, Job, repo
    from wharf.market.settings import Settings
    from wharf.specification import RKME
    from wharf.specification.files import dumps_spec

    os.environ["WHARF_BROKER_URL"] = REDIS
    redis.Redis.from_url(REDIS).flushdb()
    tmp = Path(tempfile.mkdtemp(prefix="wharf-bench-load-"))
    examples = build_examples(tmp / "examples")
    ex = next(e for e in examples if e.name == "digits 5-9")
    # Distinct packages, made before the load: zipping inside it would stall the clients.
    expected = int(args.clients * args.rate * (args.seconds + args.warmup) * 0.1 * 2) + 100
    packages = iter([variant(ex.package, f"load {i} " + "x" * 30_000) for i in range(expected)])
    payloads = {
        "semantic": json.dumps({"Task": {"Type": "Class", "Values": ["Classification"]}}),
        "spec": dumps_spec(RKME(n_points=20, seed=1).fit(ex.X_test)).encode(),
        "lw_semantic": json.dumps(ex.semantic),
        "package": lambda: next(packages),
    }
    with LocalMarket(tmp / "market", workers=0, api_workers=args.api_workers) as m:
        catalog = Catalog(Settings(data_dir=tmp / "market").catalog_url)
        with catalog.session() as s:  # straight into the catalog: token creation is rate-limited
            tokens = [
                repo.create_token(s, repo.create_user(s, f"u{i}").id, "load")[0]
                for i in range(args.clients)
            ]
        api = descendants({p.pid for p in m.procs})  # no workers yet: the API's processes

        def snapshot():
            return cpu_seconds(api), os.times(), cpu_ticks()

        results, jobs, elapsed, marks = asyncio.run(
            load(m.url, tokens, args.seconds, args.rate, payloads, args.warmup, snapshot)
        )

        # Phase 2: workers drain the queues; nothing that got a 202 may be lost.
        logs = tmp / "market" / "logs"
        for i in range(2):
            m._spawn(worker_command("check,search,index", 1, f"drain{i}@%h"), logs / f"d{i}.log")
        ids = [j for _, j in jobs]
        t1 = time.monotonic()
        while True:
            with catalog.session() as s:
                states = [s.get(Job, j).state for j in ids]
            done = sum(st in ("succeeded", "failed") for st in states)
            if done == len(ids) or time.monotonic() - t1 > 900:
                break
            time.sleep(1)
        drain = time.monotonic() - t1
        succeeded = sum(st == "succeeded" for st in states)
        failed = sum(st == "failed" for st in states)
        # Every submission is a valid learnware: a check that finished but rejected it (a
        # worker without its sandbox, say) lost it as surely as a job that never ran.
        with catalog.session() as s:
            checks = [s.get(Job, j).result or {} for kind, j in jobs if kind == "submit"]
        accepted = sum(r.get("status") == "accepted" for r in checks)

    rows = []
    for kind, label in (
        ("semantic", "POST /v1/searches (semantic)"),
        ("spec", "POST /v1/searches (RKME upload)"),
        ("submit", "POST /v1/learnwares (30 KB)"),
        (None, "all"),
    ):
        lat = [t for k, t, _ in results if kind in (None, k)]
        bad = sum(1 for k, _, code in results if kind in (None, k) and code != 202)
        rows.append(
            [
                label,
                len(lat),
                bad,
                f"{len(lat) / elapsed:.0f}/s",
                pct(lat, 50),
                pct(lat, 90),
                pct(lat, 99),
                f"{1e3 * max(lat):.1f}" if lat else "—",
            ]
        )
    (api0, own0, ticks0), (api1, own1, ticks1) = marks
    n = len(results)
    api_ms = 1e3 * (api1 - api0) / n
    client_ms = 1e3 * (own1.user + own1.system - own0.user - own0.system) / n
    total, steal = (b - a for a, b in zip(ticks0, ticks1, strict=True))
    all_lat = [t for _, t, _ in results]
    p99 = float(np.percentile(all_lat, 99))
    codes = sorted({c for _, _, c in results})
    body = "\n".join(
        [
            __doc__.split("\n\n", 1)[1].strip(),
            "",
            f"{args.clients} clients × {args.rate}/s for {args.seconds:.0f} s; API: uvicorn with "
            f"{args.api_workers} worker processes; catalog: {catalog.engine.dialect.name}. "
            f"Status codes seen: {codes}. CPU per request in the measured phase: API "
            f"{api_ms:.2f} ms, clients {client_ms:.2f} ms; the hypervisor gave "
            f"{steal / max(total, 1):.0%} of the machine's CPU time to other machines "
            "(steal) meanwhile.",
            "",
            "## Enqueue latency (ms)",
            "",
            table(["request", "n", "non-202", "throughput", "p50", "p90", "p99", "max"], rows),
            "",
            "## Nothing lost",
            "",
            f"{len(ids)} jobs queued; after {drain:.0f} s of draining with 2 worker processes: "
            f"{succeeded} succeeded, {failed} failed, {len(ids) - succeeded - failed} unfinished; "
            f"{accepted} of the {len(checks)} submissions accepted.",
            "",
            "## Target",
            "",
            table(
                ["target", "measured", "result"],
                [
                    [
                        f"enqueue p99 ≤ 50 ms at {args.clients} clients (target: 100)",
                        f"{1e3 * p99:.1f} ms",
                        verdict(p99 <= 0.05),
                    ],
                    [
                        "every queued job finishes",
                        f"{succeeded}/{len(ids)} succeeded",
                        verdict(succeeded == len(ids)),
                    ],
                    [
                        "every submission accepted",
                        f"{accepted}/{len(checks)} accepted",
                        verdict(accepted == len(checks)),
                    ],
                ],
            ),
        ]
    )
    write_results("load", "Bounded load test: enqueue latency and nothing lost", body)


if __name__ == "__main__":
    main()
