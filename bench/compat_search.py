"""Search through the compatible API (/api, the reference client's) on a 5,000-learnware
market, against the /v1 long poll in the same run.

Run: ``PYTHONPATH=. python -m bench.compat_search [--learnwares 5000] [--searches 200]
[--workers 2]`` (Redis on 127.0.0.1:6379; uses database 11, or $BENCH_REDIS, and empties it)

A fresh market (the API and ``--workers`` Celery worker processes on a Redis broker, the
embedded SQLite catalog and local store) holds ``--learnwares`` synthetic accepted learnwares
(``bench.search_scale.Market``, K = 50, d = 10, as in ``bench.search_workers``). One client
logs in as the reference client does (``/api/auth/login_by_token``) and asks one search at a
time with a user's RKME, timing each from sending the request to holding the answer:

- *compat*: ``POST /api/engine/search_learnware``, the form ``LearnwareClient.search_learnware``
  sends (``semantic_specification`` as the reference's ``generate_semantic_spec`` writes a
  user's, ``statistical_specification`` the RKME's JSON, ``limit`` 10, ``page`` 0), answered
  with the envelope's single and multi lists once the search job has ended;
- *v1 long poll* (the baseline): ``POST /v1/searches?wait=30`` with ``top`` 10 and the same
  spec, answered with the ended job;
- *v1 long poll, the same semantic spec*: the baseline sending the compat request's semantic
  spec too, so that the search job is the one the compat route queues (its tag filter passes
  every learnware here, but it runs).

The three take turns, search by search (shuffled), so each meets the same machine. The target
is a compat p50 within 200 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ._common import table, verdict, write_results
from .search_scale import Market
from .search_workers import populate

REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/11")
TARGET_P50_S = 0.200
#: What the reference's generate_semantic_spec(data_type="Table") gives a user.
USER_SEMANTIC = {
    "Data": {"Type": "Class", "Values": ["Table"]},
    "Task": {"Type": "Class", "Values": []},
    "Model": {"Type": "Optional", "Values": ["Others"]},
    "Library": {"Type": "Class", "Values": []},
    "License": {"Type": "Class", "Values": []},
    "Scenario": {"Type": "Tag", "Values": []},
    "Name": {"Type": "String", "Values": ""},
    "Description": {"Type": "String", "Values": ""},
}


def compat(http, spec: bytes) -> int:
    answer = http.post(
        "/api/engine/search_learnware",
        data={"semantic_specification": json.dumps(USER_SEMANTIC), "limit": 10, "page": 0},
        files={"statistical_specification": ("learnware_stat.json", spec)},
    ).json()
    if answer["code"] != 0:
        raise RuntimeError(f"compat search: {answer}")
    return len(answer["data"]["learnware_list_single"])


def v1_long_poll(http, spec: bytes) -> int:
    answer = http.post(
        "/v1/searches",
        params={"wait": 30},
        data={"top": "10"},
        files={"stat_spec": ("spec.json", spec, "application/json")},
    ).json()
    if answer["job"]["state"] != "succeeded":
        raise RuntimeError(f"v1 search: {answer}")
    return len(answer["job"]["result"]["singles"])


def v1_long_poll_semantic(http, spec: bytes) -> int:
    """The baseline with the compat request's semantic spec: the same search job."""
    answer = http.post(
        "/v1/searches",
        params={"wait": 30},
        data={"top": "10", "semantic_spec": json.dumps(USER_SEMANTIC)},
        files={"stat_spec": ("spec.json", spec, "application/json")},
    ).json()
    if answer["job"]["state"] != "succeeded":
        raise RuntimeError(f"v1 search: {answer}")
    return len(answer["job"]["result"]["singles"])


WAYS = {
    "compat (/api/engine/search_learnware)": compat,
    "v1 long poll (baseline)": v1_long_poll,
    "v1 long poll, the same semantic spec": v1_long_poll_semantic,
}


def run(n: int, searches: int, workers: int, data: Market) -> dict[str, list[float]]:
    import httpx
    import redis
    from wharf.cli.serve import LocalMarket
    from wharf.market.catalog import Catalog
    from wharf.market.settings import Settings
    from wharf.specification.files import dumps_spec

    redis.Redis.from_url(REDIS).flushdb()
    tmp = Path(tempfile.mkdtemp(prefix="wharf-bench-compat-"))
    catalog = Catalog.create(Settings(data_dir=tmp).catalog_url)
    populate(catalog, data, n)
    specs = [dumps_spec(data.user(q)).encode() for q in range(searches)]
    times: dict[str, list[float]] = {way: [] for way in WAYS}
    with LocalMarket(tmp, workers=workers) as market:
        login = httpx.post(
            f"{market.url}/api/auth/login_by_token",
            json={"email": "admin@localhost", "token": market.token},
        ).json()
        headers = {"Authorization": f"Bearer {login['data']['token']}"}
        with httpx.Client(base_url=market.url, headers=headers, timeout=60) as http:
            for q in range(6 * workers):  # every worker process loads its index first
                for fn in WAYS.values():
                    fn(http, specs[q % 8])
            order = [(q, way) for q in range(searches) for way in WAYS]
            random.Random(0).shuffle(order)
            for q, way in order:
                t0 = time.perf_counter()
                found = WAYS[way](http, specs[q])
                times[way].append(time.perf_counter() - t0)
                if found == 0:
                    raise RuntimeError(f"{way} found nothing for user {q}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learnwares", type=int, default=5000)
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    os.environ["WHARF_BROKER_URL"] = REDIS
    os.environ["WHARF_RATE_LIMIT_ENABLED"] = "false"  # one client drives the whole load
    data = Market(args.learnwares, 50, 10, 0.1)
    times = run(args.learnwares, args.searches, args.workers, data)
    rows = []
    for way, values in times.items():
        p50 = statistics.median(values)
        rows.append(
            [
                way,
                f"{1e3 * p50:.0f} ms",
                f"{1e3 * float(np.percentile(values, 90)):.0f} ms",
                f"{1e3 * float(np.percentile(values, 99)):.0f} ms",
                len(values),
            ]
        )
    compat_p50 = statistics.median(next(iter(times.values())))
    body = "\n".join(
        [
            __doc__.split("\n\n", 1)[1].strip(),
            "",
            f"{args.learnwares:,} learnwares, {args.searches} searches each way, "
            f"{args.workers} worker processes.",
            "",
            table(["way", "round trip p50", "p90", "p99", "searches"], rows),
            "",
            f"Target: compat p50 ≤ {1e3 * TARGET_P50_S:.0f} ms: "
            f"{verdict(compat_p50 <= TARGET_P50_S)} ({1e3 * compat_p50:.0f} ms).",
        ]
    )
    write_results("compat_search", "Search through the compatible API (/api)", body)


if __name__ == "__main__":
    main()
