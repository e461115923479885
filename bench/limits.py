"""The hardware limit of each measured component: the same work done bare, in one process.

- ``csv_read`` (limit of CsvExampleGen): ``pyarrow.csv.read_csv`` of the input CSV
  (pyarrow's defaults, i.e. its own thread pool).
- ``parquet_stats`` (limit of StatisticsGen): ``pyarrow.parquet.read_table`` of
  ExampleGen's Parquet output (all splits), then per column null count, min/max and,
  for numbers, the mean.
- ``csv_to_parquet`` (a reference beside CsvExampleGen, not its limit): ``read_csv`` plus
  ``pyarrow.parquet.write_table`` (snappy) of the whole table, i.e. the I/O ExampleGen does.
- ``keras_fit`` (limit of Trainer): ``pipelines/taxi/model.py``'s ``build_keras_model``
  on this run's Transform output, ``fit`` on in-memory numpy arrays of the transformed
  train split: batch 40, 4 epochs of 250 steps (1000 steps), validating 150 steps of the
  eval split per epoch, as the taxi ``run_fn`` does. Only ``fit`` is timed.
- ``taxi_numpy`` (limit of Transform): ``pipelines/taxi/preprocessing.py``'s preprocessing written
  in numpy/pyarrow over ExampleGen's output: analysis over the train split (z-score means and
  deviations, top-1000 vocabularies, 10-bucket quantile boundaries), then every split transformed
  (z-scores, vocabulary ids with one OOV id, bucket ids, categoricals with 0 for missing, the
  "tips > 20% of the fare" label) and written as snappy Parquet; analysis, apply and write timed.
- ``evaluator_floor`` (limit of Evaluator): ``bench/evaluator.py``'s floor: the Trainer's serving
  model called on the raw eval split in the Evaluator's batch sizes, the label and accuracy, AUC and
  log loss in numpy; model loading and tracing included, as in the component.
- ``keras_predict`` (a reference beside Evaluator): that model's ``predict_on_batch`` over the whole
  transformed eval split in 4096-row batches (in memory, as the Evaluator batches), after a
  warm-up call that traces it (the Evaluator's SavedModel comes traced). Keras'
  ``model.predict`` is not used: on this model it is ~3x slower and holds ~2 GB more per
  100k rows than calling the model batch by batch.

The pyarrow ones run twice and the second run counts (the first pays one-off kernel set-up
and warms the page cache, which the pipeline run just before also did). Each reports wall
seconds and the process's RSS peak so far. Run as a fresh process per benchmark repeat by
``bench/run.py``:

    .venv/bin/python -m bench.limits --csv data.csv --examples EXAMPLES_URI \\
        --transform-graph GRAPH_URI --transformed TRANSFORMED_URI --model MODEL_URI
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script: bench.*

TRAIN_STEPS = 1000
EPOCHS = 4
EVAL_STEPS = 150
BATCH_SIZE = 40
PREDICT_BATCH = 4096


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _parquet_files(uri: str, split: str | None = None) -> list[str]:
    pattern = os.path.join(uri, f"Split-{split}" if split else "Split-*", "*.parquet")
    files = sorted(glob.glob(pattern))
    if not files:
        raise SystemExit(f"bench.limits: no Parquet files at {pattern}")
    return files


def csv_read(path: str) -> dict:
    import pyarrow.csv as pacsv

    started = time.perf_counter()
    table = pacsv.read_csv(path)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": table.num_rows, "peak_rss": _peak_rss_bytes()}


def csv_to_parquet(path: str, scratch: str) -> dict:
    """Reference, not a limit: read_csv plus writing it as one snappy Parquet file (ExampleGen's I/O)."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    target = os.path.join(scratch, "bench-limit.parquet")
    started = time.perf_counter()
    table = pacsv.read_csv(path)
    pq.write_table(table, target, compression="snappy")
    seconds = time.perf_counter() - started
    os.remove(target)
    return {"seconds": seconds, "rows": table.num_rows, "peak_rss": _peak_rss_bytes()}


def parquet_stats(examples_uri: str) -> dict:
    """Reads the Parquet and computes the cheap statistics every column needs."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    started = time.perf_counter()
    rows = 0
    summary = {}
    for path in _parquet_files(examples_uri):
        table = pq.read_table(path)
        rows += table.num_rows
        for name in table.column_names:
            column = table.column(name)
            stats = {"nulls": column.null_count, "min_max": pc.min_max(column)}
            if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
                stats["mean"] = pc.mean(column)
            summary[f"{path}:{name}"] = stats
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": rows, "peak_rss": _peak_rss_bytes()}


def _filled(table, name: str):
    """A column as numpy with missing values 0 ('' for strings), as the taxi ``_fill_in_missing``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = table.column(name)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return pc.fill_null(column, "")
    return pc.fill_null(column.cast(pa.float64()), 0.0).to_numpy()


def _taxi_apply(table, stats: dict):
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from sluice.pipelines.taxi import preprocessing as taxi

    out = {}
    for key in taxi.DENSE_FLOAT_FEATURE_KEYS:
        mean, std = stats[key]
        out[taxi.transformed_name(key)] = (_filled(table, key) - mean) / (std if std > 0 else 1.0)
    for key in taxi.VOCAB_FEATURE_KEYS:
        ids = pc.index_in(_filled(table, key), value_set=stats[key])
        out[taxi.transformed_name(key)] = pc.fill_null(ids, taxi.VOCAB_SIZE).cast(pa.int64())
    for key in taxi.BUCKET_FEATURE_KEYS:
        out[taxi.transformed_name(key)] = np.searchsorted(stats[key], _filled(table, key), side="right")
    for key in taxi.CATEGORICAL_FEATURE_KEYS:
        out[taxi.transformed_name(key)] = _filled(table, key).astype(np.int64)
    fare = table.column(taxi.FARE_KEY).cast(pa.float64()).to_numpy(zero_copy_only=False)
    tips = _filled(table, taxi.LABEL_KEY)
    out[taxi.transformed_name(taxi.LABEL_KEY)] = np.where(np.isnan(fare), 0, tips > 0.2 * np.nan_to_num(fare)) \
        .astype(np.int64)
    return pa.table(out)


def _read_split(examples_uri: str, split: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pa.concat_tables([pq.read_table(path) for path in _parquet_files(examples_uri, split)])


def taxi_numpy(examples_uri: str, scratch: str) -> dict:
    """The taxi preprocessing in numpy/pyarrow: analysis over train, then every split transformed and written."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from sluice.pipelines.taxi import preprocessing as taxi

    started = time.perf_counter()
    train = _read_split(examples_uri, "train")
    stats: dict = {}
    for key in taxi.DENSE_FLOAT_FEATURE_KEYS:
        values = _filled(train, key)
        stats[key] = (values.mean(), values.std())
    for key in taxi.VOCAB_FEATURE_KEYS:
        counts = pc.value_counts(_filled(train, key))
        order = np.argsort(-counts.field("counts").to_numpy(), kind="stable")[:taxi.VOCAB_SIZE]
        stats[key] = counts.field("values").take(order)
    quantiles = np.linspace(0, 1, taxi.FEATURE_BUCKET_COUNT + 1)[1:-1]
    for key in taxi.BUCKET_FEATURE_KEYS:
        stats[key] = np.quantile(_filled(train, key), quantiles)
    analyze_seconds = time.perf_counter() - started
    rows = 0
    del train
    for split in ("train", "eval"):
        table = _read_split(examples_uri, split)
        rows += table.num_rows
        target = os.path.join(scratch, f"bench-limit-transformed-{split}.parquet")
        pq.write_table(_taxi_apply(table, stats), target, compression="snappy")
        os.remove(target)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "analyze_seconds": analyze_seconds, "rows": rows, "peak_rss": _peak_rss_bytes()}


def evaluator_floor(model_uri: str, examples_uri: str) -> dict:
    from bench.evaluator import floor

    seconds = floor(model_uri, examples_uri, "eval")
    return {"seconds": seconds, "peak_rss": _peak_rss_bytes()}


def _arrays(files: list[str]) -> dict:
    """Transformed examples as dense numpy columns (nulls as 0), as the Trainer's dataset gives them."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pa.concat_tables([pq.read_table(path) for path in files])
    arrays = {}
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        if pa.types.is_floating(column.type):
            arrays[name] = pc.fill_null(column, 0.0).to_numpy().astype("float32")
        elif pa.types.is_integer(column.type):
            arrays[name] = pc.fill_null(column.cast(pa.int64()), 0).to_numpy()
    return arrays


def _rows(arrays: dict, count: int, seed: int) -> dict:
    """``count`` rows drawn at random (repeating when there are fewer)."""
    import numpy as np

    n = len(next(iter(arrays.values())))
    index = np.random.default_rng(seed).choice(n, size=count, replace=n < count)
    return {name: values[index] for name, values in arrays.items()}


def keras_fit_and_predict(transform_graph_uri: str, transformed_uri: str) -> dict:
    import numpy as np

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from sluice.components.tft import TransformOutput
    from sluice.pipelines.taxi import model as taxi_model

    train = _arrays(_parquet_files(transformed_uri, "train"))
    evaluation = _arrays(_parquet_files(transformed_uri, "eval"))
    label = taxi_model.LABEL_KEY
    steps_per_epoch = TRAIN_STEPS // EPOCHS
    train_rows = _rows(train, steps_per_epoch * BATCH_SIZE, seed=0)
    validation_rows = _rows(evaluation, EVAL_STEPS * BATCH_SIZE, seed=1)

    started = time.perf_counter()
    model = taxi_model.build_keras_model(TransformOutput(transform_graph_uri))
    build_seconds = time.perf_counter() - started
    inputs = set(model.input_names) if hasattr(model, "input_names") else None

    def features(arrays):
        return {k: v for k, v in arrays.items() if k != label and (inputs is None or k in inputs)}

    started = time.perf_counter()
    model.fit(features(train_rows), train_rows[label], batch_size=BATCH_SIZE, epochs=EPOCHS,
              validation_data=(features(validation_rows), validation_rows[label]),
              validation_batch_size=BATCH_SIZE, verbose=0)
    fit_seconds = time.perf_counter() - started
    fit_peak = _peak_rss_bytes()

    # The model called on 4096-row batches (predict_on_batch), as the Evaluator batches its rows.
    # Not model.predict(): with this model Keras 3's predict() was ~3x slower and held ~2 GB more
    # per 100k rows (measured on the 100x data), so it is no limit.
    eval_features = features(evaluation)
    rows = len(evaluation[label])
    model.predict_on_batch({k: v[:PREDICT_BATCH] for k, v in eval_features.items()})  # warm: traces the call
    started = time.perf_counter()
    predictions = [model.predict_on_batch({k: v[i:i + PREDICT_BATCH] for k, v in eval_features.items()})
                   for i in range(0, rows, PREDICT_BATCH)]
    predict_seconds = time.perf_counter() - started
    predictions = np.concatenate(predictions) if predictions else np.zeros([0])
    return {
        "keras_fit": {"seconds": fit_seconds, "build_seconds": build_seconds, "steps": TRAIN_STEPS,
                      "rows": len(train[label]), "peak_rss": fit_peak},
        "keras_predict": {"seconds": predict_seconds, "rows": int(len(predictions)),
                          "peak_rss": _peak_rss_bytes()},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Bare-pyarrow / bare-Keras limits of the taxi components.")
    parser.add_argument("--csv", required=True)
    parser.add_argument("--examples", required=True, help="CsvExampleGen output URI")
    parser.add_argument("--transform-graph", required=True)
    parser.add_argument("--transformed", required=True, help="Transform's transformed_examples URI")
    parser.add_argument("--model", help="the Trainer's model URI (the Evaluator's floor; skipped without)")
    parser.add_argument("--out", help="write the JSON here (default: stdout)")
    args = parser.parse_args(argv)
    # pyarrow-only limits first, before TensorFlow is imported, so their RSS peak is their own.
    # Each is run twice and the second timed: the first pays pyarrow's one-off kernel set-up.
    csv_read(args.csv)
    parquet_stats(args.examples)
    results = {"csv_read": csv_read(args.csv), "parquet_stats": parquet_stats(args.examples)}
    scratch = os.path.dirname(os.path.abspath(args.out or "."))
    results["csv_to_parquet"] = csv_to_parquet(args.csv, scratch)
    results["taxi_numpy"] = taxi_numpy(args.examples, scratch)
    results.update(keras_fit_and_predict(args.transform_graph, args.transformed))
    if args.model:  # after TensorFlow's import (in the fit above), which the pipeline's Evaluator also finds done
        results["evaluator_floor"] = evaluator_floor(args.model, args.examples)
    text = json.dumps(results)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
