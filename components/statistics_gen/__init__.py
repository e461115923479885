"""StatisticsGen: per-split dataset statistics in TFDV's format, computed on Beam.

For every split of the input Examples (Parquet) it writes

    <statistics.uri>/Split-<split>/FeatureStats.pb   binary DatasetFeatureStatisticsList
    <statistics.uri>/report.html                     self-contained HTML report, splits side by side

The proto holds what TFDV's default generators produce for scalar columns
(common stats, numeric stats with a STANDARD and a QUANTILES histogram, string
stats with uniques, top values and the rank histogram) and for list columns
(values per example, then those stats of the flattened values), so TFDV-based tools
(``tfdv.load_stats_binary``, ``tfdv.infer_schema``, Facets) read it unchanged.
Everything is mergeable, so it runs on any number of Beam workers. Used in a pipeline::

    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])

The modules, each one job:

- ``component``: the component (``generate_statistics``, ``StatisticsGen``).
- ``transforms``: the Beam transforms (``ComputeParquetStatistics``, ``ComputeStatistics``,
  ``ReadParquetBatches``); it imports Beam, so import it from there.
- ``read_ahead``: whole files cut into pieces, decoded ahead, summarized on threads.
- ``accumulate``: a dataset's accumulator: batches added, accumulators merged.
- ``numeric``, ``order_statistics``, ``values``: the accumulators of numeric and string columns;
  ``lists``: that of list columns (counts per example, the values to those accumulators).
- ``protos``: accumulators to TFDV's statistics protos; ``report``: the HTML report.
"""

from __future__ import annotations

from sluice.components.statistics_gen.component import (
    FEATURE_STATS_FILE,
    REPORT_FILE,
    StatisticsGen,
    generate_statistics,
)
from sluice.components.statistics_gen.numeric import QUANTILES_EPSILON, QUANTILES_RANK_BOUND, SUMMARY_THRESHOLD
from sluice.components.statistics_gen.protos import NUM_QUANTILES_HISTOGRAM_BUCKETS

__all__ = [
    "FEATURE_STATS_FILE",
    "NUM_QUANTILES_HISTOGRAM_BUCKETS",
    "QUANTILES_EPSILON",
    "QUANTILES_RANK_BOUND",
    "REPORT_FILE",
    "SUMMARY_THRESHOLD",
    "StatisticsGen",
    "generate_statistics",
]
