"""Feature shapes through Sluice's tf.Transform: raw inputs built from the schema as tf.Transform
builds them, fixed-shape and variable-length outputs materialized as Parquet list columns, the
post-transform schema, the Trainer's datasets and ``TFTransformOutput``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sluice import tft
from sluice.components.artifacts import Examples, Schema, TransformGraph
from sluice.components.sdk import ComponentError
from sluice.components.tft.feature_spec import FeatureSpec
from sluice.components.tft.tensors import arrow_to_raw_tensors, tensors_to_arrow
from sluice.components.training import data as trainer_data
from sluice.components.transform import run_transform
from sluice.components.transform.component import raw_features_from_schema

ROWS = 48
SCHEMA = """
feature { name: "img" type: FLOAT shape { dim { size: 784 } } presence { min_fraction: 1.0 } }
feature { name: "tokens" type: BYTES }
feature { name: "species" type: BYTES shape { dim { size: 1 } } presence { min_fraction: 1.0 } }
feature { name: "x" type: FLOAT }
feature { name: "label" type: INT shape { } presence { min_fraction: 1.0 } }
"""


def shapes_table(rows: int = ROWS, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    img = pa.FixedSizeListArray.from_arrays(pa.array(rng.uniform(0, 255, rows * 784).astype(np.float32)), 784)
    words = ["a", "b", "c", "d", "e"]
    tokens = [[words[int(i)] for i in rng.integers(0, 5, int(n))] for n in rng.integers(0, 4, rows)]
    tokens[1] = None  # a null list: no values
    x = [None if i % 5 == 0 else float(i) for i in range(rows)]
    species = [["Adelie", "Gentoo", "Chinstrap"][i % 3] for i in range(rows)]
    return pa.table({"img": img, "tokens": pa.array(tokens, pa.list_(pa.string())), "species": species,
                     "x": pa.array(x, pa.float64()), "label": pa.array(np.arange(rows) % 2, pa.int64())})


def write_schema(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "schema.pbtxt").write_text(SCHEMA)
    return folder / "schema.pbtxt"


def test_raw_inputs_follow_the_schema_as_tf_transform(tmp_path):
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tensorflow_transform.tf_metadata import schema_utils

    path = write_schema(tmp_path)
    specs = raw_features_from_schema(str(path))
    oracle = schema_utils.schema_as_feature_spec(text_format.Parse(SCHEMA, schema_pb2.Schema())).feature_spec
    assert {n: s.parse_spec() for n, s in specs.items()} == oracle

    table = shapes_table()
    raw = arrow_to_raw_tensors(table, specs)
    assert raw["img"].shape == (ROWS, 784) and raw["img"].dtype.name == "float32"
    np.testing.assert_allclose(raw["img"].numpy()[3], table.column("img")[3].values.to_numpy())
    assert raw["species"].shape == (ROWS, 1) and raw["label"].shape == (ROWS,)
    tokens = raw["tokens"]
    lengths = [len(t or []) for t in table.column("tokens").to_pylist()]
    assert tokens.dense_shape.numpy().tolist() == [ROWS, max(lengths)]
    rows_of = np.bincount(tokens.indices.numpy()[:, 0], minlength=ROWS)
    assert rows_of.tolist() == lengths
    flat = [w for t in table.column("tokens").to_pylist() for w in t or []]
    assert [v.decode() for v in tokens.values.numpy()] == flat
    x = raw["x"]  # a scalar column without shape: var-len, a null is no entry
    assert x.dense_shape.numpy().tolist() == [ROWS, 1] and len(x.values) == ROWS - ROWS // 5 - (ROWS % 5 > 0)


def test_bad_shapes_are_one_line_errors():
    wrong_length = pa.table({"img": pa.array([[1.0, 2.0, 3.0]], pa.list_(pa.float32()))})
    with pytest.raises(ValueError, match=r"column 'img': row 0 has 3 values, but the schema's shape is \[784\]"):
        arrow_to_raw_tensors(wrong_length, {"img": FeatureSpec("float32", (784,))})
    missing = pa.table({"a": pa.array([1.0, None])})
    with pytest.raises(ValueError, match="column 'a' has 1 missing value.*always present"):
        arrow_to_raw_tensors(missing, {"a": FeatureSpec("float32", (1,))})


def test_outputs_to_arrow_are_vectorized_list_columns():
    import tensorflow as tf

    sparse = tf.SparseTensor([[0, 0], [0, 1], [2, 0]], tf.constant([1, 2, 3], tf.int64), [3, 2])
    table = tensors_to_arrow({"v": sparse, "m": tf.reshape(tf.range(12, dtype=tf.float32), [3, 2, 2])},
                             {"v": FeatureSpec("int64"), "m": FeatureSpec("float32", (2, 2))})
    assert table.column("v").to_pylist() == [[1, 2], [], [3]]
    # Items are declared non-null (they never are): Parquet then writes no definition levels for them.
    assert str(table.schema.field("m").type) == \
        "fixed_size_list<item: fixed_size_list<item: float not null>[2] not null>[2]"
    assert table.column("m").to_pylist()[1] == [[4.0, 5.0], [6.0, 7.0]]
    # A var-len list's items, and every column itself, too (a row without values is an empty list).
    assert str(table.schema.field("v").type) == "list<item: int64 not null>"
    assert not any(field.nullable for field in table.schema)


MODULE = """
import tensorflow as tf
from sluice import tft


def preprocessing_fn(inputs):
    species_id = tft.compute_and_apply_vocabulary(inputs["species"], vocab_filename="species")
    tokens = inputs["tokens"]
    tft.annotate_asset("tokens_key", "tokens")
    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        ["Adelie", "Chinstrap", "Gentoo"], tf.constant([0, 1, 2], tf.int64)), -1)  # made by the user: saved too
    return {
        "species_table": table.lookup(inputs["species"]),
        "img_xf": inputs["img"] / 255.0,
        "onehot": tf.reshape(tf.one_hot(species_id, 3), [-1, 3]),
        "tokens_xf": tft.compute_and_apply_vocabulary(tokens, num_oov_buckets=1, vocab_filename="tokens"),
        "tokens_upper": tf.RaggedTensor.from_sparse(
            tf.SparseTensor(tokens.indices, tf.strings.upper(tokens.values), tokens.dense_shape)),
        "n_tokens": tf.RaggedTensor.from_sparse(tokens).row_lengths(),
        "x_xf": tft.fill_missing(inputs["x"], -1.0),
        "species_id": species_id,
        "label_xf": inputs["label"] * 2,
    }
"""


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    splits = {"train": shapes_table(), "eval": shapes_table(16, seed=1)}
    for split, table in splits.items():
        (root / "examples" / f"Split-{split}").mkdir(parents=True)
        pq.write_table(table, root / "examples" / f"Split-{split}" / "part-00000-of-00001.parquet")
    write_schema(root / "schema")
    outs = {}
    for name, cls in (("transform_graph", TransformGraph), ("transformed_examples", Examples),
                      ("post_transform_schema", Schema)):
        (root / name).mkdir()
        outs[name] = cls(uri=str(root / name))
    module = root / "shapes_module.py"
    module.write_text(MODULE)
    run_transform(examples=Examples(uri=str(root / "examples"), split_names=["train", "eval"]),
                  schema=Schema(uri=str(root / "schema")), module_file=str(module), **outs)
    return {"root": root, "splits": splits, **outs}


def test_fixed_and_var_len_outputs_round_trip_through_parquet(shapes_run):
    train = pq.read_table(shapes_run["transformed_examples"].split_uri("train"))
    raw = shapes_run["splits"]["train"]
    types = {f.name: str(f.type) for f in train.schema}
    # Written as Parquet's required columns: no definition levels for a scalar, one fewer for a list.
    shard = next(Path(shapes_run["transformed_examples"].split_uri("train")).glob("*.parquet"))
    assert not any(f.nullable for f in pq.read_schema(shard))
    assert types["img_xf"].startswith("fixed_size_list<") and types["img_xf"].endswith(">[784]")
    assert types["onehot"].endswith(">[3]") and types["tokens_xf"].startswith("list<")
    assert types["tokens_upper"].startswith("list<") and types["x_xf"] == "float"
    assert types["species_id"] == "int64"  # a [batch, 1] output: a plain column, its shape in the metadata
    np.testing.assert_allclose(train.column("img_xf")[5].values.to_numpy(),
                               raw.column("img")[5].values.to_numpy() / 255.0, rtol=1e-6)
    species = tft.TFTransformOutput(shapes_run["transform_graph"]).vocabulary_by_name("species")
    expected_ids = [species.index(s.encode()) for s in raw.column("species").to_pylist()]
    np.testing.assert_array_equal(np.argmax(np.array(train.column("onehot").to_pylist()), axis=1), expected_ids)
    order = ["Adelie", "Chinstrap", "Gentoo"]
    assert train.column("species_table").to_pylist() == [order.index(s) for s in raw.column("species").to_pylist()]
    upper = [[w.upper() for w in t or []] for t in raw.column("tokens").to_pylist()]
    assert train.column("tokens_upper").to_pylist() == upper
    assert train.column("n_tokens").to_pylist() == [len(t) for t in upper]
    vocab = tft.TFTransformOutput(shapes_run["transform_graph"]).vocabulary_by_name("tokens")
    assert train.column("tokens_xf").to_pylist() == [[vocab.index(w.encode()) for w in t or []]
                                                     for t in raw.column("tokens").to_pylist()]


def test_post_transform_schema_and_feature_specs(shapes_run):
    import tensorflow as tf

    output = tft.TFTransformOutput(shapes_run["transform_graph"].uri)
    schema = {f.name: f for f in output.transformed_metadata.schema.feature}
    assert [d.size for d in schema["img_xf"].shape.dim] == [784] and schema["img_xf"].presence.min_fraction == 1
    assert [d.size for d in schema["onehot"].shape.dim] == [3]
    assert not schema["tokens_xf"].HasField("shape") and not schema["tokens_xf"].HasField("presence")
    assert schema["tokens_xf"].int_domain.max == 5 and schema["x_xf"].HasField("shape")
    spec = output.transformed_feature_spec()
    assert spec["img_xf"] == tf.io.FixedLenFeature([784], tf.float32)
    assert spec["tokens_upper"] == tf.io.RaggedFeature(tf.string, value_key="tokens_upper$ragged_values",
                                                       partitions=(), row_splits_dtype=tf.int64)  # as tf.Transform
    assert spec["tokens_xf"] == tf.io.VarLenFeature(tf.int64)
    assert spec["x_xf"] == tf.io.FixedLenFeature([], tf.float32)
    assert spec["species_id"] == tf.io.FixedLenFeature([1], tf.int64)  # as tf.Transform: [batch, 1] stays [1]
    assert [d.size for d in schema["species_id"].shape.dim] == [1]
    assert output.raw_feature_spec()["img"] == tf.io.FixedLenFeature([784], tf.float32)
    assert output.raw_feature_spec()["tokens"] == tf.io.VarLenFeature(tf.string)
    assert {f.name for f in output.raw_metadata.schema.feature} == {"img", "tokens", "species", "x", "label"}
    assert output.num_buckets_for_transformed_feature("tokens_xf") == 6
    with pytest.raises(ValueError, match="species_id has min value -1"):  # default_value -1, as tf.Transform
        output.num_buckets_for_transformed_feature("species_id")
    lines = Path(output.vocabulary_file_by_name("tokens")).read_bytes().splitlines()
    assert output.vocabulary_size_by_name("tokens") == len(lines)
    assert output.vocabulary_file_by_name("tokens_key") == output.vocabulary_file_by_name("tokens")
    assert Path(output.transform_savedmodel_dir, "saved_model.pb").is_file()
    assert Path(shapes_run["post_transform_schema"].file).read_text() == Path(
        shapes_run["transform_graph"].uri, "transformed_metadata", "schema.pbtxt").read_text()


@pytest.mark.parametrize("streamed", [False, True])
def test_parquet_dataset_gives_schema_shapes(shapes_run, monkeypatch, streamed):
    import tensorflow as tf

    if streamed:
        monkeypatch.setattr(trainer_data, "IN_MEMORY_ROW_LIMIT", 0)
    files = trainer_data.split_files(shapes_run["transformed_examples"], "train")
    dataset = trainer_data.parquet_dataset(files, 8, label_key="label_xf", shuffle=True, repeat=False, seed=3)
    rows, tokens = 0, 0
    for features, label in dataset:
        assert features["img_xf"].shape[1:] == (784,) and features["onehot"].shape[1:] == (3,)
        assert isinstance(features["tokens_xf"], tf.SparseTensor) and features["x_xf"].shape.rank == 1
        assert isinstance(features["tokens_upper"], tf.RaggedTensor)  # a ragged output comes back ragged
        assert label.shape.rank == 1 and features["species_id"].shape[1:] == (1,)
        rows += int(label.shape[0])
        tokens += int(tf.size(features["tokens_xf"].values))
    raw = shapes_run["splits"]["train"]
    assert rows == ROWS and tokens == sum(len(t or []) for t in raw.column("tokens").to_pylist())


def serialized_examples(table: pa.Table, drop: tuple[str, ...] = ()) -> list[bytes]:
    import tensorflow as tf

    def feature(value):
        values = value if isinstance(value, list) else [] if value is None else [value]
        if values and isinstance(values[0], str):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode() for v in values]))
        if values and isinstance(values[0], int):
            return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))

    return [tf.train.Example(features=tf.train.Features(feature={
        name: feature(value) for name, value in row.items() if name not in drop and value not in (None, [])}))
        .SerializeToString()
        for row in table.to_pylist()]


def test_serving_default_and_transform_raw_features_on_tf_examples(shapes_run):
    import tensorflow as tf

    raw = shapes_run["splits"]["eval"]
    output = tft.TFTransformOutput(shapes_run["transform_graph"])
    expected = pq.read_table(shapes_run["transformed_examples"].split_uri("eval"))
    loaded = tf.saved_model.load(output.transform_savedmodel_dir)
    served = loaded.signatures["serving_default"](examples=tf.constant(serialized_examples(raw, drop=("label",))))
    np.testing.assert_allclose(served["img_xf"].numpy(), np.array(expected.column("img_xf").to_pylist()), rtol=1e-6)
    assert served["tokens_xf/values"].numpy().tolist() == [v for t in expected.column("tokens_xf").to_pylist()
                                                           for v in t]

    spec = {k: v for k, v in output.raw_feature_spec().items() if k != "label"}
    parsed = tf.io.parse_example(tf.constant(serialized_examples(raw, drop=("label",))), spec)
    transformed = output.transform_raw_features(parsed, drop_unused_features=True)
    assert "label_xf" not in transformed and transformed.pop("label_xf") is None  # computed from the label only
    np.testing.assert_array_equal(transformed["onehot"].numpy(), np.array(expected.column("onehot").to_pylist()))
    assert isinstance(transformed["tokens_upper"], tf.RaggedTensor)
    assert transformed["tokens_upper"].to_list() == [[w.encode() for w in t] for t in expected.column("tokens_upper")
                                                      .to_pylist()]
    assert served["tokens_upper/row_splits"].shape == (raw.num_rows + 1,)


def test_a_list_column_where_the_schema_wants_one_value_is_one_line(shapes_run, tmp_path):
    schema_dir = tmp_path / "schema"
    schema_dir.mkdir()
    (schema_dir / "schema.pbtxt").write_text(SCHEMA.replace('name: "img" type: FLOAT shape { dim { size: 784 } }',
                                                            'name: "img" type: FLOAT shape { dim { size: 10 } }'))
    outs = {name: cls(uri=str(tmp_path / name)) for name, cls in (
        ("transform_graph", TransformGraph), ("transformed_examples", Examples), ("post_transform_schema", Schema))}
    for artifact in outs.values():
        Path(artifact.uri).mkdir()
    with pytest.raises(ComponentError, match=r"column 'img': row 0 has 784 values, but the schema's shape is \[10\]"):
        run_transform(examples=Examples(uri=str(shapes_run["root"] / "examples"), split_names=["train", "eval"]),
                      schema=Schema(uri=str(schema_dir)), module_file=str(shapes_run["root"] / "shapes_module.py"),
                      **outs)


def test_parquet_dataset_on_raw_examples_takes_the_schema_shapes(shapes_run):
    import tensorflow as tf
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    shapes = trainer_data.shapes_from_schema(text_format.Parse(SCHEMA, schema_pb2.Schema()))
    assert shapes == {"img": (784,), "species": (1,), "label": ()}
    files = trainer_data.split_files(Examples(uri=str(shapes_run["root"] / "examples"), split_names=["train"]), "train")
    features, label = next(iter(trainer_data.parquet_dataset(files, 8, label_key="label", shapes=shapes)))
    assert features["img"].shape == (8, 784) and features["species"].shape == (8, 1) and label.shape == (8,)
    assert isinstance(features["tokens"], tf.SparseTensor)
    with pytest.raises(ComponentError, match=r"column 'img' in .*: row 0 has 784 values, but its shape is \[10\]"):
        trainer_data.parquet_dataset(files, 8, shapes={"img": (10,)}, repeat=False)


def test_a_transform_graph_of_an_older_sluice_taking_raw_tensors_still_applies(shapes_run, tmp_path):
    """Format 2 saved ``transform_fn`` on the raw tensor dict; format 3 on ``packed.pack``'s tensors."""
    import json
    import shutil

    import tensorflow as tf

    from sluice.components.tft.packed import pack_in_graph
    from sluice.components.tft.tensors import raw_input_signature
    from sluice.components.transform.transforms import TransformBatchDoFn

    current = tft.TFTransformOutput(shapes_run["transform_graph"])
    assert current.analysis["format_version"] == 3
    old_dir = tmp_path / "old_graph"
    shutil.copytree(shapes_run["transform_graph"].uri, old_dir)
    raw_features = current.raw_features
    loaded = tf.saved_model.load(current.transform_savedmodel_dir)

    @tf.function(input_signature=[raw_input_signature(raw_features)], autograph=False)
    def on_raw_tensors(inputs):
        return loaded.transform_fn(pack_in_graph(inputs, raw_features))

    module = tf.Module()
    module.loaded, module.transform_fn = loaded, on_raw_tensors.get_concrete_function()
    shutil.rmtree(old_dir / "transform_fn")
    tf.saved_model.save(module, str(old_dir / "transform_fn"))
    shutil.copytree(Path(current.transform_savedmodel_dir) / "assets", old_dir / "transform_fn" / "assets",
                    dirs_exist_ok=True)
    analysis = json.loads((old_dir / "analysis.json").read_text())
    (old_dir / "analysis.json").write_text(json.dumps({**analysis, "format_version": 2}))

    raw = shapes_run["splits"]["eval"]
    expected = pq.read_table(shapes_run["transformed_examples"].split_uri("eval"))
    old = tft.TFTransformOutput(str(old_dir))
    spec = old.raw_feature_spec()
    parsed = tf.io.parse_example(tf.constant(serialized_examples(raw)), spec)
    for output in (old, current):
        transformed = output.transform_raw_features(parsed)
        np.testing.assert_array_equal(transformed["onehot"].numpy(), np.array(expected.column("onehot").to_pylist()))
    do_fn = TransformBatchDoFn(str(old_dir))
    do_fn.setup()
    assert pa.concat_tables(do_fn.process(raw)).equals(expected)
