"""The pipeline DAG and its compiled, plain-data description (the IR).

``Pipeline`` checks the graph when it is defined; ``compile_pipeline`` turns it
into a JSON-serialisable dict that every runner reads: the local Beam runner and
the Kubeflow compiler consume the same description.

>>> from sluice.components.artifacts import Examples
>>> from sluice.components.sdk import Output, component
>>> def make(examples: Output[Examples], rows: int = 10) -> None: ...
>>> Make = component(make)
>>> ir = compile_pipeline(Pipeline(name="demo", components=[Make(rows=3)], pipeline_root="/tmp/r"))
>>> ir["nodes"][0]["parameters"]
{'rows': 3}
"""

from __future__ import annotations

import graphlib
import importlib
import importlib.util
import os
import sys
from typing import Any

from sluice.components.sdk import LOCAL_COMPONENTS, Component, DefinitionError, Node, validate_id

IR_VERSION = 1


class Pipeline:
    """A named DAG of component nodes, as in TFX.

    ``components`` may be given in any order; the runner orders them by their
    wiring. Upstream nodes that are wired in but not listed are an error, so a
    pipeline never runs a component the user did not name.
    """

    def __init__(
        self,
        name: str,
        components: list[Node],
        pipeline_root: str,
        enable_cache: bool = True,
        beam_pipeline_args: list[str] | None = None,
        tracking_uri: str | None = None,
        parameters: dict[str, Any] | None = None,
    ):
        self.name = validate_id(name, "pipeline")
        if not isinstance(pipeline_root, str) or not pipeline_root:
            raise DefinitionError(f"pipeline {name}: pipeline_root must be a non-empty path")
        self.pipeline_root = pipeline_root
        self.enable_cache = bool(enable_cache)
        self.beam_pipeline_args = list(beam_pipeline_args or [])
        if not all(isinstance(a, str) for a in self.beam_pipeline_args):
            raise DefinitionError(f"pipeline {name}: beam_pipeline_args must be a list of strings")
        self.tracking_uri = tracking_uri
        # The create_pipeline(**params) values this pipeline was built from.
        self.parameters = dict(parameters or {})
        self.components = list(components)
        self._check()

    def _check(self) -> None:
        by_id: dict[str, Node] = {}
        for node in self.components:
            if not isinstance(node, Node):
                raise DefinitionError(
                    f"pipeline {self.name}: components must be component nodes, got {type(node).__name__}"
                )
            if node.id in by_id:
                raise DefinitionError(
                    f"pipeline {self.name}: duplicate component id '{node.id}' "
                    f"(give one of them another id with id=... or .with_id(...))"
                )
            by_id[node.id] = node
        for node in self.components:
            for name, channel in node.inputs.items():
                if by_id.get(channel.producer.id) is not channel.producer:
                    raise DefinitionError(
                        f"component {node.id}: input '{name}' comes from '{channel.producer.id}', "
                        f"which is not in pipeline {self.name}'s components"
                    )
            for dep in node.upstream:
                if by_id.get(dep.id) is not dep:
                    raise DefinitionError(
                        f"component {node.id}: upstream '{dep.id}' is not in pipeline {self.name}'s components"
                    )
        self.ordered_nodes()

    def ordered_nodes(self) -> list[Node]:
        """Nodes in a dependency order; a cycle is a DefinitionError naming it."""
        sorter = graphlib.TopologicalSorter({n.id: [d.id for d in n.dependencies()] for n in self.components})
        try:
            order = list(sorter.static_order())
        except graphlib.CycleError as exc:
            cycle = " -> ".join(exc.args[1])
            raise DefinitionError(f"pipeline {self.name}: cycle between components: {cycle}") from None
        by_id = {n.id: n for n in self.components}
        return [by_id[i] for i in order]


def compile_pipeline(pipeline: Pipeline) -> dict[str, Any]:
    """The plain-data IR of a pipeline: what runners execute."""
    nodes = []
    for node in pipeline.ordered_nodes():
        comp = node.component
        nodes.append(
            {
                "id": node.id,
                "type": comp.name,
                "component": {**comp.reference, "name": comp.name, "version": comp.version},
                "warm_imports": list(comp.warm_imports),
                "remote_io": comp.remote_io,
                "remote_inputs": list(comp.remote_inputs),
                "code_version": comp.code_version,
                "inputs": {
                    name: {
                        "node": ch.producer.id,
                        "output": ch.output,
                        "type": comp.inputs[name].type.TYPE_NAME,
                    }
                    for name, ch in node.inputs.items()
                },
                "outputs": {name: {"type": spec.type.TYPE_NAME} for name, spec in comp.outputs.items()},
                "parameters": {
                    name: comp.parameters[name].to_json(value) for name, value in node.parameters.items()
                },
                "fingerprinted_parameters": sorted(
                    name for name, spec in comp.parameters.items() if spec.kind != "value"
                ),
                "upstream": sorted({d.id for d in node.dependencies()}),
                "platform_config": dict(node.platform_config),
            }
        )
    return {
        "ir_version": IR_VERSION,
        "pipeline": {
            "name": pipeline.name,
            "pipeline_root": pipeline.pipeline_root,
            "enable_cache": pipeline.enable_cache,
            "beam_pipeline_args": pipeline.beam_pipeline_args,
            "tracking_uri": pipeline.tracking_uri,
            "parameters": pipeline.parameters,
        },
        "nodes": nodes,
    }


def load_component(reference: dict[str, str]) -> Component:
    """Finds the component a node's IR names: by module, else by source file."""
    if "<locals>" in reference["qualname"]:
        key = f"{reference['module']}:{reference['qualname']}:{reference.get('name')}"
        if key not in LOCAL_COMPONENTS:
            raise DefinitionError(
                f"component {reference.get('name')}: defined inside a function, so only the process "
                f"that defined it can run it; define it at module level"
            )
        return LOCAL_COMPONENTS[key]
    module = sys.modules.get(reference["module"])
    if module is None:
        try:
            module = importlib.import_module(reference["module"])
        except ImportError:
            path = reference.get("file") or ""
            if not os.path.isfile(path):
                raise DefinitionError(
                    f"component {reference.get('name')}: cannot import {reference['module']}"
                ) from None
            spec = importlib.util.spec_from_file_location(reference["module"], path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[reference["module"]] = module
            spec.loader.exec_module(module)
    target: Any = module
    for part in reference["qualname"].split("."):
        target = getattr(target, part)
    if isinstance(target, Component):
        return target
    return Component(target, name=reference.get("name"), version=reference.get("version", "1"))
