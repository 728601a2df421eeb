"""The sandbox: the whole rollout loop on one machine with no cluster.

Every part binds to 127.0.0.1 only. ``kubeapi`` is the Kubernetes API server emulator; the
other parts (KServe data plane, MLflow, Prometheus, git, load) arrive with their issues.
"""
