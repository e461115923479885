"""Running pipelines: what a user reaches for beyond ``from sluice import Pipeline``.

- ``pipeline``: ``Pipeline`` and ``compile_pipeline`` (the IR); ``loader``: pipeline files and ``--param``.
- ``local_runner.run_pipeline``: runs a pipeline in this process; ``execution.run_node``: one node.
- ``kubeflow``: ``compile_kubeflow``, ``kubeflow_resources``, submitting and scheduling on KFP;
  ``kubeflow_task``: what a compiled KFP task runs.
- ``metadata``: the MLflow metadata store; ``lineage``: walking it; ``scheduler``: cron and new spans.
- ``cli``: the ``sluice`` command.
- ``hooks``: ``RunHooks``, code that follows executions; ``runtime``: the runners' process-level settings.

Nothing is imported here: each module is imported when used.
"""
