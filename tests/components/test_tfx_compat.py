"""``from sluice import tfx``: TFX's module-file API (FnArgs, DataAccessor, TunerFnResult, fileio),
and module files that import helpers kept beside them."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest


def test_sluice_tfx_is_imported_on_first_use_without_tensorflow():
    code = ("import sys, sluice\nassert 'sluice.components.tfx_compat' not in sys.modules\n"
            "from sluice import tfx\n"
            "print(tfx.components.FnArgs.__name__, tfx.components.DataAccessor.__name__,\n"
            "      tfx.components.TunerFnResult._fields, callable(tfx.dsl.io.fileio.open),\n"
            "      'tensorflow' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["FnArgs", "DataAccessor", "('tuner',", "'fit_kwargs')", "True", "False"], \
        done.stderr[-2000:]


def test_fileio_does_what_tfxs_does(tmp_path):
    from sluice import tfx

    fileio = tfx.dsl.io.fileio
    folder = str(tmp_path / "a" / "b")
    fileio.makedirs(folder)
    with fileio.open(f"{folder}/x.txt", "w") as fh:
        fh.write("hello")
    fileio.copy(f"{folder}/x.txt", f"{folder}/y.txt")
    fileio.rename(f"{folder}/y.txt", f"{folder}/z.txt")
    assert sorted(fileio.listdir(folder)) == ["x.txt", "z.txt"]
    assert fileio.glob(f"{folder}/*.txt") == [f"{folder}/x.txt", f"{folder}/z.txt"]
    assert fileio.glob(str(tmp_path / "nowhere" / "*")) == []
    assert fileio.exists(f"{folder}/z.txt") and fileio.isdir(folder) and fileio.stat(f"{folder}/x.txt").length == 5
    assert [sorted(files) for _, _, files in fileio.walk(str(tmp_path / "a"))] == [[], ["x.txt", "z.txt"]]
    with pytest.raises(fileio.NotFoundError):
        fileio.listdir(str(tmp_path / "missing"))
    with pytest.raises(IOError):
        fileio.remove(str(tmp_path / "missing.txt"))
    fileio.remove(f"{folder}/z.txt")
    fileio.mkdir(f"{folder}/c")
    fileio.rmtree(str(tmp_path / "a"))
    assert not fileio.exists(str(tmp_path / "a"))


def test_data_accessor_gives_record_batches_and_datasets_with_tfx_bsl_options(tmp_path):
    from tfx_bsl.public import tfxio
    from tfx_bsl.tfxio import dataset_options

    from sluice import tfx

    path = str(tmp_path / "part-00000-of-00001.parquet")
    pq.write_table(pa.table({"x": list(range(10)), "label": [i % 2 for i in range(10)]}), path)
    accessor = tfx.components.DataAccessor()
    assert accessor.data_view_decode_fn is None

    def sizes(**options):
        batches = list(accessor.record_batch_factory([path], dataset_options.RecordBatchesOptions(
            batch_size=4, num_epochs=1, **options)))
        return [b.num_rows for b in batches], sorted(v for b in batches for v in b.column("x").to_pylist())

    assert sizes(shuffle=False) == ([4, 4, 2], list(range(10)))
    assert sizes(shuffle=True, shuffle_seed=1) == ([4, 4, 2], list(range(10)))
    assert sizes(shuffle=False, drop_final_batch=True) == ([4, 4], list(range(8)))
    dataset = accessor.tf_dataset_factory(
        [path], tfxio.TensorFlowDatasetOptions(batch_size=5, label_key="label", shuffle=False, num_epochs=1))
    assert [features["x"].numpy().tolist() for features, _ in dataset] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]


def test_fn_args_have_tfxs_names():
    from sluice import tfx

    fn_args = tfx.components.FnArgs(
        train_files=["t"], eval_files=["e"], transform_output="/graph", schema_path="/schema.pbtxt",
        serving_model_dir="/serving", model_run_dir="/run", train_steps=1, eval_steps=1, custom_config=None,
        hyperparameters=None, base_model=None, strategy=None)
    assert (fn_args.schema_file, fn_args.transform_graph_path) == ("/schema.pbtxt", "/graph")
    assert (fn_args.working_dir, fn_args.eval_model_dir) == (None, None)
    # Built as a TFX user's test builds it: TFX's keyword names, everything else left out.
    made = tfx.components.FnArgs(transform_graph_path="/graph", schema_file="/s.pbtxt", train_files=["t"])
    assert (made.transform_output, made.schema_path, made.eval_files) == ("/graph", "/s.pbtxt", [])
    assert (made.custom_config, made.hyperparameters, made.is_chief) == (None, None, True)
    with pytest.raises(TypeError, match="train_file"):
        tfx.components.FnArgs(train_file=["t"])
    result = tfx.components.TunerFnResult(tuner="tuner", fit_kwargs={"x": 1})
    assert result.tuner == "tuner" and result == ("tuner", {"x": 1})


def test_a_module_file_imports_helpers_beside_it_and_sees_their_edits(tmp_path):
    import pickle

    from apache_beam.internal.cloudpickle import cloudpickle

    from sluice.components.sdk import module_function

    (tmp_path / "sluice_helper_base.py").write_text("VALUE = 1\n\n\ndef twice(x):\n    return 2 * x\n")
    module = tmp_path / "user_module.py"
    module.write_text("import sluice_helper_base as base\n\n\ndef value():\n    return base.VALUE\n")
    try:
        assert module_function(str(module), "value", "Trainer")() == 1
        assert str(tmp_path) not in sys.path  # importable only while the module loads
        # Beam workers in other processes, without the folder on their path, get the helper by value.
        blob = cloudpickle.dumps(sys.modules["sluice_helper_base"].twice)
        del sys.modules["sluice_helper_base"]
        assert pickle.loads(blob)(3) == 6
        (tmp_path / "sluice_helper_base.py").write_text("VALUE = 2  # edited\n")
        assert module_function(str(module), "value", "Trainer")() == 2
    finally:
        sys.modules.pop("sluice_helper_base", None)


def test_a_module_files_code_is_its_folder_and_packages_below_it(tmp_path):
    from sluice.components.module_files import module_directory_sources

    for name in ("model.py", "helper.py", "pkg/__init__.py", "pkg/sub.py", "data/not_a_package.py",
                 ".hidden/x.py", "pkg/__pycache__/y.py", "venv/z.py", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    found = [os.path.relpath(p, tmp_path) for p in module_directory_sources(str(tmp_path / "model.py"))]
    assert found == ["helper.py", "model.py", "pkg/__init__.py", "pkg/sub.py"]
