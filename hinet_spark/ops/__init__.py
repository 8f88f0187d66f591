"""Plumbing every stage uses: the SparkSession, Delta reads and writes, the data contract, the MLflow store, logs, progress lines, summary tables."""
