"""Read access to statistics protos, as TFDV's ``FeatureStatsView``/``DatasetStatsView``."""

from __future__ import annotations

from sluice.components.sdk import ComponentError


def serialize_path(steps) -> str:
    """TFDV's ``Path::Serialize``: steps joined by '.', odd steps wrapped in parentheses."""
    def escape(step: str) -> str:
        if any(c in step for c in ".()") or step == "":
            return "(" + step.replace(")", "))") + ")"
        return step

    return ".".join(escape(s) for s in steps)


class FeatureView:
    """Read access to one feature's statistics, as TFDV's ``FeatureStatsView``."""

    def __init__(self, stats, num_examples: float):
        self.stats = stats
        self.num_examples = float(num_examples)
        self.steps = tuple(stats.path.step) if stats.HasField("path") else (stats.name,)
        self.key = serialize_path(self.steps)

    @property
    def type(self) -> str:
        """The statistics type: INT, FLOAT, STRING, BYTES or STRUCT."""
        from tensorflow_metadata.proto.v0 import statistics_pb2

        return statistics_pb2.FeatureNameStatistics.Type.Name(self.stats.type)

    @property
    def feature_type(self) -> str:
        """The schema type these statistics imply: INT, FLOAT, BYTES or STRUCT."""
        return {"STRING": "BYTES"}.get(self.type, self.type)

    @property
    def common(self):
        which = self.stats.WhichOneof("stats")
        if which == "num_stats":
            return self.stats.num_stats.common_stats
        if which == "string_stats":
            return self.stats.string_stats.common_stats
        if which == "bytes_stats":
            return self.stats.bytes_stats.common_stats
        if which == "struct_stats":
            return self.stats.struct_stats.common_stats
        raise ComponentError(f"statistics of feature '{self.key}' carry no common_stats")

    @property
    def num_present(self) -> float:
        return float(self.common.num_non_missing)

    @property
    def num_missing(self) -> float:
        return float(self.common.num_missing)

    @property
    def fraction_present(self) -> float | None:
        if self.num_missing == 0.0:
            return 1.0  # as TFDV: avoids numerical noise
        if self.num_examples > 0:
            return self.num_present / self.num_examples
        return None

    @property
    def string_counts(self) -> dict[str, float]:
        """Value -> count from the rank histogram, sorted by value (TFDV's std::map)."""
        counts: dict[str, float] = {}
        for bucket in self.stats.string_stats.rank_histogram.buckets:
            counts.setdefault(bucket.label, float(bucket.sample_count))
        return dict(sorted(counts.items(), key=lambda kv: kv[0].encode("utf-8")))

    @property
    def string_values(self) -> list[str]:
        return list(self.string_counts)

    @property
    def has_invalid_utf8(self) -> bool:
        return "__BYTES_VALUE__" in self.string_counts

    @property
    def min_max_num_values(self) -> list[tuple[int, int]]:
        nested = self.common.presence_and_valency_stats
        if len(nested) > 0:
            return [(int(p.min_num_values), int(p.max_num_values)) for p in nested]
        return [(int(self.common.min_num_values), int(self.common.max_num_values))]

    @property
    def num_missing_nested(self) -> list[float]:
        nested = self.common.presence_and_valency_stats
        if len(nested) > 0:
            return [float(p.num_missing) for p in nested]
        return [self.num_missing]

    @property
    def has_nested_values(self) -> bool:
        return len(self.common.presence_and_valency_stats) > 1

    @property
    def total_value_count(self) -> float:
        common = self.common
        if common.tot_num_values == 0:
            return float(common.num_non_missing) * float(common.avg_num_values)
        return float(common.tot_num_values)

    @property
    def num_stats(self):
        return self.stats.num_stats

    @property
    def num_unique(self) -> int | None:
        return int(self.stats.string_stats.unique) if self.stats.HasField("string_stats") else None

    def standard_histogram(self):
        from tensorflow_metadata.proto.v0 import statistics_pb2

        if not self.stats.HasField("num_stats"):
            return None
        for histogram in self.stats.num_stats.histograms:
            if histogram.type == statistics_pb2.Histogram.STANDARD:
                return histogram
        return None


def _has_empty_stats(stats) -> bool:
    return stats.WhichOneof("stats") is None and len(stats.custom_stats) == 0


class DatasetView:
    """The features of one dataset, by serialized path (empty statistics skipped)."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.num_examples = float(dataset.num_examples)
        self.features = [FeatureView(f, dataset.num_examples) for f in dataset.features if not _has_empty_stats(f)]
        self.by_key = {view.key: view for view in self.features}

    def root_features(self) -> list[FeatureView]:
        return [view for view in self.features if len(view.steps) == 1]
