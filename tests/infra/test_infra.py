"""The container image and Kubernetes manifests are well-formed and secret-free."""

import re

import yaml

from tests.conftest import REPO

INFRA = REPO / "infra"


def test_dockerfile_installs_the_project_without_test_extras():
    text = (INFRA / "Dockerfile").read_text()
    assert "pip wheel" in text and "pip install" in text
    assert "[test]" not in text and "pytest" not in text
    assert re.search(r"^USER \w+", text, re.M), "the image must not run as root"
    for package in ("components", "orchestration", "pipelines"):
        assert f"COPY {package}" in text


def test_mlflow_manifests_define_postgres_server_and_bucket():
    docs = list(yaml.safe_load_all((INFRA / "kubernetes" / "mlflow.yaml").read_text()))
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("Deployment", "mlflow") in kinds and ("Service", "mlflow") in kinds
    assert ("StatefulSet", "mlflow-postgres") in kinds
    server = next(d for d in docs if d["kind"] == "Deployment")
    container = server["spec"]["template"]["spec"]["containers"][0]
    args = " ".join(container["args"])
    assert "--backend-store-uri postgresql://" in args and "s3://" in args
    # Credentials come from a Secret, never from the manifest.
    for env in container["env"]:
        if "PASSWORD" in env["name"] or "SECRET" in env["name"] or "KEY_ID" in env["name"]:
            assert "valueFrom" in env and "value" not in env
    job = yaml.safe_load((INFRA / "kubernetes" / "bucket-job.yaml").read_text())
    assert job["kind"] == "Job"
