"""Prove that the installed stack works together (run at the end of scripts/setup.sh)."""

from __future__ import annotations

import logging
import sys
import tempfile


def main() -> int:
    """Horovod and Petastorm are checked where they are installed (not in the Databricks
    17.3 LTS environment, whose runtime has neither)."""
    logging.basicConfig(level=logging.WARNING)
    import pyspark
    import torch

    parts = [f"pyspark {pyspark.__version__}", f"torch {torch.__version__}"]
    try:
        import horovod
        import horovod.torch as hvd
    except ImportError:
        parts.append("no horovod")
    else:
        if not hvd.gloo_built():
            print("[check] error: Horovod was built without Gloo", file=sys.stderr)
            return 1
        parts.append(f"horovod {horovod.__version__} (gloo)")
    try:
        import petastorm
    except ImportError:
        parts.append("no petastorm (Spark materialises the snapshot)")
    else:
        parts.append(f"petastorm {petastorm.__version__}")
    from hinet_spark.ops.spark import build_local_session

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
    print(f"[check] ok: {', '.join(parts)}, Spark + Delta round trip")
    return 0


if __name__ == "__main__":
    sys.exit(main())
