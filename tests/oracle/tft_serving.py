"""The serving path of a transform graph: serialized tf.Examples -> ``raw_feature_spec()`` ->
``transform_features_layer()``, as a Trainer's serving signature applies it, row by row.

Used by tft_oracle for both engines, so the saved graph (not only the materialized Parquet or
instance dicts) is held to tf.Transform's values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

SERVED_ROWS = 40


def serialized_examples(table: pa.Table, feature_spec: dict[str, Any]) -> list[bytes]:
    """The first ``SERVED_ROWS`` rows as tf.Examples; a missing optional value is an absent feature."""
    import tensorflow as tf

    examples = []
    for row in table.slice(0, SERVED_ROWS).to_pylist():
        features = {}
        for name, spec in feature_spec.items():
            value = row.get(name)
            if value is None:
                continue
            values = list(np.asarray(value).reshape(-1)) if isinstance(value, list) else [value]
            if spec.dtype == tf.string:
                features[name] = tf.train.Feature(bytes_list=tf.train.BytesList(
                    value=[v.encode() if isinstance(v, str) else bytes(v) for v in values]))
            elif spec.dtype == tf.int64:
                features[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))
            else:
                features[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))
        examples.append(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())
    return examples


def served_outputs(output: Any, raw_feature_spec: dict[str, Any], serialized: list[bytes],
                   extra: dict[str, Any] | None = None) -> dict[str, list[np.ndarray]]:
    """``output.transform_features_layer()`` on the parsed examples: one flat array per row and output."""
    import tensorflow as tf

    parsed = tf.io.parse_example(tf.constant(serialized), raw_feature_spec)
    transformed = output.transform_features_layer()({**parsed, **(extra or {})})
    return {name: _per_row(value, len(serialized)) for name, value in transformed.items()}


def _per_row(value: Any, rows: int) -> list[np.ndarray]:
    import tensorflow as tf

    if isinstance(value, tf.SparseTensor):
        row_of = value.indices.numpy()[:, 0]
        values = value.values.numpy()
        return [_flat(values[row_of == i]) for i in range(rows)]
    if isinstance(value, tf.RaggedTensor):
        return [_flat(value[i].numpy()) for i in range(rows)]
    array = value.numpy()
    return [_flat(array[i]) for i in range(rows)]


def _flat(array: np.ndarray) -> np.ndarray:
    flat = np.asarray(array).reshape(-1)
    if flat.dtype == object or flat.dtype.kind in "SU":
        return np.array([v.encode() if isinstance(v, str) else bytes(v) for v in flat], dtype=object)
    return flat
