"""Generates the bad-input corpus: small broken files a user could hand to Sluice.

    python tests/data/make_bad_corpus.py [OUT_DIR]      # default: tests/data/bad

Each case is a folder ``<OUT_DIR>/<case>/`` holding its files; ``CASES`` (below)
says what each case is and what the CLI must answer (tests/test_bad_inputs.py
runs them). Files are generated rather than committed: one case is a 1 MB
field, several are not valid UTF-8.
"""

from __future__ import annotations

import dataclasses
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
GOOD_CSV = "a,b,c\n1,2.5,x\n2,3.5,y\n3,4.5,z\n4,5.5,x\n5,6.5,y\n6,7.5,z\n"


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input.

    ``pipeline``: which generated pipeline runs it ("csv", "import_schema", "transform",
    "trainer", "definition" or "cli" = a CLI call without a pipeline run).
    ``files``: relative path -> bytes. ``expect``: regex the one error line must match
    (None: the input is valid and the run must succeed). ``culprit``: the component that
    must publish nothing, or with ``gate``, the component that publishes its outputs (its
    report) and blocks what depends on it. ``special``: relative path -> "fifo" (a named pipe) or
    "symlink:<target>". ``max_lines``: the most stderr lines allowed (ExampleValidator's block).
    """

    name: str
    pipeline: str
    files: dict[str, bytes]
    expect: str | None
    culprit: str = ""
    args: tuple[str, ...] = ()
    slow: bool = False
    special: dict[str, str] = dataclasses.field(default_factory=dict)
    max_lines: int = 1
    gate: bool = False


def _csv(text: str) -> dict[str, bytes]:
    return {"data/data.csv": text.encode()}


def _module(source: str, good_preprocessing: bool = True) -> dict[str, bytes]:
    files = {"data/data.csv": GOOD_CSV.encode(), "module.py": source.encode()}
    if good_preprocessing:
        files["preprocessing.py"] = PREPROCESSING.encode()
    return files


PREPROCESSING = """\
from sluice import tft


def preprocessing_fn(inputs):
    return {"a_xf": tft.fill_missing(inputs["a"], 0), "b_xf": tft.fill_missing(inputs["b"], 0.0)}
"""

VALID_SCHEMA = """\
feature { name: "a" type: INT presence { min_fraction: 1.0 } }
feature { name: "b" type: FLOAT presence { min_fraction: 1.0 } }
feature { name: "c" type: BYTES presence { min_fraction: 1.0 } }
"""

LABEL_FEATURE = 'feature { name: "label" type: FLOAT presence { min_fraction: 1.0 } }\n'

OTHER_SCHEMA = """\
feature { name: "a" type: BYTES presence { min_fraction: 1.0 } }
feature { name: "b" type: FLOAT presence { min_fraction: 1.0 } }
feature { name: "c" type: BYTES presence { min_fraction: 1.0 } }
feature { name: "d" type: INT presence { min_fraction: 1.0 } }
"""

DEFINITION_HEAD = """\
from sluice.components.example_gen import CsvExampleGen
from sluice.components.statistics_gen import StatisticsGen
from sluice.components.schema_gen import SchemaGen
from sluice.orchestration.pipeline import Pipeline


def create_pipeline(pipeline_root: str = "root", data_root: str = "data"):
"""


def _schema_case(csv: str, schema: str) -> dict[str, bytes]:
    return {**_csv(csv), "schema.pbtxt": schema.encode()}


def _wide_csv(extra: int) -> str:
    """GOOD_CSV with ``extra`` more columns, none of them in VALID_SCHEMA."""
    names = [f"extra_{i:04d}" for i in range(extra)]
    rows = GOOD_CSV.splitlines()
    return "\n".join([rows[0] + "," + ",".join(names)] + [r + ",1" * extra for r in rows[1:]]) + "\n"


def _definition(body: str) -> dict[str, bytes]:
    return {"data/data.csv": GOOD_CSV.encode(), "pipeline.py": (DEFINITION_HEAD + body).encode()}


CASES: list[Case] = [
    # --- CSV data (CsvExampleGen) ---------------------------------------------------------------
    Case("csv_ragged_row", "csv", _csv("a,b,c\n1,2.5,x\n2,3.5\n3,4.5,z\n"), r"CsvExampleGen.*data\.csv",
         "CsvExampleGen"),
    Case("csv_too_many_fields", "csv", _csv("a,b,c\n1,2.5,x\n2,3.5,y,extra\n"), r"CsvExampleGen.*data\.csv",
         "CsvExampleGen"),
    Case("csv_unclosed_quote", "csv", _csv('a,b,c\n1,2.5,"x\n2,3.5,y\n3,4.5,z\n'), r"CsvExampleGen.*data\.csv",
         "CsvExampleGen"),
    Case("csv_unclosed_quote_mid_file", "csv", _csv('a,b,c\n1,2.5,"x\n2,3.5,y\n3,"4.5,z\n4,5.5,x\n'),
         r"CsvExampleGen.*data\.csv", "CsvExampleGen"),
    Case("csv_not_utf8", "csv", {"data/data.csv": b"a,b,c\n1,2.5,caf\xe9\n2,3.5,\xff\xfe\n"},
         r"CsvExampleGen.*data\.csv", "CsvExampleGen"),
    Case("csv_utf16", "csv", {"data/data.csv": GOOD_CSV.encode("utf-16")},
         r"CsvExampleGen.*data\.csv: encoded as UTF-16 LE \(byte-order mark\)", "CsvExampleGen"),
    # Past the 1 MB sniffed block (it once gave a bare UnicodeDecodeError).
    Case("csv_utf16_large", "csv", {"data/data.csv": (GOOD_CSV + GOOD_CSV[6:] * 20000).encode("utf-16")},
         r"CsvExampleGen.*data\.csv: encoded as UTF-16 LE \(byte-order mark\)", "CsvExampleGen"),
    Case("csv_bad_byte_in_header", "csv", {"data/data.csv": b"\xff" + GOOD_CSV.encode()},
         r"CsvExampleGen.*data\.csv:1: the header is not valid UTF-8 \(byte 0xff at column 1\)", "CsvExampleGen"),
    Case("csv_bad_byte_and_ragged_row", "csv", {"data/data.csv": b"a,b,c\n1,2.5,x\n2,caf\xe9\n3,4.5,z\n"},
         r"CsvExampleGen.*data\.csv:3: not a UTF-8 CSV file", "CsvExampleGen"),
    Case("csv_fifo", "csv", {}, r"CsvExampleGen.*data\.csv: is a FIFO \(named pipe\), not a regular file",
         "CsvExampleGen", special={"data/data.csv": "fifo"}),
    Case("csv_device", "csv", {}, r"CsvExampleGen.*data\.csv: is a character device, not a regular file",
         "CsvExampleGen", special={"data/data.csv": "symlink:/dev/zero"}),
    # One line past the 64 KB head and the 1 MB sniffed block (it once was an "empty file").
    Case("csv_one_long_line", "csv", _csv("a" * (2 << 20)),
         r"CsvExampleGen.*data\.csv: has a header but no data rows \(the file is one line of 2,097,152 bytes",
         "CsvExampleGen"),
    Case("csv_semicolons", "csv", _csv(GOOD_CSV.replace(",", ";")),
         r"CsvExampleGen.*data\.csv:1: the header is one column 'a;b;c': the file looks ';'-separated",
         "CsvExampleGen"),
    Case("csv_empty_file", "csv", _csv(""), r"CsvExampleGen.*data\.csv: empty file \(0 bytes\)", "CsvExampleGen"),
    Case("csv_header_only", "csv", _csv("a,b,c\n"), r"CsvExampleGen.*(data\.csv|no rows|empty)", "CsvExampleGen"),
    Case("csv_duplicate_columns", "csv", _csv("a,b,a\n1,2.5,3\n2,3.5,4\n"), r"CsvExampleGen.*'?a'?", "CsvExampleGen"),
    Case("csv_empty_column_name", "csv", _csv("a,,c\n1,2.5,x\n2,3.5,y\n"), r"CsvExampleGen.*data\.csv",
         "CsvExampleGen"),
    Case("csv_binary_garbage", "csv", {"data/data.csv": bytes(range(256)) * 8},
         r"CsvExampleGen.*data\.csv:1: not a UTF-8 CSV file: it holds NUL bytes", "CsvExampleGen"),
    Case("csv_no_files", "csv", {"data/README.txt": b"no csv here"}, r"CsvExampleGen", "CsvExampleGen",
         args=("--param", "pattern=*.csv")),
    # Valid inputs that look suspicious: they must work.
    Case("csv_bom", "csv", {"data/data.csv": b"\xef\xbb\xbf" + GOOD_CSV.encode()}, None),
    Case("csv_nan_inf_strings", "csv", _csv("a,b,c\n1,NaN,x\n2,inf,y\n3,-Inf,z\n4,1.5,x\n5,nan,y\n6,2.5,z\n"), None),
    Case("csv_one_megabyte_field", "csv", _csv("a,b,c\n1,2.5," + "x" * (1 << 20) + "\n2,3.5,y\n"), None),
    Case("csv_crlf_line_ends", "csv", _csv(GOOD_CSV.replace("\n", "\r\n")), None),
    # A quote inside an unquoted field is literal text (as in pyarrow, Python's csv, pandas).
    Case("csv_quote_inside_field", "csv", _csv('a,b,c\n1,2.5,x"y"z\n2,3.5,y\n'), None),
    # A late value that contradicts the sniffed type widens the column (to string), as in TFX.
    Case("csv_type_change_late", "csv",
         _csv("a,b,c\n" + "".join(f"{i},{i}.5,x\n" for i in range(2000)) + "oops,1.5,x\n"), None),
    # --- schemas (ImportSchemaGen + ExampleValidator) ------------------------------------------
    Case("schema_invalid_pbtxt", "import_schema", {**_csv(GOOD_CSV), "schema.pbtxt": b"feature { name: \"a\" type: \n"},
         r"ImportSchemaGen.*schema\.pbtxt", "ImportSchemaGen"),
    Case("schema_unknown_field", "import_schema", {**_csv(GOOD_CSV), "schema.pbtxt": b"feature { nme: \"a\" }\n"},
         r"ImportSchemaGen.*schema\.pbtxt", "ImportSchemaGen"),
    Case("schema_empty", "import_schema", {**_csv(GOOD_CSV), "schema.pbtxt": b""},
         r"ImportSchemaGen.*schema\.pbtxt", "ImportSchemaGen"),
    Case("schema_not_utf8", "import_schema", {**_csv(GOOD_CSV), "schema.pbtxt": b"\xff\xfe\x00garbage"},
         r"ImportSchemaGen.*schema\.pbtxt", "ImportSchemaGen"),
    Case("schema_for_other_data", "import_schema", {**_csv(GOOD_CSV), "schema.pbtxt": OTHER_SCHEMA.encode()},
         r"ExampleValidator.*2 columns break the schema: 'a', 'd'", "ExampleValidator", max_lines=7, gate=True),
    # What a later component needs, named before Transform runs (a curated schema, as in pipelines/taxi).
    Case("schema_missing_label", "import_schema",
         _schema_case(GOOD_CSV, VALID_SCHEMA + LABEL_FEATURE),
         r"ExampleValidator.*1 column breaks the schema: 'label'", "ExampleValidator", max_lines=7, gate=True),
    Case("schema_string_in_number_column", "import_schema",
         _schema_case(GOOD_CSV.replace("2.5", "n/a"), VALID_SCHEMA),
         r"ExampleValidator.*1 column breaks the schema: 'b'", "ExampleValidator", max_lines=7, gate=True),
    Case("schema_int_where_float", "import_schema",
         _schema_case(GOOD_CSV.replace(".5", ""), VALID_SCHEMA),
         r"ExampleValidator.*1 column breaks the schema: 'b'", "ExampleValidator", max_lines=7, gate=True),
    # 2 splits of 2,000 new columns: at most 20 listed, the rest counted (the full list is in the log).
    Case("schema_two_thousand_new_columns", "import_schema", _schema_case(_wide_csv(2000), VALID_SCHEMA),
         r"ExampleValidator.*2,000 columns break the schema: 'extra_0000', .* and 1,995 more", "ExampleValidator",
         max_lines=26, gate=True),
    # --- module files (Transform, Trainer) -------------------------------------------------------
    Case("preprocessing_syntax_error", "transform", _module("", False) | {
        "preprocessing.py": b"def preprocessing_fn(inputs):\n    return {'a': inputs['a']\n"},
        r"Transform.*preprocessing\.py.*(line )?\d", "Transform", slow=True),
    Case("preprocessing_fn_missing", "transform", _module("", False) | {
        "preprocessing.py": b"def preprocess(inputs):\n    return inputs\n"},
        r"Transform.*preprocessing\.py.*preprocessing_fn", "Transform", slow=True),
    Case("preprocessing_wrong_return", "transform", _module("", False) | {
        "preprocessing.py": b"def preprocessing_fn(inputs):\n    return [inputs['a']]\n"},
        r"Transform.*preprocessing", "Transform", slow=True),
    Case("preprocessing_raises", "transform", _module("", False) | {
        "preprocessing.py": b"def preprocessing_fn(inputs):\n    return {'z': inputs['no_such_column']}\n"},
        r"Transform.*preprocessing\.py.*(no_such_column|line)", "Transform", slow=True),
    Case("preprocessing_missing_label", "transform", _module("", False) | {
        "preprocessing.py": b"def preprocessing_fn(inputs):\n    return {'y': inputs['label']}\n"},
        r"Transform.*KeyError: 'label'; the examples have no column 'label' \(they have 'a' \(int64\), "
        r"'b' \(float32\), 'c' \(string\)\)", "Transform", slow=True),
    Case("preprocessing_int_where_float", "transform", _module("", False) | {
        "preprocessing.py": b"import tensorflow as tf\n\ndef preprocessing_fn(inputs):\n"
                            b"    return {'y': tf.math.log(inputs['a'])}\n"},
        r"Transform.*preprocessing\.py, line 4 .*; on line 4, column 'a' is int64 in the data", "Transform",
        slow=True),
    Case("run_fn_missing", "trainer", _module("def train(fn_args):\n    pass\n"),
         r"Trainer.*module\.py.*run_fn", "Trainer", slow=True),
    Case("run_fn_syntax_error", "trainer", _module("def run_fn(fn_args:\n    pass\n"),
         r"Trainer.*module\.py.*(line )?\d", "Trainer", slow=True),
    Case("run_fn_saves_no_model", "trainer", _module("def run_fn(fn_args):\n    return 42\n"),
         r"Trainer.*(module\.py|serving|SavedModel|model)", "Trainer", slow=True),
    # --- pipeline definitions --------------------------------------------------------------------
    Case("definition_cycle", "definition", _definition(
        "    gen = CsvExampleGen(input_base=data_root)\n"
        "    a = StatisticsGen(examples=gen.outputs['examples'], id='A')\n"
        "    b = StatisticsGen(examples=gen.outputs['examples'], id='B')\n"
        "    a.add_upstream(b); b.add_upstream(a)\n"
        "    return Pipeline(name='cyc', components=[gen, a, b], pipeline_root=pipeline_root)\n"),
        r"cycle.*\b(A|B)\b"),
    Case("definition_unknown_parameter", "definition", _definition(
        "    gen = CsvExampleGen(input_base=data_root, input_patern='*.csv')\n"
        "    return Pipeline(name='p', components=[gen], pipeline_root=pipeline_root)\n"),
        r"pipeline\.py:\d+.*CsvExampleGen.*input_patern"),
    Case("definition_duplicate_id", "definition", _definition(
        "    gen = CsvExampleGen(input_base=data_root)\n"
        "    a = StatisticsGen(examples=gen.outputs['examples'])\n"
        "    b = StatisticsGen(examples=gen.outputs['examples'])\n"
        "    return Pipeline(name='p', components=[gen, a, b], pipeline_root=pipeline_root)\n"),
        r"duplicate component id 'StatisticsGen'"),
    Case("definition_type_mismatch", "definition", _definition(
        "    gen = CsvExampleGen(input_base=data_root)\n"
        "    s = SchemaGen(statistics=gen.outputs['examples'])\n"
        "    return Pipeline(name='p', components=[gen, s], pipeline_root=pipeline_root)\n"),
        r"SchemaGen.*statistics.*ExampleStatistics.*Examples"),
    Case("definition_bad_parameter_type", "definition", _definition(
        "    gen = CsvExampleGen(input_base=data_root, null_values='NA')\n"
        "    return Pipeline(name='p', components=[gen], pipeline_root=pipeline_root)\n"),
        r"pipeline\.py:\d+.*CsvExampleGen.*null_values"),
    Case("definition_syntax_error", "definition", {"pipeline.py": b"def create_pipeline(:\n    pass\n"},
         r"pipeline\.py:1"),
    Case("definition_no_create_pipeline", "definition", {"pipeline.py": b"X = 1\n"}, r"pipeline\.py.*create_pipeline"),
    Case("definition_raises", "definition",
         {"pipeline.py": b"def create_pipeline(pipeline_root: str = 'r'):\n    return 1 / 0\n"},
         r"pipeline\.py:2.*ZeroDivisionError"),
    Case("definition_unknown_input", "definition", _definition(
        "    gen = CsvExampleGen(input_base=data_root)\n"
        "    s = StatisticsGen(examples=gen.outputs['exampels'])\n"
        "    return Pipeline(name='p', components=[gen, s], pipeline_root=pipeline_root)\n"),
        r"CsvExampleGen.*exampels"),
    # --- CLI arguments ---------------------------------------------------------------------------
    # args[0] is the PIPELINE argument ("@name": a file in the case's folder).
    Case("cli_unknown_option", "cli", {}, r"(no such option|No such option).*--frobnicate",
         args=("penguin", "--frobnicate")),
    Case("cli_param_without_equals", "cli", {}, r"--param 'rows'.*NAME=VALUE", args=("penguin", "--param", "rows")),
    Case("cli_unknown_param", "cli", {}, r"--param nope.*unknown parameter", args=("penguin", "--param", "nope=1")),
    Case("cli_param_wrong_type", "cli", {}, r"--param train_steps='many'",
         args=("penguin", "--param", "train_steps=many")),
    Case("cli_param_bad_list", "cli", {}, r"--param beam_pipeline_args=",
         args=("penguin", "--param", "beam_pipeline_args=[1, 2")),
    Case("cli_missing_pipeline_file", "cli", {}, r"missing\.py.*does not exist", args=("@missing.py",)),
    Case("cli_unknown_pipeline_name", "cli", {}, r"no_such_pipeline.*no such pipeline", args=("no_such_pipeline",)),
    Case("cli_bad_max_parallel", "cli", {}, r"--max-parallel", args=("penguin", "--max-parallel", "0")),
    Case("cli_resume_unknown_run", "cli", {}, r"no run 'deadbeef'", args=("penguin", "--resume", "deadbeef")),
]


def write_corpus(out_dir: str) -> list[Case]:
    """Writes every case's files under ``out_dir/<case>/``; returns the cases."""
    for case in CASES:
        for rel, content in case.files.items():
            path = os.path.join(out_dir, case.name, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as fh:
                fh.write(content)
        for rel, kind in case.special.items():
            path = os.path.join(out_dir, case.name, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if kind == "fifo":
                os.mkfifo(path)
            else:
                os.symlink(kind.removeprefix("symlink:"), path)
        os.makedirs(os.path.join(out_dir, case.name), exist_ok=True)
    return CASES


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "bad")
    print(f"{len(write_corpus(target))} cases written to {target}")
