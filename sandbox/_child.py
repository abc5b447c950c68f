"""The program that runs a submitted model; it runs inside the sandbox, never in a worker.

Usage: ``python child.py JOB_JSON``. The job (written by the host) names the extracted
package directory, the model's file (already resolved by the host from ``learnware.yaml``),
its class and keyword arguments, the input file, the model's own output directory (a
capped tmpfs in the sandbox), extra site directories (a cached requirements environment),
the cap on ``outputs.npy`` and the file descriptor of the result channel.

Inputs come from ``inputs.npy``: numbers, or strings (a unicode array, handed to ``predict``
as a list of str, as text models expect). If an image recipe (``images.json``) lies beside
it instead, the inputs are random integer images of the shape the model declares as its
``input_shape``, which only the model knows.

It imports the model file as part of a package named ``_learnware_pkg`` rooted at the
package directory, so relative imports between the learnware's modules work; builds the
model; records ``input_shape``/``output_shape``; calls ``predict`` on the inputs; and sends
back, through the result channel (the pipe ``result_fd``, see ``sandbox/channel.py``:
a line ``wharf-file NAME SIZE`` then the bytes, for each file)

- ``outputs.npy``: the predictions as a numeric array (``allow_pickle=False``), and
- ``result.json``: ``status`` ("ok" or "error"), the stage reached, the shapes, the output
  dtype and shape, whether the model filled its capped ``/out`` (``out_full``), and on
  failure the error type, message and traceback tail.

Nothing is pickled either way. Only the standard library and numpy are used here, and the
process ends with ``os._exit`` so threads a model started cannot keep it alive.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import operator
import os
import site
import sys
import traceback

PACKAGE_NAME = "_learnware_pkg"
MAX_TEXT = 4000
#: The image recipe's file name: ``{"n", "seed", "low", "high", "max_values"}``.
IMAGE_RECIPE = "images.json"


def main(argv: list[str]) -> int:
    with open(argv[1], encoding="utf-8") as f:
        job = json.load(f)
    channel = job["result_fd"]
    os.set_inheritable(channel, False)  # the model's own subprocesses do not get it
    result: dict = {"status": "error", "stage": "setup"}
    files: dict[str, bytes] = {}
    try:
        _add_site_dirs(job.get("site_dirs", []))
        import numpy  # noqa: F401 - a missing numpy fails the setup stage, not the model's

        result["stage"] = "import"
        cls = _load_class(job["package_dir"], job["module_file"], job["class_name"])
        result["stage"] = "init"
        model = cls(**job["kwargs"])
        result["input_shape"] = _shape(getattr(model, "input_shape", None))
        result["output_shape"] = _shape(getattr(model, "output_shape", None))
        result["stage"] = "inputs"
        inputs = _inputs(job["inputs"], result["input_shape"])
        result["stage"] = "predict"
        raw = model.predict(inputs)
        result["stage"] = "outputs"
        files.update(_outputs(raw, job, result))
        result["status"] = "ok"
    except BaseException as exc:  # the model may raise anything, SystemExit included
        result["error"] = {
            "type": type(exc).__qualname__,
            "builtin": next(c.__name__ for c in type(exc).__mro__ if c.__module__ == "builtins"),
            "errno": getattr(exc, "errno", None),
            "message": str(exc)[:MAX_TEXT],
            "traceback": "".join(traceback.format_exception(exc))[-MAX_TEXT:],
        }
    if job.get("out_is_capped"):
        result["out_full"] = _full(job["out_dir"])
    files["result.json"] = json.dumps(result, default=repr).encode()
    try:
        for name, data in files.items():
            _send(channel, b"wharf-file %s %d\n" % (name.encode(), len(data)))
            _send(channel, data)
    except OSError:  # the host closed the channel: it refused what came before
        return 1
    return 0 if result["status"] == "ok" else 1


def _send(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _full(directory: str) -> bool:
    """Whether the capped output directory has no room left (the model filled it)."""
    try:
        info = os.statvfs(directory)
    except OSError:
        return False
    return info.f_bavail == 0 or info.f_favail == 0


def _inputs(path: str, input_shape: object) -> object:
    import numpy as np

    recipe_path = os.path.join(os.path.dirname(path), IMAGE_RECIPE)
    if not os.path.exists(recipe_path):
        inputs = np.load(path, allow_pickle=False)
        return inputs.tolist() if inputs.dtype.kind == "U" else inputs
    with open(recipe_path, encoding="utf-8") as f:
        recipe = json.load(f)
    shape = input_shape
    if not (isinstance(shape, list) and shape and all(s > 0 for s in shape)):
        raise ValueError(
            f"an image model must declare input_shape, the shape of one image such as "
            f"(3, 32, 32); it is {shape!r}"
        )
    count = recipe["n"]
    for s in shape:
        count *= s
    if count > recipe["max_values"]:
        raise ValueError(
            f"input_shape {tuple(shape)} is too large: {recipe['n']} images of it would hold "
            f"{count} numbers, over the limit of {recipe['max_values']}"
        )
    rng = np.random.default_rng(recipe["seed"])
    return rng.integers(recipe["low"], recipe["high"], size=(recipe["n"], *shape))


def _add_site_dirs(dirs: list[str]) -> None:
    """Put each directory first on ``sys.path``, processing its ``.pth`` files."""
    for directory in reversed(dirs):
        before = list(sys.path)
        site.addsitedir(directory)
        added = [p for p in sys.path if p not in before]
        sys.path[:] = [directory, *added, *(p for p in before if p != directory)]


def load_model_module(package_dir: str, module_file: str, package_name: str = PACKAGE_NAME):
    """Import ``module_file`` as part of a package named ``package_name`` rooted at
    ``package_dir`` (so the learnware's relative imports work). Also used, with a unique
    name per package, to run a learnware in the caller's process."""
    init = os.path.join(package_dir, "__init__.py")
    spec = importlib.util.spec_from_file_location(
        package_name, init, submodule_search_locations=[package_dir]
    )
    package = importlib.util.module_from_spec(spec)
    sys.modules[package_name] = package
    spec.loader.exec_module(package)
    if module_file == "__init__.py":
        return package
    parts = module_file[: -len(".py")].split("/")
    if parts[-1] == "__init__":
        parts.pop()
    if all(part.isidentifier() for part in parts):
        return importlib.import_module(".".join([package_name, *parts]))
    # A file name that is no module name (my-model.py): load it by path.
    name = f"{package_name}._model"
    spec = importlib.util.spec_from_file_location(name, os.path.join(package_dir, module_file))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _load_class(package_dir: str, module_file: str, class_name: str) -> type:
    module = load_model_module(package_dir, module_file)
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise AttributeError(f"{module_file} defines no {class_name!r}") from None


def _shape(value: object) -> list[int] | str | None:
    """A shape as a list of ints, ``None`` when absent, or its repr when it is no shape."""
    if value is None:
        return None
    try:
        return [operator.index(v) for v in value]
    except TypeError:
        return repr(value)[:200]


def _outputs(raw: object, job: dict, result: dict) -> dict[str, bytes]:
    """``{"outputs.npy": bytes}`` for numeric outputs under the cap, else ``{}`` and why
    in ``result["output_problem"]``."""
    import io

    import numpy as np

    if hasattr(raw, "detach") and hasattr(raw, "cpu"):  # a torch tensor
        raw = raw.detach().cpu().numpy()
    result["output_type"] = type(raw).__qualname__
    try:
        result["output_len"] = len(raw)
    except TypeError:
        pass
    try:
        outputs = np.asarray(raw)
    except ValueError as exc:  # ragged lists
        result["output_problem"] = f"not convertible to an array: {exc}"[:MAX_TEXT]
        return {}
    result["dtype"] = str(outputs.dtype)
    result["shape"] = list(outputs.shape)
    if outputs.dtype.kind not in "biuf":
        result["output_problem"] = f"not a numeric array (dtype {outputs.dtype})"
        return {}
    if outputs.nbytes > job["max_output_bytes"]:
        result["output_problem"] = (
            f"{outputs.nbytes} bytes of outputs, over the {job['max_output_bytes']}-byte cap"
        )
        return {}
    buffer = io.BytesIO()
    np.save(buffer, outputs, allow_pickle=False)
    return {"outputs.npy": buffer.getvalue()}


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
