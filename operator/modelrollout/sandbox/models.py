"""The sandbox's models: scikit-learn regressors on the diabetes dataset, registered in MLflow.

Each :class:`Candidate` is trained on the same split of the dataset bundled with scikit-learn,
logged with its holdout RMSE, the dataset and a training commit, and registered as the next
version of one registered model, tagged ``validation_status=approved`` (what a CI job would do
after its offline checks). A candidate may carry a serving fault (:class:`Faults`) in its
``MLmodel`` metadata: offline it is as good as its estimator, online the sandbox's model server
answers with errors, delays or shifted predictions, like a training/serving skew would.

mlflow and scikit-learn are imported inside the functions: the CLI stays light.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from modelrollout.sandbox.modelserver import Faults

TRAINING_COMMIT = "0" * 39 + "1"


@dataclass(frozen=True)
class Candidate:
    """One model version to train: which features, how strong a ridge penalty, what fault."""

    label: str
    description: str
    features: tuple[str, ...] | None = None  # None: all ten
    alpha: float = 0.1
    faults: Faults = field(default_factory=Faults)

    def metadata(self) -> dict[str, str]:
        found = {}
        if self.faults.error_rate:
            found["fault.error-rate"] = str(self.faults.error_rate)
        if self.faults.extra_latency_ms:
            found["fault.extra-latency-ms"] = str(self.faults.extra_latency_ms)
        if self.faults.shift:
            found["fault.shift"] = str(self.faults.shift)
        return found


@dataclass(frozen=True)
class Registered:
    label: str
    name: str
    version: str
    rmse: float
    description: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


BASELINE = Candidate("baseline", "body mass index and blood pressure only", ("bmi", "bp"), 1.0)
BETTER = Candidate("better", "all ten features")
ERRORS = Candidate("errors", "all ten features; fails 30% of predictions when served",
                   faults=Faults(error_rate=0.3))  # fmt: skip
SLOW = Candidate("slow", "all ten features; 150 ms slower when served",
                 faults=Faults(extra_latency_ms=150.0))  # fmt: skip
SKEWED = Candidate("skewed", "all ten features; predictions shifted by +80 when served",
                   faults=Faults(shift=80.0))  # fmt: skip


def register(tracking_uri: str, name: str, candidates: list[Candidate]) -> list[Registered]:
    """Train, log and register each candidate, in order, as the next versions of ``name``."""
    import mlflow
    import mlflow.sklearn
    import numpy as np
    from mlflow import MlflowClient
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_diabetes(as_frame=True)
    train, holdout = train_test_split(data.frame, test_size=0.25, random_state=7)
    columns = list(data.feature_names)
    x_train, y_train = train[columns].to_numpy(), train["target"].to_numpy()
    x_holdout, y_holdout = holdout[columns].to_numpy(), holdout["target"].to_numpy()
    client = MlflowClient(tracking_uri)
    found: list[Registered] = []
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            experiment = mlflow.set_experiment(f"{name}-training").experiment_id
            dataset = from_pandas(data.frame, name="diabetes", targets="target")
            for candidate in candidates:
                wanted = [columns.index(c) for c in candidate.features or columns]
                # Every version takes the same request (all ten features, as numbers) and
                # looks only at the ones it wants.
                keep = ColumnTransformer([("keep", "passthrough", wanted)])
                model = make_pipeline(keep, StandardScaler(), Ridge(alpha=candidate.alpha))
                model.fit(x_train, y_train)
                predicted = model.predict(x_holdout)
                rmse = float(np.sqrt(np.mean((predicted - y_holdout) ** 2)))
                tags = {"mlflow.source.git.commit": TRAINING_COMMIT, "candidate": candidate.label}
                with mlflow.start_run(experiment_id=experiment, tags=tags):
                    mlflow.log_input(dataset, context="training")
                    mlflow.log_metric("rmse", rmse)
                    info = mlflow.sklearn.log_model(
                        model,
                        name="model",
                        signature=infer_signature(x_holdout, predicted),
                        pip_requirements=["scikit-learn"],
                        metadata=candidate.metadata() or None,
                        registered_model_name=name,
                    )
                version = str(info.registered_model_version)
                client.set_model_version_tag(name, version, "validation_status", "approved")
                client.update_model_version(name, version, candidate.description)
                found.append(Registered(candidate.label, name, version, rmse,
                                        candidate.description))  # fmt: skip
    finally:
        mlflow.set_tracking_uri(previous)
    return found
