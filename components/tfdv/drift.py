"""Drift between two spans (TFDV's metrics.cc): L-infinity distance and approximate Jensen-Shannon divergence.

``add_drift_comparators`` configures them on a schema (``drift={"feature": threshold}``):
string features are compared with the L-infinity distance of their value
frequencies, numeric ones with the JS divergence of their histograms (TFDV's
``drift_comparator`` ``infinity_norm`` / ``jensen_shannon_divergence``).
"""

from __future__ import annotations

import math

from sluice.components.tfdv.features import Description, find_feature, six_digits, type_name
from sluice.components.tfdv.views import DatasetView, FeatureView


def linfty_distance(counts_a: dict[str, float], counts_b: dict[str, float]) -> tuple[str, float]:
    """Largest difference of normalized value frequencies, and the value where it occurs.

    >>> linfty_distance({"a": 3, "b": 1}, {"a": 1, "b": 1})
    ('b', 0.25)
    """
    def normalize(counts: dict[str, float]) -> dict[str, float]:
        total = sum(counts.values())
        return {k: (v / total if total else 0.0) for k, v in counts.items()}

    a, b = normalize(counts_a), normalize(counts_b)
    best_key, best_value = "", 0.0
    for key in sorted(set(a) | set(b), key=lambda k: k.encode("utf-8")):
        value = abs(a.get(key, 0.0) - b.get(key, 0.0))
        if value >= best_value:
            best_key, best_value = key, value
    return best_key, best_value


def _kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log2(pi / qi) for pi, qi in zip(p, q) if pi > 0 and qi > 0)


def _categorical_jsd(counts_a: dict[str, float], counts_b: dict[str, float]) -> float | None:
    if not counts_a or not counts_b:
        return None
    if any(v <= 0 for v in counts_a.values()) or any(v <= 0 for v in counts_b.values()):
        return None
    a_sum, b_sum = sum(counts_a.values()), sum(counts_b.values())
    total = 0.0
    for key in set(counts_a) | set(counts_b):
        pa, pb = counts_a.get(key, 0.0) / a_sum, counts_b.get(key, 0.0) / b_sum
        m = (pa + pb) / 2
        if pa:
            total += pa * math.log2(pa / m)
        if pb:
            total += pb * math.log2(pb / m)
    return min(total / 2, 1.0)


def _strip_point_and_infinite(buckets):
    kept, points, infinite = [], {}, 0.0
    for low, high, count in buckets:
        if not (math.isfinite(low) and math.isfinite(high)):
            infinite += count
        elif low == high:
            points[low] = points.get(low, 0.0) + count
        else:
            kept.append((low, high, count))
    return kept, points, infinite


def _rebucket(boundaries: list[float], buckets):
    out = []
    index = 0
    last = len(boundaries) - 1
    for low, high, count in buckets:
        while low > boundaries[index]:
            out.append((boundaries[index], boundaries[index + 1], 0.0))
            index += 1
        if low == high and low == boundaries[index]:
            out.append((boundaries[index], boundaries[index + 1], count))
            index += 1
            continue
        covered = []
        while high > boundaries[index]:
            covered.append(boundaries[index])
            index += 1
        covered.append(boundaries[index])
        width = high - low
        for i in range(len(covered) - 1):
            out.append((covered[i], covered[i + 1], (covered[i + 1] - covered[i]) / width * count))
    for i in range(index, last):
        out.append((boundaries[i], boundaries[i + 1], 0.0))
    return out


def histogram_jsd(histogram_a, histogram_b) -> float | None:
    """Approximate Jensen-Shannon divergence of two numeric histograms (TFDV's algorithm)."""
    if histogram_a.type != histogram_b.type:
        return None
    a, a_points, a_inf = _strip_point_and_infinite(
        [(b.low_value, b.high_value, b.sample_count) for b in histogram_a.buckets])
    b, b_points, b_inf = _strip_point_and_infinite(
        [(x.low_value, x.high_value, x.sample_count) for x in histogram_b.buckets])
    bounds_a = {v for low, high, _ in a for v in (low, high)}
    bounds_b = {v for low, high, _ in b for v in (low, high)}
    if bounds_a != bounds_b:
        boundaries = sorted(bounds_a | bounds_b)
        a, b = _rebucket(boundaries, a), _rebucket(boundaries, b)
    counts_a = [c for _, _, c in a]
    counts_b = [c for _, _, c in b]
    for point in sorted(set(a_points) | set(b_points)):
        counts_a.append(a_points.get(point, 0.0))
        counts_b.append(b_points.get(point, 0.0))
    if a_inf:
        counts_a.append(a_inf)
        counts_b.append(0.0)
    if b_inf:
        counts_a.append(0.0)
        counts_b.append(b_inf)
    if histogram_a.num_nan > 0 or histogram_b.num_nan > 0:
        counts_a += [0.0, float(histogram_a.num_nan)]
        counts_b += [float(histogram_b.num_nan), 0.0]
    sum_a, sum_b = sum(counts_a), sum(counts_b)
    if sum_a == 0 or sum_b == 0:
        return None
    p = [c / sum_a for c in counts_a]
    q = [c / sum_b for c in counts_b]
    m = [(x + y) / 2 for x, y in zip(p, q)]
    return min((_kl(p, m) + _kl(q, m)) / 2, 1.0)


def jensen_shannon_divergence(current: FeatureView, previous: FeatureView) -> float | None:
    """Categorical JSD when both have value counts, else histogram JSD; None if not comparable."""
    counts_a, counts_b = current.string_counts, previous.string_counts
    if counts_a and counts_b:
        return _categorical_jsd(counts_a, counts_b)
    histogram_a, histogram_b = current.standard_histogram(), previous.standard_histogram()
    if histogram_a is not None and histogram_b is not None:
        return histogram_jsd(histogram_a, histogram_b)
    return None


def update_drift(view: FeatureView, comparator, previous: DatasetView | None, measurements: list) -> list[Description]:
    """UpdateFeatureComparatorDirect for the drift comparator (current vs previous span)."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    has_linf = comparator.infinity_norm.HasField("threshold")
    has_jsd = comparator.jensen_shannon_divergence.HasField("threshold")
    if not has_linf and not has_jsd:
        return []
    if previous is None:
        return []
    control = previous.by_key.get(view.key)
    Measurement = anomalies_pb2.DriftSkewInfo.Measurement
    if control is None:
        if has_linf:
            comparator.infinity_norm.ClearField("threshold")
        if has_jsd:
            comparator.jensen_shannon_divergence.ClearField("threshold")
        return [Description("COMPARATOR_CONTROL_DATA_MISSING", "previous data missing", "previous data is missing.")]
    out: list[Description] = []
    if has_linf:
        threshold = comparator.infinity_norm.threshold
        value_at, distance = linfty_distance(view.string_counts, control.string_counts)
        measurements.append(Measurement(type=Measurement.L_INFTY, value=distance, threshold=threshold))
        if distance > threshold:
            comparator.infinity_norm.threshold = distance
            out.append(Description(
                "COMPARATOR_L_INFTY_HIGH", "High Linfty distance between current and previous",
                f"The Linfty distance between current and previous is {six_digits(distance)} (up to six significant "
                f"digits), above the threshold {six_digits(threshold)}. The feature value with maximum difference "
                f"is: {value_at}"))
    if has_jsd:
        threshold = comparator.jensen_shannon_divergence.threshold
        divergence = jensen_shannon_divergence(view, control)
        if divergence is not None:
            measurements.append(Measurement(type=Measurement.JENSEN_SHANNON_DIVERGENCE, value=divergence,
                                            threshold=threshold))
            if divergence > threshold:
                out.append(Description(
                    "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH",
                    "High approximate Jensen-Shannon divergence between current and previous",
                    f"The approximate Jensen-Shannon divergence between current and previous is "
                    f"{six_digits(divergence)} (up to six significant digits), above the threshold "
                    f"{six_digits(threshold)}."))
                comparator.jensen_shannon_divergence.threshold = divergence
    return out

def add_drift_comparators(schema, drift: dict[str, float]) -> None:
    """Adds TFDV drift comparators: L-infinity for string features, JS divergence for numeric ones."""
    for name, threshold in drift.items():
        feature = find_feature(schema, (name,))
        if type_name(feature) == "BYTES":
            feature.drift_comparator.infinity_norm.threshold = threshold
        else:
            feature.drift_comparator.jensen_shannon_divergence.threshold = threshold
