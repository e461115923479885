"""A pipeline's nodes: a component placed with its inputs wired and parameters set, and its output channels."""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any

from sluice.components.artifacts import Artifact
from sluice.components.errors import DefinitionError

if TYPE_CHECKING:
    from sluice.components.sdk import Component

_ID_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$")


@dataclasses.dataclass(frozen=True)
class Channel:
    """One output of one node, to wire into another node's input."""

    producer: Node
    output: str
    type: type[Artifact]

    def __repr__(self) -> str:
        return f"<Channel {self.producer.id}.outputs[{self.output!r}] ({self.type.TYPE_NAME})>"


class _Outputs(dict):
    def __init__(self, node: Node):
        super().__init__({n: Channel(node, n, s.type) for n, s in node.component.outputs.items()})
        self._node = node

    def __missing__(self, key: str):
        raise DefinitionError(
            f"component {self._node.id}: has no output '{key}' (outputs: {', '.join(self) or 'none'})"
        )


class Node:
    """A component placed in a pipeline, with its inputs wired and parameters set."""

    def __init__(self, comp: Component, node_id: str, kwargs: dict[str, Any]):
        self.component = comp
        self.id = validate_id(node_id, f"component {comp.name}")
        self.inputs: dict[str, Channel] = {}
        self.parameters: dict[str, Any] = {}
        self.upstream: list[Node] = []
        # Free-form, runner-specific settings (e.g. Kubeflow resources).
        self.platform_config: dict[str, Any] = {}
        for key, value in kwargs.items():
            if key in comp.inputs and (key not in comp.parameters or isinstance(value, Channel)):
                self._wire(key, value)
            elif key in comp.parameters:
                self.parameters[key] = comp.parameters[key].validate(value, f"component {self.id}")
            elif key in comp.outputs:
                raise DefinitionError(f"component {self.id}: '{key}' is an output; it cannot be set")
            else:
                valid = sorted([*comp.inputs, *comp.parameters])
                raise DefinitionError(
                    f"component {self.id}: unknown parameter '{key}' (valid: {', '.join(valid) or 'none'})"
                )
        for name, spec in comp.inputs.items():
            if name not in self.inputs and not spec.optional:
                raise DefinitionError(
                    f"component {self.id}: missing required input '{name}' ({spec.type.TYPE_NAME})"
                )
        for name, spec in comp.parameters.items():
            if name not in self.parameters:
                if spec.required:
                    raise DefinitionError(f"component {self.id}: missing required parameter '{name}'")
                self.parameters[name] = spec.default
        self.outputs = _Outputs(self)

    def _wire(self, name: str, value: Any) -> None:
        spec = self.component.inputs[name]
        if value is None and spec.optional:
            return
        if not isinstance(value, Channel):
            raise DefinitionError(
                f"component {self.id}: input '{name}' expects a channel of {spec.type.TYPE_NAME} "
                f"(another component's outputs[...]), got {type(value).__name__}"
            )
        if not issubclass(value.type, spec.type):
            raise DefinitionError(
                f"component {self.id}: input '{name}' expects {spec.type.TYPE_NAME}, "
                f"got {value.type.TYPE_NAME} from {value.producer.id}.outputs['{value.output}']"
            )
        self.inputs[name] = value

    def with_id(self, node_id: str) -> Node:
        """Renames the node, as TFX's ``with_id`` (ids must be unique in a pipeline)."""
        self.id = validate_id(node_id, f"component {self.component.name}")
        return self

    def add_upstream(self, other: Node) -> Node:
        """Runs this node after ``other`` even without a data dependency."""
        self.upstream.append(other)
        return self

    def dependencies(self) -> list[Node]:
        deps = [c.producer for c in self.inputs.values()] + self.upstream
        seen: dict[int, Node] = {}
        for dep in deps:
            seen.setdefault(id(dep), dep)
        return list(seen.values())

    def __repr__(self) -> str:
        return f"<Node {self.id} ({self.component.name})>"


def validate_id(value: str, owner: str) -> str:
    """Ids become path segments, so they are restricted to a safe alphabet."""
    if not isinstance(value, str) or not _ID_PATTERN.match(value) or value in (".", ".."):
        raise DefinitionError(
            f"{owner}: invalid id {value!r} (use letters, digits, '_', '-', '.'; start with a letter)"
        )
    return value
