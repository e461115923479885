"""What a module file's ``run_fn`` receives: TFX's ``FnArgs``, ``DataAccessor`` and dataset options.

TFX module files reach them as ``tfx.components.FnArgs`` / ``DataAccessor`` (``from sluice import tfx``).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterator
from typing import Any

from sluice.components.training.data import OWNER, expand_patterns, parquet_dataset


@dataclasses.dataclass
class DatasetOptions:
    """TFX's ``tfxio.TensorFlowDatasetOptions``, reduced to what Parquet needs."""

    batch_size: int
    label_key: str | None = None
    shuffle: bool = True
    num_epochs: int | None = None  # None: repeat forever


class DataAccessor:
    """TFX's ``fn_args.data_accessor``: ``tf_dataset_factory(files, options, schema)`` and
    ``record_batch_factory(files, options, schema)``; ``data_view_decode_fn`` is None (as TFX's
    for examples without a data view).

    ``options`` is a :class:`DatasetOptions` or tfx_bsl's ``TensorFlowDatasetOptions``
    (its batch_size, label_key, shuffle, shuffle_seed and num_epochs are honoured);
    for ``record_batch_factory``, tfx_bsl's ``RecordBatchesOptions``.
    """

    data_view_decode_fn = None

    def __init__(self, planned_steps: dict[tuple[str, ...], int] | None = None, owner: str = OWNER):
        # Steps the Trainer will take per file list (train_files -> train_steps, eval_files ->
        # eval_steps), so a dataset over far more rows than that is streamed, not loaded.
        self.planned_steps = dict(planned_steps or {})
        self.owner = owner  # the component its errors name (the Trainer, the Tuner)

    def rows_needed(self, files: list[str], batch_size: int) -> int | None:
        steps = self.planned_steps.get(tuple(files))
        return None if steps is None else steps * batch_size

    def tf_dataset_factory(self, files: list[str] | str, options: Any, schema: Any = None):
        given = [files] if isinstance(files, str) else list(files)
        expanded = expand_patterns(given, self.owner)
        repeat = getattr(options, "num_epochs", None) is None
        rows_needed = self.rows_needed(given, options.batch_size) or self.rows_needed(expanded, options.batch_size)
        return parquet_dataset(expanded, options.batch_size, label_key=getattr(options, "label_key", None),
                               shuffle=getattr(options, "shuffle", True), repeat=repeat,
                               seed=getattr(options, "shuffle_seed", None),
                               rows_needed=rows_needed if repeat else None, owner=self.owner)

    def record_batch_factory(self, files: list[str] | str, options: Any, schema: Any = None
                             ) -> Iterator[Any]:
        """pyarrow RecordBatches of ``options.batch_size`` rows over the files (patterns allowed), for
        ``options.num_epochs`` passes (None: endless); with ``options.shuffle`` the files and the rows
        within each batch are taken in a random order (``shuffle_seed``); ``drop_final_batch`` drops a
        short last batch of each pass."""
        import numpy as np
        import pyarrow as pa

        from sluice.components.io.examples import read_batches

        paths = expand_patterns([files] if isinstance(files, str) else list(files), self.owner)
        size, epochs = int(options.batch_size), getattr(options, "num_epochs", None)
        shuffle = getattr(options, "shuffle", False)
        rng = np.random.default_rng(getattr(options, "shuffle_seed", None))
        epoch = 0
        while epochs is None or epoch < epochs:
            epoch += 1
            held: list[Any] = []
            for index in (rng.permutation(len(paths)) if shuffle else range(len(paths))):
                for batch in read_batches(paths[index], self.owner, size):
                    held.append(batch)
                    while sum(b.num_rows for b in held) >= size:
                        table = pa.Table.from_batches(held).combine_chunks()
                        yield _rows(table.slice(0, size), rng if shuffle else None)
                        held = table.slice(size).to_batches()
            rest = sum(b.num_rows for b in held)
            if rest and not getattr(options, "drop_final_batch", False):
                yield _rows(pa.Table.from_batches(held).combine_chunks(), rng if shuffle else None)


def _rows(table: Any, rng: Any) -> Any:
    """One RecordBatch of the table's rows, in a random order when ``rng`` is given."""
    if rng is not None:
        table = table.take(rng.permutation(table.num_rows))
    return table.combine_chunks().to_batches()[0]  # callers never pass an empty table


_ALIASES = {"transform_graph_path": "transform_output", "schema_file": "schema_path"}


@dataclasses.dataclass(init=False)
class FnArgs:
    """What ``run_fn`` receives (the TFX ``FnArgs`` fields, for Parquet inputs).

    As TFX's: ``schema_file`` is ``schema_path``, ``transform_graph_path`` is
    ``transform_output``, ``eval_model_dir`` (Estimators only) is None, and ``working_dir``
    is the Tuner's working folder (None for the Trainer). Every field is optional and
    ``FnArgs(transform_graph_path=..., schema_file=...)`` works, as in a TFX user's tests.
    """

    train_files: list[str]
    eval_files: list[str]
    transform_output: str | None      # TransformGraph uri: ``TransformOutput(fn_args.transform_output)``
    schema_path: str | None
    serving_model_dir: str | None     # save the serving SavedModel here
    model_run_dir: str | None         # TensorBoard logs, checkpoints
    train_steps: int | None
    eval_steps: int | None
    custom_config: dict[str, Any] | None   # None when the Trainer was given none, as in TFX
    hyperparameters: dict[str, Any] | None
    base_model: str | None            # SavedModel dir of a base model to warm-start from
    strategy: Any                     # a tf.distribute.Strategy (None: the default strategy)
    is_chief: bool
    data_accessor: DataAccessor
    tracking_uri: str | None
    mlflow_run_id: str | None
    working_dir: str | None
    eval_model_dir: str | None
    # The last epoch's Keras logs, filled by the callbacks() and recorded as execution metrics.
    final_metrics: dict[str, float]

    def __init__(self, **fields: Any):
        defaults = {"train_files": [], "eval_files": [], "is_chief": True}
        for alias, name in _ALIASES.items():
            if alias in fields:
                fields.setdefault(name, fields.pop(alias))
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise TypeError(f"FnArgs got unexpected keyword argument(s) {', '.join(unknown)}")
        for name in known:
            value = fields[name] if name in fields else defaults.get(name)
            if value is None and name == "data_accessor":
                value = DataAccessor()
            elif value is None and name == "final_metrics":
                value = {}
            setattr(self, name, value)

    @property
    def transform_graph_path(self) -> str | None:  # the TFX name
        return self.transform_output

    @property
    def schema_file(self) -> str | None:  # TFX's older name
        return self.schema_path

    @property
    def log_dir(self) -> str:
        return os.path.join(self.model_run_dir, "logs")

    def dataset(self, files: list[str], batch_size: int, label_key: str | None = None, **kwargs):
        """:func:`parquet_dataset` over ``files``; over ``train_files`` / ``eval_files`` it knows
        the rows needed (``train_steps`` / ``eval_steps`` x ``batch_size``), so big inputs stream."""
        if "rows_needed" not in kwargs and kwargs.get("repeat", True):
            steps = {tuple(self.train_files): self.train_steps, tuple(self.eval_files): self.eval_steps}
            kwargs["rows_needed"] = steps[tuple(files)] * batch_size if tuple(files) in steps else None
        kwargs.setdefault("owner", getattr(self.data_accessor, "owner", OWNER))
        return parquet_dataset(files, batch_size, label_key=label_key, **kwargs)

    def callbacks(self) -> list:
        """Keras callbacks: TensorBoard into ``model_run/logs`` and per-epoch MLflow metrics."""
        from sluice.components.training import callbacks  # imports TensorFlow

        made = [callbacks.tensorboard_callback(self.log_dir), callbacks.FinalMetrics(self.final_metrics)]
        if self.tracking_uri and self.mlflow_run_id and self.is_chief:
            made.append(callbacks.MlflowEpochMetrics(self.tracking_uri, self.mlflow_run_id))
        return made

    def warm_start(self, model) -> bool:
        """Loads ``base_model``'s weights into ``model`` when the architectures match.

        Works for SavedModels written by ``export_serving_model`` (the Keras model is
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
