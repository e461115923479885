"""Compiling a pipeline's IR to Kubeflow Pipelines v2 (KFP IR YAML).

Each node becomes one lightweight Python KFP component whose body only calls
``orchestration.kubeflow_task.run_task``: the same ``run_node`` executor code
the local runner uses, inside the image. Artifacts travel as KFP artifacts
(path + metadata); the create_pipeline parameters become KFP pipeline
parameters, and each task rebuilds its node from them at run time.

Resources come from ``node.platform_config["kubeflow"]``, set with
``kubeflow_resources(node, ...)``.
"""

from __future__ import annotations

import importlib.util
import json
import keyword
import os
import re
import sys
import tempfile
from typing import Any

import pydantic

from sluice.components.sdk import DefinitionError, Node
from sluice.orchestration import kubeflow_jobs
from sluice.orchestration.secrets import has_credentials, mask_text, mask_uri

TARGETS = ("kubeflow",)
_CARRIABLE = (str, int, float, bool)


class Accelerator(pydantic.BaseModel):
    """An accelerator request, e.g. ``Accelerator(type="nvidia.com/gpu", count=1)``."""

    model_config = pydantic.ConfigDict(extra="forbid")

    type: str
    count: int = pydantic.Field(1, ge=1, le=64)

    @pydantic.field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value in ("nvidia.com/gpu", "amd.com/gpu") or value.startswith("cloud-tpu") or re.match(
            r"^(NVIDIA_[A-Z0-9_]+|TPU_V[0-9A-Z_]+)$", value
        ) or value.startswith("tpu-"):
            return value
        raise ValueError(
            f"unknown accelerator type {value!r} (use nvidia.com/gpu, amd.com/gpu, NVIDIA_TESLA_T4-style names, "
            f"or a TPU type such as TPU_V3 / cloud-tpus.google.com/v3)"
        )


class Toleration(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    key: str
    operator: str = "Equal"
    value: str | None = None
    effect: str | None = None


class KubeflowResources(pydantic.BaseModel):
    """Per-component settings compiled into the KFP spec."""

    model_config = pydantic.ConfigDict(extra="forbid")

    cpu_request: str | None = None
    cpu_limit: str | None = None
    memory_request: str | None = None
    memory_limit: str | None = None
    accelerator: Accelerator | None = None
    node_selector: dict[str, str] = {}
    tolerations: list[Toleration] = []
    retries: int = pydantic.Field(0, ge=0, le=20)
    backoff_duration: str = "30s"
    backoff_factor: float = 2.0
    backoff_max_duration: str = "3600s"
    # How long a task waits for the workers it launches (a TFJob, see kubeflow_jobs) before deleting them.
    workers_timeout_seconds: int = pydantic.Field(86400, ge=1)

    @pydantic.field_validator("cpu_request", "cpu_limit")
    @classmethod
    def _cpu(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d+(\.\d+)?m?", value):
            raise ValueError(f"invalid CPU quantity {value!r} (e.g. '500m', '2')")
        return value

    @pydantic.field_validator("memory_request", "memory_limit")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d+(\.\d+)?(E|P|T|G|M|K|Ei|Pi|Ti|Gi|Mi|Ki)?", value):
            raise ValueError(f"invalid memory quantity {value!r} (e.g. '512Mi', '4G')")
        return value


def kubeflow_resources(node: Node, **settings: Any) -> Node:
    """Validates and attaches Kubeflow settings to a node (checked at definition time).

    >>> # kubeflow_resources(trainer, cpu_request="2", memory_limit="8Gi",
    >>> #                    accelerator={"type": "nvidia.com/gpu", "count": 1}, retries=3)
    """
    try:
        resources = KubeflowResources(**settings)
    except pydantic.ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise DefinitionError(f"component {node.id}: kubeflow setting '{where}': {problem['msg']}") from None
    node.platform_config["kubeflow"] = resources.model_dump(mode="json", exclude_defaults=False)
    return node


def encode_ir(ir: dict[str, Any]) -> str:
    """The IR as a task argument: compressed, and base64 so no launcher rewrites it
    (kfp.local replaces every 'python3' in a task's arguments, paths included)."""
    import base64
    import zlib

    return base64.b64encode(zlib.compress(json.dumps(ir, sort_keys=True).encode())).decode()


def decode_ir(text: str) -> dict[str, Any]:
    import base64
    import zlib

    return json.loads(zlib.decompress(base64.b64decode(text)))


def ui_outputs(node: dict[str, Any]) -> dict[str, str]:
    """Extra KFP outputs that render in the Kubeflow UI: ``<output>_<suffix>`` for each of
    the output artifact type's ``ui_outputs()`` (e.g. ``<output>_report``, HTML)."""
    from sluice.components.artifacts import ARTIFACT_TYPES, Artifact

    extra: dict[str, str] = {}
    for name, spec in node["outputs"].items():
        for suffix, kind in ARTIFACT_TYPES.get(spec["type"], Artifact).ui_outputs().items():
            extra[f"{name}_{suffix}"] = kind
    return extra


def kfp_type(type_name: str) -> str:
    """The KFP artifact class (``Dataset``, ``Model``, ``Artifact``) for a Sluice artifact type's name."""
    from sluice.components.artifacts import ARTIFACT_TYPES, Artifact

    return ARTIFACT_TYPES.get(type_name, Artifact).KFP_TYPE


def _identifier(name: str, taken: set[str]) -> str:
    ident = re.sub(r"\W", "_", name).lower()
    if not ident or ident[0].isdigit() or keyword.iskeyword(ident):
        ident = f"x_{ident}"
    base, n = ident, 2
    while ident in taken:
        ident, n = f"{base}_{n}", n + 1
    taken.add(ident)
    return ident


def _check_parameters(params: dict[str, Any]) -> dict[str, Any]:
    for name, value in params.items():
        if not name.isidentifier():
            raise DefinitionError(f"pipeline parameter {name!r} is not a valid KFP parameter name")
        if isinstance(value, _CARRIABLE) or value is None:
            continue
        if isinstance(value, (list, dict)):
            try:
                json.dumps(value)
                continue
            except TypeError:
                pass
        raise DefinitionError(
            f"pipeline parameter '{name}' of type {type(value).__name__} cannot be carried by KFP "
            f"(use str, int, float, bool, or JSON-able list/dict)"
        )
    return params


def _kfp_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return "str"


def compile_kubeflow(
    pipeline,
    output_path: str,
    image: str | None,
    tracking_uri: str | None = None,
    source: str | None = None,
    target: str = "kubeflow",
) -> dict[str, Any]:
    """Writes KFP v2 IR YAML for ``pipeline``; returns a summary of what was compiled."""
    from kfp import compiler, dsl

    _check_options(image, tracking_uri, target)
    ir, params = _compile_ir(pipeline, tracking_uri, source)
    ir["pipeline"]["image"] = image  # the workers' image, where a task launches them
    workers = {node.id: kubeflow_jobs.worker_count(node) for node in pipeline.components}

    taken: set[str] = set()
    param_idents = {name: _identifier(f"param_{name}", taken) for name in params}
    functions = {node["id"]: _identifier(f"sluice_{node['id']}", taken) for node in ir["nodes"]}
    lines = ["from kfp import dsl",
             "from kfp.dsl import Input, Output, Artifact, Dataset, Model, HTML, Metrics, ClassificationMetrics", ""]
    for node in ir["nodes"]:
        lines += _task_function(node, functions[node["id"]], params, param_idents)
    module = _load_module(lines)

    ir_json = encode_ir(ir)
    kfp_components = {
        node_id: dsl.component(getattr(module, fname), base_image=image, install_kfp_package=False)
        for node_id, fname in functions.items()
    }

    def build(**values: Any) -> None:
        _add_tasks(ir, ir_json, kfp_components, param_idents, values, workers)

    # The pipeline function's signature is the pipeline's parameters, typed.
    sig_args = ", ".join(f"{name}: {_kfp_type(value)} = {value!r}" for name, value in params.items())
    namespace: dict[str, Any] = {"build": build}
    call = ", ".join(f"{name}={name}" for name in params)
    source_code = f"def pipeline_fn({sig_args}):\n    build({call})\n"
    # dont_inherit: this module's `from __future__ import annotations` would turn the
    # annotations into strings, which KFP reads as artifact type names.
    exec(compile(source_code, "<sluice-pipeline>", "exec", dont_inherit=True), namespace)  # noqa: S102
    pipeline_fn = dsl.pipeline(name=ir["pipeline"]["name"],
                               description=f"Sluice pipeline {ir['pipeline']['name']}")(namespace["pipeline_fn"])
    compiler.Compiler().compile(pipeline_fn, output_path)
    return {"pipeline": ir["pipeline"]["name"], "tasks": [n["id"] for n in ir["nodes"]], "image": image,
            "parameters": params, "output": output_path,
            "worker_launchers": {node_id: count for node_id, count in workers.items() if count > 1}}


def _check_options(image: str | None, tracking_uri: str | None, target: str) -> None:
    if target not in TARGETS:
        raise DefinitionError(f"unknown target {target!r} (known: {', '.join(TARGETS)})")
    if not image:
        raise DefinitionError(
            "--image is required for --target kubeflow: the container image with Sluice installed "
            "(build it from infra/Dockerfile)"
        )
    if has_credentials(tracking_uri):
        raise DefinitionError(
            f"--tracking-uri {mask_uri(tracking_uri)} must not contain credentials: they would be stored in "
            f"plain text in the compiled YAML; give the tasks MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD (or "
            f"MLFLOW_TRACKING_TOKEN) from a Kubernetes Secret instead"
        )


def _refuse_credentials(value: Any, where: str) -> None:
    """Nothing credential-like goes into the YAML: the IR travels in it (encoded, not hidden)."""
    if isinstance(value, str):
        if has_credentials(value):
            raise DefinitionError(
                f"{where} = {mask_text(value)!r}: holds a credential, which would be stored in plain text "
                f"in the compiled YAML; give it to the tasks from a Kubernetes Secret instead")
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_credentials(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _refuse_credentials(item, f"{where}[{i}]")


def _compile_ir(pipeline, tracking_uri: str | None, source: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pipeline's IR, with what the tasks need to know, and its KFP-checked parameters."""
    from sluice.orchestration.pipeline import compile_pipeline

    ir = compile_pipeline(pipeline)
    params = _check_parameters(dict(ir["pipeline"].get("parameters") or {}))
    ir["pipeline"]["source"] = source
    if tracking_uri:
        ir["pipeline"]["tracking_uri"] = tracking_uri
    for node in ir["nodes"]:
        if node["platform_config"].get("kubeflow"):
            KubeflowResources(**node["platform_config"]["kubeflow"])  # re-check hand-set configs
        for name, value in node["parameters"].items():
            _refuse_credentials(value, f"component {node['id']}: parameter {name}")
        _refuse_credentials(node["platform_config"], f"component {node['id']}: platform_config")
    for key in ("tracking_uri", "pipeline_root", "beam_pipeline_args"):
        _refuse_credentials(ir["pipeline"].get(key), f"pipeline {ir['pipeline']['name']}: {key}")
    for name, value in params.items():
        _refuse_credentials(value, f"pipeline parameter {name}")
    return ir, params


def _task_function(node: dict[str, Any], fname: str, params: dict[str, Any],
                   param_idents: dict[str, str]) -> list[str]:
    """Source lines of the KFP component function of ``node``: it hands everything to ``run_task``."""
    args = []
    for name, spec in node["inputs"].items():
        args.append(f"{name}: Input[{kfp_type(spec['type'])}]")
    for name, spec in node["outputs"].items():
        args.append(f"{name}: Output[{kfp_type(spec['type'])}]")
    ui = ui_outputs(node)
    args += [f"{name}: Output[{kind}]" for name, kind in ui.items()]
    args += ["sluice_ir: str", "sluice_node: str", "sluice_run_id: str"]
    args += [f"{ident}: {_kfp_type(params[name])}" for name, ident in param_idents.items()]
    inputs = ", ".join(f"{n!r}: {n}" for n in node["inputs"])
    outputs = ", ".join(f"{n!r}: {n}" for n in node["outputs"])
    pvals = ", ".join(f"{name!r}: {ident}" for name, ident in param_idents.items())
    ui_vals = ", ".join(f"{n!r}: {n}" for n in ui)
    return [
        f"def {fname}({', '.join(args)}):",
        *_artifact_docstring(node),
        "    from sluice.orchestration.kubeflow_task import run_task",
        f"    run_task(sluice_ir, sluice_node, sluice_run_id, {{{pvals}}}, {{{inputs}}}, {{{outputs}}},",
        f"             {{{ui_vals}}})",
        "",
    ]


def _artifact_docstring(node: dict[str, Any]) -> list[str]:
    """The task function's docstring: KFP puts each argument's line into the IR as the artifact's
    description, so a ``system.Artifact`` still says which Sluice type it is (KFP's compiler takes
    schema titles only in its ``system`` and ``google`` namespaces)."""
    lines = ['    """Sluice component ' + node["id"] + "."]
    for section, artifacts in (("Args", node["inputs"]), ("Returns", node["outputs"])):  # KFP's reading
        if artifacts:
            lines += ["", f"    {section}:"]
            lines += [f"        {name}: sluice.{spec['type']}" for name, spec in artifacts.items()]
    return lines + ['    """']


def _load_module(lines: list[str]):
    """Writes the component functions to a file and imports it (KFP reads their source)."""
    module_dir = tempfile.mkdtemp(prefix="sluice-kfp-")
    module_path = os.path.join(module_dir, "sluice_kfp_components.py")
    with open(module_path, "w") as fh:
        fh.write("\n".join(lines))
    spec = importlib.util.spec_from_file_location(f"sluice_kfp_{abs(hash(module_path))}", module_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _add_tasks(ir: dict[str, Any], ir_json: str, kfp_components: dict[str, Any], param_idents: dict[str, str],
               values: dict[str, Any], workers: dict[str, int]) -> None:
    """The pipeline function's body: one task per node, wired to its inputs and upstream nodes; a node
    starting workers of its own gets a task that launches them (``kubeflow_jobs.mark_task``)."""
    from kfp import dsl

    tasks: dict[str, Any] = {}
    for node in ir["nodes"]:
        kwargs: dict[str, Any] = {
            name: tasks[src["node"]].outputs[src["output"]] for name, src in node["inputs"].items()
        }
        kwargs.update(sluice_ir=ir_json, sluice_node=node["id"], sluice_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        kwargs.update({ident: values[name] for name, ident in param_idents.items()})
        task = kfp_components[node["id"]](**kwargs)
        task.set_display_name(node["id"])
        task.set_caching_options(bool(ir["pipeline"]["enable_cache"]))
        for dep in node["upstream"]:
            if dep not in {src["node"] for src in node["inputs"].values()}:
                task.after(tasks[dep])
        _apply_resources(task, node["platform_config"].get("kubeflow") or {})
        if workers.get(node["id"], 1) > 1:
            kubeflow_jobs.mark_task(task, workers[node["id"]])
        if ir["pipeline"].get("tracking_uri"):
            task.set_env_variable("SLUICE_TRACKING_URI", ir["pipeline"]["tracking_uri"])
        tasks[node["id"]] = task


def _apply_resources(task: Any, cfg: dict[str, Any]) -> None:
    if not cfg:
        return
    if cfg.get("cpu_request"):
        task.set_cpu_request(cfg["cpu_request"])
    if cfg.get("cpu_limit"):
        task.set_cpu_limit(cfg["cpu_limit"])
    if cfg.get("memory_request"):
        task.set_memory_request(cfg["memory_request"])
    if cfg.get("memory_limit"):
        task.set_memory_limit(cfg["memory_limit"])
    if cfg.get("accelerator"):
        task.set_accelerator_type(cfg["accelerator"]["type"])
        task.set_accelerator_limit(cfg["accelerator"]["count"])
    if cfg.get("retries"):
        task.set_retry(num_retries=cfg["retries"], backoff_duration=cfg["backoff_duration"],
                       backoff_factor=cfg["backoff_factor"], backoff_max_duration=cfg["backoff_max_duration"])
    if cfg.get("node_selector") or cfg.get("tolerations"):
        from kfp import kubernetes

        for key, value in (cfg.get("node_selector") or {}).items():
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
        for tol in cfg.get("tolerations") or []:
            kubernetes.add_toleration(task, key=tol["key"], operator=tol["operator"], value=tol.get("value"),
                                      effect=tol.get("effect"))


def _client(host: str):
    import warnings

    import kfp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return kfp.Client(host=host)


def submit_run(package_path: str, host: str, experiment: str, arguments: dict[str, Any] | None = None,
               run_name: str | None = None) -> str:
    """Creates one run of a compiled pipeline on a KFP endpoint; returns the run id."""
    client = _client(host)
    result = client.create_run_from_pipeline_package(
        package_path, arguments=arguments or {}, run_name=run_name, experiment_name=experiment)
    return result.run_id


def schedule_recurring_run(package_path: str, host: str, experiment: str, job_name: str, kfp_cron: str,
                           catch_up: bool = False, arguments: dict[str, Any] | None = None) -> str:
    """Creates a recurring run (KFP's 6-field UTC cron); returns its id."""
    client = _client(host)
    exp = client.create_experiment(name=experiment)
    recurring = client.create_recurring_run(
        experiment_id=exp.experiment_id, job_name=job_name, cron_expression=kfp_cron,
        pipeline_package_path=package_path, params=arguments or {}, no_catchup=not catch_up, max_concurrency=1,
    )
    return recurring.recurring_run_id
