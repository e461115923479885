"""One ``preprocessing_fn`` run by real tensorflow-transform 1.21 and by Sluice's Transform, compared.

A case is rows (a pyarrow Table), a tensorflow_metadata Schema and a factory
``make_preprocessing_fn(tft)`` defined at module level, so the very same function body runs
with ``tft = tensorflow_transform`` and with ``tft = sluice.tft``:

* tf.Transform: ``tft_beam.AnalyzeAndTransformDataset`` on Beam's in-process FnApiRunner, raw
  instance dicts built from the schema's feature spec (``schema_utils``), the transform_fn
  written with ``WriteTransformFn`` and read back through ``TFTransformOutput``. Several cases
  share one Beam pipeline (``run_tft_batch``): its start-up costs seconds.
  ``run_tft_cached`` keeps those results under ``~/.cache/sluice/tft-oracle`` keyed by the
  versions, this file, the cases' module source, rows and schema.
* Sluice: ``run_transform`` on a Parquet Examples artifact and the Schema pbtxt, with a module
  file that imports the same factory; the transformed Parquet, the vocabulary files under
  ``transform_fn/assets`` and ``analysis.json`` are read back.

Both give an ``EngineResult``, with the serving path's answers for the first rows (tft_serving);
``tft_compare.compare`` lists every difference as one line.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tests.oracle import tft_serving

ROW_ID = "__parity_row_id"


@dataclasses.dataclass
class Case:
    """Rows, their Schema and the factory of the ``preprocessing_fn`` both engines run."""

    name: str
    table: pa.Table
    schema_text: str
    make_preprocessing_fn: Callable[[Any], Callable]
    float_tolerance: dict[str, float] = dataclasses.field(default_factory=dict)  # output -> max abs diff
    asset_keys: list[str] = dataclasses.field(default_factory=list)  # extra vocabulary_file_by_name keys
    eval_table: pa.Table | None = None  # rows transformed but not analyzed (TFX's eval split)


@dataclasses.dataclass
class EngineResult:
    outputs: dict[str, list[np.ndarray]]  # output name -> one flat array per row, in input order
    dtypes: dict[str, str]  # output name -> "int64" | "float32" | "string"
    assets: dict[str, bytes]  # vocabulary file name -> its bytes
    vocabulary_sizes: dict[str, int]  # vocabulary file name -> vocabulary_size_by_name
    specs: dict[str, str]  # output name -> transformed feature spec, e.g. "fixed[5] float32", "varlen int64"
    seconds: float
    api: dict[str, str] = dataclasses.field(default_factory=dict)  # TFTransformOutput call -> its answer
    served: dict[str, list[np.ndarray]] = dataclasses.field(default_factory=dict)  # serving path, first rows
    serving_error: str = ""
    eval_outputs: dict[str, list[np.ndarray]] = dataclasses.field(default_factory=dict)
    analysis: dict | None = None  # Sluice's analysis.json


def parse_schema(text: str):
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    return text_format.Parse(text, schema_pb2.Schema())


def _flat(value: Any) -> np.ndarray:
    """One row's value as a flat array, bytes for strings."""
    array = np.asarray(value if value is not None else [], dtype=object if _is_text(value) else None)
    array = array.reshape(-1)
    if array.dtype == object or array.dtype.kind in "SU":
        return np.array([v.encode() if isinstance(v, str) else bytes(v) for v in array], dtype=object)
    return array


def _is_text(value: Any) -> bool:
    if isinstance(value, (bytes, str)):
        return True
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (bytes, str)):
        return True
    return isinstance(value, np.ndarray) and (value.dtype == object or value.dtype.kind in "SU")


def _dtype_name(value: np.ndarray) -> str:
    if value.dtype == object:
        return "string"
    return {"i": "int64", "u": "int64", "f": "float32", "b": "int64"}[value.dtype.kind]


# --- tf.Transform ------------------------------------------------------------------------


def _instance_dicts(table: pa.Table, feature_spec: dict) -> list[dict]:
    """Raw rows as tf.Transform's instance dicts: fixed-shape features as arrays, var-len as lists."""
    import tensorflow as tf

    rows = []
    for index, row in enumerate(table.to_pylist()):
        instance = {ROW_ID: index}
        for name, spec in feature_spec.items():
            value = row.get(name)
            if isinstance(spec, tf.io.FixedLenFeature):
                instance[name] = np.asarray(value).reshape(spec.shape) if spec.shape else value
            else:
                instance[name] = [] if value is None else (list(value) if isinstance(value, list) else [value])
        rows.append(instance)
    return rows


def _wrap_with_row_id(fn: Callable) -> Callable:
    def preprocessing_fn(inputs):
        inputs = dict(inputs)
        row_id = inputs.pop(ROW_ID)
        outputs = dict(fn(inputs))
        outputs[ROW_ID] = row_id
        return outputs

    return preprocessing_fn


def run_tft_batch(cases: list[Case], work_dir: Path) -> dict[str, EngineResult]:
    """Every case through tf.Transform, all in one in-process Beam pipeline."""
    import apache_beam as beam
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

    started = time.perf_counter()
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        for case in cases:
            schema = parse_schema(case.schema_text)
            feature_spec = schema_utils.schema_as_feature_spec(schema).feature_spec
            spec = {**feature_spec, ROW_ID: tf.io.FixedLenFeature([], tf.int64)}
            metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
            raw = pipeline | f"Create[{case.name}]" >> beam.Create(_instance_dicts(case.table, feature_spec))
            fn = _wrap_with_row_id(case.make_preprocessing_fn(tft))
            # A temp dir per case: tf.Transform names its vocabulary tables after their temp path.
            with tft_beam.Context(temp_dir=str(work_dir / "tft_tmp" / case.name)):
                (transformed, _), transform_fn = (
                    (raw, metadata) | f"AnalyzeAndTransform[{case.name}]" >> tft_beam.AnalyzeAndTransformDataset(fn))
                if case.eval_table is not None:
                    raw_eval = pipeline | f"CreateEval[{case.name}]" >> beam.Create(
                        _instance_dicts(case.eval_table, feature_spec))
                    (transformed_eval, _) = (((raw_eval, metadata), transform_fn)
                                             | f"TransformEval[{case.name}]" >> tft_beam.TransformDataset())
            out = work_dir / "tft" / case.name
            _ = transform_fn | f"WriteTransformFn[{case.name}]" >> tft_beam.WriteTransformFn(str(out))
            _ = (transformed | f"ToList[{case.name}]" >> beam.combiners.ToList()
                 | f"Save[{case.name}]" >> beam.Map(_save_pickle, str(out) + ".rows.pickle"))
            if case.eval_table is not None:
                _ = (transformed_eval | f"ToListEval[{case.name}]" >> beam.combiners.ToList()
                     | f"SaveEval[{case.name}]" >> beam.Map(_save_pickle, str(out) + ".eval.pickle"))
    seconds = time.perf_counter() - started
    for case in cases:  # as TFX's Transform does, so that raw_feature_spec() answers
        metadata_io.write_metadata(dataset_metadata.DatasetMetadata(parse_schema(case.schema_text)),
                                   str(work_dir / "tft" / case.name / "metadata"))
    return {case.name: _read_tft(work_dir / "tft" / case.name, seconds / len(cases), case) for case in cases}


def cache_dir() -> Path | None:
    """Where tf.Transform's results are kept (``SLUICE_TFT_ORACLE_CACHE``; ``0`` turns the cache off)."""
    override = os.environ.get("SLUICE_TFT_ORACLE_CACHE")
    if override == "0":
        return None
    return Path(override).expanduser() if override else Path.home() / ".cache" / "sluice" / "tft-oracle"


def cache_key(cases: list[Case]) -> str:
    """Changes with tf.Transform's and TensorFlow's versions, these files, each case's module, rows and schema."""
    import hashlib
    import inspect
    import sys

    import tensorflow as tf
    import tensorflow_transform as tft

    digest = hashlib.sha256(f"{tft.__version__} {tf.__version__}".encode())
    sources = {__file__, tft_serving.__file__}
    sources |= {inspect.getsourcefile(sys.modules[c.make_preprocessing_fn.__module__]) for c in cases}
    for source in sorted(sources):
        digest.update(Path(source).read_bytes())
    for case in cases:
        digest.update(f"{case.name}\0{case.schema_text}\0{case.asset_keys}\0".encode())
        digest.update(_ipc_bytes(case.table))
        if case.eval_table is not None:
            digest.update(b"eval\0" + _ipc_bytes(case.eval_table))
    return digest.hexdigest()[:32]


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def run_tft_cached(cases: list[Case], work_dir: Path) -> dict[str, EngineResult]:
    """``run_tft_batch``, or its earlier result for the very same cases: tf.Transform takes minutes here."""
    folder = cache_dir()
    path = folder / f"{cache_key(cases)}.pickle" if folder else None
    if path is not None and path.is_file():
        with open(path, "rb") as fh:
            return pickle.load(fh)
    results = run_tft_in_subprocess(cases, work_dir)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        _save_pickle(results, str(partial))
        os.replace(partial, path)
    return results


def run_tft_in_subprocess(cases: list[Case], work_dir: Path, processes: int = 2) -> dict[str, EngineResult]:
    """``run_tft_batch`` in child processes: after a tf.Transform Beam run the interpreter can crash
    at exit (SIGSEGV in TensorFlow's and Beam's teardown), which would turn pytest's exit status red.
    Each child writes its results and leaves with ``os._exit``; cases are pickled (factories by
    reference). The cases are shared out over ``processes`` children that run at once (largest
    tables first, each to the lightest group): the in-process Beam runner uses one core."""
    import subprocess
    import sys

    work_dir = Path(work_dir)
    groups: list[list[Case]] = [[] for _ in range(max(1, min(processes, len(cases))))]
    weights = [0] * len(groups)
    for case in sorted(cases, key=lambda c: -c.table.nbytes):
        lightest = weights.index(min(weights))
        groups[lightest].append(case)
        weights[lightest] += case.table.nbytes
    repo = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    children = []
    for index, group in enumerate(groups):
        folder = work_dir / f"group-{index}"
        folder.mkdir(parents=True, exist_ok=True)
        cases_file, results_file = folder / "cases.pickle", folder / "results.pickle"
        _save_pickle(group, str(cases_file))
        child = subprocess.Popen([sys.executable, "-m", "tests.oracle.tft_oracle", str(cases_file), str(results_file),
                                  str(folder)], cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 text=True, env=env)
        children.append((child, results_file))
    results: dict[str, EngineResult] = {}
    for child, results_file in children:
        _, stderr = child.communicate(timeout=1800)
        if not results_file.is_file():
            raise RuntimeError(f"the tf.Transform oracle failed (exit {child.returncode}): {stderr[-4000:]}")
        with open(results_file, "rb") as fh:
            results.update(pickle.load(fh))
    return results


def _main(cases_file: str, results_file: str, work_dir: str) -> None:
    with open(cases_file, "rb") as fh:
        cases = pickle.load(fh)
    results = run_tft_batch(cases, Path(work_dir) / "tft")
    _save_pickle(results, results_file + ".partial")
    os.replace(results_file + ".partial", results_file)


def _save_pickle(value: Any, path: str) -> None:
    with open(path, "wb") as fh:
        pickle.dump(value, fh)


def _read_tft(out: Path, seconds: float, case: Case) -> EngineResult:
    import tensorflow as tf
    import tensorflow_transform as tft

    outputs = _read_rows(str(out) + ".rows.pickle")
    output = tft.TFTransformOutput(str(out))
    specs = {k: v for k, v in describe_feature_spec(output.transformed_feature_spec()).items() if k != ROW_ID}
    dtypes = {name: spec.split()[-1] for name, spec in specs.items()}
    assets, sizes = _assets(Path(output.transform_savedmodel_dir) / "assets")
    for filename in assets:
        sizes[filename] = output.vocabulary_size_by_name(filename)
    result = EngineResult(outputs, dtypes, assets, sizes, specs, seconds, query_output(output, dtypes, case.asset_keys))
    raw_spec = output.raw_feature_spec()
    serialized = tft_serving.serialized_examples(case.table, raw_spec)
    row_ids = {ROW_ID: tf.range(len(serialized), dtype=tf.int64)}
    result.served = tft_serving.served_outputs(output, raw_spec, serialized, row_ids)
    result.served.pop(ROW_ID, None)
    if case.eval_table is not None:
        result.eval_outputs = _read_rows(str(out) + ".eval.pickle")
    return result


def _read_rows(path: str) -> dict[str, list[np.ndarray]]:
    """tf.Transform's instance dicts, back in input order: one flat array per row and output."""
    with open(path, "rb") as fh:
        rows = sorted(pickle.load(fh), key=lambda r: int(np.asarray(r[ROW_ID]).reshape(-1)[0]))
    names = sorted(k for k in rows[0] if k != ROW_ID) if rows else []
    # A ragged output comes as "<name>$ragged_values" (one ragged dimension; deeper ones are not used here).
    return {name.removesuffix("$ragged_values"): [_flat(row[name]) for row in rows] for name in names
            if "$" not in name or name.endswith("$ragged_values")}


def query_output(output: Any, dtypes: dict[str, str], asset_keys: list[str]) -> dict[str, str]:
    """The TFTransformOutput answers a Trainer module file relies on, as text (an error as its type)."""
    calls: dict[str, Callable[[], Any]] = {
        "raw_feature_spec()": lambda: sorted((k, v) for k, v in describe_feature_spec(output.raw_feature_spec()).items()
                                             if k != ROW_ID),
    }
    for name in sorted(n for n, d in dtypes.items() if d == "int64"):
        calls[f"num_buckets_for_transformed_feature({name!r})"] = (
            lambda n=name: output.num_buckets_for_transformed_feature(n))
    for key in asset_keys:
        calls[f"vocabulary_file_by_name({key!r})"] = lambda k=key: os.path.basename(output.vocabulary_file_by_name(k))
        calls[f"vocabulary_size_by_name({key!r})"] = lambda k=key: output.vocabulary_size_by_name(k)
    answers = {}
    for call, fn in calls.items():
        try:
            answers[call] = repr(fn())
        except Exception as exc:  # noqa: BLE001 - which error class is part of what is compared
            answers[call] = f"raises {type(exc).__name__}"
    return answers


def describe_feature_spec(feature_spec: dict) -> dict[str, str]:
    """``{name: "fixed[5] float32" | "varlen int64" | ...}``, comparable across both engines."""
    described = {}
    for name, spec in feature_spec.items():
        dtype = {"int64": "int64", "float32": "float32", "string": "string"}.get(spec.dtype.name, spec.dtype.name)
        kind = type(spec).__name__
        if kind == "FixedLenFeature":
            described[name] = f"fixed{list(spec.shape)} {dtype}"
        elif kind == "VarLenFeature":
            described[name] = f"varlen {dtype}"
        else:
            described[name] = f"{kind} {dtype}"
    return described


def _assets(folder: Path) -> tuple[dict[str, bytes], dict[str, int]]:
    if not folder.is_dir():
        return {}, {}
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}, {}


# --- Sluice --------------------------------------------------------------------------------


def run_sluice(case: Case, work_dir: Path) -> EngineResult:
    """The case through Sluice's Transform component, called as tests call it."""
    import json

    from sluice import tft
    from sluice.components.artifacts import Examples, Schema, TransformGraph
    from sluice.components.transform import run_transform

    root = work_dir / "sluice" / case.name
    splits = {"train": case.table} if case.eval_table is None else {"train": case.table, "eval": case.eval_table}
    for split, rows in splits.items():
        (root / "examples" / f"Split-{split}").mkdir(parents=True)
        pq.write_table(rows, root / "examples" / f"Split-{split}" / "part-00000-of-00001.parquet")
    (root / "schema").mkdir()
    (root / "schema" / "schema.pbtxt").write_text(case.schema_text)
    module = root / "module.py"
    factory = case.make_preprocessing_fn
    module.write_text(f"from sluice import tft\nfrom {factory.__module__} import {factory.__qualname__} as make\n"
                      "preprocessing_fn = make(tft)\n")
    outs = {}
    for name, cls in (("transform_graph", TransformGraph), ("transformed_examples", Examples),
                      ("post_transform_schema", Schema)):
        (root / name).mkdir()
        outs[name] = cls(uri=str(root / name))
    started = time.perf_counter()
    run_transform(examples=Examples(uri=str(root / "examples"), split_names=list(splits)),
                  schema=Schema(uri=str(root / "schema")), module_file=str(module),
                  analyze_splits=["train"], transform_splits=list(splits), **outs)
    seconds = time.perf_counter() - started
    table = pq.read_table(outs["transformed_examples"].split_uri("train"))
    outputs = {name: [_flat(v) for v in table.column(name).to_pylist()] for name in table.column_names}
    eval_outputs = {}
    if "eval" in splits:
        evaluated = pq.read_table(outs["transformed_examples"].split_uri("eval"))
        eval_outputs = {name: [_flat(v) for v in evaluated.column(name).to_pylist()] for name in evaluated.column_names}
    dtypes = {name: _arrow_dtype(table.schema.field(name).type) for name in table.column_names}
    graph = Path(outs["transform_graph"].uri)
    assets, sizes = _assets(graph / "transform_fn" / "assets")
    output = getattr(tft, "TFTransformOutput", tft.TransformOutput)(str(graph))
    for filename in assets:
        sizes[filename] = output.vocabulary_size_by_name(filename)
    analysis = json.loads((graph / "analysis.json").read_text())
    specs = describe_feature_spec(output.transformed_feature_spec())
    result = EngineResult(outputs, dtypes, assets, sizes, specs, seconds, query_output(output, dtypes, case.asset_keys),
                          analysis=analysis, eval_outputs=eval_outputs)
    try:
        raw_spec = output.raw_feature_spec()
        serialized = tft_serving.serialized_examples(case.table, raw_spec)
        result.served = tft_serving.served_outputs(output, raw_spec, serialized)
    except Exception as exc:  # noqa: BLE001 - reported as a difference, with the other ones
        result.serving_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
    return result


def _arrow_dtype(arrow_type: pa.DataType) -> str:
    while pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) or \
            pa.types.is_fixed_size_list(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_integer(arrow_type):
        return "int64"
    if pa.types.is_floating(arrow_type):
        return "float32"
    return "string"


if __name__ == "__main__":
    import sys

    from tests.oracle import tft_oracle  # by name, so results pickle as tests.oracle.tft_oracle classes

    tft_oracle._main(*sys.argv[1:4])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip the interpreter teardown that can crash after a tf.Transform run
