"""Print where the demo's results are: the tables (rows, Delta version), the registered model
and its aliases, the latest scores, and the command that opens the MLflow UI.

    .venv/bin/python scripts/demo_summary.py --conf conf/local.yaml
"""

from __future__ import annotations

import sys

from mlflow.tracking import MlflowClient

from hinet_spark.cli import base_parser, config_from_args, setup_logging
from hinet_spark.features.build import spec_path
from hinet_spark.features.spec import FeatureSpec
from hinet_spark.ops.io import read_table, table_exists, table_location, table_version
from hinet_spark.ops.mlflow_store import setup, tracking_uri
from hinet_spark.ops.spark import get_spark


def main() -> int:
    args = base_parser(__doc__.splitlines()[0]).parse_args()
    setup_logging("WARNING")
    cfg = config_from_args(args)
    spark = get_spark(cfg)
    print("\nTables (Delta):")
    for key in cfg.storage.tables:
        if key != "synthetic_staging" and table_exists(spark, cfg, key):
            n = read_table(spark, cfg, key).count()
            print(f"  {key:<18} {n:>10,} rows  version {table_version(spark, cfg, key):<3} {table_location(cfg, key)}")
    if spec_path(cfg).is_file():
        spec = FeatureSpec.load(spec_path(cfg))
        if spec.counters:
            b = spec.behaviour
            print(f"\nBehaviour counters in feature spec {spec.short_hash}: {len(spec.counters)} "
                  f"({', '.join(b['counts'] + b['rates'])} of {', '.join(b['entities'])} over "
                  f"{', '.join(f'{w} d' for w in b['windows'])}), e.g. {', '.join(list(spec.counters)[:3])}")
        else:
            print(f"\nBehaviour counters: none in feature spec {spec.short_hash} (features.behaviour.entities)")
    setup(cfg)
    client = MlflowClient()
    name = cfg.mlflow.registered_model
    versions = client.search_model_versions(f"name='{name}'")
    print(f"\nRegistered model {name!r}: {len(versions)} version(s)")
    for v in sorted(versions, key=lambda v: int(v.version)):
        v = client.get_model_version(name, v.version)  # search results carry no aliases
        print(f"  version {v.version}: aliases {sorted(v.aliases)}, validation mean AUC {v.tags.get('val_auc.mean')}")
    if table_exists(spark, cfg, "scores"):  # per scenario: score_candidates' own summary table
        dates = sorted(str(r[0]) for r in read_table(spark, cfg, "scores").select("dt").distinct().collect())
        print(f"\nScores for {', '.join(dates)}: read them from {table_location(cfg, 'scores')} (docs/operations.md)")
    print(f"\nMLflow UI: .venv/bin/mlflow ui --backend-store-uri {tracking_uri(cfg)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
