"""Write docs/data_contract.md (from schemas/*.json) and docs/config.md (from the config
dataclasses and conf/base.yaml's comments); tests check both are up to date.

    .venv/bin/python scripts/gen_docs.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from hinet_spark.ops.schemas import load_schema, schemas_dir

DOCS = Path(__file__).resolve().parent.parent / "docs"
OUT = DOCS / "data_contract.md"
CONFIG_OUT = DOCS / "config.md"


def render() -> str:
    lines = [
        "# Data contract",
        "",
        "Generated from `schemas/*.json` by `scripts/gen_docs.py`; do not edit by hand.",
        "The jobs load the same files as Spark StructTypes and check input tables against them:",
        "a missing column or a column of another type stops a job before it writes, naming the",
        "columns. Extra columns are allowed and ignored (one whose name collides with a column the",
        "pipeline adds, such as `label_ctr` or `f_price`, is dropped with a warning naming it).",
        "`nullable: no` columns that hold nulls in real data are quarantined by the feature",
        "pipeline (`null_key:<column>`); so are rows whose `dt` is null or not the UTC date of",
        "their event time (`bad_dt`), numerics that are NaN, infinite or negative",
        "(`bad_numeric:<column>`) or outside the range column below (`out_of_range:<column>`).",
        "",
    ]
    for path in sorted(schemas_dir().glob("*.json")):
        s = load_schema(path.stem)
        lines += [f"## `{s.name}` (version {s.version})", "", s.description, "",
                  f"Partitioned by: {', '.join(f'`{c}`' for c in s.partition_columns)}", "",
                  "| column | type | nullable | role | range | description |", "|---|---|---|---|---|---|"]
        lines += [f"| `{c.name}` | {c.type} | {'yes' if c.nullable else 'no'} | {c.role} | {_range(c)} | "
                  f"{c.description} |" for c in s.columns]
        lines.append("")
    return "\n".join(lines)


def _range(c) -> str:
    if c.min is None and c.max is None:
        return ""
    lo = "" if c.min is None else f"{c.min:g}"
    hi = "" if c.max is None else f"{c.max:g}"
    return f"[{lo}, {hi}]" if hi else f">= {lo}"


def _comments(base: Path) -> dict[str, str]:
    """``section.key -> comment`` from the trailing comments of conf/base.yaml."""
    out: dict[str, str] = {}
    path: list[str] = []  # the keys above this line, by indent (2 spaces a level)
    last = None
    for line in base.read_text().splitlines():
        indent = len(line) - len(line.lstrip())
        if line.lstrip().startswith("#"):
            if last and indent > 2 * last.count("."):  # a comment continued on the next line, under the first
                out[last] += " " + line.split("#", 1)[1].strip()
            continue
        last = None
        if not line.strip():
            continue
        key = line.strip().split(":", 1)[0]
        path = [*path[:indent // 2], key]
        if indent and "#" in line:
            last = ".".join(path)
            out[last] = line.split("#", 1)[1].strip()
    return out


def _type_name(tp) -> str:
    return str(tp).replace("typing.", "").replace("<class '", "").replace("'>", "").replace(" | ", " or ")


def _rows(prefix: str, cls, defaults, comments: dict[str, str]) -> list[str]:
    """One table row per key; a nested section (features.behaviour) gives one row per key of it."""
    import dataclasses
    import typing

    rows, hints = [], typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        value, key = getattr(defaults, f.name), f"{prefix}.{f.name}"
        if dataclasses.is_dataclass(value):
            rows += _rows(key, type(value), value, comments)
            continue
        if isinstance(value, tuple):
            value = list(value)
        shown = f"`{value}`" if value is not None else "null"
        note = comments.get(key, "")
        rows.append(f"| `{key}` | {_type_name(hints[f.name])} | {shown} | {note} |")
    return rows


def render_config() -> str:
    import dataclasses
    import typing

    from hinet_spark.config import Config, default_conf_dir

    comments = _comments(default_conf_dir() / "base.yaml")
    lines = [
        "# Configuration reference",
        "",
        "Generated from the config dataclasses (`hinet_spark/config/sections.py`) and the comments of",
        "`conf/base.yaml` by `scripts/gen_docs.py`; do not edit by hand.",
        "",
        "A job's configuration is `conf/base.yaml`, then the file given with `--conf`",
        "(`conf/local.yaml`, `conf/databricks.yaml`), then each `--set section.key=value` (the",
        "value is parsed as YAML: `--set features.hashed='{user_id: 1000}'`). Mappings merge key",
        "by key, except the per-scenario tables and `features.hashed`, which are replaced whole.",
        "An unknown key, a value of the wrong type or a missing file is an error naming the key,",
        "the value and the file.",
        "",
    ]
    defaults = Config()
    hints = typing.get_type_hints(Config)
    for sec in dataclasses.fields(Config):
        cls = hints[sec.name]
        lines += [f"## `{sec.name}`", "", (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " "), "",
                  "| key | type | default | notes |", "|---|---|---|---|"]
        lines += _rows(sec.name, cls, getattr(defaults, sec.name), comments)
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    OUT.write_text(render())
    CONFIG_OUT.write_text(render_config())
    return 0


if __name__ == "__main__":
    sys.exit(main())
