"""The Transform component: analyze the raw examples, save the transform graph, transform the splits.

With no Beam option but the in-process runner and local examples, the work runs in this
process without a Beam pipeline (``in_process``: the same traced functions and accumulators,
no pickling between stages, the traced graph applied while it is saved); otherwise as Beam
pipelines (``transforms``). Beam, TensorFlow and the user's module are imported when it
runs, not when it is imported.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from typing import Any

from sluice.components.artifacts import Examples, Schema, TransformGraph
from sluice.components.sdk import (
    ComponentError,
    ExecutionContext,
    Input,
    ModuleFile,
    ModuleFunction,
    Output,
    component,
    load_module_file,
    user_function,
)
from sluice.components.tft.feature_spec import FeatureSpec, dtype_names, spec_from_schema_feature
from sluice.components.tft.graph import RAW_METADATA_DIR, SCHEMA_FILE, TRANSFORMED_METADATA_DIR
from sluice.components.tft.tracing import PreprocessingFnError

OWNER = "Transform"
# Threads transforming the splits' batches in process (one pool for all splits): one per core,
# measured on 2 cores (3 was no faster there, bench/PROFILES.md); capped at 4, as no bigger
# machine was measured.
TRANSFORM_WORKERS = min(4, max(2, os.cpu_count() or 2))


def load_preprocessing_fn(module_file: str | None, preprocessing_fn: str | None) -> tuple[Callable, str]:
    """The user's function and where it came from (a file path or dotted name)."""
    if (module_file is None) == (preprocessing_fn is None) or preprocessing_fn is not None:
        return user_function(module_file, preprocessing_fn, "preprocessing_fn", "Transform")

    path = os.path.abspath(module_file)
    module = load_module_file(path, "Transform")
    try:  # ship the module by value so workers in other processes need not import it
        from apache_beam.internal.cloudpickle import cloudpickle

        cloudpickle.register_pickle_by_value(module)
    except Exception:  # noqa: BLE001 - in-process runners unpickle by reference anyway
        pass
    fn = getattr(module, "preprocessing_fn", None)
    if not callable(fn):
        raise ComponentError(f"Transform: module file {path} defines no preprocessing_fn(inputs) function")
    return fn, path


def raw_features_from_schema(schema_file: str) -> dict[str, FeatureSpec]:
    """``{feature: FeatureSpec}`` from a tensorflow_metadata Schema text file, as tf.Transform reads it.

    A feature with a ``shape`` and ``presence.min_fraction: 1`` is fixed-length (a dense
    tensor ``[batch, *shape]``); any other is variable-length (a SparseTensor).
    """
    from tensorflow_metadata.proto.v0 import schema_pb2

    from sluice.components.tfdv import load_schema

    schema = load_schema(schema_file, OWNER)
    kinds = {schema_pb2.INT: "int64", schema_pb2.FLOAT: "float32", schema_pb2.BYTES: "string"}
    specs = {}
    for feature in schema.feature:
        if feature.type not in kinds:
            raise ComponentError(
                f"Transform: schema {schema_file}: feature {feature.name!r} has type "
                f"{schema_pb2.FeatureType.Name(feature.type)}; expected INT, FLOAT or BYTES"
            )
        specs[feature.name] = spec_from_schema_feature(feature, kinds[feature.type])
    if not specs:
        raise ComponentError(f"Transform: schema {schema_file} has no features")
    return specs


def raw_feature_types_from_schema(schema_file: str) -> dict[str, str]:
    """``{feature: "int64"|"float32"|"string"}`` from a tensorflow_metadata Schema text file."""
    return dtype_names(raw_features_from_schema(schema_file))


def _check_column_types(files: list[str], raw_features: dict[str, FeatureSpec]) -> None:
    """Fails early, on one line, when a Parquet column cannot become its schema dtype and shape."""
    import pyarrow as pa

    from sluice.components.io.examples import read_schema

    readable = {
        "string": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)
        or pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_dictionary(t),
        "int64": lambda t: pa.types.is_integer(t) or pa.types.is_boolean(t),
        "float32": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t),
    }
    for path in files:
        arrow = read_schema(path, OWNER)
        for name, spec in raw_features.items():
            index = arrow.get_field_index(name)
            if index < 0:
                continue
            kind = arrow.field(index).type
            is_list = pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
            value_type = kind.value_type if is_list else kind
            if not readable[spec.dtype](value_type):
                raise ComponentError(
                    f"Transform: {path}: column {name!r} has type {kind}, but the schema says {spec.dtype}"
                )
            if spec.is_fixed and spec.size != 1 and not is_list:
                raise ComponentError(
                    f"Transform: {path}: column {name!r} holds one value per row, but the schema's shape is "
                    f"{list(spec.shape)}"
                )


def _check_splits(examples: Examples, analyze_splits: list[str], transform_splits: list[str]) -> None:
    if examples.file_format != "parquet":
        raise ComponentError(f"Transform: examples must be Parquet, got file_format={examples.file_format!r}")
    for param, splits in (("analyze_splits", analyze_splits), ("transform_splits", transform_splits)):
        if not splits:
            raise ComponentError(f"Transform: parameter {param} is empty")
        unknown = [s for s in splits if s not in examples.split_names]
        if unknown:
            raise ComponentError(
                f"Transform: parameter {param}: unknown split(s) {unknown} (examples have {examples.split_names})"
            )


def run_transform(
    examples: Input[Examples],
    schema: Input[Schema],
    transform_graph: Output[TransformGraph],
    transformed_examples: Output[Examples],
    post_transform_schema: Output[Schema],
    module_file: ModuleFile | None = None,
    preprocessing_fn: ModuleFunction | None = None,
    analyze_splits: list[str] = ["train"],  # noqa: B006 - validated, never mutated
    transform_splits: list[str] = ["train", "eval"],  # noqa: B006
    ctx: ExecutionContext = None,
) -> None:
    """Analyzes ``analyze_splits``, saves the transform graph, transforms ``transform_splits``.

    Exactly one of ``module_file`` (a .py defining ``preprocessing_fn``) or
    ``preprocessing_fn`` (a dotted ``"package.module.function"``) is required.
    """
    from sluice.components.io.examples import read_schema, split_files
    from sluice.components.io.files import is_remote, read_bytes, write_bytes
    from sluice.components.transform.column_hints import column_hint

    ctx = ctx or ExecutionContext()
    fn, source = load_preprocessing_fn(module_file, preprocessing_fn)
    _check_splits(examples, analyze_splits, transform_splits)
    raw_features = raw_features_from_schema(schema.file)
    raw_types = dtype_names(raw_features)
    files = {split: split_files(examples, split, OWNER) for split in {*analyze_splits, *transform_splits}}
    for split_shards in files.values():
        _check_column_types(split_shards, raw_features)
    patterns = {split: examples.parquet_pattern(split) for split in files}

    examples_schema = read_schema(next(iter(files.values()))[0], OWNER)
    data_columns = examples_schema.names
    in_process = ctx.beam_default_runner and not any(is_remote(f) for shards in files.values() for f in shards)
    try:
        if in_process:
            analysis = _run_in_process(fn, raw_features, source, files, analyze_splits, transform_splits,
                                       transform_graph.uri, transformed_examples, examples_schema)
        else:
            analysis = _analyze(ctx, fn, raw_features, source, [patterns[s] for s in analyze_splits],
                                transform_graph.uri)
            _transform(ctx, transform_graph.uri, analysis, [(s, patterns[s]) for s in transform_splits],
                       transformed_examples)
    except PreprocessingFnError as exc:
        hint = column_hint(exc, source, raw_types, data_columns, schema.file)
        raise ComponentError(f"Transform: {str(exc).rstrip('.') if hint else exc}{hint}") from None
    except ComponentError:
        raise
    except Exception as exc:  # noqa: BLE001 - a failure while Beam ran the user's graph
        summary = _summarize_failure(exc, source)
        hint = column_hint(summary, source, raw_types, data_columns, schema.file)
        raise ComponentError(f"Transform: running preprocessing_fn from {source} on {examples.uri} "
                             f"failed: {summary.rstrip('.') if hint else summary}{hint}") from exc

    write_bytes(post_transform_schema.file,
                read_bytes(os.path.join(transform_graph.uri, TRANSFORMED_METADATA_DIR, SCHEMA_FILE)))
    # The raw schema as given (with its domains), where tf.Transform keeps raw_metadata.
    write_bytes(os.path.join(transform_graph.uri, RAW_METADATA_DIR, SCHEMA_FILE), read_bytes(schema.file))
    transformed_examples.split_names = list(transform_splits)
    transformed_examples.span = examples.span
    transformed_examples.version = examples.version
    transformed_examples.file_format = "parquet"
    ctx.log_metric("num_analyzers", len(analysis["analyzers"]))
    ctx.log_metric("num_transformed_features", len(analysis["transformed_features"]))


def _run_in_process(fn: Callable, raw_features: dict[str, FeatureSpec], source: str, files: dict[str, list[str]],
                    analyze_splits: list[str], transform_splits: list[str], graph_dir: str,
                    transformed_examples: Examples, examples_schema: Any) -> dict:
    """Analyze, save the graph, transform, in this process (``in_process``): no Beam pipeline.
    ``examples_schema``: the examples' Arrow schema."""
    import concurrent.futures

    from sluice.components.tft.graph import trace_transform_graph, write_transform_graph
    from sluice.components.tft.packed import PackedFunction
    from sluice.components.tft.tracing import trace_analysis
    from sluice.components.transform.in_process import RowGroups, analyze_in_process, transform_in_process

    analyze_files = [f for split in analyze_splits for f in files[split]]
    row_groups = RowGroups(list(raw_features), OWNER)
    # The other splits' files too, after the analyzed ones: read while the analysis leaves a core free.
    transform_files = [f for split in transform_splits for f in files[split]]
    row_groups.prefetch(analyze_files + [f for f in transform_files if f not in analyze_files])
    plan = trace_analysis(fn, raw_features, source)
    values = analyze_in_process(plan, fn, raw_features, source, analyze_files, row_groups, examples_schema)
    traced = trace_transform_graph(fn, raw_features, values, source)
    transform = PackedFunction(traced.transform_fn, traced.raw_features, packed_input=True)
    # Saving is mostly Python; running the graph and encoding Parquet are kernels that release
    # the GIL: the save and every split's transform run side by side.
    with concurrent.futures.ThreadPoolExecutor(1 + len(transform_splits), thread_name_prefix="transform") as pool, \
            concurrent.futures.ThreadPoolExecutor(TRANSFORM_WORKERS, thread_name_prefix="transform-batch") as compute:
        saved = pool.submit(write_transform_graph, traced, values, graph_dir)
        # Set up once here: two splits' threads calling it first at once each paid for the set-up.
        transform.warm(examples_schema)
        splits = [pool.submit(transform_in_process, transform, traced.features, files[split], row_groups,
                              transformed_examples.split_uri(split), compute)
                  for split in transform_splits]
        for done in splits:
            done.result()
        return saved.result()


def _analyze(ctx: ExecutionContext, fn: Callable, raw_features: dict[str, FeatureSpec], source: str,
             patterns: list[str], graph_dir: str) -> dict:
    """One Beam pass computing every analyzer; then the graph saved with their values.

    The values reach this process through a file in ``graph_dir``, which may be an object
    store's URI (workers need not share this disk); TensorFlow saves the graph into a local
    folder, uploaded to such a URI."""
    import shutil
    import tempfile

    import apache_beam as beam

    from sluice.components.io.files import is_remote, makedirs, read_bytes, remove, upload_dir
    from sluice.components.tft.graph import save_transform_graph
    from sluice.components.transform import transforms

    makedirs(graph_dir)
    values_file = os.path.join(graph_dir, ".analysis-values.pickle")
    try:
        analyze = transforms.AnalyzeDataset(fn, raw_features, source)
        with ctx.beam_pipeline() as pipeline:
            _ = (
                pipeline
                | "ReadAnalyzeSplits" >> transforms.ReadRawBatches(patterns)
                | "Analyze" >> analyze
                | "WriteValues" >> beam.Map(transforms.write_pickle, values_file)
            )
        values = pickle.loads(read_bytes(values_file))
    finally:
        remove(values_file)
    if not is_remote(graph_dir):
        return save_transform_graph(fn, raw_features, values, graph_dir, source)
    local = tempfile.mkdtemp(prefix="sluice-transform-graph-")
    try:
        analysis = save_transform_graph(fn, raw_features, values, local, source)
        upload_dir(local, graph_dir)
        return analysis
    finally:
        shutil.rmtree(local, ignore_errors=True)


def _transform(ctx: ExecutionContext, graph_dir: str, analysis: dict, patterns: list[tuple[str, str]],
               transformed_examples: Examples) -> None:
    """One Beam pipeline applying the saved graph to each split, written as Parquet shards."""
    import apache_beam as beam

    from sluice.components.io.files import makedirs
    from sluice.components.tft.tensors import arrow_schema
    from sluice.components.transform import transforms

    with ctx.beam_pipeline() as pipeline:
        for split, pattern in patterns:
            out_dir = transformed_examples.split_uri(split)
            makedirs(out_dir)
            _ = (
                pipeline
                | f"Read[{split}]" >> transforms.ReadRawBatches([pattern])
                | f"Transform[{split}]" >> transforms.TransformDataset(graph_dir)
                | f"Write[{split}]" >> beam.io.WriteToParquetBatched(
                    os.path.join(out_dir, "part"), schema=arrow_schema(analysis["transformed_features"]),
                    file_name_suffix=".parquet", shard_name_template="-SSSSS-of-NNNNN")
            )


def _summarize_failure(exc: BaseException, source: str) -> str:
    """One line from an error Beam re-raised with its worker traceback folded into the message."""
    import re

    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    frames = [i for i, line in enumerate(lines) if line.startswith("File ")]
    where = ""
    for i in frames:
        match = re.match(r'File "(.+)", line (\d+)', lines[i])
        if match and os.path.abspath(match.group(1)) == os.path.abspath(source):
            where = f"line {match.group(2)}: "
    message = lines[frames[-1] + 1] if frames and frames[-1] + 1 < len(lines) else (lines[0] if lines else "")
    message = re.sub(r"\s*\[while running .*\]$", "", message)
    if len(message) > 300:
        message = message[:300] + "..."
    return f"{where}{message or type(exc).__name__}"


# Given an object store's URIs, it runs on Beam; workers read the graph from a local copy. Its
# warm imports name the engine's own modules too (imported on first use otherwise): a runner
# imports them in the background while earlier components run.
Transform = component(run_transform, name="Transform", remote_io=True, warm_imports=(
    "tensorflow", "sluice.components.tfdv", "sluice.components.transform.column_hints",
    "sluice.components.transform.in_process"))
