"""What a training checkpoint belongs to, and whether ``--resume`` may continue from it.

A checkpoint stores a *fingerprint* of its run: the samples table version, the split dates,
the feature spec hash and the model and training settings. ``--resume`` continues only an
unfinished run with the same fingerprint; anything else is a :class:`CheckpointError` that
names what differs, so a resumed run never mixes two datasets or two configurations and a
finished run is never re-registered as if it had trained again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hinet_spark.config import ModelSection, TrainSection
from hinet_spark.errors import OperatorError

# Settings that may change between the interrupted run and its resumption: more epochs,
# another stopping rule (patience, fall, the early validation), where the files go.
RESUMABLE_CHANGES = ("epochs", "early_stopping_patience", "early_stopping_drop", "early_validation_fraction", "compile",
                     "checkpoint_dir", "petastorm_cache_dir", "progress_seconds")


class CheckpointError(OperatorError, RuntimeError):
    """``--resume`` cannot continue from the checkpoint found."""


def fingerprint(samples_version: int, split_dates: dict[str, tuple[str, str]], spec_hash: str,
                model: ModelSection, train: TrainSection) -> dict[str, Any]:
    """A flat ``name -> value`` mapping of everything the run's result depends on."""
    out: dict[str, Any] = {"samples_version": samples_version, "feature_spec": spec_hash}
    out.update({f"split.{k}": list(v) for k, v in sorted(split_dates.items())})
    out.update({f"model.{k}": _plain(v) for k, v in dataclasses.asdict(model).items()})
    out.update({f"train.{k}": _plain(v) for k, v in dataclasses.asdict(train).items()
                if k not in RESUMABLE_CHANGES})
    return out


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def check_resumable(state: dict, expected: dict[str, Any], path: Path) -> None:
    """Raise unless ``state`` (a loaded checkpoint) is an unfinished run of ``expected``."""
    if state.get("completed"):
        raise CheckpointError(
            f"--resume: the checkpoint {path} is from a run that finished (epoch {state.get('epoch')}); there is "
            "nothing to resume. Run without --resume to train a new model")
    stored = state.get("fingerprint")
    if stored is None:
        raise CheckpointError(f"--resume: the checkpoint {path} does not record its samples version, split and "
                              "config (written by an older version); run without --resume")
    diffs = [f"{k}: checkpoint {stored.get(k)!r}, now {expected.get(k)!r}"
             for k in sorted(set(stored) | set(expected)) if stored.get(k) != expected.get(k)]
    if diffs:
        raise CheckpointError(
            f"--resume: the checkpoint {path} belongs to another run ({'; '.join(diffs[:6])}"
            f"{'; ...' if len(diffs) > 6 else ''}); run without --resume to start fresh")


def run_dir(base: str | Path, expected: dict[str, Any]) -> Path:
    """Where one run's checkpoints live: ``<base>/<hash of its fingerprint>``, so two runs of
    other data or settings never share (or overwrite) a ``latest.pt``."""
    digest = hashlib.sha256(json.dumps(expected, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Path(base) / digest


def foreign_checkpoint(base: str | Path, mine: Path) -> Path | None:
    """The newest unfinished ``latest.pt`` of another run under ``base`` (for ``--resume``'s
    message when this run has none of its own)."""
    found = [p for p in Path(base).glob("*/latest.pt") if p.parent != mine]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


LOCK = "run.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def run_lock(directory: str | Path) -> Iterator[Path]:
    """Hold ``<directory>/run.lock`` (created exclusively) while a run trains: a second run of
    the same data and settings at the same time is refused instead of writing the same
    checkpoint files. A lock left by a dead process on this host is taken over."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lock = directory / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = json.loads(lock.read_text())
            except (OSError, ValueError):
                holder = {}
            if holder.get("host") == me["host"] and isinstance(holder.get("pid"), int) and not _alive(holder["pid"]):
                lock.unlink(missing_ok=True)  # its process is gone: a stale lock
                continue
            raise CheckpointError(
                f"another training run with the same data and settings holds {lock} (pid {holder.get('pid')} on "
                f"{holder.get('host')}, since {holder.get('started')}); its checkpoints are its own. Wait for it, "
                "or delete the lock file if that run is gone") from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)
