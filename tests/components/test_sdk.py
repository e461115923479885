"""The component SDK: signatures, definition-time validation, plain-function tests."""

import json
from pathlib import Path

import pydantic
import pytest

from sluice.components.artifacts import Examples, Model, Schema
from sluice.components.sdk import (
    DefinitionError,
    ExecutionContext,
    Input,
    ModuleFile,
    Output,
    component,
)


def produce(examples: Output[Examples], rows: int = 10) -> None:
    with open(examples.path("rows.json"), "w") as fh:
        json.dump(list(range(rows)), fh)


def make_schema(schema: Output[Schema]) -> None:
    pass


class Settings(pydantic.BaseModel):
    learning_rate: float
    layers: list[int] = [8]


def train(examples: Input[Examples], model: Output[Model], settings: Settings, steps: int = 5,
          schema: Input[Schema] | None = None, module_file: ModuleFile | None = None,
          ctx: ExecutionContext = None) -> None:
    pass


Produce = component(produce, name="Produce")
MakeSchema = component(make_schema, name="MakeSchema")
Train = component(train, name="Train")


def test_signature_is_parsed_into_inputs_outputs_and_parameters():
    assert set(Train.inputs) == {"examples", "schema"}
    assert Train.inputs["schema"].optional and not Train.inputs["examples"].optional
    assert set(Train.outputs) == {"model"}
    assert set(Train.parameters) == {"settings", "steps", "module_file"}
    assert Train.parameters["module_file"].kind == "module_file"
    assert Train.context_parameter == "ctx"


def test_plain_function_runs_without_an_orchestrator(tmp_path):
    produce(examples=Examples(uri=str(tmp_path)), rows=3)
    assert json.loads((tmp_path / "rows.json").read_text()) == [0, 1, 2]


def test_wiring_and_typed_parameters():
    p = Produce(rows=4)
    t = Train(examples=p.outputs["examples"], settings=Settings(learning_rate=0.1), steps=3)
    assert t.inputs["examples"].producer is p
    assert t.parameters["settings"].learning_rate == 0.1
    assert t.parameters["steps"] == 3 and t.id == "Train"


def test_dict_is_accepted_for_a_typed_object_parameter():
    t = Train(examples=Produce().outputs["examples"], settings={"learning_rate": 0.5, "layers": [4, 2]})
    assert isinstance(t.parameters["settings"], Settings)


def test_type_mismatch_names_component_and_input():
    with pytest.raises(DefinitionError, match=r"component Train: input 'examples' expects Examples, got Schema"):
        Train(examples=MakeSchema().outputs["schema"], settings=Settings(learning_rate=0.1))


def test_missing_required_input():
    with pytest.raises(DefinitionError, match=r"component Train: missing required input 'examples'"):
        Train(settings=Settings(learning_rate=0.1))


def test_missing_required_parameter():
    with pytest.raises(DefinitionError, match=r"component Train: missing required parameter 'settings'"):
        Train(examples=Produce().outputs["examples"])


def test_unknown_parameter_lists_valid_ones():
    with pytest.raises(DefinitionError, match=r"component Produce: unknown parameter 'rowz' \(valid: rows\)"):
        Produce(rowz=3)


def test_wrong_parameter_type():
    with pytest.raises(DefinitionError, match=r"component Produce: parameter 'rows' expects int, got str '3'"):
        Produce(rows="3")


def test_wrong_type_inside_a_typed_object():
    with pytest.raises(DefinitionError, match=r"parameter 'settings'\['learning_rate'\] expects Settings"):
        Train(examples=Produce().outputs["examples"], settings={"learning_rate": "fast"})


def test_input_given_a_non_channel():
    with pytest.raises(DefinitionError, match=r"input 'examples' expects a channel of Examples"):
        Train(examples="/data/examples", settings=Settings(learning_rate=0.1))


def test_unknown_output_name():
    with pytest.raises(DefinitionError, match=r"component Produce: has no output 'model'"):
        Produce().outputs["model"]


def test_invalid_ids_are_rejected():
    for bad in ("../up", "a/b", "", "1abc"):
        with pytest.raises(DefinitionError, match="invalid id"):
            Produce(id=bad)


def test_unannotated_parameter_is_a_definition_error():
    def untyped(examples: Output[Examples], rows):
        pass

    with pytest.raises(DefinitionError, match=r"parameter 'rows' needs a type annotation"):
        component(untyped)


def test_code_version_changes_with_version_string():
    assert component(produce, version="2").code_version != component(produce, version="1").code_version


def test_beam_pipeline_gets_the_pipeline_options_and_never_prism():
    from apache_beam.options.pipeline_options import DirectOptions
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    ctx = ExecutionContext(beam_pipeline_args=["--direct_running_mode=multi_threading", "--direct_num_workers=2"])
    pipeline = ctx.beam_pipeline()
    assert isinstance(pipeline.runner, FnApiRunner)
    opts = pipeline.options.view_as(DirectOptions)
    assert opts.direct_running_mode == "multi_threading" and opts.direct_num_workers == 2
    explicit = ExecutionContext(beam_pipeline_args=["--runner=DirectRunner"]).beam_pipeline()
    assert isinstance(explicit.runner, FnApiRunner)
    other = ExecutionContext(beam_pipeline_args=["--runner=PortableRunner", "--job_endpoint=localhost:1"])
    assert type(other.beam_pipeline().runner).__name__ == "PortableRunner"  # passed through, not replaced


def beam_count(examples: Output[Examples], ctx: ExecutionContext = None) -> None:
    import pathlib

    import apache_beam as beam

    with ctx.beam_pipeline() as p:
        (p | beam.Create(range(100)) | beam.combiners.Count.Globally()
         | beam.Map(lambda n: pathlib.Path(examples.path("count.txt")).write_text(str(n))))


def test_beam_component_runs_in_a_pipeline_with_its_options(tmp_path):
    from sluice.orchestration.local_runner import run_pipeline
    from sluice.orchestration.pipeline import Pipeline

    BeamCount = component(beam_count, name="BeamCount")
    result = run_pipeline(Pipeline(name="beam", components=[BeamCount()], pipeline_root=str(tmp_path),
                                   beam_pipeline_args=["--direct_running_mode=in_memory"]))
    assert result.ok, result.error
    with open(result.outputs("BeamCount")["examples"][0].path("count.txt")) as fh:
        assert fh.read() == "100"


def test_a_builtin_component_version_covers_every_module_of_the_components_package(tmp_path):
    import os

    from sluice.components import Pusher, Trainer, sdk
    from sluice.components.sdk import source_tree_digest

    package = os.path.dirname(os.path.abspath(sdk.__file__))
    assert Trainer.code_version == Pusher.code_version == f"1:{source_tree_digest(package)}"
    (tmp_path / "engine").mkdir()
    (tmp_path / "engine" / "deep.py").write_text("X = 1\n")
    (tmp_path / "top.py").write_text("Y = 1\n")
    before = source_tree_digest(str(tmp_path))
    source_tree_digest.cache_clear()
    (tmp_path / "engine" / "deep.py").write_text("X = 2\n")  # a helper module deep in a package
    assert source_tree_digest(str(tmp_path)) != before


def tune_settings(best: Output[Schema]) -> None:
    with open(best.path("values.json"), "w") as fh:
        json.dump({"learning_rate": 0.5}, fh)


def use_settings(model: Output[Model], settings: Input[Schema] | dict[str, float] | None = None) -> None:
    given = {"value": settings}
    if isinstance(settings, Schema):
        with open(settings.path("values.json")) as fh:
            given = json.load(fh)
    with open(model.path("given.json"), "w") as fh:
        json.dump(given, fh)


def test_an_input_that_also_takes_a_value_gets_a_channel_or_a_value(tmp_path):
    from sluice.orchestration.local_runner import run_pipeline
    from sluice.orchestration.pipeline import Pipeline

    Tune, Use = component(tune_settings, name="Tune"), component(use_settings, name="Use")
    assert Use.inputs["settings"].optional and Use.parameters["settings"].default is None
    tuned = Tune()
    wired = Use(settings=tuned.outputs["best"], id="wired")
    valued = Use(settings={"learning_rate": 2}, id="valued")
    unset = Use(id="unset")
    assert list(wired.inputs) == ["settings"] and wired.parameters["settings"] is None
    assert not valued.inputs and valued.parameters["settings"] == {"learning_rate": 2.0}
    with pytest.raises(DefinitionError, match="parameter 'settings'"):
        Use(settings="fast")
    with pytest.raises(DefinitionError, match=r"input 'settings' expects Schema, got Examples"):
        Use(settings=Produce().outputs["examples"])
    result = run_pipeline(Pipeline(name="either", components=[tuned, wired, valued, unset],
                                   pipeline_root=str(tmp_path / "root")))
    assert result.ok, result.error
    given = {node: json.loads(Path(result.outputs(node)["model"][0].path("given.json")).read_text())
             for node in ("wired", "valued", "unset")}
    assert given == {"wired": {"learning_rate": 0.5}, "valued": {"value": {"learning_rate": 2.0}},
                     "unset": {"value": None}}
