"""``wharf demo``: the main job for now — fit RKMEs on bundled data and compare them."""

from __future__ import annotations

import argparse
import time
from importlib.resources import files

from specification import RKME, mmd2

from .tables import read_table

DATASETS = {
    "digits 0-4 (first half)": "digits_0-4_a.csv",
    "digits 0-4 (second half)": "digits_0-4_b.csv",
    "digits 5-9": "digits_5-9.csv",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="fit specs on bundled example data and compare them")
    demo.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    data_dir = files("cli") / "data"
    specs = {}
    for label, name in DATASETS.items():
        X = read_table(str(data_dir / name))
        t0 = time.perf_counter()
        specs[label] = RKME(n_points=50, gamma=0.1, seed=0, device=args.device).fit(X)
        print(
            f"fitted RKME on {label}: {X.shape[0]} rows × {X.shape[1]} features, "
            f"K={specs[label].z_.shape[0]} in {1000 * (time.perf_counter() - t0):.0f} ms"
        )
    print("\nsquared MMD between the specs (smaller = more similar data):")
    labels = list(specs)
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            print(f"  {a:>26} vs {b:<26} {mmd2(specs[a], specs[b]):.5f}")
    return 0
