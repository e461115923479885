"""Loading and saving TFDV-format protos: statistics (binary) and schemas (text).

Errors are one line naming the file (and, for a schema, the line) so that a
user can fix the file without reading a traceback.
"""

from __future__ import annotations

from sluice.components.io.files import exists, read_bytes
from sluice.components.sdk import ComponentError


def load_statistics(path: str, owner: str):
    """A ``DatasetFeatureStatisticsList`` from a binary file; ComponentError if unreadable."""
    from google.protobuf.message import DecodeError
    from tensorflow_metadata.proto.v0 import statistics_pb2

    if not exists(path):
        raise ComponentError(f"{owner}: statistics file {path} does not exist")
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    try:
        stats.ParseFromString(read_bytes(path))
    except DecodeError as exc:
        raise ComponentError(f"{owner}: {path} is not a binary DatasetFeatureStatisticsList: {exc}") from None
    return stats


def load_schema(path: str, owner: str):
    """A ``Schema`` from a text-format file; the error names the file and line."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    if not exists(path):
        raise ComponentError(f"{owner}: schema file {path} does not exist")
    try:
        text = read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ComponentError(f"{owner}: schema file {path} is not UTF-8 text: {exc}") from None
    schema = schema_pb2.Schema()
    try:
        text_format.Parse(text, schema)
    except text_format.ParseError as exc:
        line = exc.GetLine()
        where = f"line {line}" if line else "unknown line"
        raise ComponentError(f"{owner}: invalid schema in {path}, {where}: {_parse_error_message(exc)}") from None
    return schema


def _parse_error_message(exc: Exception) -> str:
    # ParseError's text starts with "line:column : "; the caller says the line itself.
    message = str(exc)
    head, sep, tail = message.partition(" : ")
    return tail if sep and head.replace(":", "").isdigit() else message


def schema_to_text(schema) -> str:
    """The text format of a ``Schema`` proto, as written to ``schema.pbtxt``."""
    from google.protobuf import text_format

    return text_format.MessageToString(schema)


def default_dataset(stats_list, owner: str = "statistics"):
    """The dataset TFDV validates: the only one, or the 'All Examples' slice."""
    datasets = list(stats_list.datasets)
    if len(datasets) == 1:
        return datasets[0]
    for dataset in datasets:
        if dataset.name == "All Examples":
            return dataset
    if not datasets:
        raise ComponentError(f"{owner}: the statistics hold no dataset")
    raise ComponentError(
        f"{owner}: the statistics hold {len(datasets)} datasets and none is the default slice 'All Examples'"
    )
