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


def check_thresholds(thresholds: dict[str, MetricThreshold], overall: dict, baseline: dict | None) -> list[dict]:
    """One result per condition: value bounds always, changes against ``baseline`` (skipped without one)."""
    results = []
    for metric, threshold in thresholds.items():
        if metric not in overall:
            raise ComponentError(f"Evaluator: parameter 'thresholds' names unknown metric '{metric}' "
                                 f"(metrics: {', '.join(sorted(overall))})")
        results += _value_checks(metric, threshold, overall[metric])
        results += _change_checks(metric, threshold, overall[metric], baseline)
    return results


def describe_failure(result: dict) -> str:
    """One line for a failed check."""
    value = "undefined" if result["value"] is None else f"{result['value']:.4g}"
    if result["kind"] in ("lower_bound", "upper_bound"):
        return f"{result['metric']} {value} violates {result['kind']} {result['threshold']}"
    mode = " (relative)" if result.get("relative") else ""
    return (f"{result['metric']} {value} vs baseline {result['baseline']:.4g} violates "
            f"{result['kind']} {result['threshold']}{mode}")


def blessing_reason(results: list[dict]) -> tuple[bool, str]:
    """(blessed, reason): blessed when no check that ran failed."""
    failures = [describe_failure(r) for r in results if not r["skipped"] and not r["passed"]]
    if failures:
        return False, "; ".join(failures)
    passed = [describe_pass(r) for r in results if not r["skipped"]]
    skipped = len(results) - len(passed)
    if not passed:
        return True, "no threshold to check" + (f" ({skipped} skipped: no baseline)" if skipped else "")
    return True, "; ".join(passed) + (f"; {skipped} skipped (no baseline)" if skipped else "")


def describe_pass(result: dict) -> str:
    """One line for a check that passed: the metric against its threshold."""
    value = f"{result['value']:.4g}"
    if result["kind"] in ("lower_bound", "upper_bound"):
        return f"{result['metric']} {value} {'>=' if result['kind'] == 'lower_bound' else '<='} {result['threshold']:g}"
    mode = " (relative)" if result.get("relative") else ""
    return f"{result['metric']} {value} vs baseline {result['baseline']:.4g} within {result['kind']} " \
           f"{result['threshold']:g}{mode}"
