"""Reading and writing artifacts' files: local paths and any Beam filesystem (``gs://``, ``s3://``).

- ``files``: whole small files (``read_bytes``, ``write_bytes``, ``exists``).
- ``examples``: the one reader of an ``Examples`` artifact (Parquet shards, batch by batch).
- ``coders``: the Beam coder of Arrow ``RecordBatch`` elements (imports Beam).
- ``spans``: input patterns with ``{SPAN}``, ``{VERSION}`` and date placeholders.

Import the submodule you need; none of them is imported by this package itself.
"""
