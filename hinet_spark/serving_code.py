"""The registered model's entry point as MLflow "models from code" (no pickle).

MLflow runs this file when it loads a model logged by :func:`hinet_spark.serving.log_pyfunc`
(after putting the model's own copy of ``hinet_spark`` on ``sys.path``): the pyfunc class is
imported from that code, and its weights are read with ``torch.load(weights_only=True)``,
its config and feature spec as JSON. Nothing of the model is unpickled.
"""

import mlflow

from hinet_spark.serving import HiNetPyfunc

mlflow.models.set_model(HiNetPyfunc())
