"""A progress line for long Spark stages: Spark's console progress bar is off in the jobs'
sessions (it garbles logs), so a thread reads the status tracker every N seconds and logs
the running stages' task counts."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)


def _describe(spark: SparkSession) -> list[str]:
    tracker = spark.sparkContext.statusTracker()
    out = []
    for sid in sorted(tracker.getActiveStageIds()):
        info = tracker.getStageInfo(sid)
        if info is not None and info.numTasks:
            out.append(f"stage {sid}: {info.numCompletedTasks}/{info.numTasks} tasks done, "
                       f"{info.numActiveTasks} running")
    return out


@contextlib.contextmanager
def stage_progress(spark: SparkSession, every_s: int, label: str) -> Iterator[None]:
    """Log ``<label>: <elapsed>, stage N: done/total tasks ...`` every ``every_s`` seconds
    while Spark stages run inside the block (nothing when none is running)."""
    stop = threading.Event()
    began = time.perf_counter()

    def watch() -> None:
        while not stop.wait(every_s):
            try:
                stages = _describe(spark)
            except Exception:  # noqa: BLE001 - the session is stopping; progress is best effort
                return
            if stages:
                logger.info("%s: %.0f s, %s", label, time.perf_counter() - began, "; ".join(stages))

    thread = threading.Thread(target=watch, name=f"{label}-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
