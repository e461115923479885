"""The HTML report of one split's statistics: numeric features with their histograms, categorical ones
with their top values (``reports/templates/statistics.html.j2``)."""

from __future__ import annotations

from typing import Any

from sluice.components import reports


def render_report(statistics, split: str) -> str:
    """A self-contained HTML page (inline CSS and SVG) summarizing one split's statistics."""
    dataset = statistics.datasets[0]
    features = [_feature_summary(f, dataset.num_examples) for f in dataset.features]
    return reports.render("statistics.html.j2", split=split, num_examples=dataset.num_examples, features=features)


def _feature_summary(feature, num_examples: int) -> dict[str, Any]:
    """The values the report shows for one feature (plain Python, for the template)."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    kind = feature.WhichOneof("stats")
    stats = getattr(feature, kind) if kind else None
    common = stats.common_stats if stats is not None else None
    num_missing = common.num_missing if common else num_examples
    summary = {
        "name": "/".join(feature.path.step),
        "type": statistics_pb2.FeatureNameStatistics.Type.Name(feature.type),
        "count": common.num_non_missing if common else 0,
        "missing": num_missing,
        "missing_pct": 100.0 * num_missing / num_examples if num_examples else 0.0,
        "numeric": None,
        "histogram": [],
        "top_values": [],
        "unique": None,
        "avg_length": None,
    }
    if kind == "num_stats":
        summary["numeric"] = {k: getattr(stats, k) for k in ("mean", "std_dev", "min", "median", "max", "num_zeros")}
        standard = [h for h in stats.histograms if h.type == statistics_pb2.Histogram.STANDARD]
        if standard and standard[0].buckets:
            buckets = standard[0].buckets
            peak = max(b.sample_count for b in buckets) or 1.0
            summary["histogram"] = [
                {"low": b.low_value, "high": b.high_value, "count": b.sample_count,
                 "height": 40.0 * b.sample_count / peak}
                for b in buckets
            ]
    elif kind == "string_stats":
        summary["unique"] = stats.unique
        summary["avg_length"] = stats.avg_length
        summary["top_values"] = [(v.value, v.frequency) for v in stats.top_values[:10]]
    return summary
