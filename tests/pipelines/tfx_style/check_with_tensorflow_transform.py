"""Each TFX-style original's ``preprocessing_fn`` under real tensorflow-transform against its Sluice copy under Sluice.

Not collected by pytest (it costs a tf.Transform Beam pipeline); run by hand from the repository root:

    .venv/bin/python -m tests.pipelines.tfx_style.check_with_tensorflow_transform

Prints one line per module: identical, or every difference (outputs, feature specs, vocabulary files) as
``tests/oracle/tft_compare.py`` lists them. ``tfx`` itself is not installed: the originals get a stand-in for
the ``tfx.v1`` names they mention at import time.
"""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import sys
import tempfile
import types
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

STYLE = Path(__file__).resolve().parent
MODULES = {"taxi": "taxi_native_keras", "penguin": "penguin_keras", "mnist": "mnist_keras", "imdb": "imdb_keras"}
KINDS = {"int64": "INT", "double": "FLOAT", "float": "FLOAT", "string": "BYTES", "large_string": "BYTES"}


def _tfx_stand_in() -> None:
    if "tfx" not in sys.modules:
        v1 = types.SimpleNamespace(components=types.SimpleNamespace(FnArgs=object, TunerFnResult=object))
        sys.modules["tfx"] = types.SimpleNamespace(v1=v1)
        sys.modules["tfx.v1"] = v1


def _load(tft, name: str):
    """``name``'s preprocessing_fn: the original when ``tft`` is tensorflow_transform, else the Sluice copy."""
    _tfx_stand_in()
    folder = STYLE / ("tfx_original" if tft.__name__ == "tensorflow_transform" else "sluice")
    sys.path.insert(0, str(folder))
    sys.modules.pop("penguin_base", None)  # the helper beside each copy
    try:
        spec = importlib.util.spec_from_file_location(f"tfx_style_{folder.name}_{name}", folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
    return module.preprocessing_fn


def make_taxi(tft):
    return _load(tft, MODULES["taxi"])


def make_penguin(tft):
    return _load(tft, MODULES["penguin"])


def make_mnist(tft):
    return _load(tft, MODULES["mnist"])


def make_imdb(tft):
    return _load(tft, MODULES["imdb"])


def schema_of(table: pa.Table, fixed_lists: dict[str, int] | None = None) -> str:
    """TFDV's inferred schema, in short: complete columns dense with shape [1] (or the list's length)."""
    lines = []
    for field in table.schema:
        if field.name in (fixed_lists or {}):
            size = fixed_lists[field.name]
            lines.append(f'feature {{ name: "{field.name}" type: FLOAT presence {{ min_fraction: 1.0 }} '
                         f'shape {{ dim {{ size: {size} }} }} }}')
        elif table.column(field.name).null_count:
            lines.append(f'feature {{ name: "{field.name}" type: {KINDS[str(field.type)]} }}')
        else:
            lines.append(f'feature {{ name: "{field.name}" type: {KINDS[str(field.type)]} '
                         'presence { min_fraction: 1.0 } shape { dim { size: 1 } } }')
    return "\n".join(lines)


def cases():
    from tests.oracle.tft_oracle import Case
    from tests.pipelines import test_tfx_style_modules as data

    taxi = pacsv.read_csv(data.TAXI_CSV).slice(0, 400)
    rows = data._penguin_rows()
    text = ",".join(rows[0]) + "\n" + "".join(",".join(row.values()) + "\n" for row in rows)
    penguin = pacsv.read_csv(io.BytesIO(text.encode()))  # typed as CsvExampleGen types them
    digits = data._digits(100)
    reviews = pa.Table.from_pylist(data._reviews(100))
    close = 1e-5
    return [
        Case("taxi", taxi, schema_of(taxi), make_taxi,
             float_tolerance={f"{k}_xf": close for k in ("trip_miles", "fare", "trip_seconds")}),
        Case("penguin", penguin, schema_of(penguin), make_penguin,
             float_tolerance={f"{k}_xf": close for k in ("bill_length_mm", "bill_depth_mm", "flipper_length_mm",
                                                          "body_mass_g")}),
        Case("mnist", digits, schema_of(digits, {"image_floats": 784}), make_mnist,
             float_tolerance={"image_floats_xf": close}),
        Case("imdb", reviews, schema_of(reviews), make_imdb),
    ]


def main() -> int:
    from tests.oracle.tft_compare import compare
    from tests.oracle.tft_oracle import run_sluice, run_tft_batch

    work = Path(tempfile.mkdtemp(prefix="tfx-style-tft-"))
    try:
        todo = cases()
        expected = run_tft_batch(todo, work)
        failures = 0
        for case in todo:
            parity = compare(case, expected[case.name], run_sluice(case, work))
            failures += bool(parity.differences)
            verdict = "; ".join(parity.differences) or "identical"
            print(f"{MODULES[case.name]}: {verdict}", parity.figures, flush=True)
        return 1 if failures else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # TensorFlow and Beam together can crash the interpreter's teardown (SIGSEGV) after the results are out.
    os._exit(code)
