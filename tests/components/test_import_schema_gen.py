from pathlib import Path

import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from sluice.components.artifacts import Schema
from sluice.components.import_schema_gen import ImportSchemaGen, import_schema
from sluice.components.sdk import ComponentError, ExecutionContext

CURATED = """# Curated by hand: keep the comments.
feature {
  name: "species"
  type: BYTES
  domain: "species"
  presence { min_fraction: 1.0 min_count: 1 }
}
feature {
  name: "year"
  type: INT
  int_domain { min: 2007 max: 2009 }
}
string_domain { name: "species" value: "Adelie" value: "Chinstrap" value: "Gentoo" }
"""


@pytest.fixture
def output(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    return Schema(uri=str(folder))


def test_copies_a_valid_schema_unchanged(tmp_path, output):
    source = tmp_path / "penguins.pbtxt"
    source.write_text(CURATED)
    ctx = ExecutionContext()
    import_schema(schema_file=str(source), schema=output, ctx=ctx)
    assert Path(output.file).read_text() == CURATED
    parsed = text_format.Parse(Path(output.file).read_text(), schema_pb2.Schema())
    assert [f.name for f in parsed.feature] == ["species", "year"]
    assert ctx.metrics["num_features"] == 2


def test_missing_file(tmp_path, output):
    with pytest.raises(ComponentError, match=r"ImportSchemaGen: schema_file .*nope.pbtxt does not exist"):
        import_schema(schema_file=str(tmp_path / "nope.pbtxt"), schema=output)


def test_folder_instead_of_file(tmp_path, output):
    with pytest.raises(ComponentError, match="is a folder, expected a .pbtxt file"):
        import_schema(schema_file=str(tmp_path), schema=output)


def test_invalid_pbtxt_names_file_and_line(tmp_path, output):
    source = tmp_path / "broken.pbtxt"
    source.write_text(CURATED.replace("type: INT", "type: INTEGER"))
    with pytest.raises(ComponentError) as caught:
        import_schema(schema_file=str(source), schema=output)
    message = str(caught.value)
    assert message.startswith(f"ImportSchemaGen: invalid schema in {source}, line 10: ")
    assert "INTEGER" in message and "\n" not in message
    assert not Path(output.file).exists()


def test_unknown_field_names_the_line(tmp_path, output):
    source = tmp_path / "typo.pbtxt"
    source.write_text('feature {\n  name: "a"\n  typo: INT\n}\n')
    with pytest.raises(ComponentError, match=r"typo.pbtxt, line 3: .*no field named \"typo\""):
        import_schema(schema_file=str(source), schema=output)


def test_empty_schema_is_rejected(tmp_path, output):
    source = tmp_path / "empty.pbtxt"
    source.write_text("# nothing yet\n")
    with pytest.raises(ComponentError, match="defines no features"):
        import_schema(schema_file=str(source), schema=output)


def test_component_definition(tmp_path):
    assert ImportSchemaGen.parameters["schema_file"].kind == "external_data"
    assert set(ImportSchemaGen.outputs) == {"schema"} and not ImportSchemaGen.inputs
    node = ImportSchemaGen(schema_file=str(tmp_path / "s.pbtxt"))
    assert node.id == "ImportSchemaGen"
