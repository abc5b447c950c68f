"""Entry point of the ``wharf`` command."""

from __future__ import annotations

import argparse
import sys

from wharf.client import WharfError
from wharf.specification import SpecificationError

from . import bulk, demo, market, serve, spec
from .serve import MarketNotStarted


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wharf", description="Wharf: a distributed learnware market."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    spec.add_parser(sub)
    demo.add_parser(sub)
    serve.add_parsers(sub)
    market.add_parsers(sub)
    bulk.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SpecificationError, WharfError, MarketNotStarted) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
