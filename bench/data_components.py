"""The data components *alone*, side by side with their limits (issue #3's two efficiency targets).

    .venv/bin/python -m bench.data_components                        # 100x data, 5 repeats
    .venv/bin/python -m bench.data_components --size 1 --repeats 1   # quick check that it works
    .venv/bin/python -m bench.data_components --profile              # also cProfile each component once

``bench/run.py`` times CsvExampleGen and StatisticsGen inside the whole pipeline run, where the
local runner imports TensorFlow on a background thread meanwhile (CPU and GIL contention). This
measures each of them alone. Per repeat, interleaved so that noise hits both sides alike:

1. CsvExampleGen in a fresh process set up as the local runner sets up its own
   (``orchestration.runtime.tune_heap``; ``freeze_long_lived`` after the imports, as before the
   runner's first component), invoked as ``orchestration.execution.run_node`` invokes an
   executor (the node's IR from ``compile_pipeline``, ``load_component``, ``resolve_parameters``,
   real artifact objects and an ``ExecutionContext``; no metadata store, no MLflow). Timed
   separately: (a) the imports done before the call (``load_component`` importing the component
   module, then ``apache_beam``); (b) the call itself, to a fresh output folder; then a second
   call in the same process to another fresh folder (steady state: Beam's lazy first-pipeline
   imports and set-up done). ``run_node``'s own work around the call is timed apart: the cache
   key (hashes the input files) and the output fingerprint (hashes what was written).
2. ``bench.limits.csv_read`` twice (a first and a second run) and ``csv_to_parquet`` (reference)
   in another fresh process, set up as the component's is before its first call (``tune_heap``,
   ``apache_beam`` imported, ``freeze_long_lived``).
3. StatisticsGen the same way, on the Parquet Examples the first CsvExampleGen call wrote.
4. ``bench.limits.parquet_stats`` twice on the same Examples, likewise.

Component and limit alternate which goes first from one repeat to the next. Figures: CsvExampleGen
throughput as a % of read_csv's (= limit_s / component_s, same rows), StatisticsGen's ratio
component_s / limit_s; like for like (each side's first run in its fresh process, and each
side's second run), and the strictest cross pairing (the component's first call against the
limit's second run); medians over the repeats. Writes
``bench/DATA_COMPONENTS.md`` and ``bench/data_components.json``. The packages the components import are
snapshotted once at the start (as ``bench/run.py`` does), so edits made meanwhile don't mix in.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)

EG_TARGET_PERCENT = 50.0  # CsvExampleGen >= 50% of read_csv throughput
SG_TARGET_RATIO = 2.0  # StatisticsGen <= 2x the Parquet scan
PIPELINE_NAME = "bench_components"


def _rel(path: str) -> str:
    """A path as written to the report: relative to the repository, never a machine path."""
    return os.path.relpath(path, REPO) if os.path.isabs(path) else path


def _peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- children (each a fresh process) -------------------------------------------------------


def _child_component(args) -> dict:
    """One component alone: imports, cache key, two calls, output fingerprints."""
    started = time.perf_counter()
    from sluice.orchestration.pipeline import load_component
    from sluice.orchestration.runtime import tune_heap

    tune_heap()  # as the local runner (and a Kubeflow task) set up their process before any component

    with open(args.ir) as fh:
        ir = json.load(fh)
    node = next(n for n in ir["nodes"] if n["type"] == args.component)
    spec = ir["pipeline"]

    t0 = time.perf_counter()
    comp = load_component(node["component"])  # imports the component module, as run_node does
    t1 = time.perf_counter()
    import apache_beam  # noqa: F401 - what the Beam components import first

    t2 = time.perf_counter()
    from sluice.components.artifacts import ARTIFACT_TYPES, Artifact
    from sluice.orchestration.execution import cache_key, fingerprint_path, resolve_parameters
    from sluice.orchestration.runtime import RunnerContext as ExecutionContext  # as run_node hands it
    from sluice.orchestration.runtime import freeze_long_lived

    freeze_long_lived()  # what the local runner does before its first component runs (not timed)

    module = sys.modules[comp.fn.__module__]
    params = resolve_parameters(comp, node)
    inputs = {}
    if args.inputs:
        with open(args.inputs) as fh:
            inputs = {name: [Artifact.from_record(r) for r in records] for name, records in json.load(fh).items()}
    t3 = time.perf_counter()
    key = cache_key(node, inputs)  # run_node does this before the call: hashes ExternalData files
    cache_key_s = time.perf_counter() - t3

    calls = {}
    for call in ("first", "second"):
        folder = os.path.join(args.root, call)
        outputs = {out: ARTIFACT_TYPES[s["type"]](uri=os.path.join(folder, out)) for out, s in node["outputs"].items()}
        for art in outputs.values():
            os.makedirs(art.uri)
        ctx = ExecutionContext(
            pipeline_name=spec["name"], component_id=node["id"], execution_id=f"bench-{call}",
            beam_pipeline_args=list(spec.get("beam_pipeline_args") or []), tracking_uri=None,
            mlflow_run_id=None, pipeline_root=args.root, lookup=None,
        )
        kwargs = dict(params)
        for in_name in comp.inputs:
            arts = inputs.get(in_name) or []
            kwargs[in_name] = arts[0] if arts else None
        kwargs.update(outputs)
        if comp.context_parameter:
            kwargs[comp.context_parameter] = ctx
        profiler = None
        if args.profile == call:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        t = time.perf_counter()
        comp.fn(**kwargs)
        seconds = time.perf_counter() - t
        if profiler is not None:
            import pstats

            profiler.disable()
            print(f"=== cProfile: {args.component}, {call} call ({seconds:.2f} s with the profiler), "
                  f"main thread only, top 25 by cumulative time ===")
            pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(25)
            sys.stdout.flush()
        t = time.perf_counter()
        for art in outputs.values():
            art.fingerprint = fingerprint_path(art.uri)
        fingerprint_s = time.perf_counter() - t
        calls[call] = {"seconds": seconds, "fingerprint_s": fingerprint_s, "metrics": dict(ctx.metrics),
                       "peak_rss": _peak_rss(), "outputs": {o: [a.to_record()] for o, a in outputs.items()}}
    return {
        "component": args.component, "module_file": _rel_to_source(module.__file__, args.source),
        "process_start_to_load_s": t0 - started,
        "imports": {"component_module_s": t1 - t0, "apache_beam_s": t2 - t1, "total_s": t2 - t0},
        "cache_key_s": cache_key_s, "cache_key": key, "calls": calls,
    }


def _rel_to_source(path: str, source: str | None) -> str:
    if source and os.path.commonpath([os.path.abspath(path), source]) == source:
        return "<snapshot>/" + os.path.relpath(path, source)
    return _rel(path)


def _limit_process() -> None:
    """Sets a limit's process up as a component's is before its first call: the same heap, and
    ``apache_beam`` imported. Without it a Parquet scan's first run took ~0.43 s, not ~0.24 s:
    ``pq.read_table`` imports ``pyarrow.dataset`` on first use, 0.19 s in a bare process but 6 ms
    once Beam has imported what it needs."""
    from sluice.orchestration.runtime import tune_heap

    tune_heap()
    import apache_beam  # noqa: F401

    from sluice.orchestration.runtime import freeze_long_lived

    freeze_long_lived()


def _child_csv_limits(args) -> dict:
    from bench import limits

    _limit_process()
    first = limits.csv_read(args.csv)  # a fresh process's first read (bench/limits.py counts the second)
    read = limits.csv_read(args.csv)
    to_parquet = limits.csv_to_parquet(args.csv, args.root)
    return {"csv_read": read, "csv_read_first": first, "csv_to_parquet": to_parquet}


def _child_parquet_limits(args) -> dict:
    from bench import limits

    _limit_process()
    first = limits.parquet_stats(args.examples)
    return {"parquet_stats": limits.parquet_stats(args.examples), "parquet_stats_first": first}


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", required=True, choices=["component", "csv-limits", "parquet-limits"])
    parser.add_argument("--result", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--component")
    parser.add_argument("--ir")
    parser.add_argument("--inputs")
    parser.add_argument("--csv")
    parser.add_argument("--examples")
    parser.add_argument("--source")
    parser.add_argument("--profile", choices=["first", "second"])
    args = parser.parse_args(argv)
    run = {"component": _child_component, "csv-limits": _child_csv_limits,
           "parquet-limits": _child_parquet_limits}[args.child]
    result = run(args)
    result["load_after"] = _load()
    with open(args.result, "w") as fh:
        json.dump(result, fh)


# --- the parent ----------------------------------------------------------------------------


class Runner:
    def __init__(self, work: str, source: str):
        self.work, self.source = work, source
        self.env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        # The snapshot ahead of the editable install; the repository after it (for ``bench``).
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (source, REPO, os.environ.get("PYTHONPATH")) if p)

    def child(self, label: str, *args: str, echo: bool = False) -> dict:
        result = os.path.join(self.work, f"{label}.json")
        log = os.path.join(self.work, f"{label}.log")
        command = [sys.executable, "-m", "bench.data_components", "--child", *args, "--result", result]
        load = _load()
        started = time.perf_counter()
        with open(log, "wb") as out:
            # cwd: the work folder, so that neither this file's folder nor the repository shadows
            # the snapshot (``-m`` puts the cwd first on sys.path).
            code = subprocess.call(command, cwd=self.work, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - started
        # What the child wrote is flushed to disk now, not while the next child is timed: the
        # kernel's writeback of ~100 MB of fresh Parquet otherwise competes for the 2 cores
        # with whichever runs next (a scan right after CsvExampleGen took 0.30 s, not 0.24 s).
        os.sync()
        with open(log, errors="replace") as fh:
            text = fh.read()
        if code != 0:
            raise SystemExit(f"bench.data_components: child {label} failed ({code}):\n{text[-4000:]}")
        if echo:
            print(text, end="")
        with open(result) as fh:
            record = json.load(fh)
        record["load_before"] = load
        record["process_wall_s"] = wall
        return record


def _ir(data_dir: str, root: str) -> dict:
    """The IR of CsvExampleGen -> StatisticsGen, parametrised as in the taxi pipeline."""
    from sluice.components.example_gen import CsvExampleGen
    from sluice.components.statistics_gen import StatisticsGen
    from sluice.orchestration.pipeline import Pipeline, compile_pipeline

    example_gen = CsvExampleGen(input_base=data_dir, input_pattern="*.csv")
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    return compile_pipeline(Pipeline(name=PIPELINE_NAME, components=[example_gen, statistics_gen],
                                     pipeline_root=root))


def data_for(size: int) -> str:
    from bench.make_data import make_replicated_csv
    from bench.run import SOURCE_DIR

    if size == 1:
        return SOURCE_DIR
    return make_replicated_csv(os.path.join(SOURCE_DIR, "data.csv"), size, os.path.join(BENCH, "out", "data"))


def one_repeat(runner: Runner, index: int, data_dir: str, ir_path: str) -> dict:
    folder = os.path.join(runner.work, f"rep{index}")
    os.makedirs(folder)
    limit_first = index % 2 == 1
    csv = os.path.join(data_dir, "data.csv")
    record: dict = {"repeat": index, "order": "limit first" if limit_first else "component first",
                    "load_start": _load()}

    def example_gen():
        return runner.child(f"rep{index}-eg", "component", "--component", "CsvExampleGen", "--ir", ir_path,
                            "--root", os.path.join(folder, "eg"), "--source", runner.source)

    def csv_limits():
        scratch = os.path.join(folder, "csv-limits")
        os.makedirs(scratch)
        return runner.child(f"rep{index}-csv-limits", "csv-limits", "--csv", csv, "--root", scratch)

    if limit_first:
        record["csv_limits"] = csv_limits()
        record["CsvExampleGen"] = example_gen()
    else:
        record["CsvExampleGen"] = example_gen()
        record["csv_limits"] = csv_limits()
    examples = record["CsvExampleGen"]["calls"]["first"]["outputs"]["examples"]
    inputs = os.path.join(folder, "sg-inputs.json")
    with open(inputs, "w") as fh:
        json.dump({"examples": examples}, fh)
    examples_uri = examples[0]["uri"]

    def statistics_gen():
        return runner.child(f"rep{index}-sg", "component", "--component", "StatisticsGen", "--ir", ir_path,
                            "--inputs", inputs, "--root", os.path.join(folder, "sg"), "--source", runner.source)

    def parquet_limits():
        return runner.child(f"rep{index}-pq-limits", "parquet-limits", "--examples", examples_uri,
                            "--root", folder)

    if limit_first:
        record["parquet_limits"] = parquet_limits()
        record["StatisticsGen"] = statistics_gen()
    else:
        record["StatisticsGen"] = statistics_gen()
        record["parquet_limits"] = parquet_limits()
    record["load_end"] = _load()
    shutil.rmtree(folder, ignore_errors=True)
    for part in ("CsvExampleGen", "StatisticsGen"):  # no machine paths in the records
        for call in record[part]["calls"].values():
            call["outputs"] = {name: [{k: v for k, v in r.items() if k != "uri"} for r in recs]
                               for name, recs in call["outputs"].items()}
    record["derived"] = derive(record)
    return record


def derive(record: dict) -> dict:
    eg, sg = record["CsvExampleGen"], record["StatisticsGen"]
    read = record["csv_limits"]["csv_read"]["seconds"]
    read_first = record["csv_limits"]["csv_read_first"]["seconds"]
    to_parquet = record["csv_limits"]["csv_to_parquet"]["seconds"]
    scan = record["parquet_limits"]["parquet_stats"]["seconds"]
    scan_first = record["parquet_limits"]["parquet_stats_first"]["seconds"]
    out = {"csv_read_s": read, "csv_read_first_s": read_first, "csv_to_parquet_s": to_parquet,
           "parquet_stats_s": scan, "parquet_stats_first_s": scan_first,
           "eg_imports_s": eg["imports"]["total_s"], "sg_imports_s": sg["imports"]["total_s"],
           "eg_cache_key_s": eg["cache_key_s"], "eg_fingerprint_s": eg["calls"]["first"]["fingerprint_s"],
           "sg_fingerprint_s": sg["calls"]["first"]["fingerprint_s"],
           # The bare I/O CsvExampleGen cannot avoid, as a % of read_csv's throughput: its floor.
           "csv_to_parquet_pct_of_read_csv": 100.0 * read / to_parquet}
    for call in ("first", "second"):
        eg_s, sg_s = eg["calls"][call]["seconds"], sg["calls"][call]["seconds"]
        out[f"eg_{call}_s"] = eg_s
        out[f"sg_{call}_s"] = sg_s
        out[f"eg_{call}_pct_of_read_csv"] = 100.0 * read / eg_s
        out[f"eg_{call}_pct_of_csv_to_parquet"] = 100.0 * to_parquet / eg_s
        out[f"sg_{call}_ratio"] = sg_s / scan
    # Like for like: each side's first run in a fresh process (what a process pays once included
    # on both sides), and each side's second run (leaving it out on both).
    out["eg_first_pct_of_read_csv_first"] = 100.0 * read_first / eg["calls"]["first"]["seconds"]
    out["sg_first_ratio_to_scan_first"] = sg["calls"]["first"]["seconds"] / scan_first
    return out


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(records: list[dict]) -> dict:
    keys = records[0]["derived"].keys()
    return {k: _median([r["derived"][k] for r in records]) for k in keys}


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# --- report --------------------------------------------------------------------------------


def _s(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def _rate(rows, seconds) -> str:
    if not rows or not seconds:
        return "–"
    rate = rows / seconds
    return f"{rate / 1e6:.2f} M" if rate >= 1e6 else f"{rate / 1e3:.0f} k"


def table(report: dict) -> str:
    m, rows = report["medians"], report["rows"]

    def met(first_ok: bool, second_ok: bool) -> str:
        return " / ".join("yes" if ok else "**no**" for ok in (first_ok, second_ok))

    def flag(ok: bool) -> str:
        return "" if ok else " (**misses**)"

    eg_first_ok = m["eg_first_pct_of_read_csv_first"] >= EG_TARGET_PERCENT
    eg_second_ok = m["eg_second_pct_of_read_csv"] >= EG_TARGET_PERCENT
    eg_cross_ok = m["eg_first_pct_of_read_csv"] >= EG_TARGET_PERCENT
    sg_first_ok = m["sg_first_ratio_to_scan_first"] <= SG_TARGET_RATIO
    sg_second_ok = m["sg_second_ratio"] <= SG_TARGET_RATIO
    sg_cross_ok = m["sg_first_ratio"] <= SG_TARGET_RATIO
    lines = [
        "| component (alone) | imports s (module + apache_beam) | first call s | second call s | limit "
        "| limit first run s | limit second run s | first call vs limit's first run "
        "| second call vs limit's second run "
        "| target | met, like for like (first / second call) | first call vs limit's second run (strictest) |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---|---|---|",
        f"| CsvExampleGen | {_s(m['eg_imports_s'])} | {_s(m['eg_first_s'])} ({_rate(rows, m['eg_first_s'])} rows/s) "
        f"| {_s(m['eg_second_s'])} ({_rate(rows, m['eg_second_s'])} rows/s) | pyarrow read_csv "
        f"| {_s(m['csv_read_first_s'])} | {_s(m['csv_read_s'])} ({_rate(rows, m['csv_read_s'])} rows/s) "
        f"| {m['eg_first_pct_of_read_csv_first']:.1f}% | {m['eg_second_pct_of_read_csv']:.1f}% "
        f"| >= {EG_TARGET_PERCENT:.0f}% of read_csv throughput | {met(eg_first_ok, eg_second_ok)} "
        f"| {m['eg_first_pct_of_read_csv']:.1f}%{flag(eg_cross_ok)} |",
        f"| (reference) | | | | read_csv + write Parquet (after the reads) | | {_s(m['csv_to_parquet_s'])} "
        f"| | {m['eg_second_pct_of_csv_to_parquet']:.0f}% "
        f"| (itself {m['csv_to_parquet_pct_of_read_csv']:.0f}% of read_csv throughput) | "
        f"| {m['eg_first_pct_of_csv_to_parquet']:.0f}% |",
        f"| StatisticsGen | {_s(m['sg_imports_s'])} | {_s(m['sg_first_s'])} ({_rate(rows, m['sg_first_s'])} rows/s) "
        f"| {_s(m['sg_second_s'])} ({_rate(rows, m['sg_second_s'])} rows/s) "
        f"| pyarrow Parquet scan + min/max/mean/nulls | {_s(m['parquet_stats_first_s'])} "
        f"| {_s(m['parquet_stats_s'])} "
        f"| {m['sg_first_ratio_to_scan_first']:.2f}x | {m['sg_second_ratio']:.2f}x "
        f"| <= {SG_TARGET_RATIO:.0f}x the scan "
        f"| {met(sg_first_ok, sg_second_ok)} | {m['sg_first_ratio']:.2f}x{flag(sg_cross_ok)} |",
    ]
    return "\n".join(lines)


def per_repeat_table(report: dict) -> str:
    lines = [
        "| repeat | order | load 1/5/15 at start | EG first s | EG second s | read_csv first / second s "
        "| csv_to_parquet s | EG % of read_csv (first vs first / second vs second / first vs second) "
        "| SG first s | SG second s | scan first / second s "
        "| SG / scan (first vs first / second vs second / first vs second) |",
        "|---:|---|---|---:|---:|---|---:|---|---:|---:|---|---|",
    ]
    for r in report["per_repeat"]:
        d = r["derived"]
        lines.append(
            f"| {r['repeat']} | {r['order']} | {' '.join(f'{x:.2f}' for x in r['load_start'])} "
            f"| {_s(d['eg_first_s'])} | {_s(d['eg_second_s'])} | {_s(d['csv_read_first_s'])} / {_s(d['csv_read_s'])} "
            f"| {_s(d['csv_to_parquet_s'])} "
            f"| {d['eg_first_pct_of_read_csv_first']:.0f}% / {d['eg_second_pct_of_read_csv']:.0f}% "
            f"/ {d['eg_first_pct_of_read_csv']:.0f}% "
            f"| {_s(d['sg_first_s'])} | {_s(d['sg_second_s'])} "
            f"| {_s(d['parquet_stats_first_s'])} / {_s(d['parquet_stats_s'])} "
            f"| {d['sg_first_ratio_to_scan_first']:.2f}x / {d['sg_second_ratio']:.2f}x / {d['sg_first_ratio']:.2f}x |"
        )
    return "\n".join(lines)


def markdown(report: dict) -> str:
    m = report["medians"]
    load_start, load_end = (" ".join(map(str, report["load"][when])) for when in ("start", "end"))
    return f"""# The data components alone vs. their limits

`{report['command']}`

- date: {report['date']}; commit `{report['commit']}` ({report['tree']})
- machine: `nproc` = {report['nproc']}, {report['cpu_model']}; shared (others may be running):
  load average 1/5/15 min {load_start} at the start, {load_end} at the end
- data: `{report['data']}`, {report['rows']:,} rows ({report['size']}x); {report['repeats']} repeats; medians below

{table(report)}

Run-node overheads around the call (medians, not in the figures above): CsvExampleGen's cache key
(hashes the input CSV) {_s(m['eg_cache_key_s'])} s, its output fingerprint {_s(m['eg_fingerprint_s'])} s;
StatisticsGen's output fingerprint {_s(m['sg_fingerprint_s'])} s.

## Per repeat

{per_repeat_table(report)}

## Method

Each component runs alone in a fresh Python process, set up as the local runner sets up its
process (`orchestration.runtime.tune_heap` at the start; `freeze_long_lived` once the imports are
done, untimed, as before the runner's first component), invoked the way
`orchestration.execution.run_node` invokes an executor: the node's IR from `compile_pipeline`
(CsvExampleGen with `input_pattern="*.csv"` as in the taxi pipeline, StatisticsGen on its
output), `load_component`, `resolve_parameters`, real artifact objects in a temp folder and an
`ExecutionContext` with the pipeline's (empty) Beam args, so Beam's in-process FnApiRunner. Not
used: the metadata store and MLflow, the temp-folder rename, and the local runner (so no
TensorFlow import on a background thread, which is in the in-pipeline figures of
`bench/RESULTS.md`). **Imports** are timed apart and are not in the call: `load_component`
importing the component module, then `import apache_beam` (in a pipeline run the component
modules are imported when the pipeline is loaded, and `apache_beam` inside the first Beam
component's call). **First call** is the component function on a fresh output folder right
after those imports (it still pays Beam's lazy first-pipeline imports and set-up, pyarrow's
first-use costs and the heap's first growth, the page cache being warm from earlier repeats);
**second call** is the same component again in the same process to another fresh folder, which
leaves out what a process pays once (in a pipeline run that falls on whichever component comes
first). `run_node`'s cache key and output fingerprint are timed apart (above) and not included.
The limits are `bench/limits.py`'s own functions, in their own fresh process per repeat, set up
as a component's process is before its first call, so that neither side starts colder: the same
heap (`tune_heap`: glibc's heap for Arrow too; pyarrow's default mimalloc made read_csv's first
run slower), `apache_beam` imported (`pq.read_table` imports `pyarrow.dataset` on first use: 0.19 s in a
bare process, 6 ms once Beam has imported what it needs; the scan's first run took ~0.43 s
without Beam, ~0.24 s with it) and `freeze_long_lived`. `csv_read` and
`parquet_stats` each run twice, a **first run** and a **second run**, then `csv_to_parquet` once.
On this machine a fresh process's first pass over the data is much slower than its second on
both sides (fresh memory is faulted in and zeroed), so the targets are judged **like for like**:
the component's first call against the limit's first run, its second call against the limit's
second run. The cross pairing (the component's first call against the limit's second run) holds
the component alone to a fresh process's costs; it is reported as the strictest figure. The
component and its limit alternate which runs first from repeat to repeat; after every
process the parent calls `os.sync()`, so the kernel's writeback of what it wrote does not
compete with the next one for the cores. CsvExampleGen's
figure is its throughput as a % of read_csv's on the same rows (= read_csv s / component s);
StatisticsGen's is component s / scan s, on the Parquet Examples the first CsvExampleGen call
of that repeat wrote. The component packages were snapshotted once at the start, so edits made
meanwhile did not mix in. Raw figures: `bench/data_components.json`.
"""


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if "--child" in argv:
        child_main(argv)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100, help="data replication factor (1 = the 15k-row taxi CSV)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", action="store_true",
                        help="after the repeats, cProfile each component's first call once (printed, not recorded)")
    parser.add_argument("--markdown", default=os.path.join(BENCH, "DATA_COMPONENTS.md"))
    parser.add_argument("--json", default=os.path.join(BENCH, "data_components.json"))
    parser.add_argument("--keep", action="store_true", help="keep the temp work folder")
    args = parser.parse_args(argv)
    sys.path.insert(0, REPO)
    from bench.run import snapshot_sources, source_digest

    load_start = _load()
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    data_dir = data_for(args.size)
    csv = os.path.join(data_dir, "data.csv")
    work = tempfile.mkdtemp(prefix="sluice-bench-components-")
    try:
        source = snapshot_sources(work)
        runner = Runner(work, source)
        ir_path = os.path.join(work, "ir.json")
        with open(ir_path, "w") as fh:
            json.dump(_ir(data_dir, os.path.join(work, "root")), fh)
        records = []
        for index in range(args.repeats):
            record = one_repeat(runner, index, data_dir, ir_path)
            records.append(record)
            d = record["derived"]
            print(f"repeat {index} ({record['order']}, load {record['load_start']}): "
                  f"CsvExampleGen {d['eg_first_s']:.2f} s / {d['eg_second_s']:.2f} s vs read_csv "
                  f"{d['csv_read_first_s']:.2f} s / {d['csv_read_s']:.2f} s "
                  f"({d['eg_first_pct_of_read_csv_first']:.0f}% / {d['eg_second_pct_of_read_csv']:.0f}%); "
                  f"StatisticsGen {d['sg_first_s']:.2f} s / {d['sg_second_s']:.2f} s vs scan "
                  f"{d['parquet_stats_first_s']:.2f} s / {d['parquet_stats_s']:.2f} s "
                  f"({d['sg_first_ratio_to_scan_first']:.2f}x / {d['sg_second_ratio']:.2f}x)", flush=True)
        rows = int(records[0]["CsvExampleGen"]["calls"]["first"]["metrics"].get("rows", 0))
        read_rows = records[0]["csv_limits"]["csv_read"]["rows"]
        if rows != read_rows:
            print(f"warning: CsvExampleGen wrote {rows} rows, read_csv read {read_rows}", file=sys.stderr)
        dirty = _git("status", "--porcelain", "--", "components", "orchestration", "pipelines")
        report = {
            "command": " ".join([".venv/bin/python -m bench.data_components", *argv]),
            "date": date, "commit": _git("rev-parse", "HEAD"),
            "tree": ("working tree with uncommitted changes in: " + ", ".join(
                line.split()[-1] for line in dirty.splitlines())) if dirty.strip() else "clean working tree",
            "source_digest": source_digest(source),
            "nproc": os.cpu_count(), "cpu_model": _cpu_model(), "python": sys.version.split()[0],
            "load": {"start": load_start, "end": _load()},
            "data": _rel(csv), "size": args.size, "rows": rows, "repeats": args.repeats,
            "targets": {"eg_min_pct_of_read_csv": EG_TARGET_PERCENT, "sg_max_ratio_to_scan": SG_TARGET_RATIO},
            "medians": summarize(records), "per_repeat": records,
        }
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
        with open(args.markdown, "w") as fh:
            fh.write(markdown(report))
        print()
        print(table(report))
        print()
        print(per_repeat_table(report))
        print(f"\nload average: start {load_start}, end {report['load']['end']}; "
              f"wrote {_rel(args.markdown)} and {_rel(args.json)}")
        if args.profile:
            profile(runner, data_dir, ir_path)
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def profile(runner: Runner, data_dir: str, ir_path: str) -> None:
    """cProfile of each component's first call (main thread only), in its own fresh process."""
    folder = os.path.join(runner.work, "profile")
    os.makedirs(folder)
    print(f"\nprofiling (load {_load()})", flush=True)
    eg = runner.child("profile-eg", "component", "--component", "CsvExampleGen", "--ir", ir_path,
                      "--root", os.path.join(folder, "eg"), "--source", runner.source, "--profile", "first", echo=True)
    inputs = os.path.join(folder, "sg-inputs.json")
    with open(inputs, "w") as fh:
        json.dump({"examples": eg["calls"]["first"]["outputs"]["examples"]}, fh)
    runner.child("profile-sg", "component", "--component", "StatisticsGen", "--ir", ir_path, "--inputs", inputs,
                 "--root", os.path.join(folder, "sg"), "--source", runner.source, "--profile", "first", echo=True)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            return next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    except OSError:
        return ""


if __name__ == "__main__":
    main()
