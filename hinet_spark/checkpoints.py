"""What a training checkpoint belongs to, and whether ``--resume`` may continue from it.

A checkpoint stores a *fingerprint* of its run: the samples table version, the split dates,
the feature spec hash and the model and training settings. ``--resume`` continues only an
unfinished run with the same fingerprint; anything else is a :class:`CheckpointError` that
names what differs, so a resumed run never mixes two datasets or two configurations and a
finished run is never re-registered as if it had trained again.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from hinet_spark.config import ModelSection, TrainSection

# Settings that may change between the interrupted run and its resumption: more epochs,
# another patience, where the files go.
RESUMABLE_CHANGES = ("epochs", "early_stopping_patience", "checkpoint_dir", "petastorm_cache_dir", "progress_seconds")


class CheckpointError(RuntimeError):
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
