"""Feature specs as tf.Transform derives them: a dtype plus a fixed shape, or variable length.

A raw feature whose schema entry has a ``shape`` and ``presence.min_fraction: 1`` is
fixed-length (``tf.io.FixedLenFeature(shape)``): a dense tensor ``[batch, *shape]``. Any
other is variable-length (``tf.io.VarLenFeature``): a ``tf.SparseTensor [batch, max_len]``
(tensorflow_transform ``schema_utils.schema_as_feature_spec``). Transformed features follow
the same rule: a dense output is fixed-length, a SparseTensor/RaggedTensor output
variable-length. TensorFlow is imported inside the functions.
"""

from __future__ import annotations

import dataclasses
from typing import Any

DTYPES = ("int64", "float32", "string")


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """One feature: ``dtype`` (int64, float32, string) and ``shape`` (None: variable length)."""

    dtype: str
    shape: tuple[int, ...] | None = None
    ragged: bool = False  # a variable-length output that was a RaggedTensor (tf.io.RaggedFeature)

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"feature dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.shape is not None:
            object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    @property
    def is_fixed(self) -> bool:
        return self.shape is not None

    @property
    def size(self) -> int:
        """Values per example of a fixed-length feature."""
        size = 1
        for dim in self.shape or ():
            size *= dim
        return size

    def tf_dtype(self) -> Any:
        import tensorflow as tf

        return {"int64": tf.int64, "float32": tf.float32, "string": tf.string}[self.dtype]

    def tensor_spec(self) -> Any:
        """``TensorSpec([None, *shape])`` or ``SparseTensorSpec([None, None])``."""
        import tensorflow as tf

        if self.is_fixed:
            return tf.TensorSpec([None, *self.shape], self.tf_dtype())
        return tf.SparseTensorSpec([None, None], self.tf_dtype())

    def parse_spec(self, with_default: bool = False, name: str = "") -> Any:
        """``tf.io.FixedLenFeature(shape)`` (optionally with a zero default), ``VarLenFeature``, or
        for a ragged output tf.Transform's ``RaggedFeature(value_key="<name>$ragged_values")``."""
        import tensorflow as tf

        if self.ragged:
            return tf.io.RaggedFeature(self.tf_dtype(), value_key=f"{name}$ragged_values", partitions=(),
                                       row_splits_dtype=tf.int64)
        if not self.is_fixed:
            return tf.io.VarLenFeature(self.tf_dtype())
        default = None
        if with_default:
            default = [b"" if self.dtype == "string" else 0] * self.size if self.shape else (
                b"" if self.dtype == "string" else 0)
        return tf.io.FixedLenFeature(list(self.shape), self.tf_dtype(), default_value=default)

    def to_json(self) -> dict[str, Any]:
        described = {"dtype": self.dtype, "shape": None if self.shape is None else list(self.shape)}
        if self.ragged:
            described["ragged"] = True
        return described

    @classmethod
    def from_json(cls, value: Any) -> FeatureSpec:
        """From ``to_json``'s dict; a bare dtype string (analysis.json format 1) is variable-length."""
        if isinstance(value, FeatureSpec):
            return value
        if isinstance(value, str):
            return cls(value, None)
        shape = value.get("shape")
        return cls(value["dtype"], None if shape is None else tuple(shape), bool(value.get("ragged")))


def as_feature_specs(features: dict[str, Any]) -> dict[str, FeatureSpec]:
    """``{name: FeatureSpec}`` from specs, their JSON, or bare dtype names (variable-length)."""
    return {name: FeatureSpec.from_json(value) for name, value in features.items()}


def describe(specs: dict[str, FeatureSpec]) -> dict[str, dict[str, Any]]:
    """The JSON form of ``specs`` (analysis.json)."""
    return {name: spec.to_json() for name, spec in specs.items()}


def dtype_names(specs: dict[str, FeatureSpec]) -> dict[str, str]:
    """``{name: dtype}``, for code that only needs the dtypes."""
    return {name: spec.dtype for name, spec in specs.items()}


def spec_from_schema_feature(feature: Any, dtype: str) -> FeatureSpec:
    """tf.Transform's choice: fixed ``shape`` when the feature has one and is always present."""
    if feature.HasField("shape") and feature.presence.min_fraction == 1.0:
        return FeatureSpec(dtype, tuple(dim.size for dim in feature.shape.dim))
    return FeatureSpec(dtype, None)


def add_to_schema(schema: Any, name: str, spec: FeatureSpec) -> Any:
    """Adds ``name`` to a tensorflow_metadata Schema as tf.Transform writes a feature spec."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    kinds = {"int64": schema_pb2.INT, "float32": schema_pb2.FLOAT, "string": schema_pb2.BYTES}
    feature = schema.feature.add(name=name, type=kinds[spec.dtype])
    if spec.is_fixed:
        feature.presence.min_fraction = 1.0
        feature.shape.SetInParent()
        for dim in spec.shape:
            feature.shape.dim.add().size = dim
    return feature
