"""The feature spec: fitted bucket boundaries and vocabularies, versioned by a content hash.

Id conventions, the same for every feature:

* numeric ``f``: 0 = null, ``1 + #{boundaries <= x}`` otherwise (so 1..len(boundaries)+1);
* categorical ``f``: 0 = null, 1 = out of vocabulary, ``2 + position`` in the vocabulary;
* hashed ``f``: 0 = null, ``2 + pmod(xxhash64(value), buckets)`` (1 is unused);
* behaviour counter ``f`` (``counters``): as numeric; 0 = the entity has no events in the
  window (or a null key), so a never-seen entity has its own id.

``vocab_sizes`` gives each feature's id range for the model's embedding. The JSON file holds
the content and its sha256 ``hash``; reading a file whose content does not match its hash is
an error (a hand-edited or truncated spec).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hinet_spark.errors import OperatorError

NULL_ID = 0
OOV_ID = 1
FIRST_ID = 2
SPEC_FORMAT = 1


class FeatureSpecError(OperatorError, ValueError):
    """A feature spec is missing, corrupt, or does not match what a job expects."""


@dataclass(frozen=True)
class FeatureSpec:
    scenarios: tuple[str, ...]
    numeric: dict[str, tuple[float, ...]]  # feature -> sorted, distinct boundaries
    categorical: dict[str, tuple[str, ...]]  # feature -> vocabulary, most frequent first
    hashed: dict[str, int]  # feature -> number of hash buckets
    fit_window: tuple[str, str]  # first and last date the spec was fitted on
    min_count: int
    meta: dict[str, Any] = field(default_factory=dict, compare=False)
    # behaviour counters: the definition (features.behaviour, as Counters.to_dict) and each
    # counter's bucket boundaries; both empty for a spec without counters
    behaviour: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, tuple[float, ...]] = field(default_factory=dict)

    @property
    def feature_order(self) -> list[str]:
        """The model's input order: numeric, counters, categorical, hashed, each as in the spec."""
        return [*self.numeric, *self.counters, *self.categorical, *self.hashed]

    @property
    def bucketed(self) -> dict[str, tuple[float, ...]]:
        """Every bucketized column (numeric features and counters) -> its boundaries."""
        return {**self.numeric, **self.counters}

    @property
    def columns(self) -> list[str]:
        """Id columns in the samples table, in feature order."""
        return [f"f_{name}" for name in self.feature_order]

    @property
    def vocab_sizes(self) -> tuple[int, ...]:
        sizes = [len(b) + 2 for b in self.bucketed.values()]
        sizes += [len(v) + FIRST_ID for v in self.categorical.values()]
        sizes += [n + FIRST_ID for n in self.hashed.values()]
        return tuple(sizes)

    def without_counters(self) -> "FeatureSpec":
        """This spec less its behaviour counters (``train.use_behaviour: false``: the same samples,
        the model reads no ``f_bh_*`` column); its own hash, that of a spec fitted without them."""
        return dataclasses.replace(self, behaviour={}, counters={})

    def content(self) -> dict[str, Any]:
        """Everything the transformation depends on (what the hash covers)."""
        return {
            "format": SPEC_FORMAT,
            "scenarios": list(self.scenarios),
            "numeric": {k: list(v) for k, v in self.numeric.items()},
            "categorical": {k: list(v) for k, v in self.categorical.items()},
            "hashed": dict(self.hashed),
            "fit_window": list(self.fit_window),
            "min_count": self.min_count,
            # only with counters, so that a spec without them keeps the hash it had before they existed
            **({"behaviour": self.behaviour, "counters": {k: list(v) for k, v in self.counters.items()}}
               if self.behaviour else {}),
        }

    @property
    def hash(self) -> str:
        canonical = json.dumps(self.content(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def short_hash(self) -> str:
        return self.hash[:12]

    def to_json(self) -> str:
        return json.dumps({**self.content(), "hash": self.hash, "meta": self.meta}, indent=2) + "\n"

    @staticmethod
    def from_json(text: str, where: str = "feature spec") -> "FeatureSpec":
        try:
            raw = json.loads(text)
            spec = FeatureSpec(
                scenarios=tuple(raw["scenarios"]),
                numeric={k: tuple(float(x) for x in v) for k, v in raw["numeric"].items()},
                categorical={k: tuple(str(x) for x in v) for k, v in raw["categorical"].items()},
                hashed={k: int(v) for k, v in raw["hashed"].items()},
                fit_window=(raw["fit_window"][0], raw["fit_window"][1]),
                min_count=int(raw["min_count"]),
                meta=dict(raw.get("meta", {})),
                behaviour=dict(raw.get("behaviour") or {}),
                counters={k: tuple(float(x) for x in v) for k, v in (raw.get("counters") or {}).items()},
            )
            stored = raw["hash"]
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise FeatureSpecError(f"{where}: not a valid feature spec ({exc!r})") from None
        if raw.get("format") != SPEC_FORMAT:
            raise FeatureSpecError(f"{where}: format {raw.get('format')!r}, expected {SPEC_FORMAT}")
        if stored != spec.hash:
            raise FeatureSpecError(
                f"{where}: content hash {spec.hash[:12]} does not match the stored hash {str(stored)[:12]}; "
                "the file was edited or truncated"
            )
        return spec

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(self.to_json())
        tmp.replace(path)  # atomic: readers never see half a spec

    @staticmethod
    def load(path: str | Path) -> "FeatureSpec":
        path = Path(path)
        if not path.is_file():
            raise FeatureSpecError(f"feature spec not found: {path}")
        return FeatureSpec.from_json(path.read_text(), str(path))


def differences(a: FeatureSpec, b: FeatureSpec) -> list[str]:
    """What differs between two specs' contents, by key (``behaviour.windows``, ``numeric.price``...)."""
    ca, cb = a.content(), b.content()
    out = []
    for key in sorted(set(ca) | set(cb)):
        va, vb = ca.get(key), cb.get(key)
        if va == vb:
            continue
        if isinstance(va, dict) and isinstance(vb, dict):
            out += [f"{key}.{k}" for k in sorted(set(va) | set(vb)) if va.get(k) != vb.get(k)]
        else:
            out.append(key)
    return out


def require_same(expected: FeatureSpec, actual_hash: str, what: str) -> None:
    """Raise naming both hashes when ``what`` was built with another spec."""
    if expected.hash != actual_hash:
        raise FeatureSpecError(
            f"{what} was built with feature spec {actual_hash[:12]}, but this run uses "
            f"{expected.short_hash}; rebuild it with the same spec or pass the matching spec"
        )
