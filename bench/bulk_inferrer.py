"""BulkInferrer throughput: a trained model's predictions over an Examples split, rows per second.

    .venv/bin/python -m bench.bulk_inferrer --model sluice_runs/taxi/Trainer/model/<id> \\
        --examples bench/out/taxi_100x/examples --split eval --repeats 3

Each repeat runs ``run_bulk_inferrer`` in this process (the first one also loads the model);
prints each repeat's seconds and rows per second, and their median.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time


def measure(model_uri: str, examples_uri: str, split: str, repeats: int, key_columns: list[str]) -> list[dict]:
    from sluice.components.artifacts import Examples, InferenceResult, Model
    from sluice.components.bulk_inferrer import run_bulk_inferrer
    from sluice.components.sdk import ExecutionContext

    splits = sorted(d.removeprefix("Split-") for d in os.listdir(examples_uri) if d.startswith("Split-"))
    examples = Examples(uri=examples_uri, split_names=splits)
    runs = []
    for _ in range(repeats):
        out = tempfile.mkdtemp(prefix="sluice-bench-inference-")
        try:
            result = InferenceResult(uri=out)
            started = time.perf_counter()
            run_bulk_inferrer(examples=examples, model=Model(uri=model_uri), inference_result=result,
                              splits=[split], key_columns=key_columns or None, ctx=ExecutionContext())
            seconds = time.perf_counter() - started
        finally:
            shutil.rmtree(out, ignore_errors=True)
        runs.append({"rows": result.rows, "seconds": seconds, "rows_per_s": result.rows / seconds})
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a Model artifact folder (with Format-Serving/)")
    parser.add_argument("--examples", required=True, help="an Examples artifact folder (Split-*/)")
    parser.add_argument("--split", default="eval")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--key-columns", default="", help="comma-separated input columns to keep (default: all)")
    args = parser.parse_args(argv)
    from sluice.orchestration.runtime import prepare_process

    prepare_process()  # as `sluice run` sets its process up
    runs = measure(args.model, args.examples, args.split, args.repeats,
                   [c for c in args.key_columns.split(",") if c])
    for number, run in enumerate(runs, 1):
        print(f"repeat {number}: {run['rows']:,} rows in {run['seconds']:.2f} s, {run['rows_per_s']:,.0f} rows/s")
    print(f"median: {statistics.median(r['seconds'] for r in runs):.2f} s, "
          f"{statistics.median(r['rows_per_s'] for r in runs):,.0f} rows/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
