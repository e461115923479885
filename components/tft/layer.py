"""The trackable module applying a saved transform graph (imports TensorFlow: import it lazily)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from sluice.components.tft.feature_spec import as_feature_specs, describe
from sluice.components.tft.packed import pack_in_graph
from sluice.components.tft.tensors import complete_raw_features


class TransformFeaturesLayer(tf.Module):
    """Applies a saved transform graph: raw feature dict -> transformed tensors.

    Raw features may come as ``tf.io.parse_example`` gives them with ``raw_feature_spec()``
    (dense for fixed-length features, SparseTensor for variable-length ones), or as
    SparseTensors/dense tensors of any of those; absent ones (the label at serving) are
    filled in empty, and the outputs computed from them dropped. A trackable ``tf.Module``:
    assign it to a model/module attribute and it is saved with it (e.g. inside the serving
    SavedModel).
    """

    def __init__(self, transform_fn_dir: str, raw_features: dict[str, Any],
                 depends_on: dict[str, list[str]] | None = None, packed_input: bool = True):
        super().__init__(name="transform_features_layer")
        self._packed_input = packed_input  # the saved transform_fn takes packed.pack's tensors (else raw ones)
        # Outputs computed from raw features the caller did not give are dropped (as tf.Transform).
        self._depends_on = tuple((name, tuple(raw)) for name, raw in (depends_on or {}).items())
        self._transform = tf.saved_model.load(transform_fn_dir)
        # Plain JSON-like values: a tf.Module tracks attributes, and must not wrap specs.
        self._raw = tuple((name, spec["dtype"], None if spec["shape"] is None else tuple(spec["shape"]))
                          for name, spec in describe(as_feature_specs(raw_features)).items())

    def __call__(self, features: dict[str, Any]) -> dict[str, Any]:
        specs = {name: {"dtype": dtype, "shape": shape} for name, dtype, shape in self._raw}
        raw = complete_raw_features(features, specs)
        outputs = self._transform.transform_fn(pack_in_graph(raw, specs) if self._packed_input else raw)
        given = {name for name in features if name in specs}
        dropped = {name for name, needs in self._depends_on if not given.issuperset(needs)}
        return {name: value for name, value in outputs.items() if name not in dropped}
