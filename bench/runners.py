"""The runner x component table: the penguin pipeline on each Beam runner this machine can start, on a
local root and on an S3 root (moto's server on loopback), with each component's time and the worker
processes that did its data work (its ``workers`` metric, where it records one).

    .venv/bin/python -m bench.runners --out bench/out/runners      # about 6 minutes on 2 cores

Runners: in process; the DirectRunner with 2 processes; Beam's portable runner (a local job
server, an external worker pool booting workers as Beam's SDK image does, 2 workers a job). One run
of each: the times are single runs on a shared machine, the table shows where work went, not speed.
Starts its services with the test suite's helpers (``tests/distributed``, ``tests/orchestration``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

DIRECT_2 = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


def _run(name: str, root: str, beam_args: list[str], work: Path) -> dict:
    """One penguin run: per component (seconds, workers metric), and the run's wall time."""
    from mlflow.tracking import MlflowClient

    from tests.orchestration.test_object_store import cli_env, run_penguin

    folder = work / name
    folder.mkdir(parents=True)
    tracking = f"sqlite:///{folder / 'mlflow.db'}"
    env = {**cli_env(folder / "cache"), "MLFLOW_TRACKING_URI": tracking}
    started = time.monotonic()
    proc = run_penguin(root, beam_args, folder, env, folder / "serving")
    wall = time.monotonic() - started
    result = json.loads(proc.stdout)
    client = MlflowClient(tracking)
    components = {}
    for component in result["components"]:
        metrics = client.get_run(component["execution_id"]).data.metrics
        components[component["id"]] = {"seconds": component["seconds"], "workers": metrics.get("workers")}
    return {"runner": name, "wall_s": round(wall, 1), "run_s": result["seconds"], "components": components}


def _table(runs: list[dict]) -> str:
    names = list(runs[0]["components"])
    lines = ["| component | " + " | ".join(r["runner"] for r in runs) + " |",
             "|---|" + "---:|" * len(runs)]
    for name in names:
        cells = []
        for run in runs:
            found = run["components"].get(name, {})
            workers = found.get("workers")
            cells.append(f"{found.get('seconds', 0):.1f} s" + (f", {workers:.0f} workers" if workers else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| whole run (wall) | " + " | ".join(f"{r['wall_s']:.1f} s" for r in runs) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "bench" / "out" / "runners"))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    import boto3

    from tests.distributed.conftest import job_server_at, worker_pool_at
    from tests.orchestration.test_object_store import KEY_ID, SECRET, s3_server

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="runners-", dir=out))
    with contextlib.ExitStack() as stack:
        endpoint, s3_args = stack.enter_context(s3_server())
        pool = stack.enter_context(worker_pool_at(work))
        portable = stack.enter_context(job_server_at(work, pool))
        bucket = f"sluice-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
                     region_name="us-east-1").create_bucket(Bucket=bucket)
        plans = [
            ("in process, local root", str(work / "root-a"), []),
            ("DirectRunner 2 processes, local root", str(work / "root-b"), DIRECT_2),
            ("DirectRunner 2 processes, S3 root (staged)", f"s3://{bucket}/b", [*DIRECT_2, *s3_args]),
            ("portable runner, local root", str(work / "root-c"), portable),
            ("portable runner, S3 root (in place)", f"s3://{bucket}/c", [*portable, *s3_args]),
        ]
        runs = []
        for name, root, beam_args in plans:
            runs.append(_run(name.split(",")[0].replace(" ", "-") + f"-{len(runs)}", root, beam_args, work))
            runs[-1]["runner"] = name
            print(f"{name}: {runs[-1]['wall_s']} s", file=sys.stderr, flush=True)
    (out / "runners.json").write_text(json.dumps(runs, indent=1))
    table = _table(runs)
    (out / "runners.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
