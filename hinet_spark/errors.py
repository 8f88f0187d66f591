"""The one error policy of the jobs.

An error written for an operator subclasses :class:`OperatorError`: its message names the
problem and what to do, so :func:`hinet_spark.cli.run_job` logs it as one ERROR line (the
traceback at DEBUG) and exits 1. Anything else is a bug or an environment failure and is
logged with its traceback. Each subclass also derives from the builtin it used to be
(``ValueError``, ``RuntimeError``, ``LookupError``), so callers that catch those still work.

This module imports nothing of the project (the layer rule, ``tests/test_layers.py``).
"""

from __future__ import annotations


class OperatorError(Exception):
    """A failure whose message says everything an operator needs."""


class ConfigError(OperatorError, ValueError):
    """A configuration file, mapping file or override is missing, malformed or holds a bad value."""


class UsageError(OperatorError, ValueError):
    """A job was called with arguments that do not go together."""
