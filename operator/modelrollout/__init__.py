"""modelrollout: GitOps canary rollouts of ML models on KServe."""

__version__ = "0.1.0"
