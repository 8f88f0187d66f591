"""Samples -> a model: the pinned snapshot, each worker's shard, the launchers, sparse id tables, checkpoints, warm starts, the worker loop."""
