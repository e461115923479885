"""``tft``'s scaling mappers: the analyzed statistics choose a scaling's branch when the graph is
traced, so the graphs hold no ``tf.cond``, and the values are tf.Transform's."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from sluice import tft
from sluice.components.tft.accumulators import add_to_accumulator, extract, new_accumulator
from sluice.components.tft.feature_spec import FeatureSpec
from sluice.components.tft.graph import trace_transform_graph
from sluice.components.tft.packed import pack
from sluice.components.tft.tracing import AnalysisFunction, trace_analysis

tf = pytest.importorskip("tensorflow")

RAW = {"x": FeatureSpec("float32", (2,)), "c": FeatureSpec("float32", (1,))}
CONDITIONALS = {"If", "StatelessIf"}


def _scalings(inputs):
    x, c = inputs["x"], inputs["c"]
    # Column 0 of ``half`` spreads, column 1 holds one value.
    half = tf.stack([x[:, 0], tf.zeros_like(x[:, 0])], axis=1)
    return {
        "unit": tft.scale_to_0_1(x),
        "ranged": tft.scale_by_min_max(x, -1.0, 1.0),
        "flat": tft.scale_to_0_1(c),  # one distinct value: sigmoid(x), as tf.Transform
        "columns": tft.scale_by_min_max(x, elementwise=True),
        "half": tft.scale_to_0_1(half, elementwise=True),
    }


def _table() -> tuple[pa.Table, np.ndarray]:
    x = np.array([[1.0, 10.0], [3.0, 30.0], [2.0, 50.0], [5.0, 20.0]], np.float32)
    return pa.table({"x": pa.array(list(x), pa.list_(pa.float32())), "c": pa.array([[2.0]] * 4)}), x


def _op_types(concrete) -> set[str]:
    return {op.type for op in concrete.graph.get_operations()}


def test_analyzed_min_and_max_choose_each_scalings_branch_with_no_conditional_in_either_graph():
    table, x = _table()
    plan = trace_analysis(_scalings, RAW)
    assert len(plan.phases) == 1
    assert not _op_types(plan.first_phase.function) & CONDITIONALS  # the pending stand-ins are known too
    specs = plan.phases[0]
    found = AnalysisFunction(_scalings, RAW, {}, [s.key for s in specs], "test")(table)
    values = {s.key: extract(s, add_to_accumulator(s, new_accumulator(s), found[s.key])) for s in specs}

    traced = trace_transform_graph(_scalings, RAW, values)
    assert not _op_types(traced.transform_fn) & CONDITIONALS
    got = {name: np.asarray(t) for name, t in traced.transform_fn(pack(table, RAW)).items()}
    low, high = x.min(), x.max()
    np.testing.assert_allclose(got["unit"], (x - low) / (high - low), rtol=1e-6)
    np.testing.assert_allclose(got["ranged"], (x - low) / (high - low) * 2 - 1, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got["flat"], 1 / (1 + np.exp(-2.0)) * np.ones((4, 1)), rtol=1e-6)
    lows, highs = x.min(axis=0), x.max(axis=0)
    np.testing.assert_allclose(got["columns"], (x - lows) / (highs - lows), rtol=1e-6)
    np.testing.assert_allclose(got["half"][:, 0], (x[:, 0] - lows[0]) / (highs[0] - lows[0]), rtol=1e-6)
    np.testing.assert_allclose(got["half"][:, 1], 0.5, rtol=1e-6)  # sigmoid(0)
