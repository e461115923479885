"""Calling the serving model on a table's rows and laying its outputs out as Arrow columns."""

from __future__ import annotations

import threading
from typing import Any

from sluice.components.sdk import ComponentError

OWNER = "BulkInferrer"

_models: dict[str, Any] = {}
_models_lock = threading.Lock()


def load_model(serving_dir: str) -> Any:
    """The serving SavedModel at ``serving_dir``, loaded once per process (every DoFn of a worker shares it)."""
    from sluice.components.serving import load_serving_model

    with _models_lock:
        if serving_dir not in _models:
            _models.clear()  # one model per pipeline: a long-lived worker keeps only the latest
            _models[serving_dir] = load_serving_model(serving_dir, "model", OWNER)
        return _models[serving_dir]


def batch_rows(loaded: Any) -> int:
    """Rows per call of ``loaded``: the serving contract's rule (``serving.batch_rows``)."""
    from sluice.components import serving

    return serving.batch_rows(serialized=serving.raw_function(loaded) is None)


def predictions_table(loaded: Any, table: Any, output_keys: list[str] | None) -> Any:
    """The serving outputs of ``table``'s rows as a table: ``output_keys`` (None: every output, sorted),
    a number per row for outputs of shape ``[n]`` or ``[n, 1]``, a fixed-size list for ``[n, k]``."""
    import pyarrow as pa

    from sluice.components.serving import predict_batch

    try:
        outputs = predict_batch(loaded, table)
    except ComponentError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's model failed on these rows
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ComponentError(f"BulkInferrer: the serving model failed on the examples: "
                             f"{type(exc).__name__}: {first}"[:1000]) from None
    keys = sorted(outputs) if output_keys is None else list(output_keys)
    unknown = [key for key in keys if key not in outputs]
    if unknown:
        raise ComponentError(f"BulkInferrer: parameter 'output_keys' names {unknown}, not outputs of the serving "
                             f"model (outputs: {', '.join(sorted(outputs))})")
    return pa.table({key: _column(outputs[key], key) for key in keys})


def _column(values: Any, key: str) -> Any:
    import numpy as np
    import pyarrow as pa

    values = np.asarray(values)
    if values.ndim > 1:
        values = values.reshape(len(values), -1)
        if values.shape[1] == 1:
            values = values[:, 0]
    if values.dtype.kind in "SO":
        if values.ndim != 1:
            raise ComponentError(f"BulkInferrer: serving output '{key}' holds {values.shape[1]} strings per row; "
                                 "only one is written")
        return pa.array(values.tolist(), pa.binary())
    if values.ndim == 1:
        return pa.array(values)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
