"""After training: the MLflow run and registered version, the champion rule and alias moves, model comparisons."""
