"""Thresholds a model's metrics must meet to be blessed, and checking them."""

from __future__ import annotations

import pydantic

from sluice.components.sdk import ComponentError


class MetricThreshold(pydantic.BaseModel):
    """Conditions one metric must meet for the model to be blessed.

    ``min_improvement``: the candidate must beat the baseline by at least this
    much; ``max_regression``: it may be worse than the baseline by at most this
    much (in the direction given by ``higher_is_better``). With ``relative`` both
    are fractions of the baseline's value.
    """

    model_config = pydantic.ConfigDict(extra="forbid")

    lower_bound: float | None = None
    upper_bound: float | None = None
    min_improvement: float | None = None
    max_regression: float | None = None
    relative: bool = False
    higher_is_better: bool = True


def as_thresholds(values: dict[str, MetricThreshold | dict]) -> dict[str, MetricThreshold]:
    """Thresholds by metric, given as ``MetricThreshold``s or their dicts (as a compiled pipeline holds them)."""
    return {metric: MetricThreshold.model_validate(v) if isinstance(v, dict) else v for metric, v in values.items()}


def _value_checks(metric: str, threshold: MetricThreshold, value) -> list[dict]:
    results = []
    for kind in ("lower_bound", "upper_bound"):
        bound = getattr(threshold, kind)
        if bound is None:
            continue
        passed = value is not None and (value >= bound if kind == "lower_bound" else value <= bound)
        results.append({"metric": metric, "kind": kind, "threshold": bound, "value": value,
                        "baseline": None, "passed": passed, "skipped": False})
    return results


def _change_checks(metric: str, threshold: MetricThreshold, value, baseline: dict | None) -> list[dict]:
    results = []
    for kind in ("min_improvement", "max_regression"):
        amount = getattr(threshold, kind)
        if amount is None:
            continue
        base_value = None if baseline is None else baseline.get(metric)
        entry = {"metric": metric, "kind": kind, "threshold": amount, "relative": threshold.relative,
                 "value": value, "baseline": base_value}
        if base_value is None or value is None:
            entry.update(passed=None, skipped=True,
                         note="no baseline model" if baseline is None else "metric undefined")
            results.append(entry)
            continue
        scale = abs(base_value) if threshold.relative else 1.0
        gain = (value - base_value) if threshold.higher_is_better else (base_value - value)
        passed = gain >= amount * scale if kind == "min_improvement" else -gain <= amount * scale
        entry.update(passed=bool(passed), skipped=False)
        results.append(entry)
    return results


def check_thresholds(thresholds: dict[str, MetricThreshold], overall: dict, baseline: dict | None,
                     slice_name: str = "overall") -> list[dict]:
    """One result per condition: value bounds always, changes against ``baseline`` (skipped without one)."""
    results = []
    for metric, threshold in thresholds.items():
        if metric not in overall and slice_name == "overall":
            raise ComponentError(f"Evaluator: parameter 'thresholds' names unknown metric '{metric}' "
                                 f"(metrics: {', '.join(sorted(overall))})")
        results += _value_checks(metric, threshold, overall.get(metric))
        results += _change_checks(metric, threshold, overall.get(metric), baseline)
    for result in results:
        result["slice"] = slice_name
    return results


def _spec_features(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.replace("×", ",").split(","))


def check_slice_thresholds(slice_thresholds: dict[str, dict[str, MetricThreshold]], analysis) -> list[dict]:
    """The checks of each slice a key names: a slice (``island=Biscoe``) or every slice of a spec
    (``island``, or ``payment_type, trip_start_hour`` for a cross). Slices under
    ``min_slice_size`` are listed as skipped."""
    results = []
    for key, thresholds in slice_thresholds.items():
        names = [name for name in analysis.slices
                 if key == name or _spec_features(key) == _spec_features(analysis.specs[name])]
        if not names:
            raise ComponentError(f"Evaluator: parameter 'slice_thresholds' key '{key}' matches no slice "
                                 f"(slicing specs: {', '.join(sorted(set(analysis.specs.values()))) or 'none'})")
        for metric in thresholds:
            if metric not in analysis.overall:
                raise ComponentError(f"Evaluator: parameter 'slice_thresholds'['{key}'] names unknown metric "
                                     f"'{metric}' (metrics: {', '.join(sorted(analysis.overall))})")
        for name in names:
            checks = check_thresholds(thresholds, analysis.slices[name], analysis.baseline_slices.get(name)
                                      if analysis.baseline is not None else None, name)
            if name in analysis.small:
                count = analysis.slices[name]["example_count"]
                for check in checks:
                    check.update(passed=None, skipped=True, note=f"{count} examples, under min_slice_size")
            results += checks
    return results


def _where(result: dict) -> str:
    return "" if result.get("slice", "overall") == "overall" else f" [{result['slice']}]"


def describe_failure(result: dict) -> str:
    """One line for a failed check."""
    value = "undefined" if result["value"] is None else f"{result['value']:.4g}"
    if result["kind"] in ("lower_bound", "upper_bound"):
        return f"{result['metric']}{_where(result)} {value} violates {result['kind']} {result['threshold']}"
    mode = " (relative)" if result.get("relative") else ""
    return (f"{result['metric']}{_where(result)} {value} vs baseline {result['baseline']:.4g} violates "
            f"{result['kind']} {result['threshold']}{mode}")


PASSES_LISTED = 5


def blessing_reason(results: list[dict]) -> tuple[bool, str]:
    """(blessed, reason): blessed when no check that ran failed. The reason names every failure,
    the first ``PASSES_LISTED`` passes (then how many more), and the skipped checks by cause;
    metrics.json and the report list each check."""
    failures = [describe_failure(r) for r in results if not r["skipped"] and not r["passed"]]
    passes = [describe_pass(r) for r in results if not r["skipped"] and r["passed"]]
    if failures:
        parts = failures + ([f"{len(passes)} passed"] if passes else [])
    else:
        more = len(passes) - PASSES_LISTED
        parts = passes[:PASSES_LISTED] + ([f"{more} more passed"] if more > 0 else [])
    skipped = _skipped_summary(results)
    if not parts:
        return True, "no threshold to check" + (f" ({skipped})" if skipped else "")
    return not failures, "; ".join(parts + ([skipped] if skipped else []))


def _skipped_summary(results: list[dict]) -> str:
    """``2 skipped (no baseline model)``: the skipped checks, counted by reason."""
    reasons: dict[str, int] = {}
    for result in results:
        if result["skipped"]:
            note = "under min_slice_size" if "min_slice_size" in result.get("note", "") else \
                ("no baseline" if result.get("note") == "no baseline model" else result.get("note", ""))
            reasons[note] = reasons.get(note, 0) + 1
    return "; ".join(f"{count} skipped ({note})" for note, count in reasons.items())


def describe_pass(result: dict) -> str:
    """One line for a check that passed: the metric against its threshold."""
    value = f"{result['value']:.4g}"
    metric = f"{result['metric']}{_where(result)}"
    if result["kind"] in ("lower_bound", "upper_bound"):
        return f"{metric} {value} {'>=' if result['kind'] == 'lower_bound' else '<='} {result['threshold']:g}"
    mode = " (relative)" if result.get("relative") else ""
    return f"{metric} {value} vs baseline {result['baseline']:.4g} within {result['kind']} " \
           f"{result['threshold']:g}{mode}"
