"""The jobs' mains: console scripts of the wheel (setup.cfg), run by jobs/*.py under spark-submit."""
