"""The BulkInferrer's executor: checks, the output schema from a first prediction, the pipeline, the counts."""

from __future__ import annotations

from typing import Any

from sluice.components.artifacts import Examples, InferenceResult, Model, ModelBlessing
from sluice.components.sdk import ComponentError, ExecutionContext, Input, Output, component

OWNER = "BulkInferrer"


def run_bulk_inferrer(
    examples: Input[Examples],
    model: Input[Model],
    inference_result: Output[InferenceResult],
    model_blessing: Input[ModelBlessing] | None = None,
    splits: list[str] | None = None,
    key_columns: list[str] | None = None,
    output_keys: list[str] | None = None,
    ctx: ExecutionContext = None,
) -> None:
    """Predicts ``model``'s serving outputs for every row of ``splits`` of ``examples`` (all by default).

    ``key_columns``: the input columns kept beside the predictions (None: all of them);
    ``output_keys``: the serving outputs written (None: all). Nothing is predicted when
    ``model_blessing`` is given and not blessed; the result records why.
    """
    from sluice.components.io.examples import read_schema, split_files

    ctx = ctx or ExecutionContext()
    inference_result.model_uri = model.uri
    if model_blessing is not None and not model_blessing.blessed:
        inference_result.skipped = True
        inference_result.reason = f"model not blessed ({model_blessing.reason or 'no reason recorded'})"
        ctx.log_metric("rows", 0)
        return
    chosen = list(examples.split_names) if splits is None else list(splits)
    unknown = sorted(set(chosen) - set(examples.split_names))
    if unknown or not chosen:
        raise ComponentError(f"BulkInferrer: parameter 'splits' names unknown splits {unknown} "
                             f"(splits: {examples.split_names})" if unknown else
                             "BulkInferrer: parameter 'splits' is empty")
    files = {split: split_files(examples, split, OWNER) for split in chosen}
    columns = _kept_columns(read_schema(files[chosen[0]][0], OWNER), key_columns, files[chosen[0]][0])
    schema = output_schema(model.serving_dir, files[chosen[0]][0], columns, output_keys)
    from sluice.components.bulk_inferrer.transforms import PredictAndWrite

    pipeline = ctx.beam_pipeline()
    _ = pipeline | "Predict" >> PredictAndWrite(model.serving_dir, files, columns, schema, inference_result.uri)
    pipeline.run().wait_until_finish()
    rows = {split: _rows_written(inference_result.split_uri(split)) for split in chosen}
    inference_result.split_names = chosen
    inference_result.rows = sum(rows.values())
    for split, count in rows.items():
        ctx.log_metric(f"rows_{split}", count)
    ctx.log_metric("rows", inference_result.rows)


def _kept_columns(file_schema: Any, key_columns: list[str] | None, path: str) -> list[str]:
    if key_columns is None:
        return list(file_schema.names)
    missing = [name for name in key_columns if name not in file_schema.names]
    if missing:
        raise ComponentError(f"BulkInferrer: parameter 'key_columns' names {missing}, not columns of {path} "
                             f"(columns: {', '.join(file_schema.names)})")
    return list(key_columns)


def output_schema(serving_dir: str, first_file: str, columns: list[str], output_keys: list[str] | None) -> Any:
    """The Arrow schema of the result: the kept columns, then the chosen outputs as a first row predicts them."""
    import pyarrow as pa

    from sluice.components.bulk_inferrer.predict import load_model, predictions_table
    from sluice.components.io.examples import read_batches

    first = next(read_batches(first_file, OWNER, batch_size=1), None)
    if first is None:
        raise ComponentError(f"BulkInferrer: {first_file} holds no rows")
    predicted = predictions_table(load_model(serving_dir), pa.Table.from_batches([first]), output_keys)
    clash = sorted(set(predicted.column_names) & set(columns))
    if clash:
        raise ComponentError(f"BulkInferrer: serving output(s) {clash} are also input columns; "
                             "leave them out with parameter 'key_columns'")
    kept = [first.schema.field(name) for name in columns]
    return pa.schema(kept + list(predicted.schema))


def _rows_written(folder: str) -> int:
    """Rows in the Parquet files of a split, from their footers (what was written, not a runner metric)."""
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    matched = FileSystems.match([FileSystems.join(folder, "*.parquet")])[0].metadata_list
    total = 0
    for found in matched:
        with FileSystems.open(found.path) as fh:
            total += pq.ParquetFile(fh).metadata.num_rows
    return total


# Given an object store's URIs, its workers predict from a local copy of the model.
BulkInferrer = component(run_bulk_inferrer, name="BulkInferrer", warm_imports=("tensorflow",), remote_io=True)
