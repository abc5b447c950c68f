"""Entry point of the ``wharf`` command."""

from __future__ import annotations

import argparse
import sys

from . import bulk, demo, example, market, serve, spec


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
    example.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except Exception as exc:
        from .errors import explain  # a user's mistake is one line saying what to do

        message = explain(exc, args)
        if message is None:
            raise  # a bug: its traceback helps
        print(f"error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
