"""``wharf spec``: fit, compare and check specifications locally (nothing leaves the machine)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

# The specification modules (numpy, torch) are imported by the commands that use them, not for
# every ``wharf`` command.
from . import describe
from .datafiles import KINDS, read_data
from .errors import output_file


def add_parser(sub: argparse._SubParsersAction) -> None:
    spec = sub.add_parser("spec", help="fit, compare and check specifications")
    cmds = spec.add_subparsers(dest="spec_command", required=True)

    fit = cmds.add_parser(
        "fit", help="fit an RKME spec of a table, a stack of images or a list of texts"
    )
    fit.add_argument(
        "input",
        help="data file: a table (.csv, or .npy N×d), images (.npy N×C×H×W or N×H×W) or "
        "texts (.txt, one per line, or a .json list of strings)",
    )
    fit.add_argument("-o", "--output", required=True, help="where to write the spec JSON")
    fit.add_argument(
        "--type", choices=KINDS, default="auto", help="the kind of data (default: from the file)"
    )
    fit.add_argument(
        "--points", type=int, default=None, help="reduced-set size K (default 100; images 50)"
    )
    fit.add_argument(
        "--steps",
        type=int,
        default=None,
        help="fit steps (default 10; images: 100 rounds of random nets, slow without a GPU)",
    )
    fit.add_argument(
        "--nets", type=int, default=None, help="images: random nets per round (default 16)"
    )
    fit.add_argument(
        "--net-width",
        type=int,
        default=None,
        help="images: half the channels of a random net (default 128); less is faster",
    )
    fit.add_argument("--gamma", type=float, default=0.1, help="kernel parameter (default 0.1)")
    fit.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    fit.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    fit.set_defaults(func=cmd_fit)

    dist = cmds.add_parser("dist", help="print the squared MMD between two spec files")
    dist.add_argument("a")
    dist.add_argument("b")
    dist.set_defaults(func=cmd_dist)

    check = cmds.add_parser(
        "check", help="validate a spec JSON, a semantic spec JSON or a learnware package zip"
    )
    check.add_argument("file")
    check.set_defaults(func=cmd_check)

    describe.add_parser(cmds)


def fit_file(
    path: str,
    *,
    points: int | None,
    gamma: float,
    seed: int,
    device: str,
    kind: str = "auto",
    steps: int | None = None,
    nets: int | None = None,
    net_width: int | None = None,
    label: str | None = None,
) -> Any:
    """The spec of a data file: a table, image or text RKME, by the kind of data; ``label``
    names a CSV's label column, left out."""
    from wharf.specification import RKME

    kind, data = read_data(path, kind, label)
    options: dict[str, Any] = {"seed": seed, "device": device}
    if points is not None:
        options["n_points"] = points
    if steps is not None:
        options["steps"] = steps
    if kind == "image":
        from wharf.specification.image import RKMEImage

        if nets is not None:
            options["n_models"] = nets
        if net_width is not None:
            options["model_config"] = {"net_width": net_width}
        return RKMEImage(**options).fit(data)
    if kind == "text":
        from wharf.specification.text import RKMEText

        return RKMEText(gamma=gamma, **options).fit(data)
    return RKME(gamma=gamma, **options).fit(data)


def describe_spec(spec: Any) -> str:
    kind = spec.spec_type.removeprefix("RKME").removesuffix("Specification").lower()
    text = f"RKME {kind} specification: K={spec.z_.shape[0]}, point shape={spec.feature_shape}"
    if spec.spec_type != "RKMEImageSpecification":
        text += f", gamma={spec.gamma}"
    if hasattr(spec, "language_"):
        text += f", languages={spec.language_}"
    return text + f", num_points={spec.num_points_}"


def cmd_fit(args: argparse.Namespace) -> int:
    output_file(args.output)  # before the fit, which may take a while
    t0 = time.perf_counter()
    spec = fit_file(
        args.input,
        points=args.points,
        gamma=args.gamma,
        seed=args.seed,
        device=args.device,
        kind=args.type,
        steps=args.steps,
        nets=args.nets,
        net_width=args.net_width,
    )
    from wharf.specification import save_spec

    save_spec(spec, args.output)
    print(f"wrote {args.output}: {describe_spec(spec)} ({time.perf_counter() - t0:.2f} s)")
    return 0


def cmd_dist(args: argparse.Namespace) -> int:
    from wharf.specification import load_spec, mmd2

    print(repr(mmd2(load_spec(args.a), load_spec(args.b))))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from wharf.specification import SpecificationError, loads_spec
    from wharf.specification.semantic import SemanticSpec, check_text_lengths

    path = Path(args.file)
    if path.suffix.lower() == ".zip":
        return _check_package(path)
    if not path.is_file():
        raise SpecificationError(f"{path}: no such file")
    text = path.read_bytes()
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    if isinstance(data, dict) and ("Data" in data or "Task" in data) and "z" not in data:
        spec = SemanticSpec.from_dict(data)
        check_text_lengths(spec.validate_submission())  # what a market takes in
        print(f"{path}: valid semantic specification ({spec.data_type}, {spec.task_type})")
        return 0
    stat = loads_spec(text)
    print(f"{path}: valid {describe_spec(stat)}")
    return 0


def _check_package(path: Path) -> int:
    from wharf.specification import PackageError, SpecificationError, loads_spec
    from wharf.specification.package import read_package

    pkg = read_package(path)
    for entry in pkg.stat_specs:
        try:
            stat = loads_spec(pkg.read_member(entry.file_name))
        except SpecificationError as exc:
            raise PackageError(str(exc), entry.file_name) from None
        print(f"  {entry.file_name}: {entry.class_name}, {describe_spec(stat)}")
    print(
        f"{path}: valid learnware package (model {pkg.model.class_name} "
        f"in {pkg.model.module_path}, sha256 {pkg.sha256[:12]}…)"
    )
    return 0
