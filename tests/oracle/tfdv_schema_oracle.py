"""TFDV oracle for the schema / validation parity tests (runs in the TFDV side venv).

Subcommands (all paths are files)::

    stats    <in.csv> <out_stats.pb>                 tfdv.generate_statistics_from_dataframe
    infer    <stats.pb> <out_schema.pbtxt> [max_string_domain_size]
                                                     tfdv.infer_schema
    update   <schema.pbtxt> <stats.pb> <out_schema.pbtxt>
                                                     tfdv.update_schema
    validate <stats.pb> <schema.pbtxt> <out_anomalies.pb> [<previous_stats.pb>]
                                                     tfdv.validate_statistics
    load     <schema.pbtxt> <anomalies.pb>           checks TFDV reads our files; prints a summary

Statistics are binary DatasetFeatureStatisticsList, anomalies binary Anomalies.
"""

import sys


def _read_stats(path):
    from tensorflow_metadata.proto.v0 import statistics_pb2

    stats = statistics_pb2.DatasetFeatureStatisticsList()
    with open(path, "rb") as f:
        stats.ParseFromString(f.read())
    return stats


def main(argv):
    import tensorflow_data_validation as tfdv

    command, args = argv[0], argv[1:]
    if command == "stats":
        import pandas as pd

        frame = pd.read_csv(args[0])
        stats = tfdv.generate_statistics_from_dataframe(frame)
        with open(args[1], "wb") as f:
            f.write(stats.SerializeToString())
    elif command == "infer":
        max_size = int(args[2]) if len(args) > 2 else 100
        schema = tfdv.infer_schema(_read_stats(args[0]), max_string_domain_size=max_size)
        tfdv.write_schema_text(schema, args[1])
    elif command == "update":
        schema = tfdv.update_schema(tfdv.load_schema_text(args[0]), _read_stats(args[1]))
        tfdv.write_schema_text(schema, args[2])
    elif command == "validate":
        schema = tfdv.load_schema_text(args[1])
        previous = _read_stats(args[3]) if len(args) > 3 else None
        anomalies = tfdv.validate_statistics(_read_stats(args[0]), schema, previous_statistics=previous)
        with open(args[2], "wb") as f:
            f.write(anomalies.SerializeToString())
    elif command == "load":
        from tensorflow_metadata.proto.v0 import anomalies_pb2

        schema = tfdv.load_schema_text(args[0])
        anomalies = anomalies_pb2.Anomalies()
        with open(args[1], "rb") as f:
            anomalies.ParseFromString(f.read())
        print(f"features={len(schema.feature)} anomalies={sorted(anomalies.anomaly_info)}")
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
