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


def test_beam_sdk_image_matches_the_installed_beam_and_keeps_the_harness():
    import tomllib

    import apache_beam

    text = (INFRA / "beam-sdk.Dockerfile").read_text()
    base = re.search(r"^FROM (apache/beam_python(\d)\.(\d+)_sdk):(\S+)$", text, re.M)
    assert base, "the worker image builds on Beam's own Python SDK image"
    assert base.group(2, 3) == ("3", "11")  # the project's Python (the harness's and the driver's must agree)
    assert base.group(4) == apache_beam.__version__
    assert not re.search(r"^ENTRYPOINT", text, re.M)  # the SDK harness (/opt/apache/beam/boot) stays
    with open(REPO / "pyproject.toml", "rb") as fh:
        folders = {folder.split("/")[0] for folder in tomllib.load(fh)["tool"]["setuptools"]["package-dir"].values()}
    for folder in folders - {""}:
        assert f"COPY {folder} ./{folder}" in text, folder
