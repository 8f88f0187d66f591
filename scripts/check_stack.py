"""Prove that the installed stack works together (run at the end of scripts/setup.sh)."""

from __future__ import annotations

import logging
import sys
import tempfile


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    import horovod
    import horovod.torch as hvd
    import petastorm  # noqa: F401
    import torch

    if not hvd.gloo_built():
        print("[check] error: Horovod was built without Gloo", file=sys.stderr)
        return 1
    from hinet_spark.spark import build_local_session

    with tempfile.TemporaryDirectory() as root:
        spark = build_local_session(root, app_name="hinet-check-stack")
        try:
            path = f"{root}/check_delta"
            spark.range(5).write.format("delta").save(path)
            n = spark.read.format("delta").load(path).count()
        finally:
            spark.stop()
    if n != 5:
        print(f"[check] error: Delta round trip read {n} rows, wrote 5", file=sys.stderr)
        return 1
    print(
        f"[check] ok: torch {torch.__version__}, horovod {horovod.__version__} (gloo), "
        f"petastorm {petastorm.__version__}, Spark + Delta round trip"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
