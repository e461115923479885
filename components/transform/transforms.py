"""Transform's Beam transforms: analyze raw Arrow batches, apply the saved graph, read raw Parquet.

Imports Beam: the executor imports this module inside its body.
"""

from __future__ import annotations

import pickle
from typing import Any

import apache_beam as beam
import pyarrow as pa

from sluice.components.io.files import local_copy, write_bytes
from sluice.components.tft.accumulators import add_to_accumulator, extract, merge_two, new_accumulator
from sluice.components.tft.feature_spec import as_feature_specs
from sluice.components.tft.graph import load_transform_fn, takes_packed_input
from sluice.components.tft.output import TransformOutput
from sluice.components.tft.packed import PackedFunction
from sluice.components.tft.tensors import slices, tensors_to_arrow
from sluice.components.tft.tracing import AnalysisFunction, plan_analysis

# What a PCollection of raw examples holds: Parquet reads give Tables.
RawBatch = pa.Table | pa.RecordBatch
AnalyzerValues = dict[str, Any]


@beam.typehints.with_input_types(RawBatch)
@beam.typehints.with_output_types(AnalyzerValues)
class AnalyzerInputsDoFn(beam.DoFn):
    """Raw Arrow batch -> {analyzer key: numpy values}; traces its tf.function once."""

    def __init__(self, preprocessing_fn, raw_features, keys, source):
        self._args = (preprocessing_fn, raw_features, keys, source)
        self._function = None

    def process(self, batch, known_values=None):
        if self._function is None:  # side inputs are first seen here, not in setup()
            fn, types_, keys, source = self._args
            self._function = AnalysisFunction(fn, types_, known_values or {}, keys, source)
        for part in slices(batch):
            yield self._function(part)


@beam.typehints.with_input_types(AnalyzerValues)
@beam.typehints.with_output_types(AnalyzerValues)
class AnalyzersCombineFn(beam.CombineFn):
    """One mergeable accumulator per analyzer of a phase."""

    def __init__(self, specs):
        self._specs = list(specs)

    def create_accumulator(self):
        return {spec.key: new_accumulator(spec) for spec in self._specs}

    def add_input(self, accumulator, batch_values):
        for spec in self._specs:
            accumulator[spec.key] = add_to_accumulator(spec, accumulator[spec.key], batch_values[spec.key])
        return accumulator

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        merged = next(accumulators)
        for other in accumulators:
            for spec in self._specs:
                merged[spec.key] = merge_two(spec, merged[spec.key], other[spec.key])
        return merged

    def extract_output(self, accumulator):
        return {spec.key: extract(spec, accumulator[spec.key]) for spec in self._specs}


@beam.typehints.with_input_types(RawBatch)
@beam.typehints.with_output_types(AnalyzerValues)
class AnalyzeDataset(beam.PTransform):
    """Raw Arrow batches -> one dict ``{analyzer key: value}`` with every analyzer's result.

    Plans the phases by tracing ``preprocessing_fn`` at construction time; each phase
    reads the batches once and combines its analyzers together.
    """

    def __init__(self, preprocessing_fn, raw_features, source="preprocessing_fn"):
        super().__init__()
        self._fn = preprocessing_fn
        self._types = as_feature_specs(raw_features)
        self._source = source
        self.phases = plan_analysis(preprocessing_fn, self._types, source)

    def expand(self, batches):
        values = None
        if not self.phases:
            return batches.pipeline | "NoAnalyzers" >> beam.Create([{}])
        for number, specs in enumerate(self.phases, 1):
            keys = [spec.key for spec in specs]
            side = [] if values is None else [beam.pvalue.AsSingleton(values)]
            found = (
                batches
                | f"AnalyzerInputs[{number}]" >> beam.ParDo(
                    AnalyzerInputsDoFn(self._fn, self._types, keys, self._source), *side)
                | f"Combine[{number}]" >> beam.CombineGlobally(AnalyzersCombineFn(specs))
            )
            if values is None:
                values = found
            else:
                values = found | f"Merge[{number}]" >> beam.Map(
                    lambda new, old: {**old, **new}, beam.pvalue.AsSingleton(values))
        return values


@beam.typehints.with_input_types(RawBatch)
@beam.typehints.with_output_types(pa.Table)
class TransformBatchDoFn(beam.DoFn):
    """Raw Arrow batch -> transformed Tables, with the graph loaded once per process."""

    def __init__(self, transform_graph_dir):
        self._dir = transform_graph_dir

    def setup(self):
        self._output = TransformOutput(local_copy(self._dir))  # TensorFlow cannot read every store
        self._types = self._output.raw_features
        self._features = self._output.transformed_features
        self._function = PackedFunction(load_transform_fn(self._output.transform_savedmodel_dir), self._types,
                                        packed_input=takes_packed_input(self._output.analysis))

    def process(self, batch):
        for part in slices(batch):
            yield tensors_to_arrow(self._function(part), self._features)


@beam.typehints.with_input_types(RawBatch)
@beam.typehints.with_output_types(pa.Table)
class TransformDataset(beam.PTransform):
    """Raw Arrow batches -> transformed pyarrow Tables, with a saved transform graph."""

    def __init__(self, transform_graph_dir):
        super().__init__()
        self._dir = transform_graph_dir

    def expand(self, batches):
        return batches | "Transform" >> beam.ParDo(TransformBatchDoFn(self._dir))


@beam.typehints.with_output_types(pa.Table)
class ReadRawBatches(beam.PTransform):
    """Parquet files (glob patterns) -> pyarrow Tables (one per row group)."""

    def __init__(self, patterns):
        super().__init__()
        self._patterns = list(patterns)

    def expand(self, pipeline):
        reads = [
            pipeline | f"Read[{i}]" >> beam.io.ReadFromParquetBatched(pattern)
            for i, pattern in enumerate(self._patterns)
        ]
        return reads[0] if len(reads) == 1 else reads | "Flatten" >> beam.Flatten()


def write_pickle(value: Any, path: str) -> None:
    """Writes the analyzer values where the executor reads them back after the pipeline ran (a
    path or an object-store URI: workers need not share the executor's disk)."""
    write_bytes(path, pickle.dumps(value))
