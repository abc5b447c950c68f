"""The README's walkthrough ("Your first market, command by command"), run as it is written: its
first block in one shell (``wharf up`` on a free port instead of 8000), its second block in
another, against that real market; then Ctrl-C stops the market."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
import yaml
from wharf.cli.serve import free_port

pytestmark = pytest.mark.services  # a real market, started as the README says

ROOT = Path(__file__).resolve().parent.parent
HEADING = "## Your first market, command by command"


def walkthrough_blocks() -> tuple[str, str]:
    """The two ``bash`` blocks under the walkthrough's heading."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(HEADING) :]
    section = section[: section.index("\n## ", len(HEADING))]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 2, blocks
    return blocks[0], blocks[1]


def test_the_readme_walkthrough_runs_as_written(tmp_path):
    venv = Path(sys.prefix)
    if not (venv / "bin" / "activate").exists() or not (venv / "bin" / "wharf").exists():
        pytest.skip("the tests do not run in the project's virtual environment")
    first, second = walkthrough_blocks()
    (tmp_path / ".venv").symlink_to(venv)  # what scripts/setup-env made, in a fresh folder
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHARF_", "VIRTUAL_ENV"))}

    lines = first.strip().splitlines()
    assert lines[0].startswith("scripts/setup-env")  # the install: this environment is it
    assert lines[-1].split("#")[0].strip() == "wharf up"
    up_script = "\n".join([*lines[1:-1], f"exec wharf up --port {port}"])
    up = subprocess.Popen(
        ["bash", "-euc", up_script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(120, up.kill)
    watchdog.start()
    try:
        for line in up.stdout:
            if line.startswith("Wharf is up"):
                break
        assert up.poll() is None, up.stderr.read()
    finally:
        watchdog.cancel()

    try:
        # The second terminal: the same shell lines; the market is on `port`, not 8000.
        done = subprocess.run(
            ["bash", "-euxo", "pipefail", "-c", second],
            cwd=tmp_path,
            env={**env, "WHARF_URL": f"http://127.0.0.1:{port}"},
            capture_output=True,
            text=True,
            timeout=600,
        )
        out = done.stdout
        assert done.returncode == 0, done.stdout + done.stderr
        assert "wrote 5 example learnwares to ex/" in out
        for stem in ("digits-0-4", "diabetes-male"):
            for suffix in (".zip", ".json", ".csv"):
                assert (tmp_path / "ex" / f"{stem}{suffix}").is_file()
        assert "learnware 00000001: accepted" in out.splitlines()
        rows = out[out.index("learnware  name") :].splitlines()
        assert rows[1].startswith("00000001 "), rows  # the digits 0-4 learnware comes first
        # The same files, served with the learnware's id in learnware.yaml.
        found = zipfile.ZipFile(tmp_path / "found.zip")
        example = zipfile.ZipFile(tmp_path / "ex" / "digits-0-4.zip")
        assert sorted(found.namelist()) == sorted(example.namelist())
        for name in example.namelist():
            if name != "learnware.yaml":
                assert found.read(name) == example.read(name), name
        assert yaml.safe_load(found.read("learnware.yaml"))["id"] == "00000001"
        last = out.splitlines()[-1]
        assert last == "learnware 00000001 deleted; its package can be submitted again"
    finally:
        up.send_signal(signal.SIGINT)  # Ctrl-C in the first terminal
        assert up.wait(timeout=60) == 0
