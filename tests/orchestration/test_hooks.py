"""Hooks into run_node: called before and after each executor and while publishing."""

import os

import pytest

from sluice.components.artifacts import Examples, Model
from sluice.components.sdk import ComponentError, Input, Output, component
from sluice.orchestration import hooks
from sluice.orchestration.local_runner import run_pipeline
from sluice.orchestration.pipeline import Pipeline


class Recorder(hooks.RunHooks):
    """Records the calls; the executor's temporary output folders exist when it starts."""

    def __init__(self):
        self.calls = []

    def before_executor(self, node_id, output_dirs):
        names = [os.path.basename(d) for d in output_dirs]
        assert all(n.startswith(".tmp-") and os.path.isdir(d) for n, d in zip(names, output_dirs))
        self.calls.append(("before", node_id, sorted(n.rsplit("-", 1)[1] for n in names)))

    def after_executor(self, node_id, error):
        self.calls.append(("after", node_id, type(error).__name__ if error else None))

    def during_publish(self, node_id, output):
        self.calls.append(("publish", node_id, output))


@pytest.fixture
def recorder():
    recorder = Recorder()
    hooks.register(recorder)
    try:
        yield recorder
    finally:
        hooks.unregister(recorder)
    assert recorder not in hooks.registered()


def make(examples: Output[Examples], model: Output[Model]) -> None:
    pass


def refuse(examples: Input[Examples], model: Output[Model]) -> None:
    raise ComponentError("refuse: no")


def test_hooks_follow_each_execution_and_each_published_output(tmp_path, recorder):
    Make, Refuse = component(make, name="Make"), component(refuse, name="Refuse")
    first = Make()
    result = run_pipeline(Pipeline(name="hooked", components=[first, Refuse(examples=first.outputs["examples"])],
                                   pipeline_root=str(tmp_path)))
    assert not result.ok
    assert recorder.calls == [
        ("before", "Make", ["examples", "model"]),
        ("after", "Make", None),
        ("publish", "Make", "examples"),
        ("publish", "Make", "model"),
        ("before", "Refuse", ["model"]),
        ("after", "Refuse", "ComponentError"),
    ]
    recorder.calls.clear()
    assert run_pipeline(Pipeline(name="hooked", components=[Make()], pipeline_root=str(tmp_path))).ok
    assert recorder.calls == []  # a cache hit runs no executor
