"""spark-submit entry points: thin wrappers of hinet_spark.jobs (the wheel's console scripts)."""
