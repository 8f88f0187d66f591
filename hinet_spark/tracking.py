"""The import path that models registered before 0.2 name in their pickles
(``hinet_spark.tracking.HiNetPyfunc``); the MLflow logging itself is :mod:`hinet_spark.lifecycle.tracking`."""

from hinet_spark.serving import HiNetPyfunc

__all__ = ["HiNetPyfunc"]
