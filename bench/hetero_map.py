"""Benchmark of the heterogeneous map: training on 1,000 learnwares' RKMEs, mapping one spec.

The synthetic market: 1,000 table learnwares of 5 to 30 columns, K = 50 reduced points each,
every column described by a phrase drawn from a pool of 200 (a unit and a quantity). Times:

- training the map with the market's settings (``WHARF_HETERO_EPOCHS``' default and the
  network's defaults), the whole call, tokenising included;
- mapping one spec (K = 50, 30 columns) with the trained map: the median of 50 calls;
- the baseline in the same run: fitting the RKME of 5,000 rows × 30 columns (K = 50), the
  spec every user already computes before a search.

    OMP_NUM_THREADS=2 .venv/bin/python -m bench.hetero_map [--learnwares 1000] [--epochs N]
        [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import platform
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


def market(n: int, seed: int = 0) -> list[tuple[np.ndarray, list[str]]]:
    rng = np.random.default_rng(seed)
    pool = [f"{q} {u}" for q in QUANTITIES for u in UNITS]
    tables = []
    for _ in range(n):
        d = int(rng.integers(5, 31))
        columns = [pool[i] for i in rng.choice(len(pool), d, replace=False)]
        tables.append((rng.normal(size=(50, d)), columns))
    return tables


def main() -> None:
    from wharf.specification.hetero.training import train_hetero_map
    from wharf.specification.rkme import RKME

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

    X = np.random.default_rng(1).normal(size=(5000, 30))
    t = time.perf_counter()
    RKME(n_points=50, seed=0, device="cpu").fit(X)
    baseline = time.perf_counter() - t

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"load average after training: {load:.1f} (other work shares the cores)")
    print(
        f"training on {args.device}: {args.learnwares} learnwares, {epochs} epochs, "
        f"{hmap.info['steps']} steps: {training:.1f} s wall, {training_cpu:.1f} s CPU "
        f"(final loss {hmap.info['final_loss']:.3f})"
    )
    print(f"mapping one spec (K=50, 30 columns): median {1000 * statistics.median(times):.1f} ms")
    print(f"baseline, RKME fit of 5,000 x 30 (K=50): {1000 * baseline:.0f} ms")


if __name__ == "__main__":
    main()
