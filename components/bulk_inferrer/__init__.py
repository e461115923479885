"""BulkInferrer: a blessed model's predictions over examples, as a Beam pipeline, written as Parquet.

``run_bulk_inferrer`` (``BulkInferrer``) reads the chosen splits of an Examples artifact (labelled
or not), calls the serving model on every row in batches (through the raw-feature function of
models exported with ``export_serving_model``, else ``serving_default`` on serialized
tf.Examples) and writes an ``InferenceResult``: per split, the kept input columns and one column
per serving output. When its ``model_blessing`` says not blessed it predicts nothing and
records why, as TFX's BulkInferrer.
"""

from sluice.components.bulk_inferrer.component import BulkInferrer, run_bulk_inferrer

__all__ = ["BulkInferrer", "run_bulk_inferrer"]
