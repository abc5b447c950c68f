"""``wharf example DIR``: example learnwares to try a market with, written to disk.

For each example (a linear model on a slice of scikit-learn's *digits* or *diabetes*):
``NAME.zip``, the learnware package; ``NAME.json``, its semantic spec, beside it as
``wharf bulk-index`` reads them; ``NAME.csv``, held-out rows of the same slice with a header,
to search the market with as a user whose data is like it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .errors import CliError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "example",
        help="write example learnwares, their semantic specs and test data to a folder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dir", help="the folder to write them to (made if missing)")
    p.set_defaults(func=cmd_example)


def cmd_example(args: argparse.Namespace) -> int:
    import numpy as np
    from wharf.examples.learnwares import build_examples

    out = Path(args.dir)
    if out.exists() and not out.is_dir():
        raise CliError(f"{out} is a file; give a folder to write the examples to")
    examples = build_examples(out)
    print(f"wrote {len(examples)} example learnwares to {out}/ (package, semantic spec, data):")
    width = max(len(f"{ex.package.with_suffix('')}.{{zip,json,csv}}") for ex in examples)
    for ex in examples:
        stem = ex.package.with_suffix("")
        stem.with_suffix(".json").write_text(json.dumps(ex.semantic, indent=2) + "\n")
        header = ",".join(f"x{i}" for i in range(ex.X_test.shape[1]))
        csv = stem.with_suffix(".csv")
        np.savetxt(csv, ex.X_test, fmt="%.8g", delimiter=",", header=header, comments="")
        files = f"{stem}.{{zip,json,csv}}"
        task = ex.semantic["Task"]["Values"][0].lower()
        print(
            f"  {files:<{width}}  {ex.name}: {task}, {ex.X_test.shape[1]} features, "
            f"{len(ex.X_test)} test rows"
        )
    first = examples[0].package.with_suffix("")
    print(
        f"next: wharf submit {first}.zip --semantic {first}.json --wait\n"
        f"      wharf search --data {first}.csv     (or all of them: wharf bulk-index {out})"
    )
    return 0
