"""Bigger taxi data for the benchmark: the taxi CSV replicated with jittered numbers.

Replica 0 is the original file unchanged (so CsvExampleGen sniffs the same types from
the first block); every further replica jitters the continuous columns so that sketches,
quantiles and vocabularies see new values:

- ``fare`` and ``tips`` by the same per-row factor (0.85..1.15, rounded to cents), so the
  label "tip > 20% of the fare" keeps its meaning and its rate;
- ``trip_miles`` and ``trip_seconds`` by another shared factor (speed stays plausible;
  seconds stay whole numbers, zeros stay zero);
- latitudes/longitudes by +-0.002 degrees (6 decimals), ``trip_start_timestamp`` by
  +-450 s (whole seconds);
- categoricals (hour, day, month, community areas, census tracts) and strings are kept.

Blank fields stay blank (nulls pass through every operation). The file is written one
replica (~15k rows) at a time, so memory stays bounded whatever the factor, into a temp
name renamed at the end: a file that exists is complete.

    .venv/bin/python -m bench.make_data --factor 10 --out bench/out/data
"""

from __future__ import annotations

import argparse
import os
import time

MONEY_COLUMNS = ("fare", "tips")
DISTANCE_COLUMNS = ("trip_miles", "trip_seconds")
COORDINATE_COLUMNS = ("pickup_latitude", "pickup_longitude", "dropoff_latitude", "dropoff_longitude")
TIMESTAMP_COLUMNS = ("trip_start_timestamp",)


def _scaled(column, factor, decimals: int):
    """column * factor, rounded; int columns stay int64 (whole numbers), nulls stay null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    scaled = pc.round(pc.multiply(column.cast(pa.float64()), pa.array(factor)), decimals)
    return scaled.cast(pa.int64()) if pa.types.is_integer(column.type) else scaled


def _shifted(column, shift, decimals: int):
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_integer(column.type):
        return pc.add(column, pa.array(shift.round().astype("int64")))
    return pc.round(pc.add(column, pa.array(shift)), decimals)


def jitter(table, seed: int):
    """One jittered replica of the taxi table (same columns, types and nulls)."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    n = table.num_rows
    money = rng.uniform(0.85, 1.15, n)
    distance = rng.uniform(0.85, 1.15, n)
    columns = []
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        if name in MONEY_COLUMNS:
            column = _scaled(column, money, 2)
        elif name in DISTANCE_COLUMNS:
            column = _scaled(column, distance, 0 if pa.types.is_integer(column.type) else 2)
        elif name in COORDINATE_COLUMNS:
            column = _shifted(column, rng.uniform(-0.002, 0.002, n), 6)
        elif name in TIMESTAMP_COLUMNS:
            column = _shifted(column, rng.integers(-450, 451, n).astype("float64"), 0)
        columns.append(column)
    return pa.Table.from_arrays(columns, names=table.column_names)


def make_replicated_csv(source: str, factor: int, out_dir: str, seed: int = 0) -> str:
    """Writes ``<out_dir>/taxi_<factor>x/data.csv`` (``factor`` replicas of ``source``) once.

    Returns the folder (a CsvExampleGen ``input_base``). An existing file is reused.
    """
    import pyarrow.csv as pacsv

    folder = os.path.join(out_dir, f"taxi_{factor}x")
    path = os.path.join(folder, "data.csv")
    if os.path.exists(path):
        return folder
    os.makedirs(folder, exist_ok=True)
    original = pacsv.read_csv(source)
    tmp = os.path.join(out_dir, f".taxi_{factor}x.csv.tmp")  # outside the input folder while written
    with open(source, "rb") as fh, open(tmp, "wb") as out:
        out.write(fh.read())  # replica 0: the original bytes, header included
        if not _ends_with_newline(source):
            out.write(b"\n")
        # Unquoted, as the source; pyarrow raises if a value would need quotes.
        options = pacsv.WriteOptions(include_header=False, quoting_style="none")
        for replica in range(1, factor):
            pacsv.write_csv(jitter(original, seed * 1_000_003 + replica), out, options)
    os.replace(tmp, path)
    return folder


def _ends_with_newline(path: str) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                         "..", "shared", "data", "chicago_taxi", "data.csv"))
    parser.add_argument("--factor", type=int, required=True)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out", "data"))
    args = parser.parse_args(argv)
    started = time.monotonic()
    folder = make_replicated_csv(os.path.normpath(args.source), args.factor, args.out)
    print(f"{folder} ({time.monotonic() - started:.1f} s)")


if __name__ == "__main__":
    main()
