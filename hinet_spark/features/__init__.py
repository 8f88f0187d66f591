"""Raw tables -> samples (build_features): the feature spec, the pure Spark transforms, the build with its checks and quarantine."""
