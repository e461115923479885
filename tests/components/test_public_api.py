"""What a user imports: ``sluice``'s and ``sluice.components``' public names, and that they stay light."""

import subprocess
import sys

import sluice
import sluice.components
from sluice.components.sdk import Component


def test_the_top_level_names_a_user_imports():
    from sluice import ExecutionContext, Input, Output, Pipeline, component, tft  # noqa: F401

    assert set(sluice.__all__) >= {"Pipeline", "component", "Input", "Output", "ExecutionContext",
                                   "DefinitionError", "ComponentError", "tft"}
    assert callable(tft.scale_to_z_score) and tft.TransformOutput.__name__ == "TransformOutput"


def test_every_standard_component_is_importable_from_sluice_components():
    expected = {"CsvExampleGen", "ParquetExampleGen", "ImportExampleGen", "StatisticsGen", "SchemaGen",
                "ImportSchemaGen", "ExampleValidator", "Transform", "Tuner", "Trainer", "Evaluator", "Pusher"}
    assert expected <= set(sluice.components.__all__)
    for name in expected:
        assert isinstance(getattr(sluice.components, name), Component), name
    assert set(sluice.components.__all__) <= set(dir(sluice.components))


def test_an_unknown_name_is_an_attribute_error():
    try:
        sluice.components.NoSuchComponent  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchComponent" in str(exc)
    else:
        raise AssertionError("no AttributeError")


def test_importing_the_sdk_imports_no_component_and_nothing_heavy():
    code = ("import sys, sluice, sluice.components.sdk\n"
            "loaded = [m for m in sys.modules if m.startswith('sluice.components.') and m.count('.') == 2]\n"
            "heavy = [m for m in ('tensorflow', 'apache_beam', 'pyarrow', 'mlflow') if m in sys.modules]\n"
            "print(sorted(loaded), heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded, heavy = out.rsplit("] [", 1)
    assert "trainer" not in loaded and "evaluator" not in loaded and "example_gen" not in loaded, out
    assert heavy.strip() == "]", out


def test_all_lists_exactly_the_lazily_imported_names():
    assert sorted(sluice.components.__all__) == sorted(sluice.components._HOMES)
