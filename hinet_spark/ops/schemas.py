"""The data contract: ``schemas/*.json`` loaded as Spark StructTypes, and DataFrame checks.

Each schema file lists its columns with a Spark type, nullability, a role (key, scenario,
time, date, numeric, categorical, event) and a description; docs/data_contract.md is written
from the same files. Extra columns in user data are allowed and ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import types as T

from hinet_spark.config.loading import shipped_dir
from hinet_spark.errors import OperatorError

ROLES = ("key", "scenario", "time", "date", "numeric", "categorical", "event")

_TYPES: dict[str, T.DataType] = {
    "string": T.StringType(),
    "int": T.IntegerType(),
    "long": T.LongType(),
    "double": T.DoubleType(),
    "timestamp": T.TimestampType(),
    "date": T.DateType(),
    "boolean": T.BooleanType(),
}


class SchemaError(OperatorError, ValueError):
    """A DataFrame does not meet its data contract."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool
    role: str
    description: str
    min: float | None = None  # the contract's range of a numeric column (inclusive)
    max: float | None = None

    @property
    def spark_type(self) -> T.DataType:
        return _TYPES[self.type]


@dataclass(frozen=True)
class TableSchema:
    name: str
    version: int
    description: str
    partition_columns: tuple[str, ...]
    columns: tuple[Column, ...]

    @property
    def struct(self) -> T.StructType:
        return T.StructType([T.StructField(c.name, c.spark_type, c.nullable) for c in self.columns])

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def by_role(self, role: str) -> list[str]:
        return [c.name for c in self.columns if c.role == role]

    def ranges(self, columns: list[str] | tuple[str, ...]) -> dict[str, tuple[float | None, float | None]]:
        """[min, max] of each of ``columns`` (None where the contract gives no bound)."""
        by_name = {c.name: c for c in self.columns}
        return {n: (by_name[n].min, by_name[n].max) if n in by_name else (None, None) for n in columns}


def schemas_dir() -> Path:
    """``schemas/`` of the checkout, or the copy shipped inside the wheel."""
    return shipped_dir("schemas", "candidates.json")


@lru_cache(maxsize=None)
def load_schema(name: str) -> TableSchema:
    path = schemas_dir() / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in schemas_dir().glob("*.json"))
        raise SchemaError(f"no schema {name!r} in {schemas_dir()}; known: {known}")
    raw = json.loads(path.read_text())
    cols = []
    for c in raw["columns"]:
        if c["type"] not in _TYPES:
            raise SchemaError(f"{path}: column {c['name']!r} has unknown type {c['type']!r}")
        if c["role"] not in ROLES:
            raise SchemaError(f"{path}: column {c['name']!r} has unknown role {c['role']!r}")
        cols.append(Column(c["name"], c["type"], bool(c["nullable"]), c["role"], c["description"],
                           c.get("min"), c.get("max")))
    return TableSchema(raw["name"], int(raw["version"]), raw["description"],
                       tuple(raw["partition_columns"]), tuple(cols))


def validate_dataframe(df: DataFrame, schema: TableSchema, what: str | None = None) -> None:
    """Raise :class:`SchemaError` naming every missing column and every column of a wrong type."""
    what = what or schema.name
    actual = {f.name: f.dataType for f in df.schema.fields}
    missing = [c.name for c in schema.columns if c.name not in actual]
    wrong = [
        f"{c.name} (expected {c.type}, got {actual[c.name].simpleString()})"
        for c in schema.columns
        if c.name in actual and actual[c.name] != c.spark_type
    ]
    problems = []
    if missing:
        problems.append(f"missing columns {missing}")
    if wrong:
        problems.append(f"wrong types: {', '.join(wrong)}")
    if problems:
        raise SchemaError(f"{what} does not meet schema {schema.name!r}: {'; '.join(problems)}")


def conform(df: DataFrame, schema: TableSchema) -> DataFrame:
    """Validate, then select the contract's columns in the contract's order."""
    validate_dataframe(df, schema)
    return df.select(*schema.names)


_NUMBER = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType)
_CATEGORY = (T.StringType, T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.BooleanType)


def validate_features(df: DataFrame, kinds: dict[str, tuple[str, ...]], what: str) -> None:
    """Raise :class:`SchemaError` naming every configured feature column that ``df`` lacks or
    holds with a type that does not fit. ``kinds``: ``features.numeric`` / ``features.categorical``
    / ``features.hashed`` -> the column names configured there."""
    actual = {f.name: f.dataType for f in df.schema.fields}
    problems = []
    for key, names in kinds.items():
        allowed, expected = (_NUMBER, "a number type") if "numeric" in key else \
            (_CATEGORY, "string, integer or boolean")
        missing = [n for n in names if n not in actual]
        if missing:
            problems.append(f"{key}: {missing} {'is not a column' if len(missing) == 1 else 'are not columns'}")
        problems += [f"{key}: {n!r} is {actual[n].simpleString()}, expected {expected}"
                     for n in names if n in actual and not isinstance(actual[n], allowed)]
    if problems:
        raise SchemaError(f"{what}: {'; '.join(problems)} (its columns: {sorted(actual)})")
