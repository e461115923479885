"""Oracle: checks that TFDV's own loaders and consumers accept a FeatureStats.pb (runs in the TFDV venv).

    python tfdv_load_stats.py FEATURE_STATS.pb OUT_DIR

Loads the file with ``tfdv.load_stats_binary`` (what TFX does with
StatisticsGen output), also rewrites it as a one-record TFRecord and reads that
back with ``tfdv.load_statistics``, then uses it the way TFX does: infers a
schema (``tfdv.infer_schema``) and validates the statistics against it
(``tfdv.validate_statistics``). Writes into OUT_DIR:
``summary.json`` ({dataset: {"num_examples": n, "features": {name: type}}}),
``schema.pbtxt`` (the inferred schema) and ``anomalies.pbtxt``.
Exits non-zero (traceback on stderr) if any step fails.
"""

import json
import os
import sys


def main(path, out_dir):
    import tensorflow as tf
    import tensorflow_data_validation as tfdv
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import statistics_pb2

    stats = tfdv.load_stats_binary(path)
    os.makedirs(out_dir, exist_ok=True)
    record_path = os.path.join(out_dir, "stats.tfrecord")
    with tf.io.TFRecordWriter(record_path) as writer:
        writer.write(stats.SerializeToString())
    assert tfdv.load_statistics(record_path) == stats, "load_statistics disagrees with load_stats_binary"

    summary = {}
    for dataset in stats.datasets:
        summary[dataset.name] = {
            "num_examples": dataset.num_examples,
            "features": {
                "/".join(f.path.step) or f.name: statistics_pb2.FeatureNameStatistics.Type.Name(f.type)
                for f in dataset.features
            },
        }
    schema = tfdv.infer_schema(stats)
    anomalies = tfdv.validate_statistics(stats, schema)
    with open(os.path.join(out_dir, "summary.json"), "w") as out:
        json.dump(summary, out, indent=1, sort_keys=True)
    with open(os.path.join(out_dir, "schema.pbtxt"), "w") as out:
        out.write(text_format.MessageToString(schema))
    with open(os.path.join(out_dir, "anomalies.pbtxt"), "w") as out:
        out.write(text_format.MessageToString(anomalies))


if __name__ == "__main__":
    main(*sys.argv[1:3])
