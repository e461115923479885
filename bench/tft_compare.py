"""Sluice's Transform against tensorflow-transform 1.21, side by side, on the same rows.

One ``preprocessing_fn`` body per case, written as a tf.Transform user writes it, is built by a
factory taking the ``tft`` module, so the same body runs with ``tensorflow_transform`` and with
``sluice.tft``. Each engine does what TFX's Transform does: read the Parquet examples, analyze
the train split, write the transform graph, transform train and eval, write the outputs:

- tensorflow-transform: ``tft_beam.AnalyzeAndTransformDataset`` on train and
  ``tft_beam.TransformDataset`` on eval, ``WriteTransformFn``, on Beam's in-process FnApiRunner,
  reading the Parquet row groups as TFX's decoders hand them over (every column a list column)
  and writing its output record batches as Parquet;
- Sluice: the Transform component's run function, ``run_transform``, on the same Examples.

Each run is a fresh subprocess (imports included, as a component pays them); its wall time
and peak RSS (``wait4``'s ``ru_maxrss``) are measured from outside, and it reports the seconds
after its imports ("run s"). Engines alternate within each repeat; medians are printed.

Cases: ``taxi`` (the Chicago taxi CSV through Sluice's CsvExampleGen, replicated ``--factor``
times by ``bench.make_data``) and ``list`` (generated: a fixed-length ``list<float>`` of 784
image-like values and a ``list<string>`` of tokens, 20,000 rows per factor).

    .venv/bin/python -m bench.tft_compare --case taxi --factor 1
    .venv/bin/python -m bench.tft_compare --case taxi --factor 100
    .venv/bin/python -m bench.tft_compare --case list
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TAXI_CSV = REPO.parent / "shared" / "data" / "chicago_taxi" / "data.csv"
DATA_DIR = REPO / "bench" / "out" / "tft_compare"
ENGINES = ("tft", "sluice")
LIST_ROWS = 20_000
IMAGE_SIZE = 784


# --- the preprocessing, one body for both engines -------------------------------------------


def taxi_preprocessing(tft):
    """TFX's taxi preprocessing (as pipelines/taxi/preprocessing.py), for the given ``tft`` module."""
    import tensorflow as tf

    dense_float_keys = ["trip_miles", "fare", "trip_seconds"]
    vocab_keys = ["payment_type", "company"]
    bucket_keys = ["pickup_latitude", "pickup_longitude", "dropoff_latitude", "dropoff_longitude"]
    categorical_keys = ["trip_start_hour", "trip_start_day", "trip_start_month", "pickup_census_tract",
                        "dropoff_census_tract", "pickup_community_area", "dropoff_community_area"]

    def fill_in_missing(x):
        if not isinstance(x, tf.sparse.SparseTensor):
            return x
        default_value = "" if x.dtype == tf.string else 0
        dense = tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default_value)
        return tf.squeeze(dense, axis=1)

    def preprocessing_fn(inputs):
        outputs = {}
        for key in dense_float_keys:
            outputs[key + "_xf"] = tft.scale_to_z_score(fill_in_missing(inputs[key]))
        for key in vocab_keys:
            outputs[key + "_xf"] = tft.compute_and_apply_vocabulary(
                fill_in_missing(inputs[key]), top_k=1000, num_oov_buckets=10)
        for key in bucket_keys:
            outputs[key + "_xf"] = tft.bucketize(fill_in_missing(inputs[key]), 10)
        for key in categorical_keys:
            outputs[key + "_xf"] = fill_in_missing(inputs[key])
        fare, tips = fill_in_missing(inputs["fare"]), fill_in_missing(inputs["tips"])
        outputs["tips_xf"] = tf.where(
            tf.math.is_nan(fare), tf.cast(tf.zeros_like(fare), tf.int64),
            tf.cast(tf.greater(tips, tf.multiply(fare, tf.constant(0.2))), tf.int64))
        return outputs

    return preprocessing_fn


def list_preprocessing(tft):
    """An image-like fixed-length float list scaled two ways, and a token list through a vocabulary."""

    def preprocessing_fn(inputs):
        image = inputs["image_floats"]  # dense [batch, 784]: fixed shape, always present
        return {
            "image_01": tft.scale_to_0_1(image),
            "image_z": tft.scale_to_z_score(image),
            "token_ids": tft.compute_and_apply_vocabulary(inputs["tokens"], top_k=2000, num_oov_buckets=1),
        }

    return preprocessing_fn


PREPROCESSING = {"taxi": taxi_preprocessing, "list": list_preprocessing}


def sluice_taxi_fn(inputs):
    """The taxi body with ``sluice.tft`` (Sluice's Transform takes it by dotted name)."""
    from sluice import tft

    return taxi_preprocessing(tft)(inputs)


def sluice_list_fn(inputs):
    """The list body with ``sluice.tft``."""
    from sluice import tft

    return list_preprocessing(tft)(inputs)


# --- the data: Parquet Examples (Split-train, Split-eval) and a schema -----------------------


def _write_schema(folder: Path, features: list[str]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "schema.pbtxt"
    path.write_text("".join(f"feature {{ {text} }}\n" for text in features))
    return str(path)


def prepare_taxi(factor: int, root: Path) -> Path:
    """Sluice's CsvExampleGen on the taxi CSV replicated ``factor`` times; a schema typed from it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench.make_data import make_replicated_csv
    from sluice.components.artifacts import Examples
    from sluice.components.example_gen.component import csv_example_gen

    folder = root / f"taxi_{factor}x"
    if (folder / "schema" / "schema.pbtxt").is_file():
        return folder
    csv_dir = make_replicated_csv(str(TAXI_CSV), factor, str(root / "csv")) if factor > 1 else str(TAXI_CSV.parent)
    (folder / "examples").mkdir(parents=True, exist_ok=True)
    csv_example_gen(Examples(uri=str(folder / "examples")), input_base=csv_dir)
    shard = next((folder / "examples" / "Split-train").glob("*.parquet"))
    kinds = []
    for field in pq.read_schema(shard):
        value_type = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
        kind = "INT" if pa.types.is_integer(value_type) else "FLOAT" if pa.types.is_floating(value_type) else "BYTES"
        kinds.append(f'name: "{field.name}" type: {kind}')
    _write_schema(folder / "schema", kinds)
    return folder


def list_table(rows: int, seed: int = 0):
    """``image_floats``: 784 values in 0..255, ~80% zeros; ``tokens``: 0..~30 Zipf-distributed words."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (rows, IMAGE_SIZE)).astype(np.float32)
    pixels[rng.random((rows, IMAGE_SIZE)) < 0.8] = 0.0
    image = pa.ListArray.from_arrays(pa.array(np.arange(rows + 1, dtype=np.int32) * IMAGE_SIZE),
                                     pa.array(pixels.ravel()))
    lengths = rng.poisson(12, rows)
    words = np.char.add("w", np.minimum(rng.zipf(1.3, lengths.sum()), 5000).astype(str))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    tokens = pa.ListArray.from_arrays(pa.array(offsets), pa.array(words.tolist(), pa.string()))
    return pa.table({"image_floats": image, "tokens": tokens})


def prepare_list(factor: int, root: Path, rows: int = LIST_ROWS) -> Path:
    """Generated list-column Examples, two rows of three in train, one in eval."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = root / f"list_{rows * factor}"
    if (folder / "schema" / "schema.pbtxt").is_file():
        return folder
    table = list_table(rows * factor)
    train = np.arange(table.num_rows) % 3 != 0
    for split, mask in (("train", train), ("eval", ~train)):
        (folder / "examples" / f"Split-{split}").mkdir(parents=True, exist_ok=True)
        pq.write_table(table.filter(pa.array(mask)), folder / "examples" / f"Split-{split}" / "part-00000.parquet",
                       row_group_size=10_000)
    _write_schema(folder / "schema", [
        f'name: "image_floats" type: FLOAT shape {{ dim {{ size: {IMAGE_SIZE} }} }} presence {{ min_fraction: 1 }}',
        'name: "tokens" type: BYTES',
    ])
    return folder


# --- one engine, in its own process ------------------------------------------------------------


def to_tfx_batch(table, arrow_schema):
    """A Parquet row group as TFX's example decoders hand it over: every column a list column of
    the schema's value type, a null scalar an empty list."""
    import numpy as np
    import pyarrow as pa

    columns = []
    for field in arrow_schema:
        column = table.column(field.name).combine_chunks()
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            columns.append(column.cast(field.type))
            continue
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        valid = column.is_valid().to_numpy(zero_copy_only=False)
        offsets = np.concatenate([[0], np.cumsum(valid)]).astype(np.int32)
        values = column.drop_null().cast(field.type.value_type)
        columns.append(pa.ListArray.from_arrays(pa.array(offsets), values))
    return pa.RecordBatch.from_arrays(columns, schema=arrow_schema)


def _tft_inputs(schema_file: str):
    """The raw schema's TensorAdapterConfig (tf.Transform's fixed/var-len choice) and Arrow schema."""
    import pyarrow as pa
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tfx_bsl.tfxio import tensor_adapter, tensor_representation_util

    schema = text_format.Parse(Path(schema_file).read_text(), schema_pb2.Schema())
    types_ = {schema_pb2.INT: pa.int64(), schema_pb2.FLOAT: pa.float32(), schema_pb2.BYTES: pa.binary()}
    arrow_schema = pa.schema([pa.field(f.name, pa.list_(types_[f.type])) for f in schema.feature])
    representations = tensor_representation_util.InferTensorRepresentationsFromSchema(schema)
    return tensor_adapter.TensorAdapterConfig(arrow_schema, representations), arrow_schema


def _parquet_writer_fn():
    import uuid

    import apache_beam as beam
    import pyarrow.parquet as pq

    class WriteRecordBatches(beam.DoFn):
        """tf.Transform's output record batches, one Parquet file per bundle."""

        def __init__(self, folder):
            self._folder = folder

        def start_bundle(self):
            self._writer = None

        def process(self, element):
            batch = element[0]
            if self._writer is None:
                os.makedirs(self._folder, exist_ok=True)
                path = os.path.join(self._folder, f"part-{uuid.uuid4().hex}.parquet")
                self._writer = pq.ParquetWriter(path, batch.schema)
            self._writer.write_batch(batch)

        def finish_bundle(self):
            if self._writer is not None:
                self._writer.close()

    return WriteRecordBatches


def run_tft(case: str, data: Path, out: Path) -> None:
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    config, arrow_schema = _tft_inputs(str(data / "schema" / "schema.pbtxt"))
    writer = _parquet_writer_fn()

    def read(pipeline, split):
        pattern = str(data / "examples" / f"Split-{split}" / "*.parquet")
        return (pipeline | f"Read[{split}]" >> beam.io.ReadFromParquetBatched(pattern)
                | f"Decode[{split}]" >> beam.Map(to_tfx_batch, arrow_schema))

    with beam.Pipeline(runner=FnApiRunner()) as pipeline, tft_beam.Context(temp_dir=str(out / "tmp")):
        (train, _), transform_fn = ((read(pipeline, "train"), config)
                                    | tft_beam.AnalyzeAndTransformDataset(PREPROCESSING[case](tft),
                                                                          output_record_batches=True))
        eval_data, _ = ((read(pipeline, "eval"), config), transform_fn) | tft_beam.TransformDataset(
            output_record_batches=True)
        _ = transform_fn | tft_beam.WriteTransformFn(str(out / "transform_graph"))
        _ = train | "Write[train]" >> beam.ParDo(writer(str(out / "transformed" / "Split-train")))
        _ = eval_data | "Write[eval]" >> beam.ParDo(writer(str(out / "transformed" / "Split-eval")))


def run_sluice(case: str, data: Path, out: Path) -> None:
    from sluice.components.artifacts import Examples, Schema, TransformGraph
    from sluice.components.transform import run_transform

    outs = {}
    for name, cls in (("transform_graph", TransformGraph), ("transformed_examples", Examples),
                      ("post_transform_schema", Schema)):
        (out / name).mkdir(parents=True)
        outs[name] = cls(uri=str(out / name))
    examples = Examples(uri=str(data / "examples"), split_names=["train", "eval"], file_format="parquet")
    run_transform(examples=examples, schema=Schema(uri=str(data / "schema")),
                  preprocessing_fn=f"bench.tft_compare.sluice_{case}_fn", **outs)


def _rows_written(folder: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(path).num_rows for path in folder.rglob("*.parquet"))


def child(engine: str, case: str, data: Path, out: Path) -> dict:
    """Imports the engine (timed apart), runs it, returns its figures. The engine's import is
    ``tensorflow_transform.beam`` (which imports its whole engine) for tf.Transform, and for Sluice
    the Transform component's warm imports, which a runner imports before the component runs.

    Both engines run in a process set up as ``sluice run`` sets up its own (``prepare_process``:
    the heap keeps big blocks instead of page-faulting them afresh; ``prepare_executor``: the
    workarounds for TensorFlow components, such as SavedModel signatures wrapped without
    AutoGraph); tf.Transform gets them too, so the comparison is of the engines alone.
    """
    from sluice.orchestration.runtime import prepare_executor, prepare_process

    prepare_process()
    started = time.perf_counter()
    import apache_beam  # noqa: F401 - both engines need Beam and TensorFlow; their import is timed apart
    import tensorflow  # noqa: F401

    if engine == "tft":
        import tensorflow_transform.beam  # noqa: F401

        prepare_executor(("tensorflow",))
    else:  # what a runner does before the component runs: its warm imports, and their workarounds
        from sluice.components.transform import Transform

        prepare_executor(Transform.warm_imports)
    imported = time.perf_counter()
    (run_tft if engine == "tft" else run_sluice)(case, data, out)
    finished = time.perf_counter()
    written = out / ("transformed" if engine == "tft" else "transformed_examples")
    return {"import_s": imported - started, "run_s": finished - imported, "rows_out": _rows_written(written)}


# --- the side-by-side driver -------------------------------------------------------------------


def measure(engine: str, case: str, data: Path, scratch: Path) -> dict:
    """One child process: wall seconds and peak RSS from outside, its own figures from its last line."""
    out = Path(tempfile.mkdtemp(prefix=f"{engine}-", dir=scratch))
    command = [sys.executable, "-m", "bench.tft_compare", "--child", engine, "--case", case,
               "--data", str(data), "--out", str(out)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    with open(out.parent / f"{out.name}.log", "w+") as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
        stdout = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            log.seek(0)
            tail = log.read()[-2500:]
            raise SystemExit(f"tft_compare: {engine} on {case} failed (exit {process.returncode}):\n{tail}")
    shutil.rmtree(out, ignore_errors=True)
    figures = json.loads(stdout.strip().splitlines()[-1])
    return {**figures, "wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024}


def compare(case: str, factor: int, repeats: int, rows: int = LIST_ROWS, data_dir: Path = DATA_DIR,
            engines: tuple[str, ...] = ENGINES) -> dict:
    """``repeats`` rounds of both engines, alternating; medians and tft/Sluice ratios."""
    data_dir.mkdir(parents=True, exist_ok=True)
    data = prepare_taxi(factor, data_dir) if case == "taxi" else prepare_list(factor, data_dir, rows)
    runs = {engine: [] for engine in engines}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="tft-compare-") as scratch:
        for _ in range(repeats):
            for engine in engines:
                runs[engine].append(measure(engine, case, data, Path(scratch)))
    load.append(os.getloadavg()[0])
    medians = {engine: {key: statistics.median(run[key] for run in runs[engine])
                        for key in ("wall_s", "run_s", "import_s", "peak_rss_mb", "rows_out")} for engine in engines}
    ratios = None
    if len(engines) == 2:
        if medians["tft"]["rows_out"] != medians["sluice"]["rows_out"]:
            raise SystemExit(f"tft_compare: the engines wrote different row counts: {medians}")
        ratios = {key: medians["tft"][key] / medians["sluice"][key] for key in ("wall_s", "run_s")}
    return {"case": case, "factor": factor, "repeats": repeats, "medians": medians, "ratios": ratios,
            "runs": runs, "load_1min": load}


def table(result: dict) -> str:
    """The result as a Markdown table."""
    lines = ["| case | engine | n | rows out | process wall s | run s (after imports) | imports s | peak RSS MB |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    label = f"{result['case']} {result['factor']}x"
    names = {"tft": "tensorflow-transform 1.21", "sluice": "Sluice Transform"}
    for engine in result["medians"]:
        m = result["medians"][engine]
        lines.append(f"| {label} | {names[engine]} | {result['repeats']} | {int(m['rows_out']):,} | {m['wall_s']:.1f} "
                     f"| {m['run_s']:.2f} | {m['import_s']:.1f} | {m['peak_rss_mb']:,.0f} |")
    if r := result["ratios"]:
        lines.append(f"| {label} | **tft / Sluice** | | | **{r['wall_s']:.1f}x** | **{r['run_s']:.1f}x** | | |")
    start, end = result["load_1min"]
    lines.append(f"\n1-minute load average: {start:.2f} at start, {end:.2f} at end.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=sorted(PREPROCESSING), default="taxi")
    parser.add_argument("--factor", type=int, default=1, help="taxi: replicas of the CSV; list: x 20,000 rows")
    parser.add_argument("--repeats", type=int, default=None, help="default 3 at factor 1, else 1")
    parser.add_argument("--rows", type=int, default=LIST_ROWS, help=argparse.SUPPRESS)  # tiny data for the test
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="where the generated data is kept")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated, of tft,sluice")
    parser.add_argument("--json", help="also write the result (every run) here")
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.case, args.data, args.out)))
        return 0
    if args.factor < 1:
        parser.error("--factor must be >= 1")
    engines = tuple(args.engines.split(","))
    if not engines or set(engines) - set(ENGINES) or len(set(engines)) != len(engines):
        parser.error(f"--engines: expected a comma-separated choice of {','.join(ENGINES)}, got {args.engines!r}")
    repeats = args.repeats or (3 if args.factor == 1 else 1)
    result = compare(args.case, args.factor, repeats, args.rows, args.data_dir, engines)
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
