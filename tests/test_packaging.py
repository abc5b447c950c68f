"""What `pip install` puts in site-packages: one `wharf` package, holding every subpackage of
the repository's folders, and nothing under a generic top-level name."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_subpackage_of_a_mapped_folder_is_listed():
    listed = set(SETUPTOOLS["packages"])
    for name, folder in SETUPTOOLS["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            if "shim" in rel.parts:  # package data: the sandbox's stand-in for `learnware`
                continue
            assert ".".join([name, *rel.parts]) in listed, init


@pytest.mark.services
@pytest.mark.slow
def test_the_wheel_installs_only_the_wharf_namespace(tmp_path):
    # From a copy of the tracked files: pip builds in the source tree, and a build/ folder
    # left there by an earlier build would carry deleted modules into this wheel.
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    src = tmp_path / "src"
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(src)],
        check=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("wharf_learnware-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    tops = {name.split("/")[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"wharf"}
    for part in (
        "api/routes/learnwares.py",
        "market/catalog/migrations/versions/0004_job_heartbeats.py",
        "sandbox/shim/learnware/model/base.py",
        "examples/learnwares.py",
        "api/web/templates/base.html",  # the pages' templates and assets: package data
        "api/web/static/web.css",
    ):
        assert f"wharf/{part}" in names, part
    assert not any(n.startswith(("wharf/tests/", "wharf/bench/")) for n in names)
