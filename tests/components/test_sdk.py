"""The component SDK: signatures, definition-time validation, plain-function tests."""

import json

import pydantic
import pytest

from sluice.components.artifacts import Examples, Model, Schema
from sluice.components.sdk import (
    DefinitionError, ExecutionContext, Input, ModuleFile, Output, component,
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
    import apache_beam as beam

    with ctx.beam_pipeline() as p:
        (p | beam.Create(range(100)) | beam.combiners.Count.Globally()
         | beam.Map(lambda n: open(examples.path("count.txt"), "w").write(str(n))))


def test_beam_component_runs_in_a_pipeline_with_its_options(tmp_path):
    from sluice.orchestration.local_runner import run_pipeline
    from sluice.orchestration.pipeline import Pipeline

    BeamCount = component(beam_count, name="BeamCount")
    result = run_pipeline(Pipeline(name="beam", components=[BeamCount()], pipeline_root=str(tmp_path),
                                   beam_pipeline_args=["--direct_running_mode=in_memory"]))
    assert result.ok, result.error
    assert open(result.outputs("BeamCount")["examples"][0].path("count.txt")).read() == "100"


# --- importing heavy modules and releasing memory -----------------------------


def _fake_heavy_module(tmp_path, monkeypatch, heavy: str, optional: str, value: int) -> None:
    """Module ``heavy`` imports ``optional`` (which holds VALUE = ``value``) only if it can."""
    from sluice.components import sdk

    (tmp_path / f"{heavy}.py").write_text(
        f"try:\n    import {optional}\nexcept ImportError:\n    {optional} = None\n")
    (tmp_path / f"{optional}.py").write_text(f"VALUE = {value}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sdk._OPTIONAL_FOR, heavy, (optional,))


def test_import_heavy_leaves_out_what_the_module_imports_only_optionally(tmp_path, monkeypatch):
    import sys

    from sluice.components import sdk

    _fake_heavy_module(tmp_path, monkeypatch, "sluice_fake_heavy", "sluice_fake_optional", 1)
    try:
        sdk.import_heavy(["sluice_fake_heavy"])
        heavy = sys.modules["sluice_fake_heavy"]
        assert heavy.sluice_fake_optional is None
        import sluice_fake_optional  # importable again right after

        assert sluice_fake_optional.VALUE == 1
    finally:
        sys.modules.pop("sluice_fake_heavy", None)
        sys.modules.pop("sluice_fake_optional", None)
    assert not any(isinstance(f, sdk._HideWhileImporting) for f in sys.meta_path)


def test_a_module_imported_on_use_is_loaded_only_when_first_used(tmp_path, monkeypatch):
    import sys

    from sluice.components import sdk

    _fake_heavy_module(tmp_path, monkeypatch, "sluice_fake_heavy2", "sluice_fake_lazy", 2)
    monkeypatch.setattr(sdk, "_IMPORTED_ON_USE", ("sluice_fake_lazy",))
    try:
        sdk.import_heavy(["sluice_fake_heavy2"])
        heavy = sys.modules["sluice_fake_heavy2"]
        assert heavy.sluice_fake_lazy is not None  # the library sees it as installed
        assert "sluice_fake_lazy" not in sys.modules  # but it is not imported yet
        assert heavy.sluice_fake_lazy.VALUE == 2
        assert "sluice_fake_lazy" in sys.modules
    finally:
        sys.modules.pop("sluice_fake_heavy2", None)
        sys.modules.pop("sluice_fake_lazy", None)


def test_tune_heap_leaves_malloc_settings_from_the_environment_alone(monkeypatch):
    import ctypes

    import pyarrow as pa

    from sluice.components import sdk

    calls = []
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "mimalloc")
    monkeypatch.setattr(ctypes, "CDLL", lambda *a: calls.append(a))
    monkeypatch.setattr(pa, "set_memory_pool", lambda pool: calls.append(pool))
    sdk.tune_heap()
    assert calls == []


def test_tune_heap_gives_arrow_the_system_heap(monkeypatch):
    import pyarrow as pa

    from sluice.components import sdk

    chosen = []
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    monkeypatch.setattr(pa, "set_memory_pool", chosen.append)
    sdk.tune_heap()
    assert [pool.backend_name for pool in chosen] == ["system"]


def test_hiding_applies_only_to_the_importing_thread():
    import threading

    from sluice.components import sdk

    finder = sdk._HideWhileImporting(("sluice_fake_optional",))
    with pytest.raises(ModuleNotFoundError):
        finder.find_spec("sluice_fake_optional.sub")
    assert finder.find_spec("other_module") is None
    seen = []
    thread = threading.Thread(target=lambda: seen.append(finder.find_spec("sluice_fake_optional")))
    thread.start()
    thread.join()
    assert seen == [None]


def test_release_memory_collects_cyclic_garbage_unless_a_heavy_import_is_running(monkeypatch):
    import gc
    import weakref

    from sluice.components import sdk

    class Node:
        pass

    gc.disable()  # only release_memory may collect it
    try:
        node = Node()
        node.itself = node
        alive = weakref.ref(node)
        del node
        monkeypatch.setattr(sdk, "_IMPORTS_IN_FLIGHT", 1)  # e.g. TensorFlow on the runner's warm-up thread
        sdk.release_memory()
        assert alive() is not None
        monkeypatch.setattr(sdk, "_IMPORTS_IN_FLIGHT", 0)
        sdk.release_memory()
        assert alive() is None
    finally:
        gc.enable()


def test_import_heavy_counts_the_imports_in_flight(tmp_path, monkeypatch):
    import sys

    from sluice.components import sdk

    (tmp_path / "sluice_fake_counted.py").write_text(
        "from sluice.components import sdk\nSEEN = sdk._IMPORTS_IN_FLIGHT\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        sdk.import_heavy(["sluice_fake_counted"])
        assert sys.modules["sluice_fake_counted"].SEEN == 1
        assert sdk._IMPORTS_IN_FLIGHT == 0
    finally:
        sys.modules.pop("sluice_fake_counted", None)


def test_local_beam_pipelines_sample_states_often_so_bundles_end_promptly():
    from apache_beam.runners.worker import statesampler
    from apache_beam.utils.counters import CounterFactory

    from sluice.components import sdk

    ExecutionContext().beam_pipeline()
    sampler = statesampler.StateSampler("test", CounterFactory())
    assert sampler.sampling_period_ms == sdk.STATE_SAMPLING_PERIOD_MS  # Beam's own default is 200 ms


def test_dofn_specs_are_remembered_per_instance_and_still_found():
    import apache_beam as beam
    from apache_beam.transforms import userstate
    from apache_beam.transforms.userstate import BagStateSpec

    from sluice.components import sdk

    sdk.ExecutionContext().beam_pipeline()  # an in-process pipeline installs it
    assert userstate.get_dofn_specs.sluice_remembered

    class Stateful(beam.DoFn):
        BAG = BagStateSpec("bag", beam.coders.VarIntCoder())

        def process(self, element, bag=beam.DoFn.StateParam(BAG)):
            yield element

    class Plain(beam.DoFn):
        def process(self, element):
            yield element

    stateful, plain = Stateful(), Plain()
    for _ in range(2):  # the second answer is the remembered one
        states, timers = userstate.get_dofn_specs(stateful)
        assert [s.name for s in states] == ["bag"] and not timers
        assert userstate.get_dofn_specs(plain) == (set(), set())
    states.clear()  # callers get their own sets
    assert userstate.is_stateful_dofn(stateful) and not userstate.is_stateful_dofn(plain)


def test_option_parses_are_remembered_and_give_the_same_independent_options(monkeypatch):
    from apache_beam.options.pipeline_options import (
        DebugOptions,
        GoogleCloudOptions,
        PipelineOptions,
        StandardOptions,
    )

    from sluice.components import sdk

    flags = ["--runner=FnApiRunner", "--experiments=a", "--experiments=b", "--job_name=j", "--unknown=1"]
    fresh = PipelineOptions(flags, project="p").get_all_options(retain_unknown_options=True)
    sdk.ExecutionContext().beam_pipeline()  # installs it
    assert PipelineOptions.__init__.sluice_remembered
    for _ in range(2):  # the second time from memory
        options = PipelineOptions(flags, project="p")
        assert options.get_all_options(retain_unknown_options=True) == fresh
        assert options.view_as(StandardOptions).runner == "FnApiRunner"
        assert options.view_as(GoogleCloudOptions).project == "p"  # kwargs still override
        debug = options.view_as(DebugOptions)
        assert debug.experiments == ["a", "b"]
        debug.add_experiment("c")  # a view shares its store with its options object, not with others
        assert options.view_as(DebugOptions).experiments == ["a", "b", "c"]
    assert PipelineOptions(flags).view_as(DebugOptions).experiments == ["a", "b"]
    # An environment default is part of what is remembered under.
    monkeypatch.setenv("BEAM_SERVICE_OVERRIDES", '{"x": "y"}')
    from apache_beam.options.pipeline_options import CrossLanguageOptions

    assert PipelineOptions(flags).view_as(CrossLanguageOptions).beam_services == {"x": "y"}
    monkeypatch.delenv("BEAM_SERVICE_OVERRIDES")
    assert PipelineOptions(flags).view_as(CrossLanguageOptions).beam_services == {}
    from apache_beam.options.pipeline_options import DirectOptions

    for _ in range(2):  # bad flags fail every time
        with pytest.raises(SystemExit):
            PipelineOptions(["--direct_num_workers=x"]).view_as(DirectOptions)
