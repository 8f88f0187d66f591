"""The package travels with the training job to executors that do not have it.

On a cluster, the training launchers (Horovod, TorchDistributor on the executors) run the
training function in processes on the executors: a Spark task's Python worker, and the
process it starts (``python -m horovod.spark.task.gloo_exec_fn``, ``torchrun``). Those
unpickle the function and its payload, which name ``hinet_spark`` modules: on executors whose
Python has the ML stack but not this project, that is ``ModuleNotFoundError: No module named
'hinet_spark'`` inside a py4j traceback.

:func:`executor_lacks` asks one executor task which of the modules training needs it cannot
import. When only the project is missing, :func:`carry` wraps the function so that the
project travels *inside* the pickled call: the package's files as a zip (a few hundred KB),
unpacked into a temporary folder on the executor and put on ``sys.path`` before the real
function and payload are unpickled. That works in the task's own worker and in every
process the launchers start, with no ``--py-files`` and no file distribution. When the ML stack
itself is missing, nothing can be carried: the job stops before training with one line naming
the modules and the recipe (docs/operations.md, "Shipping the Python environment").

On Databricks (libraries are installed on every node) and on ``local[...]`` masters (the
executors are the driver's own process tree) nothing is probed.
"""

from __future__ import annotations

import io
import logging
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from hinet_spark.errors import OperatorError

logger = logging.getLogger(__name__)

PACKAGE = "hinet_spark"
# what the training function imports on a worker, besides the project
STACK = ("numpy", "pandas", "pyarrow", "torch")


class ExecutorEnvironmentError(OperatorError, RuntimeError):
    """The executors' Python lacks modules that cannot be carried with the job."""


def needs_probe(spark: SparkSession) -> bool:
    master = spark.sparkContext.master
    return not (os.environ.get("DATABRICKS_RUNTIME_VERSION") or master == "local" or master.startswith("local["))


def executor_lacks(spark: SparkSession, modules: tuple[str, ...]) -> tuple[str, list[str]]:
    """``(the executors' python, the modules of ``modules`` it cannot import)``, asked of one task."""

    def probe(_: Any) -> tuple[str, list[str]]:
        import importlib.util
        import sys

        return sys.executable, [m for m in modules if importlib.util.find_spec(m) is None]

    return spark.sparkContext.parallelize([0], 1).map(probe).collect()[0]


def package_zip() -> bytes:
    """The installed ``hinet_spark`` package (its .py files and package data, no caches) as a zip."""
    root = Path(__file__).resolve().parents[1]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
                zf.write(path, Path(PACKAGE) / path.relative_to(root))
    return buf.getvalue()


def _unpack_and_call(archive: bytes, call: bytes) -> bytes:
    """Runs on the executor: put the carried package on ``sys.path``, then unpickle and run the
    call. Imports only the standard library and cloudpickle until the package is in place, and
    returns the result pickled (the launcher's own unpickling then needs no project class)."""
    import atexit
    import shutil
    import sys
    import tempfile
    import zipfile as _zipfile
    from io import BytesIO

    from pyspark import cloudpickle  # where pyspark runs, its cloudpickle is there

    folder = tempfile.mkdtemp(prefix="hinet_spark-carried-")
    atexit.register(shutil.rmtree, folder, True)
    with _zipfile.ZipFile(BytesIO(archive)) as zf:
        zf.extractall(folder)
    sys.path.insert(0, folder)
    fn, args = cloudpickle.loads(call)
    return cloudpickle.dumps(fn(*args))


def carry(fn: Callable[..., Any], *args: Any) -> tuple[Callable[..., bytes], tuple[bytes, bytes], int]:
    """``(wrapper, its args, zip size)``: calling ``wrapper(*its args)`` on an executor without the
    project runs ``fn(*args)`` and returns its result pickled (see :func:`uncarry`)."""
    from pyspark import cloudpickle

    archive = package_zip()
    shim = _by_value(_unpack_and_call)  # by reference, the executor would have to import this module
    return shim, (archive, cloudpickle.dumps((fn, args))), len(archive)


def uncarry(result: bytes | None) -> Any:
    from pyspark import cloudpickle

    return None if result is None else cloudpickle.loads(result)


def _by_value(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A copy of ``fn`` that cloudpickle serialises by value: its module is not importable
    where it runs. Its globals are a fresh dict (it uses only builtins and local imports)."""
    import types

    clone = types.FunctionType(fn.__code__, {"__builtins__": __builtins__}, fn.__name__, fn.__defaults__,
                               fn.__closure__)
    clone.__module__ = "__main__"  # cloudpickle pickles functions of __main__ by value
    clone.__qualname__ = fn.__qualname__
    return clone


def prepare(spark: SparkSession, fn: Callable[..., Any], args: tuple, extra: tuple[str, ...] = ()
            ) -> tuple[Callable[..., Any], tuple, Callable[[Any], Any]]:
    """``(fn, args, unwrap)`` to hand to a launcher that runs ``fn(*args)`` on the executors:
    unchanged where they can import the project, carried (:func:`carry`) where only the project
    is missing; :class:`ExecutorEnvironmentError` where the ML stack (or ``extra``) is missing."""
    if not needs_probe(spark):
        return fn, args, lambda r: r
    python, lacking = executor_lacks(spark, (PACKAGE, *STACK, *extra))
    stack_missing = [m for m in lacking if m != PACKAGE]
    if stack_missing:
        raise ExecutorEnvironmentError(
            f"the executors' Python ({python}) cannot import {', '.join(stack_missing)}: training runs there. "
            "Install the project's requirements on every node, or ship a packed environment with "
            "spark-submit --archives (docs/operations.md, 'Shipping the Python environment')")
    if PACKAGE not in lacking:
        return fn, args, lambda r: r
    shim, shim_args, size = carry(fn, *args)
    logger.info("the executors' Python (%s) has no %s: the job carries it to them (%d KB zip inside the "
                "training call)", python, PACKAGE, size // 1024)
    return shim, shim_args, uncarry


def executor_python(spark: SparkSession) -> str | None:
    """The interpreter the executors run (``spark.pyspark.python``, else ``PYSPARK_PYTHON``), if set."""
    return spark.conf.get("spark.pyspark.python", None) or os.environ.get("PYSPARK_PYTHON") or None
