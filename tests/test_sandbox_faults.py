"""A bad model of the sandbox says what is wrong with it in its ``MLmodel`` metadata.

The data plane's resolver maps a storage URI to the local model folder and reads the faults
(``fault.error-rate``, ``fault.extra-latency-ms``, ``fault.shift``) the model was logged with;
the model server gets them as flags. A model without metadata has none; a fault that makes no
sense is refused (the runtime then does not start the revision and says why).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelrollout.sandbox import models
from modelrollout.sandbox.kserve.dataplane import model_metadata, resolver
from modelrollout.sandbox.modelserver import Faults

BUCKET = "s3://bucket/"


def mlmodel(folder: Path, metadata: dict[str, str] | None) -> Path:
    folder.mkdir(parents=True)
    body: dict[str, object] = {"flavors": {"python_function": {}}}
    if metadata is not None:
        body["metadata"] = metadata
    (folder / "MLmodel").write_text(yaml.safe_dump(body), encoding="utf-8")
    return folder


def test_each_candidate_s_faults_travel_with_its_artifacts(tmp_path: Path) -> None:
    resolve = resolver([(BUCKET, tmp_path)])
    for candidate in (models.BASELINE, models.BETTER, models.ERRORS, models.SLOW, models.SKEWED):
        mlmodel(tmp_path / candidate.label, candidate.metadata() or None)
        found = resolve(f"{BUCKET}{candidate.label}")
        assert found.model_dir == tmp_path / candidate.label
        assert found.faults == candidate.faults
    assert models.ERRORS.faults.flags() == ["--error-rate", "0.3"]
    assert models.BETTER.faults == Faults()


def test_no_mlmodel_or_no_metadata_means_no_fault(tmp_path: Path) -> None:
    assert model_metadata(tmp_path / "missing") == {}
    assert model_metadata(mlmodel(tmp_path / "plain", None)) == {}
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "MLmodel").write_text("- a list\n", encoding="utf-8")
    assert model_metadata(tmp_path / "odd") == {}


def test_a_fault_that_makes_no_sense_is_refused(tmp_path: Path) -> None:
    mlmodel(tmp_path / "bad", {"fault.error-rate": "1.5"})
    with pytest.raises(ValueError, match="not within"):
        resolver([(BUCKET, tmp_path)])(f"{BUCKET}bad")


def test_a_storage_uri_without_a_local_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--storage-root"):
        resolver([(BUCKET, tmp_path)])("gs://elsewhere/model")
