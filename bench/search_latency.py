"""Search round trip through HTTP: a long poll against polling, on a 5,000-learnware market.

Run: ``PYTHONPATH=. python -m bench.search_latency [--learnwares 5000] [--searches 200]
[--workers 2] [--broker redis|embedded] [--priority N]`` (Redis on 127.0.0.1:6379; uses
database 13 and empties it)

A fresh market (the API and ``--workers`` Celery worker processes, the embedded SQLite catalog
and local store, Redis or the embedded file broker) holds ``--learnwares`` synthetic accepted
learnwares (``bench.search_scale.Market``, K = 50, d = 10, as in ``bench.search_workers``).
One client asks one search at a time with a user's RKME (``top=10``) and times each from the
moment it sends ``POST /v1/searches`` to the moment it holds the result. The ways of waiting
take turns, search by search (shuffled), so each meets the same machine:

- *polling, 2 ms*: ``GET /v1/jobs/{id}`` every 2 ms until the job ends (raw HTTP);
- *SDK, polling*: the SDK's former ``wait``, polling from 50 ms and growing by 1.5×;
- *long poll, POST*: ``POST /v1/searches?wait=30`` answers with the ended job (raw HTTP);
- *long poll, GET*: ``POST /v1/searches``, then ``GET /v1/jobs/{id}?wait=30`` (raw HTTP);
- *SDK*: ``WharfClient.search``.

"in the market" is each job's finish minus its creation (catalog times): the part of a round
trip that no way of waiting can remove. The second table splits each round trip (medians) by
the job's times in the catalog: from sending the request to the job's row (the API reads the
form, checks the spec and inserts the job), to the worker starting it (commit, broker, the
worker's pick-up and its claim of the job), to its end (the search, its names, the result
written), to the client holding the answer (the announcement, the API's read of the job, the
answer); its last column is the part of "→ finished" that is the search itself (ranking and
mixture, ``stats.timings_ms.total`` of the result). The SDK's job id is looked up in the
catalog after its time is taken.

Other work on the same cores shows in every number: the file says how busy the machine was
while the searches ran, and how much of that was the market, its client and this script
(their processes' CPU time) and how much was other processes.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ._common import cpu_seconds, descendants, load_average, table, write_results
from .search_scale import Market
from .search_workers import populate

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_stat() -> tuple[int, int, int]:
    """The machine's (busy, steal, total) CPU time so far, in clock ticks (``/proc/stat``)."""
    with open("/proc/stat") as fh:
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, fh.readline().split()[1:9])
    total = user + nice + system + idle + iowait + irq + softirq + steal
    return total - idle - iowait - steal, steal, total


REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/13")
ENDED = ("succeeded", "failed")


def _roles(market, pids: set[int]) -> dict[int, str]:
    """What each process of the market (and Redis, and this client) is."""
    roles = {os.getpid(): "client (httpx) and this script"}
    api = {p.pid for p in market.procs if "uvicorn" in " ".join(map(str, p.args))}
    for pid in pids - {os.getpid()}:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if pid in api:
            roles[pid] = "API"
        elif ppid in pids - {os.getpid()}:
            roles[pid] = "worker, pool processes"
        else:
            roles[pid] = "worker, Celery main processes"
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/comm") as fh:
                if fh.read().strip() == "redis-server":
                    roles[int(pid)] = "Redis (shared with other work)"
        except OSError:
            continue
    return roles


def _ended(job: dict) -> dict:
    if job["state"] != "succeeded":
        raise RuntimeError(f"search {job['id']} {job['state']}: {job.get('error')}")
    return job


def polling_2ms(http, spec: bytes) -> dict:
    job_id = http.post("/v1/searches", data={"top": "10"}, files=_files(spec)).json()["job_id"]
    while True:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ENDED:
            return _ended(job)
        time.sleep(0.002)


def sdk_polling(http, spec: bytes) -> dict:
    """The SDK's ``wait`` before the long poll: 50 ms, growing by 1.5× up to 1 s."""
    job_id = http.post("/v1/searches", data={"top": "10"}, files=_files(spec)).json()["job_id"]
    poll = 0.05
    while True:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ENDED:
            return _ended(job)
        time.sleep(poll)
        poll = min(poll * 1.5, 1.0)


def long_poll_post(http, spec: bytes) -> dict:
    answer = http.post(
        "/v1/searches", params={"wait": 30}, data={"top": "10"}, files=_files(spec)
    ).json()
    job = answer["job"]
    while job["state"] not in ENDED:
        job = http.get(f"/v1/jobs/{answer['job_id']}", params={"wait": 30}).json()
    return _ended(job)


def long_poll_get(http, spec: bytes) -> dict:
    job_id = http.post("/v1/searches", data={"top": "10"}, files=_files(spec)).json()["job_id"]
    while True:
        job = http.get(f"/v1/jobs/{job_id}", params={"wait": 30}).json()
        if job["state"] in ENDED:
            return _ended(job)


def _files(spec: bytes) -> dict:
    return {"stat_spec": ("spec.json", spec, "application/json")}


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values), p))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learnwares", type=int, default=5000)
    parser.add_argument("--searches", type=int, default=200, help="per way of waiting")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--broker", choices=["redis", "embedded"], default="redis")
    parser.add_argument("--modes", default="polling,sdk-polling,post,get,sdk")
    parser.add_argument(
        "--cpu-searches", type=int, default=100, help="long polls timed for CPU per process"
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=0,
        help="run the market and its client this many nice levels above other work (root "
        "only): with other work on the cores, the nearest thing to a quiet machine",
    )
    args = parser.parse_args()

    import httpx
    import redis
    from sqlalchemy import select
    from wharf.cli.serve import LocalMarket
    from wharf.client import WharfClient
    from wharf.market.catalog import Catalog, Job
    from wharf.market.settings import Settings
    from wharf.specification.files import dumps_spec

    if args.broker == "redis":
        os.environ["WHARF_BROKER_URL"] = REDIS
        redis.Redis.from_url(REDIS).flushdb()
    else:
        os.environ.pop("WHARF_BROKER_URL", None)
    os.environ["WHARF_RATE_LIMIT_ENABLED"] = "false"  # one token drives every search
    if args.priority:
        os.nice(-args.priority)  # the market's processes inherit it
    data = Market(args.learnwares, 50, 10, 0.1)
    tmp = Path(tempfile.mkdtemp(prefix="wharf-bench-latency-"))
    catalog = Catalog.create(Settings(data_dir=tmp).catalog_url)
    populate(catalog, data, args.learnwares)
    specs = [dumps_spec(data.user(q)).encode() for q in range(64)]

    ways = {
        "polling": ("polling, 2 ms (raw HTTP, before)", polling_2ms),
        "sdk-polling": ("SDK, polling from 50 ms (before)", sdk_polling),
        "post": ("long poll: POST /v1/searches?wait=30 (raw HTTP)", long_poll_post),
        "get": ("long poll: POST, then GET /v1/jobs/{id}?wait=30 (raw HTTP)", long_poll_get),
        "sdk": ("SDK: WharfClient.search", None),
    }
    modes = args.modes.split(",")
    times: dict[str, list[float]] = {m: [] for m in modes}
    in_market: dict[str, list[float]] = {m: [] for m in modes}
    steps: dict[str, list[tuple[float, ...]]] = {m: [] for m in modes}
    worker: dict[str, list[float]] = {m: [] for m in modes}  # the search itself, in the worker
    clock: dict[str, tuple[float, float]] = {}
    with (
        LocalMarket(tmp, workers=args.workers) as market,
        httpx.Client(
            base_url=market.url, headers={"Authorization": f"Bearer {market.token}"}, timeout=60
        ) as http,
        WharfClient(market.url, market.token) as client,
    ):

        def run(mode: str, spec: bytes) -> tuple[str, float, dict]:
            """The search job's id, the seconds from sending it to holding its result (the
            SDK's job id is looked up afterwards, outside that time), and the result."""
            t0 = time.perf_counter()
            if mode == "sdk":
                result = client.search(spec=spec, top=10)
                took = time.perf_counter() - t0
                with catalog.session(read_only=True) as s:  # the job the SDK just made
                    job_id = s.scalar(select(Job.id).order_by(Job.created_at.desc()).limit(1))
                return job_id, took, result
            job = ways[mode][1](http, spec)
            return job["id"], time.perf_counter() - t0, job["result"]

        # Every worker process loads its index on its first search: warm them all up.
        for q in range(8 * args.workers):
            run(modes[q % len(modes)], specs[q % len(specs)])
        order = [m for m in modes for _ in range(args.searches)]
        random.Random(0).shuffle(order)
        jobs: dict[str, list[str]] = {m: [] for m in modes}
        market_pids = descendants({p.pid for p in market.procs}) | {os.getpid()}
        load_before, stat_before = load_average(), _cpu_stat()
        market_cpu_before = cpu_seconds(market_pids)
        for q, mode in enumerate(order):
            sent = time.time()
            job_id, took, result = run(mode, specs[q % len(specs)])
            times[mode].append(took)
            clock[job_id] = (sent, sent + took)
            jobs[mode].append(job_id)
            worker[mode].append(result["stats"]["timings_ms"]["total"] / 1e3)
        market_cpu = cpu_seconds(market_pids) - market_cpu_before
        busy, steal, elapsed = (a - b for a, b in zip(_cpu_stat(), stat_before, strict=True))
        # CPU time of each process per search, long poll only: what a search costs the
        # market's processes whatever else runs on the cores.
        roles = _roles(market, market_pids)
        before = {pid: cpu_seconds({pid}) for pid in roles}
        for q in range(args.cpu_searches):
            run("post", specs[q % len(specs)])
        per_search = {
            pid: (cpu_seconds({pid}) - before[pid]) / max(1, args.cpu_searches) for pid in roles
        }
        with catalog.session() as s:
            for mode, ids in jobs.items():
                for job in (s.get(Job, i) for i in ids):
                    in_market[mode].append((job.finished_at - job.created_at).total_seconds())
                    sent, answered = clock[job.id]
                    marks = (job.created_at, job.started_at, job.finished_at)
                    created, started, finished = (m.timestamp() for m in marks)
                    steps[mode].append(
                        (created - sent, started - created, finished - started, answered - finished)
                    )

    rows = []
    for mode in modes:
        t = times[mode]
        rows.append(
            [
                ways[mode][0],
                len(t),
                f"{1e3 * statistics.median(t):.1f} ms",
                f"{1e3 * pct(t, 99):.1f} ms",
                f"{1e3 * statistics.median(in_market[mode]):.1f} ms",
            ]
        )
        print(rows[-1], flush=True)
    split = [
        [
            ways[mode][0],
            *(f"{1e3 * statistics.median(col):.1f} ms" for col in np.array(steps[mode]).T),
            f"{1e3 * statistics.median(worker[mode]):.1f} ms",
        ]
        for mode in modes
    ]
    cores = os.cpu_count() or 1
    others = max(0.0, busy / _TICK - market_cpu)
    noise = (
        f"Load average before the measured searches {load_before}, after {load_average()}. "
        f"While they ran ({elapsed / _TICK / cores:.0f} s) the machine's {cores} cores were "
        f"busy {100 * busy / elapsed:.0f} % of the time: the market, its client and this "
        f"script {100 * market_cpu * _TICK / elapsed:.0f} %, other processes "
        f"{100 * others * _TICK / elapsed:.0f} %; hypervisor steal "
        f"{100 * steal / elapsed:.1f} %."
    )
    by_role: dict[str, float] = {}
    for pid, role in roles.items():
        by_role[role] = by_role.get(role, 0.0) + per_search[pid]
    cpu_rows = [[role, f"{1e3 * t:.1f} ms"] for role, t in sorted(by_role.items())]
    cpu_rows.append(["all", f"{1e3 * sum(by_role.values()):.1f} ms"])
    broker = "Redis" if args.broker == "redis" else "the embedded file broker"
    body = "\n".join(
        [
            __doc__.split("\n\n", 1)[1].strip(),
            "",
            f"{args.learnwares:,} learnwares, {args.workers} worker processes, {broker}, "
            "SQLite catalog, one client on the same cores"
            + (
                f", the market and its client at nice -{args.priority} (Redis, shared with "
                "other work, at its own)."
                if args.priority
                else "."
            ),
            "",
            noise,
            "",
            table(["way of waiting", "searches", "p50", "p99", "in the market (p50)"], rows),
            "",
            table(
                [
                    "way of waiting",
                    "sent → job created",
                    "→ started",
                    "→ finished",
                    "→ answer in hand",
                    "of → finished: the search (worker)",
                ],
                split,
            ),
            "",
            f"CPU time per search of each process, over {args.cpu_searches} more long polls "
            "(POST ?wait=30) after the table's searches (the worker rows add up both worker "
            "processes; each runs half of the searches):",
            "",
            table(["process", "CPU per search"], cpu_rows),
        ]
    )
    suffix = "" if args.broker == "redis" else "_embedded"
    write_results(
        "search_latency", "Search round trip: long poll against polling", body, suffix=suffix
    )


if __name__ == "__main__":
    main()
