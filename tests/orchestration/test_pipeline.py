"""Pipeline definitions: graph checks and the compiled IR."""

import json

import pytest

from sluice.components.sdk import DefinitionError
from sluice.orchestration.pipeline import Pipeline, compile_pipeline, load_component
from tests.components.test_sdk import MakeSchema, Produce, Train


def test_ir_is_plain_json_in_dependency_order(tmp_path):
    p = Produce(rows=2)
    t = Train(examples=p.outputs["examples"], settings={"learning_rate": 0.1})
    ir = compile_pipeline(Pipeline(name="demo", components=[t, p], pipeline_root=str(tmp_path),
                                   beam_pipeline_args=["--direct_num_workers=2"]))
    assert json.loads(json.dumps(ir)) == ir
    assert [n["id"] for n in ir["nodes"]] == ["Produce", "Train"]
    train = ir["nodes"][1]
    assert train["inputs"] == {"examples": {"node": "Produce", "output": "examples", "type": "Examples"}}
    assert train["parameters"]["settings"] == {"learning_rate": 0.1, "layers": [8]}
    assert ir["pipeline"]["beam_pipeline_args"] == ["--direct_num_workers=2"]
    assert load_component(train["component"]).name == "Train"


def test_duplicate_component_id(tmp_path):
    with pytest.raises(DefinitionError, match=r"duplicate component id 'Produce'"):
        Pipeline(name="demo", components=[Produce(), Produce()], pipeline_root=str(tmp_path))


def test_cycle_is_named(tmp_path):
    a, b = Produce(id="a"), MakeSchema(id="b")
    a.add_upstream(b)
    b.add_upstream(a)
    with pytest.raises(DefinitionError, match=r"cycle between components: (a -> b -> a|b -> a -> b)"):
        Pipeline(name="demo", components=[a, b], pipeline_root=str(tmp_path))


def test_upstream_component_missing_from_pipeline(tmp_path):
    p = Produce()
    t = Train(examples=p.outputs["examples"], settings={"learning_rate": 0.1})
    with pytest.raises(DefinitionError, match=r"component Train: input 'examples' comes from 'Produce', which is not"):
        Pipeline(name="demo", components=[t], pipeline_root=str(tmp_path))


def test_bad_pipeline_name(tmp_path):
    with pytest.raises(DefinitionError, match=r"pipeline: invalid id '../x'"):
        Pipeline(name="../x", components=[], pipeline_root=str(tmp_path))
