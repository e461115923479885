"""The BulkInferrer's Beam transforms: files -> predicted tables -> one Parquet sink per split."""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa

from sluice.components.bulk_inferrer.predict import OWNER, batch_rows, load_model, predictions_table

# (split, Parquet file of that split)
SplitFile = tuple[str, str]


@beam.typehints.with_input_types(SplitFile)
@beam.typehints.with_output_types(tuple[str, pa.Table])
class PredictFileFn(beam.DoFn):
    """(split, file) -> (split, table of the kept columns and the predictions), batch by batch."""

    def __init__(self, serving_dir: str, columns: list[str], schema: pa.Schema):
        self.serving_dir, self.columns, self.schema = serving_dir, columns, schema

    def process(self, element):
        from sluice.components.io.examples import read_batches

        split, path = element
        loaded = load_model(self.serving_dir)
        outputs = self.schema.names[len(self.columns):]
        for batch in read_batches(path, OWNER, batch_size=batch_rows(loaded)):
            table = pa.Table.from_batches([batch])
            predicted = predictions_table(loaded, table, outputs)
            kept = table.select(self.columns)
            yield split, pa.Table.from_arrays(kept.columns + predicted.columns,
                                              names=self.schema.names).cast(self.schema)


class PredictAndWrite(beam.PTransform):
    """Predicts every row of ``files`` (``{split: [Parquet file]}``) and writes each split's rows
    to ``<output_uri>/Split-<split>/part-NNNNN-of-MMMMM.parquet`` with Beam's Parquet sink (which
    commits the shards of the attempts the runner kept)."""

    def __init__(self, serving_dir: str, files: dict[str, list[str]], columns: list[str], schema: pa.Schema,
                 output_uri: str):
        super().__init__()
        self.serving_dir, self.files, self.columns, self.schema = serving_dir, files, columns, schema
        self.output_uri = output_uri

    def expand(self, pbegin):
        from apache_beam.io.filesystems import FileSystems

        elements = [(split, path) for split, paths in self.files.items() for path in paths]
        predicted = (
            pbegin
            | "Files" >> beam.Create(elements)
            | "Spread" >> beam.Reshuffle()
            | "Predict" >> beam.ParDo(PredictFileFn(self.serving_dir, self.columns, self.schema))
        )
        for split in self.files:
            _ = (
                predicted
                | f"Only[{split}]" >> beam.Filter(lambda element, wanted=split: element[0] == wanted)
                | f"Table[{split}]" >> beam.Map(lambda element: element[1])
                | f"Write[{split}]" >> beam.io.WriteToParquetBatched(
                    FileSystems.join(self.output_uri, f"Split-{split}", "part"), self.schema,
                    file_name_suffix=".parquet")
            )
        return beam.pvalue.PDone(pbegin.pipeline)
