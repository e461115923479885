"""Taxi pipeline benchmark: per-component time and memory, against limits, TFX, and data size.

    .venv/bin/python bench/run.py                       # 1x, 10x, 100x, 1000x; 3 repeats; writes bench/RESULTS.md
    .venv/bin/python bench/run.py --sizes 1,10 --repeats 1
    .venv/bin/python bench/run.py --quick --out /tmp/b  # 1x, 1 repeat: checks the benchmark works

For each size (1x = the 15k-row taxi CSV; 10x, 100x and 1000x are made once by ``bench/make_data.py``
into ``bench/out/data/``) and each repeat:

1. cold: ``sluice run taxi --param data_root=... --param pipeline_root=<fresh> --json
   --max-parallel 1`` in a fresh process (via ``bench/child.py``, which only adds timestamped
   component events); its RSS (with any children) is sampled every 50 ms from here and its
   exact peak taken from ``wait4``;
2. cached: the same command again on the same root (every component should be a cache hit);
3. limits: ``bench/limits.py`` in a fresh process on the same data and this run's outputs.

Per component: seconds from the run's JSON, the process RSS peak while it ran (samples mapped
onto its start/finish events; components run one at a time), and rows per second. Figures
are medians over the repeats. ``RESULTS.md`` and ``plots/*.png`` are rewritten from the raw
records (``<work>/raw.json``); ``--from-raw`` rebuilds them from saved records without running.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, REPO)

from bench.make_data import make_replicated_csv  # noqa: E402

SOURCE_DIR = os.path.normpath(os.path.join(REPO, "..", "shared", "data", "chicago_taxi"))
COMPONENTS = ["CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform", "Trainer",
              "Evaluator", "Pusher"]
LIMIT_OF = {"CsvExampleGen": "csv_read", "StatisticsGen": "parquet_stats", "Transform": "taxi_numpy",
            "Trainer": "keras_fit", "Evaluator": "evaluator_floor"}
LIMIT_TEXT = {"csv_read": "pyarrow read_csv", "parquet_stats": "pyarrow Parquet scan + min/max/mean/nulls",
              "taxi_numpy": "taxi preprocessing in numpy/pyarrow (analyze, apply, write)",
              "keras_fit": "bare Keras fit (1000 steps)", "keras_predict": "ref.: bare Keras predict",
              "evaluator_floor": "bare batched predict + numpy metrics",
              "csv_to_parquet": "ref.: read_csv + write Parquet"}
# The limits whose sum bounds the whole run (issue 22: the run <= 1.5x their sum); ExampleGen's is its I/O.
SUM_OF_LIMITS = ("csv_to_parquet", "parquet_stats", "taxi_numpy", "keras_fit", "evaluator_floor")
# TFX 1.16 on the same machine type (2 cores), taxi 15k rows, 1000 training steps.
TFX = {"wall": 134.0, "peak_rss": 1.06e9, "rerun": 35.7,
       "components": {"CsvExampleGen": 18.2, "StatisticsGen": 15.1, "Transform": 44.5, "Trainer": 25.3,
                      "Evaluator": 17.0},
       "tft_alone": 39.0, "accuracy": 0.776}
SAMPLE_SECONDS = 0.05
MB = 1e6  # decimal, as the targets (1 GB, 2 GB)
# The folders that install as ``sluice.<name>`` (pyproject.toml's package-dir), and ``sluice/`` itself.
SNAPSHOT_PACKAGES = ("components", "orchestration", "pipelines", "schemas")


# --- running -------------------------------------------------------------------



def _repo_relative(path) -> str:
    """A path as shown in the report: relative to the repository, never a machine path."""
    if not path:
        return "?"
    path = str(path)
    return os.path.relpath(path, REPO) if os.path.isabs(path) else path

def _process_rss(proc) -> int:
    import psutil

    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            pass
    return total


def snapshot_sources(work: str) -> str:
    """Copies the packages the pipeline imports into ``work``; runs import them from there.

    A benchmark takes long and others may edit the tree meanwhile: a snapshot keeps every
    run of one benchmark on the same code (and a cached re-run a cache hit).
    """
    target = os.path.join(work, "src")
    shutil.rmtree(target, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(os.path.join(REPO, "sluice"), os.path.join(target, "sluice"), ignore=ignore)
    for package in SNAPSHOT_PACKAGES:
        shutil.copytree(os.path.join(REPO, package), os.path.join(target, "sluice", package), ignore=ignore)
    return target


def source_digest(root: str) -> str:
    import hashlib

    digest = hashlib.blake2b(digest_size=8)
    snapshot = os.path.join(root, "sluice")  # a snapshot nests the folders in the package
    base = snapshot if os.path.isdir(os.path.join(snapshot, "components")) else root
    for package in SNAPSHOT_PACKAGES:
        for folder, dirs, names in sorted(os.walk(os.path.join(base, package))):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(n for n in names if n.endswith(".py")):
                with open(os.path.join(folder, name), "rb") as fh:
                    digest.update(name.encode() + fh.read())
    return digest.hexdigest()


def _child_env(source: str | None, **extra: str) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **extra)
    if source:
        # Ahead of the editable install (a meta-path finder appended after the path finder).
        env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH")) if p)
    return env


def run_pipeline_process(data_root: str, root: str, log_dir: str, label: str, source: str | None = None) -> dict:
    """One ``sluice run taxi`` in a fresh process; returns its timings and memory."""
    import psutil

    os.makedirs(log_dir, exist_ok=True)
    events_path = os.path.join(log_dir, f"{label}.events.jsonl")
    out_path = os.path.join(log_dir, f"{label}.json")
    err_path = os.path.join(log_dir, f"{label}.stderr")
    if os.path.exists(events_path):
        os.remove(events_path)
    command = [sys.executable, os.path.join(BENCH, "child.py"), "run", "taxi",
               "--param", f"data_root={data_root}", "--param", f"pipeline_root={root}",
               "--json", "--max-parallel", "1"]
    env = _child_env(source, SLUICE_BENCH_EVENTS=events_path)
    samples: list[tuple[float, int]] = []
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.time()
        child = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=os.path.dirname(root))
        watched = psutil.Process(child.pid)
        while True:
            try:
                samples.append((time.time(), _process_rss(watched)))
            except psutil.Error:
                pass
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(SAMPLE_SECONDS)
        ended = time.time()
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait
    if child.returncode != 0:
        with open(err_path, errors="replace") as fh:
            tail = fh.read()[-3000:]
        raise RuntimeError(f"{label}: sluice run exited {child.returncode}:\n{tail}")
    with open(out_path) as fh:
        result = json.load(fh)
    events = []
    with open(events_path) as fh:
        events = [json.loads(line) for line in fh if line.strip()]
    return {
        "wall": ended - started,
        "pipeline_seconds": result["seconds"],
        "status": result["status"],
        "peak_rss": usage.ru_maxrss * 1024,
        "sampled_peak_rss": max((rss for _, rss in samples), default=0),
        "components": _components(result, events, samples),
        "imported_from": next((e["orchestration"] for e in events if e["event"] == "hello"), None),
        "outputs": {c["id"]: c.get("outputs", {}) for c in result["components"]},
    }


def _components(result: dict, events: list[dict], samples: list[tuple[float, int]]) -> dict:
    """Per component: seconds, status and the RSS peak / start value over its time window."""
    starts = {e["node"]: e["t"] for e in events if e["event"] == "start"}
    finishes = {e["node"]: e for e in events if e["event"] == "finish"}
    components = {}
    for component in result["components"]:
        node = component["id"]
        finish = finishes.get(node)
        entry = {"seconds": component["seconds"], "status": component["status"]}
        if finish is not None:
            begin = starts.get(node, finish["t"] - finish["seconds"])
            entry.update(_window_rss(samples, begin, finish["t"]))
        components[node] = entry
    return components


def _window_rss(samples: list[tuple[float, int]], begin: float, end: float) -> dict:
    inside = [rss for t, rss in samples if begin <= t <= end]
    before = [rss for t, rss in samples if t < begin]
    after = [rss for t, rss in samples if t > end]
    start_rss = before[-1] if before else (inside[0] if inside else 0)
    # A window shorter than the sample period: the neighbouring samples bound it.
    peak = max(inside) if inside else max(start_rss, after[0] if after else 0)
    return {"peak_rss": peak, "start_rss": start_rss}


def run_limits(csv_path: str, outputs: dict, log_dir: str, label: str, source: str | None = None) -> dict:
    out_path = os.path.join(log_dir, f"{label}.limits.json")
    command = [sys.executable, os.path.join(BENCH, "limits.py"), "--csv", csv_path,
               "--examples", outputs["CsvExampleGen"]["examples"][0],
               "--transform-graph", outputs["Transform"]["transform_graph"][0],
               "--transformed", outputs["Transform"]["transformed_examples"][0],
               "--model", outputs["Trainer"]["model"][0], "--out", out_path]
    done = subprocess.run(command, env=_child_env(source), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{label}: bench/limits.py exited {done.returncode}:\n{done.stderr[-3000:]}")
    with open(out_path) as fh:
        return json.load(fh)


def count_rows(csv_path: str) -> int:
    lines = 0
    with open(csv_path, "rb") as fh:
        while chunk := fh.read(16 << 20):
            lines += chunk.count(b"\n")
    return lines - 1  # the header


def data_for(size: int, data_dir: str) -> str:
    if size == 1:
        return SOURCE_DIR
    print(f"[bench] data {size}x -> {data_dir}", flush=True)
    return make_replicated_csv(os.path.join(SOURCE_DIR, "data.csv"), size, data_dir)


def run_benchmark(sizes: list[int], repeats: int, work: str, data_dir: str, keep_roots: bool,
                  snapshot: bool = True, command: str = "") -> list[dict]:
    records = []
    info = dict(machine(), command=command)  # at the start: date and commit of what is measured
    source = snapshot_sources(work) if snapshot else None
    digest = source_digest(source or REPO)
    raw_path = os.path.join(work, "raw.json")
    for size in sizes:
        data_root = data_for(size, data_dir)
        csv_path = os.path.join(data_root, "data.csv")
        rows = count_rows(csv_path)
        for repeat in range(repeats):
            label = f"{size}x-r{repeat}"
            root = os.path.join(work, "roots", label)
            shutil.rmtree(root, ignore_errors=True)
            os.makedirs(root)
            logs = os.path.join(work, "logs")
            print(f"[bench] {label}: cold run ({rows} rows)", flush=True)
            cold = run_pipeline_process(data_root, root, logs, f"{label}-cold", source)
            print(f"[bench] {label}: cold {cold['wall']:.1f} s, peak {cold['peak_rss'] / MB:.0f} MB; cached run",
                  flush=True)
            cached = run_pipeline_process(data_root, root, logs, f"{label}-cached", source)
            print(f"[bench] {label}: cached {cached['wall']:.1f} s; limits", flush=True)
            limits = run_limits(csv_path, cold["outputs"], logs, label, source)
            records.append({"size": size, "rows": rows, "repeat": repeat, "cold": cold, "cached": cached,
                            "limits": limits, "source_digest": digest,
                            "source_changed": source_digest(source or REPO) != digest})
            with open(raw_path, "w") as fh:
                json.dump({"machine": info, "records": records}, fh)
            if not keep_roots:
                shutil.rmtree(root, ignore_errors=True)
    return records


# --- machine and commit ------------------------------------------------------------


def machine() -> dict:
    import psutil

    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model or platform.processor(),
            "ram_gb": round(psutil.virtual_memory().total / 1e9, 1), "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": git_commit()}


def git_commit() -> str:
    """HEAD's commit, read from .git without running git."""
    git = os.path.join(REPO, ".git")
    try:
        with open(os.path.join(git, "HEAD")) as fh:
            head = fh.read().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        path = os.path.join(git, ref)
        if os.path.exists(path):
            with open(path) as fh:
                return fh.read().strip()
        with open(os.path.join(git, "packed-refs")) as fh:
            for line in fh:
                if line.strip().endswith(" " + ref):
                    return line.split()[0]
    except OSError:
        pass
    return "unknown"


# --- report --------------------------------------------------------------------------


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(records: list[dict]) -> dict:
    """Medians per size: whole runs, components (cold and cached) and limits."""
    sizes = sorted({r["size"] for r in records})
    summary = {}
    for size in sizes:
        group = [r for r in records if r["size"] == size]
        entry = {"rows": group[0]["rows"], "repeats": len(group)}
        for mode in ("cold", "cached"):
            entry[mode] = {
                "wall": _median([r[mode]["wall"] for r in group]),
                "pipeline_seconds": _median([r[mode]["pipeline_seconds"] for r in group]),
                "outside": _median([r[mode]["wall"] - r[mode]["pipeline_seconds"] for r in group]),
                "peak_rss": _median([r[mode]["peak_rss"] for r in group]),
                "all_cached": all(c["status"] == "cached" for r in group for c in r[mode]["components"].values()),
                "components": {
                    name: {
                        "seconds": _median([r[mode]["components"][name]["seconds"] for r in group]),
                        "peak_rss": _median([r[mode]["components"][name].get("peak_rss") for r in group]),
                        "growth": _median([r[mode]["components"][name].get("peak_rss", 0)
                                           - r[mode]["components"][name].get("start_rss", 0) for r in group]),
                        "status": sorted({r[mode]["components"][name]["status"] for r in group}),
                    }
                    for name in COMPONENTS if name in group[0][mode]["components"]
                },
            }
        entry["limits"] = {name: {"seconds": _median([r["limits"][name]["seconds"] for r in group]),
                                  "peak_rss": _median([r["limits"][name]["peak_rss"] for r in group])}
                           for name in group[0]["limits"]}
        # Paired: each repeat's component over the limit measured right after it, then the median.
        pairs = dict(LIMIT_OF, **{"CsvExampleGen/ref": "csv_to_parquet"})
        entry["ratios"] = {}
        for key, limit in pairs.items():
            component = key.split("/")[0]
            values = [r["cold"]["components"][component]["seconds"] / r["limits"][limit]["seconds"]
                      for r in group if component in r["cold"]["components"] and r["limits"].get(limit)]
            entry["ratios"][key] = _median(values)
        summary[size] = entry
    return summary


def _s(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if value < 100 else f"{value:.0f}"


def _mb(value: float | None) -> str:
    return "–" if value is None else f"{value / MB:,.0f}"


def _rate(rows: int, seconds: float | None) -> str:
    if not seconds:
        return "–"
    rate = rows / seconds
    return f"{rate / 1e6:.2f} M" if rate >= 1e6 else f"{rate / 1e3:.0f} k"


def _comp(entry: dict, name: str, mode: str = "cold") -> float:
    return entry[mode]["components"][name]["seconds"]


def _linear(small: dict, big: dict, names: str) -> tuple[str, str, bool]:
    """The target 'cost grows at most linearly' from ``small`` to ``big`` (10% slack)."""
    worst = sorted(((_comp(big, n) / _comp(small, n), n) for n in COMPONENTS if _comp(small, n) and _comp(big, n)),
                   reverse=True)
    total = big["cold"]["wall"] / small["cold"]["wall"]
    data_rows = big["rows"] / small["rows"]
    text = (f"whole run x{total:.1f} for x{data_rows:.0f} rows; worst components: "
            + ", ".join(f"{n} x{g:.1f}" for g, n in worst[:3]))
    return (f"cost grows at most linearly {names}", text,
            all(g <= data_rows * 1.1 for g, _ in worst) and total <= data_rows * 1.1)


def targets_1000x(big: dict) -> list[tuple[str, str, bool | None]]:
    """Issue 22's targets at 15M rows, each a ratio to a limit measured in the same repeat."""
    rows_out = []
    ratios, limits = big["ratios"], big["limits"]
    reference = ratios.get("CsvExampleGen/ref")
    if reference:
        rows_out.append(("CsvExampleGen >= 50% of read_csv + Parquet write throughput at 1000x",
                         f"{100 / reference:.0f}%", 100 / reference >= 50))
    for name, label in (("StatisticsGen", "a pyarrow scan"), ("Transform", "numpy/pyarrow taxi preprocessing"),
                        ("Evaluator", "a bare batched predict + numpy metrics")):
        if ratios.get(name):
            rows_out.append((f"{name} <= 2x {label} at 1000x", f"{ratios[name]:.1f}x", ratios[name] <= 2))
    if all(limits.get(name) for name in SUM_OF_LIMITS):
        total = sum(limits[name]["seconds"] for name in SUM_OF_LIMITS)
        wall = big["cold"]["wall"]
        rows_out.append(("whole run <= 1.5x the sum of its components' limits at 1000x",
                         f"{wall:.0f} s wall / {total:.0f} s = {wall / total:.1f}x", wall <= 1.5 * total))
    peak = big["cold"]["peak_rss"]
    rows_out.append(("peak RSS at 1000x <= 1.5 GB", f"{peak / 1e9:.2f} GB", peak <= 1.5e9))
    return rows_out


def targets(summary: dict) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for each of the issue's targets that the data covers."""
    rows_out = []
    one, ten, hundred, thousand = (summary.get(size) for size in (1, 10, 100, 1000))
    comp = _comp
    if ten and hundred:
        rows_out.append(_linear(ten, hundred, "10x -> 100x"))
    if hundred and thousand:
        rows_out.append(_linear(hundred, thousand, "100x -> 1000x"))
    if thousand:
        rows_out += targets_1000x(thousand)
    if hundred:
        peak = hundred["cold"]["peak_rss"]
        rows_out.append(("peak RSS at 100x <= 2 GB", f"{peak / 1e9:.2f} GB", peak <= 2e9))
        ratios = sorted(((hundred["ratios"][name], name) for name in LIMIT_OF if hundred["ratios"].get(name)),
                        reverse=True)
        rows_out.append(("no component > 3x its limit at 100x",
                         ", ".join(f"{n} {r:.1f}x" for r, n in ratios), all(r <= 3 for r, _ in ratios)))
        stats = hundred["ratios"]["StatisticsGen"]
        rows_out.append(("StatisticsGen <= 2x pyarrow scan at 100x", f"{stats:.1f}x", stats <= 2))
        gen = 1 / hundred["ratios"]["CsvExampleGen"]
        reference = hundred["ratios"].get("CsvExampleGen/ref")
        rows_out.append(("CsvExampleGen >= 50% of pyarrow read_csv throughput at 100x",
                         f"{gen * 100:.0f}% ({_rate(hundred['rows'], comp(hundred, 'CsvExampleGen'))} rows/s vs "
                         f"{_rate(hundred['rows'], hundred['limits']['csv_read']['seconds'])} rows/s"
                         + (f"; {100 / reference:.0f}% of read_csv + write Parquet)" if reference else ")"),
                         gen >= 0.5))
    if one:
        wall, peak = one["cold"]["wall"], one["cold"]["peak_rss"]
        rows_out.append(("cold run at 1x <= 17 s wall and <= 1 GB peak RSS",
                         f"{wall:.1f} s wall (runner {one['cold']['pipeline_seconds']:.1f} s), "
                         f"{peak / 1e9:.2f} GB", wall <= 17 and peak <= 1e9))
        cached_wall = one["cached"]["wall"]
        rows_out.append(("re-run with nothing changed <= 3 s, every component cached",
                         f"{cached_wall:.1f} s wall (runner {one['cached']['pipeline_seconds']:.2f} s), "
                         f"all cached: {'yes' if one['cached']['all_cached'] else 'NO'}",
                         cached_wall <= 3 and one["cached"]["all_cached"]))
        transform = comp(one, "Transform")
        rows_out.append(("Transform <= 4 s inside the component at 1x", f"{transform:.2f} s", transform <= 4))
    return rows_out


def render(records: list[dict], info: dict, command: str) -> str:
    summary = summarize(records)
    lines = [
        "# Taxi pipeline benchmark",
        "",
        "Regenerate (the full run, 1000x included, takes 25-60 minutes on 2 cores, depending on load; "
        "`--sizes 1,10 --repeats 1` for a shorter one):",
        "",
        "```bash",
        ".venv/bin/python bench/run.py",
        "```",
        "",
        (f"Measured by `{info['command']}`" if info.get("command") else "Measured by an earlier run")
        + (f"; this file rebuilt from its records by `{command}`." if info.get("command") != command else "."),
        "",
        f"- Date: {info['date']}; commit `{info['commit']}` (plus any uncommitted changes)",
        f"- Machine: {info['cpus']} CPUs ({info['cpu_model']}), {info['ram_gb']} GB RAM, Python {info['python']}. "
        "The cores are shared with other work, so timings are noisy: every figure is the median over the repeats "
        "and each limit was measured in the same repeat, right after the pipeline run it is compared with.",
        "- Repeats: " + ", ".join(f"{s}x: {summary[s]['repeats']}" for s in summary),
        "- Code: " + ", ".join(sorted({f"`{r.get('source_digest', '?')}`" for r in records}))
        + " (digest of components/, orchestration/, pipelines/ as run; runs import a copy taken at the start, "
        "imported from " + ", ".join(sorted({_repo_relative(r["cold"].get("imported_from")) for r in records}))
        + ")"
        + ("; **the live tree changed during the benchmark**" if any(r.get("source_changed") for r in records)
           else ""),
        "- Each run: `sluice run taxi --param data_root=DATA --param pipeline_root=ROOT --json --max-parallel 1` "
        "in a fresh process; *cold* = fresh pipeline root, *cached* = the same command again on that root. "
        "*wall* = process start to exit (imports included); *runner* = the run's own `seconds` in its JSON.",
        "- Peak RSS: the whole process's, from `wait4`. Per component: the process RSS peak while the component "
        "ran (50 ms samples mapped onto its start/finish; components run one at a time) and its growth over "
        "the RSS at its start. Memory a component leaves allocated stays in later components' figures.",
        "- 10x, 100x and 1000x: the taxi CSV replicated with jittered numbers (`bench/make_data.py`).",
        "",
        "## Whole pipeline",
        "",
        "*outside runner* = wall - runner: interpreter start, imports, the metadata store's set-up, exit.",
        "",
        "| data | rows | cold wall s | cold runner s | cold outside runner s | cold peak RSS MB | cached wall s "
        "| cached runner s | cached outside runner s | cached peak RSS MB | all cached |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for size, entry in summary.items():
        cold, cached = entry["cold"], entry["cached"]
        lines.append(f"| Sluice {size}x | {entry['rows']:,} | {_s(cold['wall'], 1)} "
                     f"| {_s(cold['pipeline_seconds'], 1)} "
                     f"| {_s(cold['outside'], 1)} | {_mb(cold['peak_rss'])} | {_s(cached['wall'], 1)} "
                     f"| {_s(cached['pipeline_seconds'])} | {_s(cached['outside'], 1)} | {_mb(cached['peak_rss'])} "
                     f"| {'yes' if cached['all_cached'] else 'no'} |")
    lines.append(f"| TFX 1.16 (reference) | 15,002 | {TFX['wall']:.0f} | – | – | {TFX['peak_rss'] / MB:,.0f} "
                 f"| {TFX['rerun']} | – | – | – | – |")
    lines += ["", "TFX 1.16 figures: measured on the same machine type (2 cores), taxi 15k rows, 1000 training "
              f"steps; tensorflow-transform 1.21 alone on the same preprocessing took {TFX['tft_alone']:.0f} s; "
              f"TFX eval binary accuracy {TFX['accuracy']}. TFX is not installed here.", ""]

    lines += ["## Per component", "",
              "Medians. *ratio* = median over repeats of component seconds / its limit's seconds measured in the "
              "same repeat (so it can differ from the quotient of the two medians). "
              "rows/s = input rows / cold seconds (the Trainer always trains 1000 steps x 40 examples).", "",
              "| data | component | cold s | rows/s | cached s | peak RSS MB | RSS growth MB | limit | limit s "
              "| ratio | TFX 1.16 s (15k rows) |",
              "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for size, entry in summary.items():
        for name in COMPONENTS:
            c = entry["cold"]["components"].get(name)
            if c is None:
                continue
            cached = entry["cached"]["components"][name]
            limit = LIMIT_OF.get(name)
            limit_seconds = entry["limits"].get(limit, {}).get("seconds") if limit else None
            ratio = entry["ratios"].get(name)
            tfx_text = "" if size != 1 else str(TFX["components"].get(name, "< 0.1"))
            lines.append(f"| {size}x | {name} | {_s(c['seconds'])} | {_rate(entry['rows'], c['seconds'])} "
                         f"| {_s(cached['seconds'], 3)} | {_mb(c['peak_rss'])} | {_mb(c['growth'])} "
                         f"| {LIMIT_TEXT[limit] if limit else '–'} | {_s(limit_seconds)} "
                         f"| {f'{ratio:.1f}x' if ratio else '–'} | {tfx_text} |")
            reference = entry["limits"].get("csv_to_parquet") if name == "CsvExampleGen" else None
            if reference and entry["ratios"].get("CsvExampleGen/ref"):
                lines.append(f"| {size}x | ↳ same | | | | | | {LIMIT_TEXT['csv_to_parquet']} "
                             f"| {_s(reference['seconds'])} | {entry['ratios']['CsvExampleGen/ref']:.1f}x | |")
    lines += ["", "Limits' own peak RSS (MB, cumulative within the limits process: the pyarrow ones run first, "
              "before TensorFlow is imported):", "",
              "| data | " + " | ".join(LIMIT_TEXT[k] for k in LIMIT_TEXT) + " |",
              "|---|" + "---:|" * len(LIMIT_TEXT)]
    for size, entry in summary.items():
        lines.append(f"| {size}x | " + " | ".join(_mb(entry["limits"].get(k, {}).get("peak_rss")) for k in LIMIT_TEXT)
                     + " |")

    if len(summary) > 1:
        sizes = list(summary)
        lines += ["", "## How cost grows with data", "",
                  "Cold seconds per size; *growth* = seconds at the largest size / at the one before it "
                  f"(linear = x{summary[sizes[-1]]['rows'] / summary[sizes[-2]]['rows']:.0f}); *exponent* = "
                  "log(growth) / log(row ratio) (1 = linear).", "",
                  "| component | " + " | ".join(f"{s}x s" for s in sizes) + " | growth | exponent |",
                  "|---|" + "---:|" * (len(sizes) + 2)]
        row_ratio = summary[sizes[-1]]["rows"] / summary[sizes[-2]]["rows"]
        for name in COMPONENTS + ["(whole run, wall)"]:
            if name.startswith("("):
                values = [summary[s]["cold"]["wall"] for s in sizes]
            else:
                values = [summary[s]["cold"]["components"][name]["seconds"] for s in sizes]
            growth = values[-1] / values[-2] if values[-2] else None
            exponent = math.log(growth) / math.log(row_ratio) if growth else None
            lines.append(f"| {name} | " + " | ".join(_s(v) for v in values)
                         + f" | {f'x{growth:.1f}' if growth else '–'} | {_s(exponent)} |")

    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for target, measured, met in targets(summary):
        lines.append(f"| {target} | {measured} | {'yes' if met else '**no**'} |")
    lines += ["", "## Plots", "", "![time against rows](plots/time_vs_rows.png)", "",
              "![peak memory against rows](plots/memory_vs_rows.png)", ""]
    return "\n".join(lines)


def plot(records: list[dict], plots_dir: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarize(records)
    sizes = list(summary)
    rows = [summary[s]["rows"] for s in sizes]
    os.makedirs(plots_dir, exist_ok=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    fig, ax = plt.subplots(figsize=(12, 6))
    for i, name in enumerate(COMPONENTS):
        seconds = [max(summary[s]["cold"]["components"][name]["seconds"], 1e-3) for s in sizes]
        color = colors[i % len(colors)]
        ax.plot(rows, seconds, "o-", color=color, label=name)
        limit = LIMIT_OF.get(name)
        if limit:
            ax.plot(rows, [summary[s]["limits"][limit]["seconds"] for s in sizes], "x--", color=color,
                    alpha=0.7, label=f"limit: {LIMIT_TEXT[limit]}")
    ax.plot(rows, [summary[s]["cold"]["wall"] for s in sizes], "s-", color="black", label="whole run (wall)")
    ax.plot(rows, [summary[s]["cached"]["wall"] for s in sizes], "s:", color="gray", label="cached re-run (wall)")
    if len(rows) > 1:  # slope 1 from the whole run's second-largest size: where linear growth would go
        anchor = summary[sizes[-2]]["cold"]["wall"]
        ax.plot(rows[-2:], [anchor, anchor * rows[-1] / rows[-2]], color="lightgray", linewidth=4, alpha=0.6,
                zorder=0, label="linear growth from there")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rows")
    ax.set_ylabel("seconds (median, cold)")
    ax.set_title("Taxi pipeline: time per component against rows")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    time_plot = os.path.join(plots_dir, "time_vs_rows.png")
    fig.savefig(time_plot, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(12, 6))
    ax.plot(rows, [summary[s]["cold"]["peak_rss"] / MB for s in sizes], "s-", color="black",
            label="whole run, cold")
    ax.plot(rows, [summary[s]["cached"]["peak_rss"] / MB for s in sizes], "s:", color="gray",
            label="whole run, cached")
    for i, name in enumerate(COMPONENTS):
        peaks = [summary[s]["cold"]["components"][name]["peak_rss"] for s in sizes]
        if all(p is not None for p in peaks):
            ax.plot(rows, [p / MB for p in peaks], "o-", color=colors[i % len(colors)], alpha=0.8,
                    label=f"during {name}")
    ax.axhline(1.5e9 / MB, color="darkred", linestyle="-.", label="target at 1000x: 1.5 GB")
    ax.axhline(2e9 / MB, color="red", linestyle="--", label="target at 100x: 2 GB")
    ax.axhline(1e9 / MB, color="purple", linestyle="--", alpha=0.6, label="target at 1x: 1 GB")
    ax.axhline(TFX["peak_rss"] / MB, color="orange", linestyle=":", label="TFX 1.16 at 1x")
    ax.set_xscale("log")
    ax.set_xlabel("rows")
    ax.set_ylabel("peak RSS, MB (median)")
    ax.set_title("Taxi pipeline: peak memory against rows")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    memory_plot = os.path.join(plots_dir, "memory_vs_rows.png")
    fig.savefig(memory_plot, dpi=110)
    plt.close(fig)
    return [time_plot, memory_plot]


def write_report(records: list[dict], info: dict, out: str, command: str) -> str:
    os.makedirs(out, exist_ok=True)
    plot(records, os.path.join(out, "plots"))
    path = os.path.join(out, "RESULTS.md")
    with open(path, "w") as fh:
        fh.write(render(records, info, command))
    with open(os.path.join(out, "results.json"), "w") as fh:
        json.dump({"machine": info, "summary": summarize(records)}, fh, indent=1)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Taxi pipeline benchmark (see bench/run.py's docstring).")
    parser.add_argument("--sizes", default="1,10,100,1000",
                        help="comma-separated replication factors (1 = 15k rows; 1000 = 15M rows, a 1.73 GB CSV)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1x, 1 repeat: checks the benchmark works")
    parser.add_argument("--out", default=BENCH, help="where RESULTS.md, results.json and plots/ go")
    parser.add_argument("--work", help="pipeline roots, logs, raw.json (default: <out>/out/work)")
    parser.add_argument("--data-dir", default=os.path.join(BENCH, "out", "data"), help="cache of the big CSVs")
    parser.add_argument("--keep-roots", action="store_true", help="keep the pipeline roots")
    parser.add_argument("--no-snapshot", action="store_true",
                        help="import the live tree (default: a copy of components/, orchestration/, pipelines/ "
                             "taken at the start, so edits made meanwhile don't mix versions)")
    parser.add_argument("--from-raw", nargs="+", metavar="RAW_JSON",
                        help="rebuild the report from saved raw.json files, running nothing (a size found in a later "
                             "file replaces that size's records from earlier files)")
    args = parser.parse_args(argv)
    command = "bench/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.from_raw:
        records, info = [], None
        for path in args.from_raw:  # a later file's sizes replace the same sizes from earlier files
            with open(path) as fh:
                raw = json.load(fh)
            sizes = {r["size"] for r in raw["records"]}
            records = [r for r in records if r["size"] not in sizes] + raw["records"]
            info = raw["machine"]
    else:
        sizes = [1] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]
        repeats = 1 if args.quick else args.repeats
        # Absolute: the pipeline runs in child processes with another working directory.
        work = os.path.abspath(args.work or os.path.join(args.out, "out", "work"))
        os.makedirs(work, exist_ok=True)
        info = machine()
        records = run_benchmark(sizes, repeats, work, os.path.abspath(args.data_dir), args.keep_roots,
                                not args.no_snapshot, command.strip())
        info["command"] = command.strip()
    path = write_report(records, info, args.out, command.strip())
    print(f"[bench] wrote {path}", flush=True)
    with open(path) as f:
        print(f.read())


if __name__ == "__main__":
    main()
