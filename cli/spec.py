"""``wharf spec``: fit, compare and check specifications locally (nothing leaves the machine)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from specification import (
    RKME,
    PackageError,
    SpecificationError,
    load_spec,
    loads_spec,
    mmd2,
    save_spec,
)
from specification.package import read_package
from specification.semantic import SemanticSpec

from .tables import read_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    spec = sub.add_parser("spec", help="fit, compare and check specifications")
    cmds = spec.add_subparsers(dest="spec_command", required=True)

    fit = cmds.add_parser("fit", help="fit an RKME table spec on a .npy or numeric .csv file")
    fit.add_argument("input", help="data file: .npy, or .csv with an optional header row")
    fit.add_argument("-o", "--output", required=True, help="where to write the spec JSON")
    fit.add_argument("--points", type=int, default=100, help="reduced-set size K (default 100)")
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


def fit_file(path: str, *, points: int, gamma: float, seed: int, device: str) -> RKME:
    return RKME(n_points=points, gamma=gamma, seed=seed, device=device).fit(read_table(path))


def cmd_fit(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    spec = fit_file(
        args.input, points=args.points, gamma=args.gamma, seed=args.seed, device=args.device
    )
    save_spec(spec, args.output)
    print(
        f"wrote {args.output}: K={spec.z_.shape[0]}, features={spec.feature_shape}, "
        f"gamma={spec.gamma}, rows={spec.num_points_} ({time.perf_counter() - t0:.2f} s)"
    )
    return 0


def cmd_dist(args: argparse.Namespace) -> int:
    print(repr(mmd2(load_spec(args.a), load_spec(args.b))))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
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
        spec.validate_submission()
        print(f"{path}: valid semantic specification ({spec.data_type}, {spec.task_type})")
        return 0
    stat = loads_spec(text)
    print(
        f"{path}: valid RKME table specification: K={stat.z_.shape[0]}, "
        f"features={stat.feature_shape}, gamma={stat.gamma}, num_points={stat.num_points_}"
    )
    return 0


def _check_package(path: Path) -> int:
    pkg = read_package(path)
    for entry in pkg.stat_specs:
        try:
            stat = loads_spec(pkg.read_member(entry.file_name))
        except SpecificationError as exc:
            raise PackageError(str(exc), entry.file_name) from None
        print(
            f"  {entry.file_name}: {entry.class_name}, K={stat.z_.shape[0]}, "
            f"features={stat.feature_shape}, gamma={stat.gamma}"
        )
    print(
        f"{path}: valid learnware package (model {pkg.model.class_name} "
        f"in {pkg.model.module_path}, sha256 {pkg.sha256[:12]}…)"
    )
    return 0
