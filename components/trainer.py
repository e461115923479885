"""Trainer: runs a user module's ``run_fn(fn_args)`` to train and export a model.

As in TFX, the module file defines ``run_fn(fn_args: FnArgs)``; it reads
``fn_args.train_files`` / ``fn_args.eval_files`` (Parquet files, see
:func:`parquet_dataset`), builds its model under ``fn_args.strategy`` and saves
a SavedModel with a ``serving_default`` signature (serialized ``tf.Example`` in,
input name ``examples``) into ``fn_args.serving_model_dir``.

A minimal module file::

    import tensorflow as tf

    def run_fn(fn_args):
        train = fn_args.dataset(fn_args.train_files, batch_size=32, label_key="label")
        with fn_args.strategy.scope():
            model = ...  # a Keras model over the feature dict
        model.fit(train, steps_per_epoch=fn_args.train_steps, callbacks=fn_args.callbacks())
        tf.saved_model.save(model_with_signature, fn_args.serving_model_dir)

TensorBoard logs go to ``<model_run.uri>/logs``; with a tracking URI, params,
per-epoch metrics and the SavedModel are logged to the pipeline's MLflow run.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
import sys
import tempfile
from typing import Any, Callable, Literal

from sluice.components.artifacts import Examples, Model, ModelRun, Schema, TransformGraph
from sluice.components.sdk import (
    ComponentError, ExecutionContext, Input, ModuleFile, Output, component, module_function, release_memory,
    user_code_line,
)

# Above this many rows, or this many (uncompressed Parquet) bytes, the input is streamed
# instead of held in memory.
IN_MEMORY_ROW_LIMIT = 2_000_000
IN_MEMORY_BYTE_LIMIT = 256 * 1024 * 1024
# Also streamed when it holds more than this many times the rows training will read
# (``rows_needed``): loading 1M rows to use 40k costs ~0.5 GB and seconds for nothing.
STREAM_WHEN_ROWS_EXCEED_NEEDED = 4
# Rows read from Parquet per chunk when streaming.
STREAM_CHUNK_ROWS = 65_536
# Rows gathered (from row groups taken in random order) and shuffled together when streaming:
# the bound on the streamed input's memory.
STREAM_SHUFFLE_ROWS = 262_144


# --- the input pipeline ------------------------------------------------------


def split_files(examples: Examples, split: str) -> list[str]:
    """The Parquet files of one split, sorted; a ComponentError if there are none."""
    pattern = examples.parquet_pattern(split)
    files = sorted(glob.glob(pattern))
    if not files:
        raise ComponentError(f"Trainer: no Parquet files for split '{split}' at {pattern}")
    return files


def _column_to_numpy(column, name: str, path: str):
    """One Arrow column as a dense numpy array that TF accepts; nulls become 0 / ''."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = column.type
    if pa.types.is_floating(kind):
        return pc.fill_null(column, 0.0).to_numpy().astype(np.float32, copy=False)
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return pc.fill_null(column.cast(pa.int64()), 0).to_numpy()
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind) \
            or pa.types.is_large_binary(kind):
        return np.asarray(pc.fill_null(column.cast(pa.large_binary()), b"").to_pylist(), dtype=object)
    raise ComponentError(f"Trainer: column '{name}' in {path} has type {kind}, which is not a scalar "
                         f"int, float or string column")


def _table_to_arrays(table, path: str) -> dict[str, Any]:
    columns = {name: table.column(name) for name in table.column_names}
    return {name: _column_to_numpy(column.combine_chunks() if hasattr(column, "combine_chunks") else column,
                                   name, path)
            for name, column in columns.items()}


def _check_columns(files: list[str], label_key: str | None, feature_keys: list[str] | None) -> list[str]:
    """Validates the requested columns against every file's schema; returns the columns to read."""
    import pyarrow.parquet as pq

    columns = None
    for path in files:
        names = pq.read_schema(path).names
        if label_key is not None and label_key not in names:
            raise ComponentError(f"Trainer: label '{label_key}' is not a column of {path} "
                                 f"(columns: {', '.join(names)})")
        for key in feature_keys or []:
            if key not in names:
                raise ComponentError(f"Trainer: feature '{key}' is not a column of {path}")
        wanted = list(feature_keys) if feature_keys is not None else [n for n in names if n != label_key]
        if label_key is not None and label_key not in wanted:
            wanted.append(label_key)
        columns = columns or wanted
    return columns


def _uncompressed_bytes(files: list[str], columns: list[str]) -> int:
    """The Parquet metadata's uncompressed size of ``columns`` (a cheap proxy for memory held)."""
    import pyarrow.parquet as pq

    wanted, total = set(columns), 0
    for path in files:
        metadata = pq.ParquetFile(path).metadata
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            for index in range(row_group.num_columns):
                chunk = row_group.column(index)
                if chunk.path_in_schema.split(".")[0] in wanted:
                    total += chunk.total_uncompressed_size
    return total


def _should_stream(total_rows: int, total_bytes: int, rows_needed: int | None) -> bool:
    if total_rows > IN_MEMORY_ROW_LIMIT or total_bytes > IN_MEMORY_BYTE_LIMIT:
        return True
    # Small inputs stay in memory (fast, fully shuffled) even when only a part is used.
    return rows_needed is not None and total_rows > STREAM_SHUFFLE_ROWS \
        and total_rows > STREAM_WHEN_ROWS_EXCEED_NEEDED * rows_needed


def parquet_dataset(
    files: list[str],
    batch_size: int,
    label_key: str | None = None,
    feature_keys: list[str] | None = None,
    shuffle: bool = True,
    repeat: bool = True,
    seed: int | None = None,
    rows_needed: int | None = None,
):
    """A ``tf.data.Dataset`` of batches read from Parquet files.

    Yields ``features`` (a dict of dense tensors ``[batch]``: float columns as
    float32, integer columns as int64, strings as tf.string; nulls as 0 / '') or
    ``(features, label)`` when ``label_key`` is given. Small inputs are held in
    memory and shuffled per epoch with one vectorized gather per batch. Inputs
    over ``IN_MEMORY_ROW_LIMIT`` rows or ``IN_MEMORY_BYTE_LIMIT`` bytes, or holding
    more than ``STREAM_WHEN_ROWS_EXCEED_NEEDED`` times ``rows_needed`` (about how
    many rows the consumer reads, e.g. steps x batch_size) are streamed: each pass
    takes the row groups in a new random order, and rows are shuffled within
    buffers of ``STREAM_SHUFFLE_ROWS`` (bounded memory). With ``repeat`` every batch
    is full.

    >>> ds = parquet_dataset(["/data/part-00000-of-00001.parquet"], 32, label_key="label")  # doctest: +SKIP
    >>> features, label = next(iter(ds))                                                      # doctest: +SKIP
    """
    import numpy as np
    import pyarrow.parquet as pq
    import tensorflow as tf

    if not files:
        raise ComponentError("Trainer: parquet_dataset got no files")
    columns = _check_columns(files, label_key, feature_keys)
    total_rows = sum(pq.ParquetFile(path).metadata.num_rows for path in files)
    if total_rows == 0:
        raise ComponentError(f"Trainer: the Parquet files hold no rows ({files[0]} ...)")

    def split_label(batch):
        if label_key is None:
            return batch
        features = {k: v for k, v in batch.items() if k != label_key}
        return features, batch[label_key]

    if not _should_stream(total_rows, _uncompressed_bytes(files, columns), rows_needed):
        arrays: dict[str, list] = {c: [] for c in columns}
        for path in files:
            # ParquetFile.read, not read_table: that imports pyarrow.dataset (~50 MB).
            for name, values in _table_to_arrays(pq.ParquetFile(path).read(columns=columns), path).items():
                arrays[name].append(values)
        tensors = {name: tf.constant(np.concatenate(parts)) for name, parts in arrays.items()}
        num_rows = total_rows

        # One vectorized gather per epoch, then rebatch (one slice copy per batch): no
        # per-row tf.data work.
        def epoch(_):
            if not shuffle:
                return tensors
            order = tf.random.shuffle(tf.range(num_rows, dtype=tf.int64), seed=seed)
            return {name: tf.gather(values, order) for name, values in tensors.items()}

        epochs = tf.data.Dataset.range(1).repeat() if repeat else tf.data.Dataset.range(1)
        # rebatch(n) == unbatch().batch(n); over endless epochs every batch is full.
        dataset = epochs.map(epoch).rebatch(batch_size)
        return dataset.map(split_label).prefetch(tf.data.AUTOTUNE)

    # Streaming: (file, row group) units in random order per pass, read in chunks, shuffled
    # together in buffers of STREAM_SHUFFLE_ROWS rows.
    first = _table_to_arrays(pq.ParquetFile(files[0]).read(columns=columns).slice(0, 1), files[0])
    signature = {name: tf.TensorSpec([None], tf.as_dtype(values.dtype) if values.dtype != object
                                     else tf.string) for name, values in first.items()}
    units = [(path, group) for path in files for group in range(pq.ParquetFile(path).metadata.num_row_groups)]
    chunk_rows, buffer_rows = STREAM_CHUNK_ROWS, STREAM_SHUFFLE_ROWS

    def chunks():
        rng = np.random.default_rng(seed)

        def emit(buffer):
            merged = {k: np.concatenate([part[k] for part in buffer]) for k in buffer[0]}
            if shuffle:
                order = rng.permutation(len(next(iter(merged.values()))))
                merged = {k: v[order] for k, v in merged.items()}
            return merged

        while True:
            order = rng.permutation(len(units)) if shuffle else range(len(units))
            buffer, held = [], 0
            for i in order:
                path, group = units[i]
                parquet = pq.ParquetFile(path)
                for record_batch in parquet.iter_batches(chunk_rows, row_groups=[group], columns=columns):
                    buffer.append(_table_to_arrays(record_batch, path))
                    held += record_batch.num_rows
                    if held >= buffer_rows:
                        yield emit(buffer)
                        buffer, held = [], 0
            if buffer:
                yield emit(buffer)
            if not repeat:
                return

    dataset = tf.data.Dataset.from_generator(chunks, output_signature=signature)
    dataset = dataset.rebatch(batch_size, drop_remainder=repeat)
    return dataset.map(split_label).prefetch(tf.data.AUTOTUNE)


# --- what run_fn receives ----------------------------------------------------


@dataclasses.dataclass
class DatasetOptions:
    """TFX's ``tfxio.TensorFlowDatasetOptions``, reduced to what Parquet needs."""

    batch_size: int
    label_key: str | None = None
    shuffle: bool = True
    num_epochs: int | None = None  # None: repeat forever


class DataAccessor:
    """TFX's ``fn_args.data_accessor``: ``tf_dataset_factory(files, options, schema)``.

    ``options`` is a :class:`DatasetOptions` or tfx_bsl's ``TensorFlowDatasetOptions``
    (its batch_size, label_key, shuffle, shuffle_seed and num_epochs are honoured).
    """

    def __init__(self, planned_steps: dict[tuple[str, ...], int] | None = None):
        # Steps the Trainer will take per file list (train_files -> train_steps, eval_files ->
        # eval_steps), so a dataset over far more rows than that is streamed, not loaded.
        self.planned_steps = dict(planned_steps or {})

    def rows_needed(self, files: list[str], batch_size: int) -> int | None:
        steps = self.planned_steps.get(tuple(files))
        return None if steps is None else steps * batch_size

    def tf_dataset_factory(self, files: list[str] | str, options: Any, schema: Any = None):
        given = [files] if isinstance(files, str) else list(files)
        expanded = [p for f in given for p in (sorted(glob.glob(f)) if any(c in f for c in "*?[") else [f])]
        repeat = getattr(options, "num_epochs", None) is None
        rows_needed = self.rows_needed(given, options.batch_size) or self.rows_needed(expanded, options.batch_size)
        return parquet_dataset(expanded, options.batch_size, label_key=getattr(options, "label_key", None),
                               shuffle=getattr(options, "shuffle", True), repeat=repeat,
                               seed=getattr(options, "shuffle_seed", None),
                               rows_needed=rows_needed if repeat else None)


@dataclasses.dataclass
class FnArgs:
    """What ``run_fn`` receives (the TFX ``FnArgs`` fields, for Parquet inputs)."""

    train_files: list[str]
    eval_files: list[str]
    transform_output: str | None      # TransformGraph uri: ``TransformOutput(fn_args.transform_output)``
    schema_path: str | None
    serving_model_dir: str            # save the serving SavedModel here
    model_run_dir: str                # TensorBoard logs, checkpoints
    train_steps: int
    eval_steps: int
    custom_config: dict[str, Any]
    hyperparameters: dict[str, Any]
    base_model: str | None            # SavedModel dir of a base model to warm-start from
    strategy: Any                     # a tf.distribute.Strategy
    is_chief: bool = True
    data_accessor: DataAccessor = dataclasses.field(default_factory=DataAccessor)
    tracking_uri: str | None = None
    mlflow_run_id: str | None = None
    # The last epoch's Keras logs, filled by the callbacks() and recorded as execution metrics.
    final_metrics: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def transform_graph_path(self) -> str | None:  # the TFX name
        return self.transform_output

    @property
    def log_dir(self) -> str:
        return os.path.join(self.model_run_dir, "logs")

    def dataset(self, files: list[str], batch_size: int, label_key: str | None = None, **kwargs):
        """:func:`parquet_dataset` over ``files``; over ``train_files`` / ``eval_files`` it knows
        the rows needed (``train_steps`` / ``eval_steps`` x ``batch_size``), so big inputs stream."""
        if "rows_needed" not in kwargs and kwargs.get("repeat", True):
            steps = {tuple(self.train_files): self.train_steps, tuple(self.eval_files): self.eval_steps}
            kwargs["rows_needed"] = steps[tuple(files)] * batch_size if tuple(files) in steps else None
        return parquet_dataset(files, batch_size, label_key=label_key, **kwargs)

    def callbacks(self) -> list:
        """Keras callbacks: TensorBoard into ``model_run/logs`` and per-epoch MLflow metrics."""
        callbacks = [tensorboard_callback(self.log_dir), _final_metrics_callback(self.final_metrics)]
        if self.tracking_uri and self.mlflow_run_id and self.is_chief:
            callbacks.append(_mlflow_callback(self.tracking_uri, self.mlflow_run_id))
        return callbacks

    def warm_start(self, model) -> bool:
        """Loads ``base_model``'s weights into ``model`` when the architectures match.

        Works for SavedModels written by :func:`export_serving_model` (the Keras model is
        its ``model`` attribute). A compiled model's optimizer state (moments, step count)
        continues from the base model, but its learning rate stays this run's. Returns
        whether weights were loaded.
        """
        if not self.base_model:
            return False
        import tensorflow as tf

        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None and not getattr(optimizer, "built", True):
            # Restored now rather than deferred to the first step, so the rate below sticks.
            optimizer.build(model.trainable_variables)
        # A fixed rate (not a schedule, which is callable) is this run's hyperparameter.
        fixed_rate = optimizer is not None and not callable(getattr(optimizer, "_learning_rate", None))
        own_rate = float(optimizer.learning_rate) if fixed_rate else None
        status = tf.train.Checkpoint(model=model).read(os.path.join(self.base_model, "variables", "variables"))
        status.expect_partial()
        try:
            status.assert_existing_objects_matched()
        except AssertionError as exc:
            print(f"Trainer: not warm-starting from {self.base_model}: architectures differ ({exc})",
                  file=sys.stderr)
            return False
        finally:
            if own_rate is not None:
                optimizer.learning_rate = own_rate
        return True


def tensorboard_callback(log_dir: str):
    """Keras' TensorBoard callback, or without the tensorboard package a callback writing the
    per-epoch scalars as TensorBoard event files with TF's own summary ops."""
    import tensorflow as tf

    try:
        import tensorboard  # noqa: F401  (Keras' callback needs it)

        return tf.keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch")
    except ImportError:
        pass
    from tensorflow.core.framework import summary_pb2

    scalar_metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))

    class EpochScalars(tf.keras.callbacks.Callback):
        """Writes ``train/<metric>`` and ``validation/<metric>`` scalars per epoch."""

        def on_train_begin(self, logs=None):
            self._writers = {name: tf.summary.create_file_writer(os.path.join(log_dir, name))
                             for name in ("train", "validation")}

        def on_epoch_end(self, epoch, logs=None):
            for key, value in (logs or {}).items():
                if not _is_number(value):
                    continue
                writer, tag = (("validation", key[4:]) if key.startswith("val_") else ("train", key))
                with self._writers[writer].as_default():
                    tf.summary.write(f"epoch_{tag}", tf.constant(float(value)), step=epoch,
                                     metadata=scalar_metadata)

        def on_train_end(self, logs=None):
            for writer in self._writers.values():
                writer.close()

    return EpochScalars()


def _final_metrics_callback(into: dict):
    import tensorflow as tf

    class FinalMetrics(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            into.clear()
            into.update({k: float(v) for k, v in (logs or {}).items() if _is_number(v)})

    return FinalMetrics()


def _mlflow_callback(tracking_uri: str, run_id: str):
    import tensorflow as tf

    class MlflowEpochMetrics(tf.keras.callbacks.Callback):
        """Logs each epoch's Keras metrics to an existing MLflow run."""

        def on_epoch_end(self, epoch, logs=None):
            import time

            import mlflow.entities
            from mlflow.tracking import MlflowClient

            now_ms = int(time.time() * 1000)
            metrics = [mlflow.entities.Metric(key, float(value), now_ms, epoch)
                       for key, value in (logs or {}).items() if _is_number(value)]
            if metrics:
                MlflowClient(tracking_uri).log_batch(run_id, metrics=metrics)

    return MlflowEpochMetrics()


def _is_number(value: Any) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


# --- distribution strategies -------------------------------------------------


def make_strategy(distribution: str, cluster_spec: dict | None = None):
    """A ``tf.distribute.Strategy`` for a ``distribution`` name (see ``run_trainer``)."""
    import tensorflow as tf

    if distribution == "auto":
        if tf.config.list_physical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    if distribution == "mirrored":
        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        # No GPU: mirror over the logical CPU devices (one unless configured otherwise).
        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    if distribution == "one_device":
        device = "/gpu:0" if tf.config.list_logical_devices("GPU") else "/cpu:0"
        return tf.distribute.OneDeviceStrategy(device)
    if distribution == "multi_worker":
        if cluster_spec is not None:
            os.environ["TF_CONFIG"] = json.dumps(_tf_config(cluster_spec))
        elif not os.environ.get("TF_CONFIG"):
            raise ComponentError("Trainer: distribution 'multi_worker' needs parameter 'cluster_spec' "
                                 "or the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if distribution == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except Exception as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ComponentError(f"Trainer: distribution 'tpu': no TPU found: {first_line}") from None
        return tf.distribute.TPUStrategy(resolver)
    raise ComponentError(f"Trainer: unknown distribution {distribution!r}")


def _patch_keras_distributed_build() -> None:
    """Works around two Keras 3 bugs with distribution strategies.

    1. Keras builds the model from ``reduce("MEAN")`` of the first batch: that fails for dict
       inputs under MultiWorkerMirroredStrategy and for string features under any strategy.
       Only shapes and dtypes matter there, so one replica's local batch is used instead.
    2. Under MultiWorkerMirroredStrategy it averages the step's (scalar) metrics with
       ``reduce("MEAN", v, axis=0)``, which fails on scalars; ``axis=None`` is meant.
    """
    try:
        from keras.src.backend.tensorflow import trainer as keras_tf_trainer
        from keras.src import tree
    except ImportError:  # another Keras layout: leave it alone
        return
    trainer_class = keras_tf_trainer.TensorFlowTrainer
    if getattr(trainer_class, "_sluice_patched", False):
        return
    import tensorflow as tf

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None:
            return
        if iterator is not None:
            for _, _, it in iterator:
                batch = next(it)
                data_batch = tree.map_structure(
                    lambda v: self.distribute_strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues) else v, batch)
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    original_reduce = keras_tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and keras_tf_trainer._collective_all_reduce_multi_worker(strategy):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original_reduce(values, strategy, reduction)

    trainer_class._maybe_symbolic_build = _maybe_symbolic_build
    keras_tf_trainer.reduce_per_replica = reduce_per_replica
    trainer_class._sluice_patched = True


def _tf_config(cluster_spec: dict) -> dict:
    """TF_CONFIG from ``cluster_spec``: a full TF_CONFIG dict, or a bare cluster whose task comes
    from the TF_CONFIG environment variable (as a Kubeflow training operator sets it)."""
    if "cluster" not in cluster_spec:
        cluster_spec = {"cluster": cluster_spec}
    if "task" not in cluster_spec:
        env_task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task")
        if not env_task:
            raise ComponentError("Trainer: parameter 'cluster_spec' has no 'task' and TF_CONFIG names none")
        cluster_spec = {**cluster_spec, "task": env_task}
    return cluster_spec


def _is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "cluster_spec", None):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type in (None, "chief"):
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


# --- exporting a serving model ----------------------------------------------


def export_serving_model(model, tf_transform_output, export_dir: str, raw_label_key: str | None,
                         prediction_key: str = "outputs") -> None:
    """Saves a Keras ``model`` over transformed features behind signatures on raw tf.Examples.

    ``serving_default``: serialized ``tf.Example`` (input ``examples``), parsed with the raw
    feature spec minus ``raw_label_key``, transformed by ``tf_transform_output`` (a
    ``components.transform.TransformOutput``) -> ``{prediction_key: model(...)}``.
    ``transform_features``: serialized ``tf.Example`` -> every transformed feature (the
    Evaluator computes a transformed label with it).
    ``evaluate_raw_features`` (a function of the SavedModel, not a signature: it takes
    SparseTensors): the raw features as ``components.transform.arrow_to_raw_tensors`` builds
    them from Arrow -> ``{"outputs": {prediction_key: ...}, "transformed": {...}}``. The same
    transform and model as ``serving_default``, without the tf.Example round trip: the
    Evaluator uses it.

    >>> export_serving_model(model, TransformOutput(fn_args.transform_output),   # doctest: +SKIP
    ...                      fn_args.serving_model_dir, raw_label_key="tips")
    """
    import tensorflow as tf

    from sluice.components.transform import raw_input_signature

    # Training and validation graphs are not exported: freeing them first lowers the
    # Trainer's memory peak (~30 MB on the taxi model). Keras rebuilds them if fit again.
    model.train_function = model.test_function = model.predict_function = None
    release_memory()
    transform_layer = tf_transform_output.transform_features_layer()
    model_inputs = list(model.input.keys()) if isinstance(model.input, dict) else list(model.input_names)
    raw_spec = tf_transform_output.raw_feature_spec()
    serving_spec = {name: spec for name, spec in raw_spec.items() if name != raw_label_key}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_tf_examples(examples):
        transformed = transform_layer(tf.io.parse_example(examples, serving_spec))
        return {prediction_key: model({name: transformed[name] for name in model_inputs})}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(examples):
        return transform_layer(tf.io.parse_example(examples, raw_spec))

    @tf.function(input_signature=[raw_input_signature(tf_transform_output.raw_feature_types)])
    def evaluate_raw_features(raw_features):
        transformed = transform_layer(raw_features)
        return {"outputs": {prediction_key: model({name: transformed[name] for name in model_inputs})},
                "transformed": transformed}

    export = tf.Module()
    export.model = model
    export.transform_layer = transform_layer
    export.serve_tf_examples = serve_tf_examples
    export.transform_features = transform_features
    export.evaluate_raw_features = evaluate_raw_features
    tf.saved_model.save(export, export_dir, signatures={"serving_default": serve_tf_examples,
                                                        "transform_features": transform_features})


# --- the component -----------------------------------------------------------


def load_module_function(module_file: str, name: str) -> Callable:
    """Imports ``module_file`` and returns its function ``name``; a ComponentError names the file."""
    if not os.path.isfile(module_file):
        raise ComponentError(f"Trainer: module file {module_file} does not exist")
    return module_function(module_file, name, "Trainer")


def _user_code_error(exc: BaseException, module_file: str) -> str:
    """One line for an exception raised by run_fn: the module file's innermost line and the error."""
    line = user_code_line(exc, module_file)
    where = f"{module_file}, line {line}" if line else module_file
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"Trainer: run_fn in {where} failed: {type(exc).__name__}: {message}"[:1000]


def _flat_params(prefix: str, values: dict[str, Any]) -> dict[str, str]:
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat_params(f"{name}.", value))
        else:
            flat[name] = str(value)[:500]  # MLflow's param value limit is generous; keep it tidy
    return flat


def _last_pushed_model(ctx: ExecutionContext) -> str | None:
    """The serving copy of the newest model this pipeline pushed, if it still exists."""
    if ctx.lookup is None:
        return None
    for pushed, _ in ctx.lookup.find_artifacts(ctx.pipeline_name, "PushedModel", lambda a: a.pushed):
        if pushed.destination and os.path.isdir(pushed.destination):
            return pushed.destination
    return None


def run_trainer(
    examples: Input[Examples],
    model: Output[Model],
    model_run: Output[ModelRun],
    module_file: ModuleFile,
    train_steps: int,
    transform_graph: Input[TransformGraph] | None = None,
    schema: Input[Schema] | None = None,
    base_model: Input[Model] | None = None,
    eval_steps: int = 100,
    custom_config: dict[str, Any] = {},
    hyperparameters: dict[str, Any] = {},
    distribution: Literal["auto", "mirrored", "multi_worker", "tpu", "one_device"] = "auto",
    cluster_spec: dict[str, Any] | None = None,
    train_splits: list[str] = ["train"],
    eval_splits: list[str] = ["eval"],
    warm_start_from_last_push: bool = False,
    ctx: ExecutionContext = None,
) -> None:
    """Trains a model with the module file's ``run_fn(fn_args)``.

    ``distribution``: ``auto`` mirrors over GPUs when there are any, else the
    default strategy; ``mirrored``; ``multi_worker`` (TF_CONFIG or
    ``cluster_spec``: a TF_CONFIG-shaped dict); ``tpu``; ``one_device``.
    ``base_model``, when wired, is passed to ``run_fn`` for warm starts; with
    ``warm_start_from_last_push`` and nothing wired, the base is the model this
    pipeline's Pusher pushed last (found in the metadata store), so retraining
    on a new span continues from the serving model.
    """
    ctx = ctx or ExecutionContext()
    if train_steps <= 0:
        raise ComponentError(f"Trainer: parameter 'train_steps' must be positive, got {train_steps}")
    run_fn = load_module_function(module_file, "run_fn")
    train_files = [f for split in train_splits for f in split_files(examples, split)]
    eval_files = [f for split in eval_splits for f in split_files(examples, split)]
    strategy = make_strategy(distribution, cluster_spec)
    if distribution != "auto" or strategy.num_replicas_in_sync > 1:
        _patch_keras_distributed_build()
    is_chief = _is_chief(strategy)

    # Non-chief workers must still save (saving is collective) but somewhere thrown away.
    scratch = None if is_chief else tempfile.mkdtemp(prefix="sluice-worker-model-")
    serving_dir = model.serving_dir if is_chief else os.path.join(scratch, "Format-Serving")
    run_dir = model_run.uri if is_chief else scratch
    os.makedirs(os.path.join(run_dir, "logs"), exist_ok=True)
    tracking = ctx.tracking_uri if (ctx.tracking_uri and ctx.mlflow_run_id and is_chief) else None

    fn_args = FnArgs(
        train_files=train_files,
        eval_files=eval_files,
        transform_output=transform_graph.uri if transform_graph is not None else None,
        schema_path=schema.file if schema is not None else None,
        serving_model_dir=serving_dir,
        model_run_dir=run_dir,
        train_steps=train_steps,
        eval_steps=eval_steps,
        custom_config=dict(custom_config),
        hyperparameters=dict(hyperparameters),
        base_model=(base_model.serving_dir if base_model is not None
                    else _last_pushed_model(ctx) if warm_start_from_last_push else None),
        strategy=strategy,
        is_chief=is_chief,
        tracking_uri=tracking,
        mlflow_run_id=ctx.mlflow_run_id if tracking else None,
        data_accessor=DataAccessor({tuple(train_files): train_steps, tuple(eval_files): eval_steps}),
    )
    if tracking:
        import mlflow.entities
        from mlflow.tracking import MlflowClient

        params = {"train_steps": str(train_steps), "eval_steps": str(eval_steps),
                  "distribution": distribution, "num_replicas": str(strategy.num_replicas_in_sync),
                  **_flat_params("hp.", hyperparameters), **_flat_params("config.", custom_config)}
        MlflowClient(tracking).log_batch(
            ctx.mlflow_run_id, params=[mlflow.entities.Param(k, v) for k, v in params.items()])

    try:
        run_fn(fn_args)
    except ComponentError:
        raise
    except Exception as exc:
        raise ComponentError(_user_code_error(exc, module_file)) from exc
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if not is_chief:
        return
    if not os.path.isfile(os.path.join(model.serving_dir, "saved_model.pb")):
        raise ComponentError(f"Trainer: run_fn in {module_file} saved no SavedModel into "
                             f"fn_args.serving_model_dir")
    model.framework = "tensorflow"
    ctx.log_metric("train_steps", train_steps)
    ctx.log_metrics(fn_args.final_metrics)
    if tracking:
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking).log_artifacts(ctx.mlflow_run_id, model.serving_dir, "model")


Trainer = component(run_trainer, name="Trainer", warm_imports=("tensorflow",))
