"""Distribution strategies for the Trainer, and which worker is the chief."""

from __future__ import annotations

import json
import os

from sluice.components.sdk import ComponentError


def make_strategy(distribution: str, cluster_spec: dict | None = None):
    """A ``tf.distribute.Strategy`` for a ``distribution`` name (see ``run_trainer``)."""
    import tensorflow as tf

    if distribution == "auto":
        if tf.config.list_physical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    if distribution == "mirrored":
        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        # No GPU: mirror over the logical CPU devices (one unless configured otherwise).
        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    if distribution == "one_device":
        device = "/gpu:0" if tf.config.list_logical_devices("GPU") else "/cpu:0"
        return tf.distribute.OneDeviceStrategy(device)
    if distribution == "multi_worker":
        if cluster_spec is not None:
            # TF's contract: MultiWorkerMirroredStrategy reads its cluster from TF_CONFIG.
            os.environ["TF_CONFIG"] = json.dumps(tf_config(cluster_spec))
        elif not os.environ.get("TF_CONFIG"):
            raise ComponentError("Trainer: distribution 'multi_worker' needs parameter 'cluster_spec' "
                                 "or the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if distribution == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except Exception as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ComponentError(f"Trainer: distribution 'tpu': no TPU found: {first_line}") from None
        return tf.distribute.TPUStrategy(resolver)
    raise ComponentError(f"Trainer: unknown distribution {distribution!r}")


def tf_config(cluster_spec: dict) -> dict:
    """TF_CONFIG from ``cluster_spec``: a full TF_CONFIG dict, or a bare cluster whose task comes
    from the TF_CONFIG environment variable (as a Kubeflow training operator sets it)."""
    if "cluster" not in cluster_spec:
        cluster_spec = {"cluster": cluster_spec}
    if "task" not in cluster_spec:
        env_task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task")
        if not env_task:
            raise ComponentError("Trainer: parameter 'cluster_spec' has no 'task' and TF_CONFIG names none")
        cluster_spec = {**cluster_spec, "task": env_task}
    return cluster_spec


def is_chief(strategy) -> bool:
    """Whether this process is the chief (writes the model): the chief task, or worker 0 without one."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "cluster_spec", None):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type in (None, "chief"):
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief
