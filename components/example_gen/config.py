"""What ExampleGen is told and tuned with: split and span settings, input files, sizes; and the
two things every module's errors share (``ColumnTypeChanged``, ``one_line``).

The tunables are read as ``config.NAME`` when used, so a test may change one in one place.
"""

from __future__ import annotations

import dataclasses
import re

import pydantic

# Elements are big: ~64k rows per RecordBatch.
BATCH_ROWS = 65536
# Rows per Parquet row group written (a reader's batch; StatisticsGen's DEFAULT_BATCH_SIZE).
ROW_GROUP_ROWS = 131072
# Shards of a split per input file, written at the same time (row groups are dealt in turn).
SHARDS_PER_FILE = 2
CSV_BLOCK_BYTES = 8 << 20
# On workers (a distributed runner, or direct_num_workers > 1), a CSV file larger than this is cut
# into byte ranges of about this size, parsed by any worker (``csv_ranges``).
CSV_RANGE_BYTES = 64 << 20
SNIFF_BLOCK_BYTES = 1 << 20
# Types are sniffed from a file's first block, and up to this much while a column has no value yet.
SNIFF_MAX_BYTES = 32 << 20
# A string column whose first block has at most this fraction of distinct values is read
# dictionary-encoded: hashing rows, splitting them and writing Parquet's dictionary pages
# then work on small integer codes instead of the strings.
DICTIONARY_MAX_DISTINCT = 0.5
# A number column is stored uncompressed when a sample of it compresses to more than this
# fraction: a small saving costs more CPU to write and read than it saves in I/O on local
# disks and the page cache; only slow links would gain.
INCOMPRESSIBLE = 0.7
COMPRESSION_SAMPLE_BYTES = 64 << 10  # per batch looked at
# Values Parquet's writer encodes at a time (its default, 1024, costs more CPU).
PARQUET_WRITE_BATCH = 65536
PARQUET_COMPRESSION = "snappy"  # of the columns it shrinks, but dictionary codes (see shards.column_encodings)
# A number column whose sample has at most this fraction of distinct values is dictionary-encoded.
NUMERIC_DICTIONARY_MAX_DISTINCT = 0.25

METRICS_NAMESPACE = "sluice.example_gen"
SPLIT_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class SplitConfig(pydantic.BaseModel):
    """How rows are dealt into splits: ``splits`` maps split name -> hash buckets.

    >>> SplitConfig(splits={"train": 8, "eval": 1, "test": 1}, partition_feature="user_id").splits["train"]
    8
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    splits: dict[str, int] = {"train": 2, "eval": 1}
    partition_feature: str | None = None

    @pydantic.field_validator("splits")
    @classmethod
    def _check_splits(cls, splits: dict[str, int]) -> dict[str, int]:
        if not splits:
            raise ValueError("needs at least one split")
        for name, buckets in splits.items():
            if not SPLIT_NAME.match(name):
                raise ValueError(f"split name {name!r} must use letters, digits, '_' or '-'")
            if buckets < 1:
                raise ValueError(f"split {name!r} needs at least 1 bucket, got {buckets}")
        return splits


class SpanRange(pydantic.BaseModel):
    """The spans to read, both ends included: ``SpanRange(start=1, end=3)``."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    start: int
    end: int

    @pydantic.model_validator(mode="after")
    def _check_order(self) -> SpanRange:
        if self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        return self


@dataclasses.dataclass(frozen=True)
class InputFile:
    """One file to read: its position fixes shard order, ``split`` is None when hash-split."""

    path: str
    index: int
    split: str | None = None


class ColumnTypeChanged(Exception):
    """A later block contradicts the types sniffed from the first block: re-run with full inference."""

    MARKER = "sluice-example-gen-type-changed"

    def __init__(self, detail: str):
        super().__init__(f"{self.MARKER}: {detail}")


def one_line(message: str) -> str:
    """An error message on one line, without Beam's "[while running ...]" notes."""
    message = re.sub(r" \[while running '[^']*'\]", "", message)
    return " ".join(message.split())
