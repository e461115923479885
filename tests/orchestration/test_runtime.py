"""The runtime room: what runners do to their process around components (heap, imports, Beam, Keras, exit)."""

import os
import subprocess
import sys

import pytest


def _fake_heavy_module(tmp_path, monkeypatch, heavy: str, optional: str, value: int) -> None:
    """Module ``heavy`` imports ``optional`` (which holds VALUE = ``value``) only if it can."""
    from sluice.orchestration.runtime import imports

    (tmp_path / f"{heavy}.py").write_text(
        f"try:\n    import {optional}\nexcept ImportError:\n    {optional} = None\n")
    (tmp_path / f"{optional}.py").write_text(f"VALUE = {value}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(imports._OPTIONAL_FOR, heavy, (optional,))


def test_import_heavy_leaves_out_what_the_module_imports_only_optionally(tmp_path, monkeypatch):
    import sys

    from sluice.orchestration.runtime import imports

    _fake_heavy_module(tmp_path, monkeypatch, "sluice_fake_heavy", "sluice_fake_optional", 1)
    try:
        imports.import_heavy(["sluice_fake_heavy"])
        heavy = sys.modules["sluice_fake_heavy"]
        assert heavy.sluice_fake_optional is None
        import sluice_fake_optional  # importable again right after

        assert sluice_fake_optional.VALUE == 1
    finally:
        sys.modules.pop("sluice_fake_heavy", None)
        sys.modules.pop("sluice_fake_optional", None)
    assert not any(isinstance(f, imports._HideWhileImporting) for f in sys.meta_path)


def test_runners_warm_a_package_others_import_optionally_after_them():
    from sluice.components.statistics_gen import StatisticsGen
    from sluice.components.transform import Transform
    from sluice.orchestration.runtime import warm_order

    modules = {*StatisticsGen.warm_imports, *Transform.warm_imports}
    assert warm_order(modules) == ["sluice.components.tfdv", "sluice.components.transform.column_hints",
                                   "sluice.components.transform.in_process", "tensorflow",
                                   "matplotlib.backends.backend_svg", "matplotlib.figure"]
    assert warm_order(["tfx_bsl", "apache_beam"]) == ["apache_beam", "tfx_bsl"]


def test_a_module_imported_on_use_is_loaded_only_when_first_used(tmp_path, monkeypatch):
    import sys

    from sluice.orchestration.runtime import imports

    _fake_heavy_module(tmp_path, monkeypatch, "sluice_fake_heavy2", "sluice_fake_lazy", 2)
    monkeypatch.setattr(imports, "_IMPORTED_ON_USE", ("sluice_fake_lazy",))
    try:
        imports.import_heavy(["sluice_fake_heavy2"])
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

    from sluice.orchestration.runtime import heap

    calls = []
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "mimalloc")
    monkeypatch.setattr(ctypes, "CDLL", lambda *a: calls.append(a))
    monkeypatch.setattr(pa, "set_memory_pool", lambda pool: calls.append(pool))
    heap.tune_heap()
    assert calls == []


def test_tune_heap_gives_arrow_the_system_heap(monkeypatch):
    import pyarrow as pa

    from sluice.orchestration.runtime import heap

    chosen = []
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    monkeypatch.setattr(pa, "set_memory_pool", chosen.append)
    heap.tune_heap()
    assert [pool.backend_name for pool in chosen] == ["system"]
    assert "ARROW_DEFAULT_MEMORY_POOL" not in os.environ  # too late for libarrow: pyarrow's own pool only


def test_tune_heap_before_pyarrow_loads_gives_arrows_own_buffers_the_system_heap_too():
    # The Parquet writer and reader allocate levels and pages from Arrow's C++ default pool,
    # which pyarrow's pool does not cover: none of it may come from mimalloc. os._exit skips
    # the interpreter teardown, where pyarrow 25 sometimes aborts.
    script = """
import os
from sluice.orchestration.runtime import heap
heap.tune_heap()
import io
import pyarrow as pa
import pyarrow.parquet as pq
table = pa.table({"image": pa.array([[0.5] * 784] * 500, pa.list_(pa.float32()))})
sink = io.BytesIO()
pq.write_table(table, sink)
assert pq.read_table(io.BytesIO(sink.getvalue())).equals(table)
print(pa.mimalloc_memory_pool().max_memory(), pa.system_memory_pool().max_memory(), flush=True)
os._exit(0)
"""
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    from_mimalloc, from_system = map(int, done.stdout.split())
    assert from_mimalloc == 0
    assert from_system > 500 * 784 * 4


def test_hiding_applies_only_to_the_importing_thread():
    import threading

    from sluice.orchestration.runtime import imports

    finder = imports._HideWhileImporting(("sluice_fake_optional",))
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

    from sluice.orchestration.runtime import heap, imports

    class Node:
        pass

    gc.disable()  # only release_memory may collect it
    try:
        node = Node()
        node.itself = node
        alive = weakref.ref(node)
        del node
        monkeypatch.setattr(imports, "_IMPORTS_IN_FLIGHT", 1)  # e.g. TensorFlow on the runner's warm-up thread
        heap.release_memory()
        assert alive() is not None
        monkeypatch.setattr(imports, "_IMPORTS_IN_FLIGHT", 0)
        heap.release_memory()
        assert alive() is None
    finally:
        gc.enable()


def test_import_heavy_counts_the_imports_in_flight(tmp_path, monkeypatch):
    import sys

    from sluice.orchestration.runtime import imports

    (tmp_path / "sluice_fake_counted.py").write_text(
        "from sluice.orchestration.runtime import imports\nSEEN = imports._IMPORTS_IN_FLIGHT\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        imports.import_heavy(["sluice_fake_counted"])
        assert sys.modules["sluice_fake_counted"].SEEN == 1
        assert imports._IMPORTS_IN_FLIGHT == 0
    finally:
        sys.modules.pop("sluice_fake_counted", None)


def test_local_beam_pipelines_sample_states_often_so_bundles_end_promptly():
    from apache_beam.runners.worker import statesampler
    from apache_beam.utils.counters import CounterFactory

    from sluice.orchestration.runtime import beam

    beam.RunnerContext().beam_pipeline()
    sampler = statesampler.StateSampler("test", CounterFactory())
    assert sampler.sampling_period_ms == beam.STATE_SAMPLING_PERIOD_MS  # Beam's own default is 200 ms


def test_a_worker_that_connects_after_its_pipeline_ended_is_told_to_stop():
    """The race behind a hung multi-process pipeline: the runner closes a worker's control
    connection before the worker has connected; the worker must still get the stop."""
    import threading

    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    from sluice.orchestration.runtime import beam

    beam.apply()
    servicer = worker_handlers.BeamFnControlServicer(worker_manager=None)
    servicer.get_conn_by_worker_id("worker_7").close()  # the pipeline ends first

    class LateWorker:
        def invocation_metadata(self):
            return [("worker_id", "worker_7")]

    sent = []
    stream = threading.Thread(target=lambda: sent.extend(servicer.Control(iter([]), LateWorker())), daemon=True)
    stream.start()
    stream.join(10)
    assert not stream.is_alive(), "the late worker's control stream never ended"
    assert sent == []


@pytest.mark.timeout(120)
def test_a_worker_processs_component_error_comes_out_as_its_one_line_and_its_workers_stop():
    import apache_beam

    from sluice.components.errors import ComponentError
    from sluice.orchestration.runtime import RunnerContext

    def fail(value):
        raise ComponentError(f"Toy: row {value} is bad")

    ctx = RunnerContext(beam_pipeline_args=["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    for _ in range(2):
        with pytest.raises(ComponentError, match=r"^Toy: row 1 is bad$"), ctx.beam_pipeline() as p:
            _ = p | apache_beam.Create([1]) | apache_beam.Map(fail)


def test_the_keras_workaround_applies_once_and_only_to_keras_3(monkeypatch):
    import keras
    from keras.src.backend.tensorflow import trainer as keras_tf_trainer

    from sluice.orchestration import runtime

    if not getattr(keras_tf_trainer.TensorFlowTrainer, "_sluice_patched", False):
        monkeypatch.setattr(keras, "__version__", "4.0.0")
        original = keras_tf_trainer.reduce_per_replica
        runtime.keras.apply()
        assert keras_tf_trainer.reduce_per_replica is original  # another major version: left alone
        monkeypatch.undo()
    runtime.prepare_executor(("tensorflow",))  # what a runner does before a TensorFlow component
    assert keras_tf_trainer.TensorFlowTrainer._sluice_patched
    patched = keras_tf_trainer.reduce_per_replica
    runtime.keras.apply()
    assert keras_tf_trainer.reduce_per_replica is patched  # idempotent


def test_saved_model_signatures_are_traced_without_autograph_once_a_runner_prepared_tensorflow(
        monkeypatch, tmp_path):
    import tensorflow as tf
    from tensorflow.python.autograph.impl import api as autograph
    from tensorflow.python.eager import def_function
    from tensorflow.python.saved_model import signature_serialization

    from sluice.orchestration import runtime

    # TensorFlow as it comes (a runner in this test process may have prepared it already).
    monkeypatch.setattr(signature_serialization, "def_function", def_function)
    monkeypatch.setattr(signature_serialization, "_sluice_patched", False, raising=False)
    converted = []
    convert = autograph.converted_call

    def counting(function, *args, **kwargs):
        converted.append(getattr(function, "__name__", repr(function)))
        return convert(function, *args, **kwargs)

    monkeypatch.setattr(autograph, "converted_call", counting)

    def save_and_serve(name: str) -> list[float]:
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)], autograph=False)
        def double(x):
            return {"y": x * 2}

        module = tf.Module()
        module.double = double
        signatures = {"serving_default": double.get_concrete_function()}
        tf.saved_model.save(module, str(tmp_path / name), signatures=signatures)
        served = tf.saved_model.load(str(tmp_path / name)).signatures["serving_default"](x=tf.constant([1.5, -2.0]))
        return served["y"].numpy().tolist()

    assert save_and_serve("as_it_comes") == [3.0, -4.0]
    assert any(name.startswith("signature_wrapper") for name in converted)  # TensorFlow converts its wrapper
    converted.clear()
    monkeypatch.setattr(tf, "__version__", "3.0.0")
    runtime.tf_signatures.apply()
    assert signature_serialization.def_function is def_function  # another major version: left alone
    monkeypatch.setattr(tf, "__version__", "2.21.0")
    runtime.prepare_executor(("tensorflow",))  # what a runner does before a TensorFlow component
    runtime.tf_signatures.apply()  # idempotent
    assert save_and_serve("prepared") == [3.0, -4.0]
    assert not [name for name in converted if name.startswith("signature_wrapper")]


def test_the_state_sampling_period_is_left_alone_outside_beam_2(monkeypatch):
    import apache_beam
    from apache_beam.runners.worker import statesampler

    from sluice.orchestration.runtime import beam

    init = statesampler.StateSampler.__init__
    monkeypatch.setattr(init, "__defaults__", init.__defaults__[:-1] + (200,))
    monkeypatch.setattr(apache_beam, "__version__", "3.0.0")
    beam.apply()
    assert init.__defaults__[-1] == 200
    monkeypatch.setattr(apache_beam, "__version__", "2.99.0")
    beam.apply()
    assert init.__defaults__[-1] == beam.STATE_SAMPLING_PERIOD_MS


def test_import_heavy_waits_for_the_same_import_on_another_thread(tmp_path, monkeypatch):
    import sys
    import threading
    import time

    from sluice.orchestration.runtime import imports

    (tmp_path / "sluice_fake_slow3.py").write_text("import time\ntime.sleep(0.5)\nDONE = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    warm = threading.Thread(target=lambda: imports.import_heavy(["sluice_fake_slow3"]))
    try:
        warm.start()
        while "sluice_fake_slow3" not in sys.modules:
            time.sleep(0.01)
        assert imports.import_heavy(["sluice_fake_slow3"]) is False  # waited; imported nothing itself
        assert sys.modules["sluice_fake_slow3"].DONE
    finally:
        warm.join()
        sys.modules.pop("sluice_fake_slow3", None)


def test_exit_now_runs_the_exit_handlers_and_keeps_what_they_print(tmp_path):
    script = ("import atexit\n"
              "atexit.register(lambda: print('from the handler'))\n"
              "from sluice.orchestration.runtime.exit import exit_now\n"
              "print('before')\n"
              "exit_now(3)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    with open(tmp_path / "out.txt", "w") as out:  # a file: stdout fully buffered
        code = subprocess.run([sys.executable, "-c", script], stdout=out, env=env, timeout=120).returncode
    assert code == 3
    assert (tmp_path / "out.txt").read_text() == "before\nfrom the handler\n"
