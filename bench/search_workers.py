"""Search throughput of a whole market with 1, 2 and 4 worker processes.

Run: ``PYTHONPATH=. python -m bench.search_workers [--learnwares 5000] [--searches 300]``
(needs Redis on 127.0.0.1:6379; uses database 13 and empties it)

For each worker count the benchmark starts a fresh market (the API and that many Celery worker
processes on a Redis broker, the embedded SQLite catalog and local store), fills the catalog
with the same synthetic accepted learnwares (``bench.search_scale.Market``, K = 50, d = 10),
lets every worker process load its index, then submits ``--searches`` searches with user specs
through the HTTP API from 8 client threads at once. Throughput is the number of searches over
the time from the first submission to the last finish; latency is each job's finish minus its
creation, read from the catalog (no polling delay in it).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ._common import table, write_results
from .search_scale import Market

REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/13")


def populate(catalog, market: Market, n: int) -> None:
    from wharf.market.catalog import repo
    from wharf.specification.semantic import generate_semantic_spec

    semantic = generate_semantic_spec(
        name="synthetic",
        description="a synthetic learnware",
        data_type="Table",
        task_type="Classification",
        library_type="Scikit-learn",
        scenarios="Business",
        license="MIT",
        input_description={"Dimension": market.d, "Description": {}},
        output_description={"Dimension": 2, "Description": {}},
    )
    with catalog.session() as s:
        owner = repo.create_user(s, "bench").id
    for start in range(0, n, 1000):
        with catalog.session() as s:
            for i, spec in enumerate(market.batch(start, min(n, start + 1000)), start):
                accept_synthetic(s, owner, semantic, i, spec, market)


def accept_synthetic(s, owner: int, semantic: dict, index: int, spec, market: Market):
    """Store the ``index``-th synthetic learnware as accepted, with ``spec``, without a check
    (its package is never read); the learnware's row."""
    from wharf.market.catalog import repo
    from wharf.specification.files import dumps_spec

    sha = hashlib.sha256(f"bench-{index}".encode()).hexdigest()
    lw = repo.create_learnware(s, owner, semantic, sha, f"packages/{sha}.zip", 1)
    repo.claim_for_check(s, lw.id)
    meta = {
        "type": spec.spec_type,
        "shape": [market.d],
        "gamma": spec.gamma,
        "points": market.k,
        "num_points": 1000,
    }
    repo.finish_check(
        s, lw.id, accepted=True, log="", spec_meta=meta, stat_spec_json=dumps_spec(spec)
    )
    return lw


def run(workers: int, n: int, searches: int, data: Market) -> dict:
    import redis
    from wharf.cli.serve import LocalMarket
    from wharf.client import WharfClient
    from wharf.market.catalog import Catalog, Job
    from wharf.market.settings import Settings

    redis.Redis.from_url(REDIS).flushdb()
    tmp = Path(tempfile.mkdtemp(prefix=f"wharf-bench-workers{workers}-"))
    settings = Settings(data_dir=tmp)
    catalog = Catalog.create(settings.catalog_url)
    populate(catalog, data, n)
    users = [data.user(q) for q in range(searches)]
    with LocalMarket(tmp, workers=workers) as market, WharfClient(market.url, market.token) as c:
        # Every worker process loads its index on its first search: warm them all up.
        warm = [c.start_search(spec=users[q % 8]) for q in range(6 * workers)]
        for job in warm:
            c.wait(job, timeout=300)
        t0 = time.time()
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(lambda u: c.start_search(spec=u, top=10), users))
        deadline = time.monotonic() + 600
        while True:
            with catalog.session() as s:
                jobs = [s.get(Job, i) for i in ids]
                if all(j.state in ("succeeded", "failed") for j in jobs):
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("searches did not finish in 10 minutes")
            time.sleep(0.2)
        failed = sum(j.state == "failed" for j in jobs)
        first = min(j.created_at for j in jobs).timestamp()
        last = max(j.finished_at for j in jobs).timestamp()
        lat = [(j.finished_at - j.created_at).total_seconds() for j in jobs]
    return {
        "workers": workers,
        "throughput": searches / (last - first),
        "p50": statistics.median(lat),
        "p99": float(np.percentile(lat, 99)),
        "failed": failed,
        "submit_s": last - t0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learnwares", type=int, default=5000)
    parser.add_argument("--searches", type=int, default=300)
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    os.environ["WHARF_BROKER_URL"] = REDIS
    os.environ["WHARF_RATE_LIMIT_ENABLED"] = "false"  # one token drives the whole load
    data = Market(args.learnwares, 50, 10, 0.1)
    rows = []
    base = None
    for w in [int(x) for x in args.workers.split(",")]:
        r = run(w, args.learnwares, args.searches, data)
        base = base or r["throughput"]
        rows.append(
            [
                w,
                f"{r['throughput']:.1f} /s ({r['throughput'] / base:.2f}×)",
                f"{1e3 * r['p50']:.0f} ms",
                f"{1e3 * r['p99']:.0f} ms",
                r["failed"],
            ]
        )
        print(rows[-1], flush=True)
    body = "\n".join(
        [
            __doc__.split("\n\n", 1)[1].strip(),
            "",
            f"{args.learnwares:,} learnwares, {args.searches} searches per worker count.",
            "",
            table(
                ["worker processes", "searches/s (vs 1)", "latency p50", "latency p99", "failed"],
                rows,
            ),
        ]
    )
    write_results("search_workers", "Search throughput with 1, 2 and 4 worker processes", body)


if __name__ == "__main__":
    main()
