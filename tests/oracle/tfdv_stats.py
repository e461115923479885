"""Oracle: TFDV statistics of a Parquet file/folder or a CSV file (runs in the TFDV venv).

    python tfdv_stats.py INPUT OUTPUT.pb [--schema SCHEMA.pbtxt] [--infer-schema OUT.pbtxt]

INPUT: a ``.parquet`` file, a folder of ``*.parquet`` files (all read as one
dataset), or a ``.csv`` file (read with pandas, as
``tfdv.generate_statistics_from_dataframe`` would get it). Parquet columns are
fed to TFDV exactly as typed in the file: each scalar column becomes a singleton list
array (null -> missing), which is how TFDV itself represents scalar features; a list
column (list, large_list or fixed_size_list) is fed as a list array of its values.
Writes a binary DatasetFeatureStatisticsList (one dataset) to OUTPUT.pb and, with
``--infer-schema``, the schema ``tfdv.infer_schema`` infers from it (text) to OUT.pbtxt.
"""

import argparse
import glob
import os
import sys


def _as_list_array(column):
    """A list-like column as a ``list<...>`` array (pyarrow 10 casts no fixed_size_list to list)."""
    import numpy as np
    import pyarrow as pa

    if pa.types.is_fixed_size_list(column.type):
        size = column.type.list_size
        ends = np.arange(len(column) + 1, dtype=np.int32) * size
        # A null offset makes its slot a null list.
        mask = np.append(np.asarray(column.is_null()), False)
        column = pa.ListArray.from_arrays(pa.array(ends, mask=mask), column.values.slice(column.offset * size))
    value_type = column.type.value_type
    if pa.types.is_large_string(value_type):
        value_type = pa.string()
    return column.cast(pa.list_(value_type))


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--schema", default=None, help="text Schema to pass in StatsOptions")
    parser.add_argument("--infer-schema", default=None, help="write tfdv.infer_schema of the statistics here")
    args = parser.parse_args(argv)

    import pyarrow as pa
    import pyarrow.parquet as pq
    import tensorflow_data_validation as tfdv
    from tensorflow_data_validation.statistics import stats_impl
    from tfx_bsl.arrow import array_util

    options = tfdv.StatsOptions()
    if args.schema:
        options.schema = tfdv.load_schema_text(args.schema)

    if args.input.endswith(".csv"):
        import pandas as pd

        stats = tfdv.generate_statistics_from_dataframe(pd.read_csv(args.input), stats_options=options)
    else:
        files = sorted(glob.glob(os.path.join(args.input, "*.parquet"))) if os.path.isdir(args.input) else [args.input]
        table = pa.concat_tables([pq.read_table(f) for f in files]).combine_chunks()
        arrays = []
        for column in table.columns:
            column = column.chunk(0) if column.num_chunks else pa.array([], column.type)
            if pa.types.is_list(column.type) or pa.types.is_large_list(column.type) \
                    or pa.types.is_fixed_size_list(column.type):
                arrays.append(_as_list_array(column))
                continue
            if pa.types.is_large_string(column.type):
                column = column.cast(pa.string())
            arrays.append(array_util.ToSingletonListArray(column))
        batch = pa.RecordBatch.from_arrays(arrays, table.column_names)
        stats = stats_impl.generate_statistics_in_memory(batch, options)
    with open(args.output, "wb") as out:
        out.write(stats.SerializeToString())
    if args.infer_schema:
        tfdv.write_schema_text(tfdv.infer_schema(stats), args.infer_schema)


if __name__ == "__main__":
    main(sys.argv[1:])
