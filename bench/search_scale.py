"""Search at market scale: the search worker's index (``market.index``) from 1,000 to
1,000,000 learnwares — build time, memory, latency and recall@10 against an exact scan.

Run: ``PYTHONPATH=. python -m bench.search_scale [--sizes 1000,10000,100000,1000000]``

A synthetic market is made of *tasks*: each task (one per 100 learnwares) is a mixture of 3
Gaussian components around a task centre (centres ~ N(0, 2²I), components ± N(0, 0.8²I),
spread 0.6). A learnware of the task has its own mixing weights (Dirichlet(1)) and a small
shift (N(0, 0.2²I)); its RKME is K points drawn from its data with near-uniform weights
(Dirichlet(20·1)), built directly rather than fitted (fitting a million specs would take
hours and measures nothing here). A user is a new learnware of a random task. Learnwares of
the same task are near ties for the user; other tasks are far.

Per size: the time to build the index from nothing (adds in batches of 20,000, as a bulk
import does), the process's resident memory, the FAISS kind and its tuned nprobe; per query
the whole ``search_index`` call (ranking, scores and the greedy mixture) and, as the simple
baseline, an exact scan of every spec with the same packed arrays; recall@10 = |top-10 of
the index ∩ exact top-10| / 10, on fewer queries at large sizes (an exact scan of a million
specs takes seconds).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from wharf.market.index.partition import IndexConfig, MarketIndex
from wharf.market.index.search import search_index
from wharf.specification import RKME

from ._common import table, verdict, write_results

BATCH = 20_000
PER_TASK = 100


class Market:
    """Deterministic synthetic learnwares: spec ``i`` is the same whenever it is drawn."""

    def __init__(self, n: int, k: int, d: int, gamma: float, seed: int = 0):
        self.n, self.k, self.d, self.gamma = n, k, d, gamma
        self.tasks = max(1, n // PER_TASK)
        rng = np.random.default_rng(seed)
        centers = rng.normal(0.0, 2.0, size=(self.tasks, 1, d))
        self.components = centers + rng.normal(0.0, 0.8, size=(self.tasks, 3, d))
        self.task_of = rng.integers(0, self.tasks, size=n)

    def spec(self, task: int, rng) -> RKME:
        weights = rng.dirichlet(np.ones(3))
        comp = rng.choice(3, size=self.k, p=weights)
        shift = rng.normal(0.0, 0.2, size=self.d)
        z = self.components[task, comp] + shift + rng.normal(0.0, 0.6, size=(self.k, self.d))
        return RKME.from_arrays(z, rng.dirichlet(np.full(self.k, 20.0)), self.gamma, 1000)

    def batch(self, start: int, stop: int) -> list[RKME]:
        return [
            self.spec(int(self.task_of[i]), np.random.default_rng([1, i]))
            for i in range(start, stop)
        ]

    def user(self, q: int) -> RKME:
        rng = np.random.default_rng([2, q])
        return self.spec(int(rng.integers(0, self.tasks)), rng)


def rss_mib() -> tuple[float, float]:
    fields = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def pct(values, p) -> float:
    return float(np.percentile(np.asarray(values), p))


def run_size(n, k, d, gamma, queries, exact_queries, config) -> dict:
    exact_queries = min(exact_queries, queries)
    market = Market(n, k, d, gamma)
    index = MarketIndex(config)
    t0 = time.perf_counter()
    for start in range(0, n, BATCH):
        stop = min(n, start + BATCH)
        index.add(list(range(start + 1, stop + 1)), market.batch(start, stop))
    build = time.perf_counter() - t0
    rss, hwm = rss_mib()
    part = next(iter(index.partitions.values()))
    info = part.describe()

    latencies, ranks = [], []
    for q in range(queries):
        user = market.user(q)
        t = time.perf_counter()
        search_index(index, user, max_search_num=5)
        latencies.append(time.perf_counter() - t)
        if q < exact_queries:
            ranks.append(part.rank(user).ids[:10])
    recall, identical, exact_times = [], 0, []
    for q in range(exact_queries):
        user = market.user(q)
        ids = part.specs.ids
        t = time.perf_counter()
        dist = part.specs.mmd2(user, ids)
        exact_times.append(time.perf_counter() - t)
        truth = ids[np.lexsort((ids, dist))][:10]
        hit = len(np.intersect1d(truth, ranks[q])) / 10
        recall.append(hit)
        identical += int(np.array_equal(truth, ranks[q]))
    return {
        "n": n,
        "build_s": build,
        "rss_mib": rss,
        "hwm_mib": hwm,
        "kind": info.get("coarse", {}).get("kind", "exact"),
        "nprobe": info.get("coarse", {}).get("nprobe", 0),
        "tuned_recall": info.get("coarse", {}).get("recall", 1.0),
        "method": part.rank(market.user(0)).method,
        "p50": pct(latencies, 50),
        "p99": pct(latencies, 99),
        "exact_p50": statistics.median(exact_times),
        "recall": float(np.mean(recall)),
        "min_recall": float(np.min(recall)),
        "identical": identical,
        "exact_queries": exact_queries,
        "queries": queries,
    }


def row(r: dict) -> list:
    return [
        f"{r['n']:,}",
        r["method"],
        f"{r['kind']} (nprobe {r['nprobe']}, tuned recall {r['tuned_recall']:.3f})",
        f"{r['build_s']:.1f} s",
        f"{r['rss_mib']:,.0f} / {r['hwm_mib']:,.0f} MiB",
        f"{1e3 * r['p50']:.1f} ms",
        f"{1e3 * r['p99']:.1f} ms",
        f"{1e3 * r['exact_p50']:.0f} ms ({r['exact_p50'] / r['p50']:.0f}×)",
        f"{r['recall']:.3f} (min {r['min_recall']:.1f}; identical {r['identical']}/"
        f"{r['exact_queries']})",
    ]


HEADER = [
    "N",
    "ranking",
    "FAISS index",
    "build",
    "RSS / peak",
    "search p50",
    "search p99",
    "exact scan p50 (× slower)",
    "recall@10",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--skip-5k", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    config = IndexConfig()

    body = [__doc__.split("\n\n", 1)[1].strip(), ""]
    checks = []
    if not args.skip_5k:
        r5 = run_size(5000, 100, 20, 0.05, args.queries, 100, config)
        body += [
            "## N = 5,000, K = 100, d = 20 (γ = 0.05)",
            "",
            table(HEADER, [row(r5)]),
            "",
        ]
        checks.append(
            (
                "N=5,000 K=100 d=20: search p50 ≤ 30 ms",
                r5["p50"] <= 0.030,
                f"{1e3 * r5['p50']:.1f} ms",
            )
        )
        checks.append(
            (
                "N=5,000: top-10 identical to the exact scan",
                r5["identical"] == r5["exact_queries"],
                f"{r5['identical']}/{r5['exact_queries']} queries",
            )
        )

    rows = []
    for n in sizes:
        exact_q = 100 if n <= 10_000 else 50 if n <= 100_000 else 20
        r = run_size(n, 50, 10, 0.1, args.queries, exact_q, config)
        rows.append(r)
        print(row(r), flush=True)
        if n == 1_000_000:
            checks += [
                ("N=1M: search p50 ≤ 100 ms", r["p50"] <= 0.1, f"{1e3 * r['p50']:.1f} ms"),
                ("N=1M: search p99 ≤ 300 ms", r["p99"] <= 0.3, f"{1e3 * r['p99']:.1f} ms"),
                ("N=1M: recall@10 ≥ 0.99", r["recall"] >= 0.99, f"{r['recall']:.3f}"),
                ("N=1M: RSS ≤ 8 GiB", r["hwm_mib"] <= 8192, f"peak {r['hwm_mib']:,.0f} MiB"),
                ("N=1M: index build ≤ 15 min", r["build_s"] <= 900, f"{r['build_s']:.0f} s"),
            ]
    body += [
        "## K = 50, d = 10 (γ = 0.1), sizes 1k to 1M",
        "",
        f"{args.queries} queries per size; recall on the first 100 / 50 / 20 of them (N ≤ 10k / "
        "≤ 100k / 1M). RSS is the whole benchmark process (one size after another, so a size's "
        "peak can include the previous index being freed).",
        "",
        table(HEADER, [row(r) for r in rows]),
        "",
        "## Targets",
        "",
        table(["target", "measured", "result"], [[t, m, verdict(ok)] for t, ok, m in checks]),
    ]
    write_results("search_scale", "Search at market scale", "\n".join(body))


if __name__ == "__main__":
    main()
