"""One session-scoped local Spark with Delta. (MLflow tests use a temp sqlite store via
``mlflow.tracking_uri`` in their config.)"""

from __future__ import annotations

import pytest

from hinet_spark.config import load_config
from hinet_spark.ops.spark import build_local_session


@pytest.fixture(scope="session")
def spark_root(tmp_path_factory):
    return tmp_path_factory.mktemp("spark")


@pytest.fixture(scope="session")
def spark(spark_root):
    session = build_local_session(spark_root, master="local[2]", app_name="hinet-tests",
                                  shuffle_partitions=2, driver_memory="2g")
    yield session
    session.stop()


@pytest.fixture()
def cfg_factory(tmp_path):
    """A Config whose tables live under this test's temp dir, plus extra overrides. Like the
    embedded default (conf/local.yaml) it says the tables are the generator's
    (``synthetic.enabled=true``); a test of real logs passes ``synthetic.enabled=false``."""

    def make(*overrides: str):
        return load_config(None, [f"storage.root={tmp_path / 'data'}", "synthetic.enabled=true", *overrides])

    return make
