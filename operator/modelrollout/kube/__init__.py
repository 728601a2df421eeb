"""Kubernetes reads the engine needs besides the InferenceService: Secrets."""
