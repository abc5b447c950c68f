"""wharf.reuse.runner: running learnware packages on the user's side, sandboxed and in-process.

Real packages, the real bubblewrap sandbox and real child processes; nothing is mocked.
"""

from __future__ import annotations

import atexit
import copy
import functools
import importlib.util
import json
import pickle
import shutil
import tempfile
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from wharf.examples.learnwares import Example, build_examples
from wharf.reuse import Learnware, LearnwareRunError, from_search
from wharf.specification import RKME, dumps_spec
from wharf.specification.errors import PackageError
from wharf.specification.package import write_package

DIM = 4


@functools.cache
def example_learnwares() -> tuple[Example, ...]:
    """The five example packages, built once per test process (shared with test_reuse)."""
    folder = Path(tempfile.mkdtemp(prefix="wharf-reuse-examples-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return tuple(build_examples(folder))


def example(name: str) -> Example:
    return next(e for e in example_learnwares() if e.name == name)


@functools.cache
def small_spec_json() -> bytes:
    X = np.random.default_rng(0).normal(size=(60, DIM))
    return dumps_spec(RKME(n_points=8, seed=0, device="cpu").fit(X)).encode()


def make_package(tmp_path: Path, source: str, *, manifest_extra: str = "", **files: bytes) -> Path:
    manifest = (
        "model:\n  class_name: Model\n"
        "stat_specifications:\n"
        "  - module_path: learnware.specification\n"
        "    class_name: RKMETableSpecification\n"
        "    file_name: rkme.json\n" + manifest_extra
    )
    path = tmp_path / f"package-{len(list(tmp_path.glob('*.zip')))}.zip"
    write_package(
        path,
        {
            "learnware.yaml": manifest.encode(),
            "__init__.py": textwrap.dedent(source).encode(),
            "rkme.json": small_spec_json(),
            "requirements.txt": b"numpy\n",
            **{name.replace("__", "."): data for name, data in files.items()},
        },
        top_folder="learnware",
    )
    return path


# --- running the example learnwares ---------------------------------------------------------------


def test_sandboxed_and_in_process_predictions_agree(bwrap: str) -> None:
    ex = example("digits 0-4")
    X = ex.X_test[:40]
    with Learnware.load(ex.package, time_limit_s=20) as boxed:
        assert boxed.sandboxed and boxed.id == "digits-0-4"
        assert isinstance(boxed.spec, RKME) and boxed.input_shape == (64,)
        assert boxed.semantic["Model"]["Values"] == ["Others"]  # the spec file the package names
        first = boxed.predict(X)
        again = boxed.predict(X)  # the package is extracted once; each call is a new sandbox
    with Learnware.load(ex.package, sandbox=False) as local:
        assert not local.sandboxed
        in_process = local.predict(X)
    assert first.shape == (40, 10)
    np.testing.assert_array_equal(first, again)
    # The sandbox runs BLAS on one thread: on some CPUs its sums then round differently.
    np.testing.assert_allclose(first, in_process, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(first.sum(axis=1), 1.0)
    assert (first.argmax(axis=1) == ex.y_test[:40]).mean() > 0.9
    # The reference stand-in used to import the model is gone again.
    assert importlib.util.find_spec("learnware") is None


def test_a_process_with_a_thousand_open_files_still_runs_sandboxed(bwrap: str) -> None:
    """The result pipe's descriptor may be past 1023 in a long-lived process (a worker, a
    notebook, a test run): the runner must still read it (select() cannot)."""
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"this machine allows {hard} open files, fewer than the test needs")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        ex = example("digits 0-4")
        with Learnware.load(ex.package, time_limit_s=20) as boxed:
            assert boxed.predict(ex.X_test[:5]).shape == (5, 10)
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_two_in_process_learnwares_keep_their_own_modules() -> None:
    with (
        Learnware.load(example("diabetes female").package, sandbox=False) as a,
        Learnware.load(example("diabetes male").package, sandbox=False) as b,
    ):
        X = example("diabetes male").X_test[:5]
        assert not np.array_equal(a.predict(X), b.predict(X))


def test_wrong_input_width_is_refused_before_running(bwrap: str) -> None:
    with Learnware.load(example("digits 5-9").package) as lw:
        with pytest.raises(ValueError, match=r"expects rows of shape \(64,\).*\(n_samples, 64\)"):
            lw.predict(np.zeros((3, 10)))
        with pytest.raises(ValueError, match="numbers"):
            lw.predict(np.array([["a"] * 64]))


def test_temp_dirs_are_removed_after_close_and_with_block(bwrap: str) -> None:
    lw = Learnware.load(example("digits even").package)
    folder = lw.directory
    assert (folder / "learnware.yaml").is_file()
    lw.close()
    lw.close()  # idempotent
    assert not folder.parent.exists()
    with pytest.raises(RuntimeError, match="closed"):
        lw.predict(np.zeros((1, 64)))
    with Learnware.load(example("digits even").package, sandbox=False) as lw:
        lw.predict(np.zeros((2, 64)))
        folder = lw.directory
    assert not folder.parent.exists()


def test_learnwares_are_shared_by_copies_and_not_pickled(bwrap: str) -> None:
    with Learnware.load(example("digits even").package) as lw:
        assert copy.deepcopy([lw])[0] is lw and copy.copy(lw) is lw
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(lw)


# --- failures -------------------------------------------------------------------------------------

RAISING = """
import sys

class Model:
    input_shape = (4,)
    output_shape = (1,)

    def predict(self, X):
        print("reading the weights", file=sys.stderr)
        raise ValueError("feature names mismatch")
"""


@pytest.mark.parametrize(
    "sandbox",
    [
        pytest.param(True, marks=pytest.mark.services, id="sandboxed"),
        pytest.param(False, id="in-process"),
    ],
)
def test_a_raising_model_gives_its_message_and_stderr(tmp_path: Path, sandbox: bool) -> None:
    with Learnware.load(make_package(tmp_path, RAISING), sandbox=sandbox) as lw:
        with pytest.raises(LearnwareRunError) as info:
            lw.predict(np.zeros((3, DIM)))
    error = info.value
    assert error.stage == "predict"
    assert "ValueError: feature names mismatch" in str(error)
    assert "Traceback" in error.stderr_tail
    if sandbox:
        assert "reading the weights" in error.stderr_tail


def test_a_model_that_cannot_be_built_names_the_stage(tmp_path: Path, bwrap: str) -> None:
    source = "class Model:\n    def __init__(self):\n        raise OSError('weights missing')\n"
    with Learnware.load(make_package(tmp_path, source)) as lw:
        with pytest.raises(LearnwareRunError, match="init stage: OSError: weights missing"):
            lw.predict(np.zeros((1, DIM)))


@pytest.mark.slow
def test_a_hanging_model_is_stopped_at_the_time_limit(tmp_path: Path, bwrap: str) -> None:
    source = """
        import time

        class Model:
            def predict(self, X):
                time.sleep(3600)
    """
    with Learnware.load(make_package(tmp_path, source), time_limit_s=1) as lw:
        started = time.monotonic()
        with pytest.raises(LearnwareRunError, match="wall-clock limit"):
            lw.predict(np.zeros((2, DIM)))
        elapsed = time.monotonic() - started
    assert elapsed < lw.limits.wall_s + 3


def test_a_model_returning_the_wrong_number_of_rows(tmp_path: Path, bwrap: str) -> None:
    source = """
        import numpy as np

        class Model:
            def predict(self, X):
                return np.zeros(len(X) + 1)
    """
    with Learnware.load(make_package(tmp_path, source)) as lw:
        with pytest.raises(LearnwareRunError, match="returned 4 rows for 3 input rows"):
            lw.predict(np.zeros((3, DIM)))


def test_bad_packages_are_refused_with_a_clear_error(tmp_path: Path) -> None:
    not_zip = tmp_path / "junk.zip"
    not_zip.write_bytes(b"this is no zip")
    with pytest.raises(PackageError, match="not a readable zip"):
        Learnware.load(not_zip)
    no_manifest = tmp_path / "empty.zip"
    write_package(no_manifest, {"__init__.py": b"", "requirements.txt": b""})
    with pytest.raises(PackageError, match=r"learnware\.yaml: is missing"):
        Learnware.load(no_manifest)
    bad_spec = make_package(tmp_path, "class Model: pass\n")
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(bad_spec) as zf:
        files = {i.filename.split("/", 1)[1]: zf.read(i) for i in zf.infolist()}
    files["rkme.json"] = b'{"z": [[1, 2]], "beta": [1, 2], "gamma": 0.1}'
    write_package(broken, files)
    with pytest.raises(PackageError, match=r"rkme\.json: is not a usable RKME"):
        Learnware.load(broken)


def test_manifest_id_and_semantic_file_are_read(tmp_path: Path, bwrap: str) -> None:
    semantic = {"Name": {"Type": "String", "Values": "four features"}}
    path = make_package(
        tmp_path,
        "class Model: pass\n",
        manifest_extra="id: lw-0042\nsemantic_specification:\n  file_name: semantic.json\n",
        semantic__json=json.dumps(semantic).encode(),
    )
    with Learnware.load(path) as lw:
        assert lw.id == "lw-0042" and lw.semantic == semantic
    with Learnware.load(path, learnware_id="market-7", semantic={"x": 1}) as lw:
        assert lw.id == "market-7" and lw.semantic == {"x": 1}


# --- loading what a search found ------------------------------------------------------------------


class FolderClient:
    """Serves packages from a folder through the two WharfClient methods from_search uses."""

    def __init__(self, packages: dict[str, Path]):
        self.packages = packages
        self.downloaded: list[str] = []

    def download(self, learnware_id: str, path: Path) -> Path:
        self.downloaded.append(learnware_id)
        shutil.copyfile(self.packages[learnware_id], path)
        return Path(path)

    def learnware(self, learnware_id: str) -> dict:
        return {"id": learnware_id, "semantic_spec": {"Name": learnware_id}}


def test_from_search_loads_the_mixture_or_the_singles(tmp_path: Path, bwrap: str) -> None:
    client = FolderClient({"a": example("digits 0-4").package, "b": example("digits 5-9").package})
    result = {
        "singles": [{"id": "b"}, {"id": "a"}],
        "mixture": {"ids": ["a", "b"], "weights": [0.5, 0.5]},
    }
    loaded = from_search(client, result, tmp_path / "dl")
    try:
        assert [lw.id for lw in loaded] == ["a", "b"]
        assert loaded[1].semantic == {"Name": "b"}
        assert (tmp_path / "dl" / "a.zip").is_file()
    finally:
        for lw in loaded:
            lw.close()
    singles = from_search(client, result, tmp_path / "dl2", mixture=False, top=1)
    assert [lw.id for lw in singles] == ["b"]
    singles[0].close()
    with pytest.raises(ValueError, match="no learnwares"):
        from_search(client, {"singles": [], "mixture": None}, tmp_path / "dl3")
