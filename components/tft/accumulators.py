"""The analyzers' mergeable accumulators: create, add a batch's values, merge two, extract the value.

One accumulator per analyzer call (``AnalyzerSpec``), by its kind: ``mean_and_var`` (count,
mean and sum of squared deviations, merged as Chan et al.), ``min_max``, ``vocabulary``
(token counts) and ``quantiles`` (tfx_bsl's QuantilesSketch). NaN values are ignored.
"""

from __future__ import annotations

from typing import Any

from sluice.components.tft.tracing import AnalyzerSpec

_QUANTILES_MAX_ELEMENTS = 1 << 32


def new_accumulator(spec: AnalyzerSpec) -> Any:
    if spec.kind == "mean_and_var":
        return [0, 0.0, 0.0]  # count, mean, sum of squared deviations (Chan et al. merge)
    if spec.kind == "min_max":
        return [None, None]
    if spec.kind == "vocabulary":
        return {}
    if spec.kind == "quantiles":
        from tfx_bsl.sketches import QuantilesSketch

        return QuantilesSketch(spec.config["epsilon"], _QUANTILES_MAX_ELEMENTS, 1)
    raise ValueError(f"unknown analyzer kind {spec.kind}")


def _numeric(values: Any) -> Any:
    import numpy as np

    values = np.asarray(values)
    if values.dtype.kind == "f":
        values = values[~np.isnan(values)]
    return values


def _merge_mean_var(acc: list, count: int, batch_mean: float, batch_m2: float) -> list:
    if count == 0:
        return acc
    total = acc[0] + count
    delta = batch_mean - acc[1]
    return [total, acc[1] + delta * count / total, acc[2] + batch_m2 + delta * delta * acc[0] * count / total]


def add_to_accumulator(spec: AnalyzerSpec, acc: Any, values: Any) -> Any:
    import numpy as np

    if spec.kind == "mean_and_var":
        values = _numeric(values).astype(np.float64)
        if not len(values):
            return acc
        batch_mean = float(values.mean())
        return _merge_mean_var(acc, len(values), batch_mean, float(((values - batch_mean) ** 2).sum()))
    if spec.kind == "min_max":
        values = _numeric(values)
        if not len(values):
            return acc
        low, high = values.min(), values.max()
        return [low if acc[0] is None else min(acc[0], low), high if acc[1] is None else max(acc[1], high)]
    if spec.kind == "vocabulary":
        if len(values):
            tokens, counts = np.unique(values, return_counts=True)
            for token, count in zip(tokens.tolist(), counts.tolist()):
                acc[token] = acc.get(token, 0) + count
        return acc
    if spec.kind == "quantiles":
        import pyarrow as pa

        values = _numeric(values).astype(np.float64)
        if len(values):
            acc.AddValues(pa.array(values))
        return acc
    raise ValueError(f"unknown analyzer kind {spec.kind}")


def merge_two(spec: AnalyzerSpec, acc: Any, other: Any) -> Any:
    if spec.kind == "mean_and_var":
        if other[0] == 0:
            return acc
        return _merge_mean_var(acc, other[0], other[1], other[2])
    if spec.kind == "min_max":
        lows = [v for v in (acc[0], other[0]) if v is not None]
        highs = [v for v in (acc[1], other[1]) if v is not None]
        return [min(lows) if lows else None, max(highs) if highs else None]
    if spec.kind == "vocabulary":
        for token, count in other.items():
            acc[token] = acc.get(token, 0) + count
        return acc
    if spec.kind == "quantiles":
        acc.Merge(other)
        return acc
    raise ValueError(f"unknown analyzer kind {spec.kind}")


def extract(spec: AnalyzerSpec, acc: Any) -> Any:
    if spec.kind == "mean_and_var":
        count, mean_value, m2 = acc
        return (float(mean_value), float(m2 / count) if count else 0.0)
    if spec.kind == "min_max":
        low, high = acc
        if low is None:  # no values at all
            return (0, 0)
        return (low.item(), high.item())
    if spec.kind == "vocabulary":
        threshold = spec.config.get("frequency_threshold") or 0
        ranked = sorted(((count, token) for token, count in acc.items() if count >= threshold), reverse=True)
        top_k = spec.config.get("top_k")
        if top_k is not None:
            ranked = ranked[:top_k]
        return {
            "tokens": [token for _, token in ranked],
            "counts": [count for count, _ in ranked],
            "input_dtype": spec.config["input_dtype"],
        }
    if spec.kind == "quantiles":
        result = acc.GetQuantiles(spec.config["num_buckets"]).flatten().to_pylist()
        return [float(v) for v in result[1:-1]]
    raise ValueError(f"unknown analyzer kind {spec.kind}")
