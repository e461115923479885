"""The Evaluator against its floor: a bare batched predict over the same rows plus the metric
arithmetic in numpy, side by side in one process.

    .venv/bin/python -m bench.evaluator --model sluice_runs/taxi/Trainer/model/<id> \\
        --examples bench/out/taxi_100x/examples --repeats 3

The floor reads the eval split with pyarrow, calls ``serving.predict_batch`` on batches of the
Evaluator's size, computes the taxi label (tips > 20% of the fare) and accuracy, AUC and log loss
in numpy. The Evaluator runs as the taxi pipeline configures it (label from the model's
transform, slices by payment type and hour). Repeats alternate the two; prints each time, the
medians and their ratio (issue 22's target at 1000x: at most 2).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time


def floor(model_uri: str, examples_uri: str, split: str) -> float:
    """Seconds for the bare predict and numpy metrics over the split."""
    import numpy as np
    import pyarrow.parquet as pq

    from sluice.components import serving
    from sluice.components.evaluator.metrics import auc

    started = time.perf_counter()
    loaded = serving.load_serving_model(os.path.join(model_uri, "Format-Serving"), "model", "bench")
    table = pq.read_table(os.path.join(examples_uri, f"Split-{split}"))
    rows = serving.batch_rows(serialized=serving.raw_function(loaded) is None)
    scores = np.concatenate([
        next(iter(serving.predict_batch(loaded, table.slice(start, rows)).values())).reshape(-1)
        for start in range(0, table.num_rows, rows)])
    fare = table.column("fare").to_numpy(zero_copy_only=False).astype(np.float64)
    tips = table.column("tips").to_numpy(zero_copy_only=False).astype(np.float64)
    labels = np.where(np.isnan(fare), 0, tips > 0.2 * fare).astype(np.int64)
    clipped = np.clip(scores, 1e-7, 1 - 1e-7)
    _metrics = (np.mean((scores >= 0.5) == labels), auc(labels, scores),
                -np.mean(np.where(labels == 1, np.log(clipped), np.log(1 - clipped))))
    return time.perf_counter() - started


def evaluator(model_uri: str, examples_uri: str, split: str) -> float:
    """Seconds for ``evaluate_model`` as the taxi pipeline runs it."""
    from sluice.components.artifacts import Examples, Model, ModelBlessing, ModelEvaluation
    from sluice.components.evaluator import MetricThreshold, evaluate_model
    from sluice.components.sdk import ExecutionContext

    out = tempfile.mkdtemp(prefix="sluice-bench-evaluator-")
    try:
        for name in ("evaluation", "blessing"):
            os.makedirs(os.path.join(out, name))
        started = time.perf_counter()
        evaluate_model(
            examples=Examples(uri=examples_uri, split_names=[split]), model=Model(uri=model_uri),
            evaluation=ModelEvaluation(uri=os.path.join(out, "evaluation")),
            blessing=ModelBlessing(uri=os.path.join(out, "blessing")), eval_split=split,
            label_key="tips_xf", prediction_key="outputs", problem="binary",
            slicing_features=["payment_type", "trip_start_hour"],
            thresholds={"binary_accuracy": MetricThreshold(lower_bound=0.6)}, ctx=ExecutionContext())
        return time.perf_counter() - started
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a taxi Model artifact folder (with Format-Serving/)")
    parser.add_argument("--examples", required=True, help="a taxi Examples artifact folder (Split-*/)")
    parser.add_argument("--split", default="eval")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    from sluice.orchestration.runtime import prepare_process

    prepare_process()
    floor(args.model, args.examples, args.split)  # warm: TensorFlow's import and first trace
    times: dict[str, list[float]] = {"floor": [], "evaluator": []}
    for repeat in range(args.repeats):
        times["floor"].append(floor(args.model, args.examples, args.split))
        times["evaluator"].append(evaluator(args.model, args.examples, args.split))
        print(f"repeat {repeat + 1}: floor {times['floor'][-1]:.2f} s, evaluator {times['evaluator'][-1]:.2f} s",
              flush=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"median: floor {medians['floor']:.2f} s, evaluator {medians['evaluator']:.2f} s, "
          f"ratio {medians['evaluator'] / medians['floor']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
