"""Every job command the docs print, checked as typed.

A command is a line (with its ``\\`` continuations) inside a fenced block of README.md or
docs/*.md that calls ``jobs/<job>.py`` (``spark-submit``, ``python``, a ``$`` prompt) or
``make <target>``. Each is parsed by its job's own argument parser and its ``--conf`` /
``--set`` / ``--mapping`` loaded as the job would, so a renamed flag, a removed config key or a
missing file fails here. Commands that only work elsewhere sit in a block preceded by a marker:
``<!-- databricks-only -->`` (Databricks' config and workspace) or ``<!-- cluster-only -->``
(a YARN or standalone cluster and the user's own config file); their arguments are parsed, their
files not looked for. In a block without a language, only ``$``-prompted lines are commands. The commands that docs say were
run (their output follows them) are run end to end by the tests of each stage
(test_spark_submit, test_import, test_pipeline).
"""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest

from hinet_spark.config import load_config

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MARKERS = {"<!-- databricks-only -->": "databricks", "<!-- cluster-only -->": "cluster"}
JOB = re.compile(r"(?:^|\s)(?:\S*/)?jobs/(\w+)\.py(\s|$)")


def commands(path: Path) -> list[tuple[int, str, str]]:
    """``(line, command, where)`` for each job command in the file's fenced blocks; ``where`` is
    ``local``, or the marker's kind."""
    out, in_block, where, shell, pending, start, before = [], False, "local", False, "", 0, ""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```"):
            in_block = not in_block
            where = MARKERS.get(before.strip(), "local") if in_block else "local"
            shell = line[3:].strip() in ("bash", "sh", "shell", "console")
            continue
        if not in_block:
            if line.strip():
                before = line
            continue
        if not pending and not shell and not re.match(r"^\s*\$ ", line):
            continue
        text = re.sub(r"^\s*\$ ", "", line) if not pending else line
        if not pending and not (JOB.search(text) or text.startswith("make ")):
            continue
        start = start if pending else number
        pending += " " + text.rstrip().removesuffix("\\")
        if not text.rstrip().endswith("\\"):
            out.append((start, pending.strip(), where))
            pending = ""
    return out


ALL = [(p.relative_to(REPO).as_posix(), n, c, d) for p in DOCS for n, c, d in commands(p)]


def test_the_docs_hold_commands_and_mark_the_databricks_ones():
    assert len(ALL) > 30
    databricks = [c for _, _, c, w in ALL if w == "databricks"]
    assert databricks and all("databricks" in c for c in databricks)
    # outside the marked blocks no command uses the Databricks config
    assert not [(f, n) for f, n, c, w in ALL if w == "local" and "conf/databricks.yaml" in c]


def words_of(command: str) -> list[str]:
    """The command's words, its comment cut; a ``for v in A B; do CMD; done`` loop gives CMD
    with its first value."""
    loop = re.match(r"for (\w+) in (\S+)[^;]*; do (.*?); done", command)
    if loop:
        command = loop.group(3).replace(f"${loop.group(1)}", loop.group(2))
    return shlex.split(re.sub(r"\s#\s.*$", "", command))  # a '#' inside a word (x.tar.gz#env) stays


@pytest.mark.parametrize(("doc", "line", "command", "where"), ALL, ids=[f"{f}:{n}" for f, n, _, _ in ALL])
def test_a_printed_command_parses_and_its_config_loads(doc, line, command, where):
    words = words_of(command)
    if words[0] == "make":
        makefile = (REPO / "Makefile").read_text()
        assert re.search(rf"^{re.escape(words[1])}:", makefile, re.M), f"{doc}:{line}: no make target {words[1]}"
        return
    at = next(i for i, w in enumerate(words) if JOB.search(" " + w))
    job = JOB.search(" " + words[at]).group(1)
    assert (REPO / "jobs" / f"{job}.py").is_file(), f"{doc}:{line}: no jobs/{job}.py"
    module = importlib.import_module(f"hinet_spark.jobs.{job}")
    try:
        args = module.build_parser().parse_args(words[at + 1:])
    except SystemExit as exc:
        pytest.fail(f"{doc}:{line}: {job} refuses its arguments ({exc}): {command}")
    if where != "local":
        return
    if getattr(args, "conf", None):
        assert (REPO / args.conf).is_file(), f"{doc}:{line}: no {args.conf}"
    if getattr(args, "mapping", None):
        assert (REPO / args.mapping).is_file(), f"{doc}:{line}: no {args.mapping}"
    conf = str(REPO / args.conf) if getattr(args, "conf", None) else None
    load_config(conf, list(getattr(args, "overrides", [])))  # raises ConfigError naming a bad key or value
