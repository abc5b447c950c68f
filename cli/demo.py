"""``wharf demo``: the main job — start a market on the embedded default, submit the example
learnwares, and search it as a few users whose data never leaves them."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .market import print_results
from .serve import LocalMarket, stop_on_signals

if TYPE_CHECKING:
    from wharf.client import WharfClient


def add_parser(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="start an embedded market, fill it with examples, search it")
    demo.add_argument("--data-dir", help="keep the market here (default: a temporary directory)")
    demo.add_argument("--workers", type=int, default=2)
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    import numpy as np
    from wharf.client import WharfClient
    from wharf.examples.learnwares import build_examples
    from wharf.specification import RKME

    # Ctrl-C, SIGTERM or SIGHUP stop the market's processes and remove the folder.
    with stop_on_signals(), tempfile.TemporaryDirectory(prefix="wharf-demo-") as tmp:
        data_dir = Path(args.data_dir) if args.data_dir else Path(tmp) / "market"
        examples = build_examples(Path(tmp) / "packages")
        print(f"Starting a market in {data_dir} (API + {args.workers} worker processes)…")
        with LocalMarket(data_dir, workers=args.workers) as market:
            print(f"Wharf is up at {market.url}\n")
            with WharfClient(market.url, market.token) as client:
                ids = _submit_all(client, examples)
                by_name = {ex.name: ex for ex in examples}
                users = [
                    ("digits 5-9", by_name["digits 5-9"].X_test),
                    ("digits 0-4", by_name["digits 0-4"].X_test),
                    (
                        "diabetes, both sexes",
                        np.concatenate(
                            [by_name["diabetes female"].X_test, by_name["diabetes male"].X_test]
                        ),
                    ),
                ]
                print("\nSearching as users whose data never leaves them (only an RKME is sent):")
                for label, X in users:
                    spec = RKME(n_points=50, seed=0).fit(X)
                    t0 = time.perf_counter()
                    result = client.search(spec=spec, top=3)
                    took = time.perf_counter() - t0
                    print(f"\n— a user with {label} data ({len(X)} rows), answered in {took:.2f} s")
                    print_results(result)
        print(f"\n{len(ids)} learnwares checked and searched; the market has stopped.")
    return 0


def _submit_all(client: WharfClient, examples) -> dict[str, str]:
    print(f"Submitting {len(examples)} example learnwares (each is checked in the sandbox):")
    subs = [(ex, client.submit(ex.package, ex.semantic)) for ex in examples]
    ids = {}
    for ex, sub in subs:
        t0 = time.perf_counter()
        client.wait(sub["job_id"], timeout=300)
        status = client.learnware(sub["learnware_id"])["status"]
        print(
            f"  {sub['learnware_id']}  {ex.semantic['Name']['Values']:<36} {status}"
            f"  ({time.perf_counter() - t0:.1f} s)"
        )
        ids[ex.name] = sub["learnware_id"]
    return ids
