"""tf.Transform's results (``expected``) against Sluice's (``actual``), one line per difference.

Outputs row by row (ints and strings exactly, floats within a case's tolerance, 1e-5 by default),
dtypes, transformed feature specs, vocabulary files byte for byte, ``vocabulary_size_by_name``,
``TFTransformOutput`` answers, and each engine's serving path against tf.Transform's rows.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tests.oracle.tft_oracle import Case, EngineResult


@dataclasses.dataclass
class Parity:
    """Differences (one line each) and per-output figures for the coverage table."""

    differences: list[str]
    figures: dict[str, str]


def compare(case: Case, expected: EngineResult, actual: EngineResult) -> Parity:
    """tf.Transform (``expected``) against Sluice (``actual``): outputs, dtypes, vocabularies, API, serving."""
    parity = Parity([], {})
    missing = sorted(set(expected.outputs) - set(actual.outputs))
    extra = sorted(set(actual.outputs) - set(expected.outputs))
    if missing or extra:
        parity.differences.append(f"outputs: Sluice lacks {missing}, has extra {extra}")
    for name in sorted(set(expected.specs) & set(actual.specs)):
        if expected.specs[name] != actual.specs[name]:
            parity.differences.append(f"transformed_feature_spec[{name!r}]: tft {expected.specs[name]}, "
                                      f"Sluice {actual.specs[name]}")
    _compare_api(expected, actual, parity)
    parity.differences += _compare_served(case, expected, actual)
    for name in sorted(set(expected.outputs) & set(actual.outputs)):
        line, parity.figures[name] = _compare_output(case, name, expected, actual)
        if line:
            parity.differences.append(f"output {name!r}: {line}")
    _compare_eval(case, expected, actual, parity)
    _compare_vocabularies(expected, actual, parity)
    return parity


def _compare_api(expected: EngineResult, actual: EngineResult, parity: Parity) -> None:
    for call in sorted(expected.api):
        want, got = expected.api[call], actual.api.get(call)
        if want != got:
            parity.differences.append(f"{call}: tft {want}, Sluice {got}")


def _compare_eval(case: Case, expected: EngineResult, actual: EngineResult, parity: Parity) -> None:
    for name in sorted(expected.eval_outputs):
        if name not in actual.eval_outputs:
            parity.differences.append(f"eval split: output {name!r} missing")
            continue
        line, parity.figures[f"eval:{name}"] = compare_rows(
            expected.eval_outputs[name], actual.eval_outputs[name], expected.dtypes[name],
            case.float_tolerance.get(name, 1e-5))
        if line:
            parity.differences.append(f"eval split (transformed, not analyzed), output {name!r}: {line}")


def _compare_vocabularies(expected: EngineResult, actual: EngineResult, parity: Parity) -> None:
    if sorted(expected.assets) != sorted(actual.assets):
        parity.differences.append(f"vocabulary files: tft {sorted(expected.assets)}, Sluice {sorted(actual.assets)}")
    for filename in sorted(set(expected.assets) & set(actual.assets)):
        want, got = expected.assets[filename], actual.assets[filename]
        parity.figures[f"vocab:{filename}"] = "identical" if want == got else "DIFFERENT"
        if want != got:
            parity.differences.append(f"vocabulary {filename}: {_first_line_difference(want, got)}")
        size, got_size = expected.vocabulary_sizes[filename], actual.vocabulary_sizes[filename]
        if size != got_size:
            parity.differences.append(f"vocabulary_size_by_name({filename!r}): tft {size}, Sluice {got_size}")


def _compare_output(case: Case, name: str, expected: EngineResult, actual: EngineResult) -> tuple[str, str]:
    if expected.dtypes.get(name) != actual.dtypes.get(name):
        return f"dtype: tft {expected.dtypes.get(name)}, Sluice {actual.dtypes.get(name)}", "dtype differs"
    return compare_rows(expected.outputs[name], actual.outputs[name], expected.dtypes[name],
                        case.float_tolerance.get(name, 1e-5))


def _compare_served(case: Case, expected: EngineResult, actual: EngineResult) -> list[str]:
    """Each engine's serving path against tf.Transform's materialized rows (tf.Transform's own is a control)."""
    if actual.serving_error:
        return [f"serving path (raw_feature_spec + transform_features_layer) raised {actual.serving_error}"]
    lines = []
    for engine, result in (("tft", expected), ("Sluice", actual)):
        missing = sorted(set(expected.outputs) - set(result.served))
        if missing:
            lines.append(f"served by {engine}: outputs {missing} missing")
        for name in sorted(set(expected.outputs) & set(result.served)):
            want = expected.outputs[name][:len(result.served[name])]
            line, _ = compare_rows(want, result.served[name], expected.dtypes[name],
                                   case.float_tolerance.get(name, 1e-5))
            if line:
                lines.append(f"served by {engine}, output {name!r} (vs tft materialized): {line}")
    return lines


def compare_rows(want: list[np.ndarray], got: list[np.ndarray], dtype: str, tolerance: float) -> tuple[str, str]:
    """One line saying how ``got`` differs from ``want`` ('' if not), and the parity figure."""
    if len(want) != len(got):
        return f"rows: tft {len(want)}, Sluice {len(got)}", "rows differ"
    lengths = [(i, len(w), len(g)) for i, (w, g) in enumerate(zip(want, got)) if len(w) != len(g)]
    if lengths:
        i, w, g = lengths[0]
        return f"{len(lengths)} rows differ in length, first row {i}: tft {w} values, Sluice {g}", "shape differs"
    if dtype != "float32":
        bad = [i for i, (w, g) in enumerate(zip(want, got)) if list(w) != list(g)]
        if bad:
            i = bad[0]
            return (f"{len(bad)} of {len(want)} rows differ, first row {i}: tft {_show(want[i])}, "
                    f"Sluice {_show(got[i])}"), f"{len(bad)} rows differ"
        return "", "exact"
    flat_want = np.concatenate(want).astype(np.float64) if want else np.zeros(0)
    flat_got = np.concatenate(got).astype(np.float64) if got else np.zeros(0)
    nan_mismatch = np.isnan(flat_want) != np.isnan(flat_got)
    both = ~np.isnan(flat_want) & ~np.isnan(flat_got)
    with np.errstate(invalid="ignore"):  # equal infinities differ by 0, not NaN
        gaps = np.where(flat_want == flat_got, 0.0, np.abs(flat_want - flat_got))
    gaps = np.where(both, gaps, 0.0)
    diff = float(np.max(gaps, initial=0.0))
    figure = f"max abs diff {diff:.2g}"
    if nan_mismatch.any():
        return f"NaN at {int(nan_mismatch.sum())} positions in one engine only", figure
    # Absolute below magnitude 1, relative above: float32 results of magnitude 50 are 4e-6 apart per ulp.
    scaled = np.where(np.isfinite(gaps), gaps / np.maximum(1.0, np.abs(np.nan_to_num(flat_want))), np.inf)
    if np.any(scaled > tolerance):
        worst = int(np.argmax(scaled))
        return (f"max abs diff {diff:.3g} > {tolerance:g} (value {worst}: tft {flat_want[worst]:.6g}, "
                f"Sluice {flat_got[worst]:.6g})"), figure
    return "", figure


def _show(values: np.ndarray) -> str:
    text = repr(list(values)[:6]) + ("..." if len(values) > 6 else "")
    return text


def _first_line_difference(want: bytes, got: bytes) -> str:
    a, b = want.split(b"\n"), got.split(b"\n")
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"line {i + 1}: tft {x!r}, Sluice {y!r} (tft {len(a) - 1} lines, Sluice {len(b) - 1})"
    return f"tft {len(a) - 1} lines, Sluice {len(b) - 1} lines"
