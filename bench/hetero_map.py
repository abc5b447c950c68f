"""Benchmark of the heterogeneous map: training on 1,000 learnwares' RKMEs, mapping one spec.

The synthetic market: 1,000 table learnwares of 5 to 30 columns, K = 50 reduced points each,
every column described by a phrase drawn from a pool of 200 (a unit and a quantity). Times:

- training the map with the market's settings (``WHARF_HETERO_EPOCHS``' default and the
  network's defaults), the whole call, tokenising included;
- mapping one spec (K = 50, 30 columns) with the trained map: the median of 50 calls;
- retrieval: a learnware kept to 2/3 of its columns is looked for among all by MMD in
  the shared space, with the trained map and with the untrained one (its initial weights,
  what the reference uses before training);
- the baseline in the same run: fitting the RKME of 5,000 rows × 30 columns (K = 50), the
  spec every user already computes before a search.

    OMP_NUM_THREADS=2 .venv/bin/python -m bench.hetero_map [--learnwares 1000] [--epochs N]
        [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

QUANTITIES = (
    "age",
    "income",
    "height",
    "weight",
    "blood pressure",
    "temperature",
    "rainfall",
    "wind speed",
    "price",
    "sales count",
    "credit score",
    "length",
    "humidity",
    "distance",
    "duration",
    "heart rate",
    "cholesterol",
    "loan amount",
    "population",
    "voltage",
)
#: Queries of the retrieval check.
QUERIES = 100
UNITS = (
    "in years",
    "in dollars",
    "in cm",
    "in kg",
    "in mmHg",
    "in celsius",
    "in mm",
    "in km/h",
    "in euros",
    "per day",
)


def market(n: int, seed: int = 0, *, shared: bool = False) -> list[tuple[np.ndarray, list[str]]]:
    """``shared``: columns named from the 20 quantities alone, so many learnwares share most
    of their descriptions and only their values (each column's mean, drawn in [-2, 2]) set
    them apart."""
    rng = np.random.default_rng(seed)
    pool = list(QUANTITIES) if shared else [f"{q} {u}" for q in QUANTITIES for u in UNITS]
    tables = []
    for _ in range(n):
        d = int(rng.integers(5, 21 if shared else 31))
        columns = [pool[i] for i in rng.choice(len(pool), d, replace=False)]
        means = rng.uniform(-2, 2, size=d) if shared else np.zeros(d)
        tables.append((rng.normal(size=(50, d)) + means, columns))
    return tables


def retrieval(hmap, tables, seed: int = 2) -> tuple[float, float]:
    """Each query keeps 2/3 of a learnware's columns (their RKME points and descriptions):
    where does that learnware rank among all by MMD in the shared space?"""
    from wharf.specification.rkme import RKME

    def mapped(z, columns):
        return hmap.map_spec(RKME.from_arrays(z, np.full(len(z), 1 / len(z)), 0.1, 1), columns).z_

    specs = np.stack([mapped(z, columns) for z, columns in tables])  # (n, K, h)
    n, k, h = specs.shape
    flat = torch.from_numpy(specs.reshape(n * k, h))
    own = np.array([_mean_kernel(torch.from_numpy(s), torch.from_numpy(s)) for s in specs])
    rng = np.random.default_rng(seed)
    hits, ranks = 0, []
    queries = rng.choice(n, min(QUERIES, n), replace=False)
    for j in queries:
        z, columns = tables[j]
        keep = np.sort(rng.choice(z.shape[1], max(2, 2 * z.shape[1] // 3), replace=False))
        user = torch.from_numpy(mapped(z[:, keep], [columns[i] for i in keep]))
        cross = torch.exp(-0.1 * torch.cdist(user, flat).pow(2)).reshape(k, n, k).mean((0, 2))
        mmd = own - 2 * cross.numpy() + _mean_kernel(user, user)
        rank = int((mmd < mmd[j]).sum())
        hits += rank == 0
        ranks.append(rank + 1)
    return hits / len(queries), float(np.mean(ranks))


def _mean_kernel(a, b) -> float:
    return float(torch.exp(-0.1 * torch.cdist(a, b).pow(2)).mean())


def main() -> None:
    from wharf.specification.hetero.model import HeteroMap
    from wharf.specification.hetero.training import train_hetero_map
    from wharf.specification.rkme import RKME

    from bench._common import ms, table, write_results

    parser = argparse.ArgumentParser()
    parser.add_argument("--learnwares", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=None, help="default: the market's")
    parser.add_argument("--device", default="cpu", help="where training and mapping run")
    args = parser.parse_args()
    epochs = args.epochs
    if epochs is None:
        from wharf.market.settings import Settings

        epochs = Settings().hetero_epochs
    tables = market(args.learnwares)
    threads = torch.get_num_threads()

    started, cpu_started = time.perf_counter(), time.process_time()
    hmap = train_hetero_map(tables, epochs=epochs, seed=0, device=args.device)
    training = time.perf_counter() - started
    training_cpu = time.process_time() - cpu_started
    load = os.getloadavg()[0]

    wide = next(t for t in tables if t[0].shape[1] == 30)
    rkme = RKME.from_arrays(wide[0], np.full(50, 1 / 50), 0.1, 5000)
    hmap.map_spec(rkme, wide[1])  # warm
    times = []
    for _ in range(50):
        t = time.perf_counter()
        hmap.map_spec(rkme, wide[1])
        times.append(time.perf_counter() - t)

    torch.set_num_threads(1)
    one_thread = []
    for _ in range(50):
        t = time.perf_counter()
        hmap.map_spec(rkme, wide[1])
        one_thread.append(time.perf_counter() - t)
    # Retrieval maps 2,000 specs: on one thread, which the busy shared cores serve best.
    trained_top1, trained_rank = retrieval(hmap, tables)
    initial = HeteroMap.initial(seed=0, device=args.device)
    initial_top1, initial_rank = retrieval(initial, tables)
    torch.set_num_threads(threads)
    shared = market(args.learnwares, seed=1, shared=True)
    shared_map = train_hetero_map(shared, epochs=epochs, seed=0, device=args.device)
    torch.set_num_threads(1)
    shared_trained = retrieval(shared_map, shared)
    shared_initial = retrieval(initial, shared)
    torch.set_num_threads(threads)

    X = np.random.default_rng(1).normal(size=(5000, 30))
    t = time.perf_counter()
    RKME(n_points=50, seed=0, device="cpu").fit(X)
    baseline = time.perf_counter() - t

    rows = [
        [
            f"train the map ({args.learnwares} learnwares, {epochs} epochs, "
            f"{hmap.info['steps']} steps, {args.device})",
            f"{training:.1f} s wall, {training_cpu:.1f} s CPU",
            "≤ 120 s on 2 cores",
        ],
        [
            "map one spec (K = 50, 30 columns), median of 50",
            ms(statistics.median(times)),
            "≤ 20 ms",
        ],
        ["the same on one thread", ms(statistics.median(one_thread)), "≤ 20 ms"],
        ["baseline: the user's RKME fit, 5,000 × 30, K = 50", ms(baseline), ""],
    ]
    body = table(["what", "time", "target"], rows)
    body += (
        f"\n\nTraining's final loss {hmap.info['final_loss']:.3f}; torch {torch.__version__} on "
        f"{threads} threads; load average after training {load:.1f} (the cores are shared with "
        "other work, so CPU time is the steadier figure).\n\n"
    )
    body += table(
        ["market", "map", "retrieval top-1", "mean rank"],
        [
            ["distinct descriptions", "trained", f"{trained_top1:.0%}", f"{trained_rank:.1f}"],
            ["", "untrained (initial weights)", f"{initial_top1:.0%}", f"{initial_rank:.1f}"],
            [
                "shared descriptions, values differ",
                "trained on it",
                f"{shared_trained[0]:.0%}",
                f"{shared_trained[1]:.1f}",
            ],
            ["", "untrained", f"{shared_initial[0]:.0%}", f"{shared_initial[1]:.1f}"],
        ],
    )
    body += (
        f"\n\nRetrieval: {min(QUERIES, len(tables))} learnwares, each kept to 2/3 of its columns "
        f"(those points of its RKME and those descriptions), looked for among all "
        f"{len(tables)} by MMD² in the shared space (γ = 0.1). Distinct descriptions: each "
        "column named by one of 200 quantity-and-unit phrases, values N(0, 1). Shared "
        "descriptions: columns named by 20 quantities only, each learnware's columns with "
        "their own means in [-2, 2] (the map trained on that market, with the same settings)."
        "\n"
    )
    write_results("hetero_map", "Heterogeneous map: training, mapping, retrieval", body)


if __name__ == "__main__":
    main()
