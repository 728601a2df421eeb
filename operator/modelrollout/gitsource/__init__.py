"""Model sources in git: the manifest at a path, at a ref, with its commit."""
