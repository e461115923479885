"""Multi-worker components on Kubeflow: their workers are the replicas of a TFJob.

The design, in three steps, none naming a component:

- A component that starts workers says so: ``component(..., workers_parameter="num_workers")``
  (the Trainer), and asks its context for them at run time (``ctx.run_workers``, see
  ``components.worker_processes``: ``count`` workers running an entry, TF_CONFIG in each one's
  environment, results in JSON files).
- The compiler marks the task of a node whose workers parameter is above 1 (``mark_task``): a pod
  label ``sluice.dev/worker-launcher: tfjob`` and annotation ``sluice.dev/workers``, and the pod's
  name, namespace and uid through the downward API, for the TFJob's owner reference. It puts the
  pipeline's image in the IR (``pipeline.image``), for the workers.
- Every Kubeflow task runs its node with ``TFJobLauncher`` installed (``runtime.processes.
  worker_launcher``). When the component asks for workers, it writes the request under the
  pipeline root (``<root>/.sluice-workers/<execution>/``: the workers must see the task's paths),
  creates a TFJob (``kubeflow.org/v1``; the Kubeflow Training Operator injects TF_CONFIG) whose
  ``Worker`` replicas run the pipeline's image with the task container's volumes, mounts, env
  and resources, owned by the task's pod and labelled with the run, waits for its ``Succeeded``
  or ``Failed`` condition (``workers_timeout_seconds`` of ``kubeflow_resources``, then it is
  deleted) and reads each worker's result from the shared folder. A failed TFJob is one line
  naming the component, the TFJob and the operator's message, unless a worker wrote its own error.

The task talks to the Kubernetes API with its service account (``KubernetesApi.in_cluster``, the
one place that reads where the API is): the account needs create, get and delete on
``tfjobs.kubeflow.org`` and get on pods in its namespace.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import ssl
import time
import urllib.error
import urllib.request
from typing import Any

from sluice.components.sdk import ComponentError
from sluice.components.worker_processes import WorkerResult, read_result

SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
# Overrides of the in-cluster settings (a test's API on loopback; a launcher outside the cluster).
API_ENV, ACCOUNT_ENV = "SLUICE_KUBERNETES_API", "SLUICE_KUBERNETES_ACCOUNT"
# The task pod's identity, from the downward API (``mark_task``).
POD_ENV = {"name": "SLUICE_POD_NAME", "namespace": "SLUICE_POD_NAMESPACE", "uid": "SLUICE_POD_UID"}
TFJOBS = "/apis/kubeflow.org/v1/namespaces/{namespace}/tfjobs"
REPLICA_ENTRY = f"{__name__}:replica"
POLL_SECONDS = 10.0
LABEL, WORKERS_ANNOTATION = "sluice.dev/worker-launcher", "sluice.dev/workers"


class KubernetesError(ComponentError):
    """A refused or failed call to the Kubernetes API, in one line."""


@dataclasses.dataclass
class KubernetesApi:
    """The Kubernetes API as this pod's service account sees it."""

    base_url: str
    namespace: str
    token: str | None = None
    ca_file: str | None = None
    pod_name: str | None = None
    pod_uid: str | None = None

    @classmethod
    def in_cluster(cls) -> KubernetesApi:
        """From the pod's environment and service-account folder (``API_ENV``/``ACCOUNT_ENV`` override them)."""
        env = os.environ
        account = env.get(ACCOUNT_ENV) or SERVICE_ACCOUNT
        host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT", "443")
        base = env.get(API_ENV) or (f"https://{host}:{port}" if host else "")
        if not base:
            raise KubernetesError("Kubeflow: this task runs outside a Kubernetes pod (no KUBERNETES_SERVICE_HOST), "
                                  "so it cannot start a TFJob for its workers")

        def read(name: str) -> str | None:
            path = os.path.join(account, name)
            if not os.path.isfile(path):
                return None
            with open(path) as fh:
                return fh.read().strip()

        ca = os.path.join(account, "ca.crt")
        return cls(base.rstrip("/"), env.get(POD_ENV["namespace"]) or read("namespace") or "default",
                   read("token"), ca if os.path.isfile(ca) else None,
                   env.get(POD_ENV["name"]) or env.get("HOSTNAME"), env.get(POD_ENV["uid"]))

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.base_url + path, method=method, headers=headers,  # noqa: S310
                                         data=json.dumps(body).encode() if body is not None else None)
        context = ssl.create_default_context(cafile=self.ca_file) if self.base_url.startswith("https:") else None
        try:
            with urllib.request.urlopen(request, timeout=30, context=context) as response:  # noqa: S310
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("message", "")
            except ValueError:
                message = ""
            raise KubernetesError(f"the Kubernetes API answered {method} {path} with {exc.code} {exc.reason}"
                                  f"{': ' + message if message else ''}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise KubernetesError(f"cannot reach the Kubernetes API at {self.base_url}: "
                                  f"{getattr(exc, 'reason', exc)}") from None


def worker_count(node) -> int:
    """How many workers a pipeline node's component starts (1: none of its own)."""
    name = node.component.workers_parameter
    value = node.parameters.get(name) if name else None
    return value if isinstance(value, int) and value > 1 else 1


def mark_task(task: Any, workers: int) -> None:
    """Prepares a compiled KFP task to launch ``workers`` workers: label, annotation, its pod's identity."""
    from kfp import kubernetes

    kubernetes.add_pod_label(task, LABEL, "tfjob")
    kubernetes.add_pod_annotation(task, WORKERS_ANNOTATION, str(workers))
    for field, env in POD_ENV.items():
        kubernetes.use_field_path_as_env(task, env_name=env, field_path=f"metadata.{field}")


def _name(text: str, limit: int) -> str:
    """A DNS-1035 label piece: lower-case letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:limit].strip("-")


def _label(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63].strip("-_.") or "none"


@dataclasses.dataclass
class TFJobLauncher:
    """``ExecutionContext.run_workers`` on Kubeflow (see the module docstring)."""

    image: str | None
    run_id: str
    timeout_seconds: float = 86400.0
    api: KubernetesApi | None = None  # made on first use: tasks that start no workers need no API

    def __call__(self, ctx, entry: str, request: dict[str, Any], count: int,
                 warm_imports: tuple[str, ...]) -> list[WorkerResult]:
        if not self.image:
            raise ComponentError(f"{ctx.component_id}: the compiled pipeline names no image for its workers "
                                 f"(compile it again with --image)")
        if "://" in ctx.pipeline_root:  # the chief writes the task's outputs; the workers need the same paths
            raise ComponentError(f"{ctx.component_id}: its workers need a pipeline root on a filesystem they mount "
                                 f"too, not {ctx.pipeline_root.split('://')[0]}://")
        try:
            api = self.api = self.api or KubernetesApi.in_cluster()
        except KubernetesError as exc:
            raise ComponentError(f"{ctx.component_id}: {exc}") from None
        folder = os.path.join(ctx.pipeline_root, ".sluice-workers", ctx.execution_id)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "request.json"), "w") as out:
            json.dump(request, out)
        job = tfjob(ctx, self, api, self._own_pod(api), [entry, os.path.join(folder, "request.json"), folder],
                    count, warm_imports)
        name = job["metadata"]["name"]
        try:
            api.call("POST", TFJOBS.format(namespace=api.namespace), job)
            failure = self._wait(api, name, ctx.component_id)
        except KubernetesError as exc:
            raise ComponentError(f"{ctx.component_id}: TFJob {api.namespace}/{name}: {exc}") from None
        results = [_replica_result(folder, index, api.namespace, name) for index in range(count)]
        if failure and not any(r.result is not None and "error" in r.result for r in results):
            raise ComponentError(failure)  # no worker said why: the operator's message
        if all(r.result is not None and "error" not in r.result for r in results):
            shutil.rmtree(folder, ignore_errors=True)  # kept when a worker failed: it holds its result
        return results

    def _own_pod(self, api: KubernetesApi) -> dict[str, Any]:
        """The task's pod, whose container the workers copy (an empty one when it cannot be read)."""
        if not api.pod_name:
            return {}
        try:
            return api.call("GET", f"/api/v1/namespaces/{api.namespace}/pods/{api.pod_name}")
        except KubernetesError:
            return {}  # without "get pods" the workers still run, with the image's defaults

    def _wait(self, api: KubernetesApi, name: str, component_id: str) -> str | None:
        """Until the TFJob succeeds (None) or fails (the one line saying so); deletes it past the timeout."""
        path = f"{TFJOBS.format(namespace=api.namespace)}/{name}"
        deadline, state = time.monotonic() + self.timeout_seconds, "Created"
        while time.monotonic() < deadline:
            conditions = [c for c in api.call("GET", path).get("status", {}).get("conditions") or []
                          if c.get("status") == "True"]
            state = conditions[-1].get("type", state) if conditions else state
            done = {c.get("type"): c for c in conditions if c.get("type") in ("Succeeded", "Failed")}
            if "Failed" in done:
                message = done["Failed"].get("message") or done["Failed"].get("reason") or "no message"
                return f"{component_id}: TFJob {api.namespace}/{name} failed: {message.strip().splitlines()[0]}"
            if "Succeeded" in done:
                return None
            time.sleep(POLL_SECONDS)
        api.call("DELETE", path)
        return (f"{component_id}: TFJob {api.namespace}/{name} did not finish within {self.timeout_seconds:g} s "
                f"(last condition: {state}); it was deleted")


def tfjob(ctx, launcher: TFJobLauncher, api: KubernetesApi, pod: dict[str, Any], args: list[str], count: int,
          warm_imports: tuple[str, ...]) -> dict[str, Any]:
    """The TFJob manifest: ``count`` Worker replicas running ``REPLICA_ENTRY`` with ``args``."""
    from sluice.orchestration.runtime import processes

    name = f"sluice-{_name(ctx.component_id, 24) or 'workers'}-{_name(ctx.execution_id, 12)}".strip("-")
    labels = {"app.kubernetes.io/managed-by": "sluice", "sluice.dev/pipeline": _label(ctx.pipeline_name),
              "sluice.dev/component": _label(ctx.component_id), "sluice.dev/run": _label(launcher.run_id)}
    spec = pod.get("spec") or {}
    containers = spec.get("containers") or [{}]
    main = next((c for c in containers if c.get("name") == "main"), containers[0])
    container = {"name": "tensorflow", "image": launcher.image,
                 "command": [*processes.command(REPLICA_ENTRY, warm_imports), *args],
                 **{k: main[k] for k in ("env", "envFrom", "volumeMounts", "resources") if main.get(k)}}
    template_spec = {"containers": [container],
                     **{k: spec[k] for k in ("volumes", "serviceAccountName", "imagePullSecrets",
                                             "nodeSelector", "tolerations") if spec.get(k)}}
    metadata: dict[str, Any] = {
        "name": name, "namespace": api.namespace, "labels": labels,
        "annotations": {"sluice.dev/execution": ctx.execution_id, "sluice.dev/run": launcher.run_id}}
    if api.pod_name and (api.pod_uid or (pod.get("metadata") or {}).get("uid")):
        metadata["ownerReferences"] = [{"apiVersion": "v1", "kind": "Pod", "name": api.pod_name,
                                        "uid": api.pod_uid or pod["metadata"]["uid"]}]
    return {
        "apiVersion": "kubeflow.org/v1", "kind": "TFJob", "metadata": metadata,
        "spec": {
            "runPolicy": {"cleanPodPolicy": "Running", "backoffLimit": 0,
                          "activeDeadlineSeconds": int(launcher.timeout_seconds)},
            "successPolicy": "AllWorkers",
            "tfReplicaSpecs": {"Worker": {"replicas": count, "restartPolicy": "Never",
                                          "template": {"metadata": {"labels": labels}, "spec": template_spec}}},
        },
    }


def _replica_result(folder: str, index: int, namespace: str, name: str) -> WorkerResult:
    result = read_result(os.path.join(folder, f"result-{index}.json"))
    if result is not None:
        return WorkerResult(result)
    return WorkerResult(None, f"TFJob {namespace}/{name} worker {index} wrote no result; its log: "
                              f"kubectl logs -n {namespace} {name}-worker-{index}")


def replica(argv: list[str]) -> int:
    """One TFJob replica: ``ENTRY REQUEST FOLDER``; calls ENTRY with ``[REQUEST, FOLDER/result-<index>.json]``,
    its index being the one TF_CONFIG (the operator's) gives it."""
    import importlib

    entry, request, folder = argv
    index = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task", {}).get("index", 0)
    module, function = entry.split(":")
    return int(getattr(importlib.import_module(module), function)([request, os.path.join(folder,
                                                                                         f"result-{index}.json")])
               or 0)
