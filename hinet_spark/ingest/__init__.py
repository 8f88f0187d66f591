"""Raw logs in: the synthetic generator (generate_synthetic), your own logs through a mapping (import_logs), the worked example's layout."""
