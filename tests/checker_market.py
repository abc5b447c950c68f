"""A market in a test's tmp dir that builds learnware packages and checks them with the real
sandbox under small limits (shared by the checker's test modules)."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import numpy as np
from wharf.market.checker import check_submission
from wharf.market.settings import Settings
from wharf.specification import RKME, dumps_spec
from wharf.specification.package import write_package

MiB = 1024 * 1024
TIME_LIMIT_S = 3
DIM = 4


def table_spec_json() -> bytes:
    """A table RKME of ``DIM`` features, as a package's ``rkme.json``."""
    X = np.random.default_rng(0).normal(size=(200, DIM))
    return dumps_spec(RKME(n_points=10, seed=0, device="cpu").fit(X)).encode()


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def semantic(task: str = "Regression", output_dim: int | None = 1, **changes) -> dict:
    spec = {
        "Data": {"Type": "Class", "Values": ["Table"]},
        "Task": {"Type": "Class", "Values": [task]},
        "Library": {"Type": "Class", "Values": ["Scikit-learn"]},
        "Scenario": {"Type": "Tag", "Values": ["Business"]},
        "License": {"Type": "Class", "Values": ["MIT"]},
        "Name": {"Type": "String", "Values": "checker test"},
        "Description": {"Type": "String", "Values": "a learnware made by the checker tests"},
        "Input": {"Dimension": DIM, "Description": {}},
    }
    if output_dim is not None:
        spec["Output"] = {"Dimension": output_dim, "Description": {}}
    spec.update(changes)
    return {k: v for k, v in spec.items() if v is not None}


class Market:
    """Builds packages in a test's tmp dir and checks them under small limits."""

    def __init__(self, tmp_path: Path, spec_json: bytes):
        self.tmp = tmp_path
        self.spec_json = spec_json
        self.count = 0

    def settings(self, **changes) -> Settings:
        values = {
            "data_dir": self.tmp / "data",
            "env_cache_dir": self.tmp / "envs",
            "sandbox": "bwrap",
            "allow_unsandboxed": False,
            "model_time_limit_s": TIME_LIMIT_S,
            "model_memory_bytes": 512 * MiB,
            "model_max_processes": 16,
            "model_max_file_bytes": 16 * MiB,
            "install_timeout_s": 120,
        }
        return Settings(**{**values, **changes})

    def package(
        self,
        source: str,
        *,
        class_name: str = "Model",
        module_path: str = "__init__.py",
        kwargs: dict | None = None,
        files: dict[str, bytes] | None = None,
        requirements: dict[str, bytes] | None = None,
        spec_class: str = "RKMETableSpecification",
        spec_json: bytes | None = None,
    ) -> Path:
        manifest = (
            f"model:\n  class_name: {class_name}\n  module_path: {module_path}\n"
            f"  kwargs: {json.dumps(kwargs or {})}\n"
            "stat_specifications:\n"
            "  - module_path: learnware.specification\n"
            f"    class_name: {spec_class}\n"
            "    file_name: rkme.json\n"
            "    kwargs: {}\n"
        )
        contents = {
            "learnware.yaml": manifest.encode(),
            "__init__.py": b"",
            "rkme.json": spec_json if spec_json is not None else self.spec_json,
            **(requirements or {"requirements.txt": b"numpy\n"}),
            **(files or {}),
        }
        contents[module_path] = textwrap.dedent(source).encode()
        self.count += 1
        path = self.tmp / f"package-{self.count}.zip"
        write_package(path, contents, top_folder="learnware")
        return path

    def check(self, package: Path, sem: dict | None = None, **settings):
        bwrap = settings.pop("bwrap_path", None)
        return check_submission(
            package,
            sem if sem is not None else semantic(),
            settings=self.settings(**settings),
            work_dir=self.tmp / "work",
            bwrap_path=bwrap,
        )
