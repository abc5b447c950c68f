"""``wharf spec describe``: a starting search requirement for a table, its columns described
from the CSV's header, for the heterogeneous market (which matches columns by what their
descriptions say). The user then edits the descriptions; nothing here imports numpy or torch.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from .datafiles import find_column, read_csv_header
from .errors import CliError, output_file

#: The widest table the heterogeneous map takes (``specification.hetero.columns.MAX_COLUMNS``,
#: not imported: that package loads numpy).
MAX_COLUMNS = 512
#: The longest column description the map reads (``columns.MAX_DESCRIPTION_CHARS``).
MAX_DESCRIPTION_CHARS = 2_000
TASKS = ("Classification", "Regression")

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS = re.compile(r"[_\-.\s]+")


def add_parser(cmds: argparse._SubParsersAction) -> None:
    p = cmds.add_parser(
        "describe",
        help="write a search requirement describing a CSV's columns from its header, to edit "
        "and then search with (wharf search --data CSV --semantic JSON)",
    )
    p.add_argument("input", help="a .csv table with a header row naming its columns")
    p.add_argument("-o", "--output", help="where to write the JSON (default: print it)")
    p.add_argument("--task", choices=TASKS, help="what you want to predict")
    p.add_argument("--name", help="words to look for in learnwares' names and descriptions")
    p.add_argument("--label", help="the CSV's label column, left out of the description")
    p.add_argument(
        "--force", action="store_true", help="overwrite the output file (and the edits in it)"
    )
    p.set_defaults(func=cmd_describe)


def words(name: str) -> str:
    """A column name as words: ``petal_length_cm`` → ``petal length cm``, ``monthlyIncome``
    → ``monthly income``, ``HTTPStatus`` → ``http status``."""
    spaced = _SEPARATORS.sub(" ", _CAMEL.sub(" ", name)).strip()
    return spaced.lower() if spaced else ""


def requirement(
    columns: list[str], *, task: str | None = None, name: str | None = None
) -> dict[str, Any]:
    """The requirement's JSON: a table, ``task`` if given, every column described."""
    from wharf.specification.semantic import (  # pydantic only
        SemanticSpec,
        check_text_lengths,
        generate_semantic_spec,
    )

    descriptions = {
        str(i): (words(column) or f"column {i}")[:MAX_DESCRIPTION_CHARS]
        for i, column in enumerate(columns)
    }
    spec = generate_semantic_spec(
        name=name,
        data_type="Table",
        task_type=task,
        input_description={"Dimension": len(columns), "Description": descriptions},
    )
    check_text_lengths(SemanticSpec.from_dict(spec, requirement=True), requirement=True)
    return spec


def input_columns(header: list[str], label: str | None, path: str) -> list[str]:
    """The header without the label column."""
    if label is None:
        return header
    index = find_column(header, label, path)
    if len(header) == 1:
        raise CliError(f"{path}: {label!r} is its only column; there is nothing to describe")
    return header[:index] + header[index + 1 :]


def cmd_describe(args: argparse.Namespace) -> int:
    if args.output is not None:
        target = output_file(args.output)
        if target.exists() and not args.force:
            raise CliError(
                f"{args.output} exists (and may hold your edits); choose another path with -o, "
                "or overwrite it with --force"
            )
    header = read_csv_header(args.input, MAX_COLUMNS + (args.label is not None))
    columns = input_columns(header, args.label, args.input)
    if len(columns) > MAX_COLUMNS:
        raise CliError(
            f"{args.input}: {len(columns)} input columns; the heterogeneous market takes at "
            f"most {MAX_COLUMNS}"
        )
    spec = requirement(columns, task=args.task, name=args.name)
    text = json.dumps(spec, indent=2, ensure_ascii=False) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        target.write_text(text, encoding="utf-8")
    left_out = f" ({args.label!r} left out)" if args.label is not None else ""
    label = f" --label {args.label}" if args.label is not None else ""
    print(
        f"{len(columns)} columns of {args.input} described from their names{left_out}. Edit "
        f"each Input.Description in {args.output or 'the JSON above'} to say what the column "
        'holds and its unit (e.g. "age in years", "monthly income in euros"): the market '
        "matches your columns to learnwares' by these words. Then: wharf search --data "
        f"{args.input}{label} --semantic {args.output or 'JSON'}",
        file=sys.stderr,
    )
    return 0
