"""Pusher: copies a blessed model into a TF Serving model directory and registers it in MLflow.

The layout is TF Serving's: ``<serving_dir>/<version>/saved_model.pb`` with
integer versions; a push adds ``max(existing) + 1``. The copy is written into a
hidden temporary folder inside ``serving_dir`` and renamed into place, so a
server watching the folder never sees a half-written version.

    Pusher(model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
           serving_dir="/srv/models/taxi", registered_model_name="taxi")
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import sys
import tempfile

from sluice.components.artifacts import Model, ModelBlessing, PushedModel
from sluice.components.sdk import ComponentError, ExecutionContext, Input, Output, component


def _existing_versions(serving_dir: str) -> list[int]:
    versions = []
    for name in os.listdir(serving_dir):
        if not name.isdigit():
            continue
        if os.path.islink(os.path.join(serving_dir, name)):
            raise ComponentError(f"Pusher: version folder {os.path.join(serving_dir, name)} is a symlink; "
                                 f"refusing to push into a serving_dir whose versions point elsewhere")
        versions.append(int(name))
    return versions


def _prepare_serving_dir(serving_dir: str) -> str:
    if not serving_dir:
        raise ComponentError("Pusher: parameter 'serving_dir' is empty")
    serving_dir = os.path.abspath(serving_dir)
    if os.path.islink(serving_dir):
        raise ComponentError(f"Pusher: parameter 'serving_dir' {serving_dir} is a symlink; give the real folder")
    if os.path.exists(serving_dir) and not os.path.isdir(serving_dir):
        raise ComponentError(f"Pusher: parameter 'serving_dir' {serving_dir} is not a folder")
    os.makedirs(serving_dir, exist_ok=True)
    return serving_dir


def _process_tag(pid: int) -> str:
    """``<pid>.<start time>``: names a staging folder's owner, robust to pid reuse."""
    import psutil

    try:
        return f"{pid}.{int(psutil.Process(pid).create_time() * 100)}"
    except psutil.Error:
        return ""


def remove_stale_staging(serving_dir: str) -> list[str]:
    """Removes ``.push-<pid>.<start>-*`` folders whose pushing process is gone.

    A push killed mid-copy leaves its staging folder behind (never a version
    folder); the next push into the same directory cleans it up.
    """
    removed = []
    for name in os.listdir(serving_dir):
        match = re.fullmatch(r"\.push-(\d+)\.(\d+)-.*", name)
        path = os.path.join(serving_dir, name)
        if not match or os.path.islink(path) or not os.path.isdir(path):
            continue
        if _process_tag(int(match.group(1))) == f"{match.group(1)}.{match.group(2)}":
            continue  # its process is still pushing
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def copy_as_new_version(source: str, serving_dir: str) -> tuple[int, str]:
    """Copies the SavedModel folder ``source`` to ``<serving_dir>/<next version>`` atomically.

    >>> copy_as_new_version("/models/run-7/Format-Serving", "/srv/models/taxi")  # doctest: +SKIP
    (3, '/srv/models/taxi/3')
    """
    remove_stale_staging(serving_dir)
    staging = tempfile.mkdtemp(prefix=f".push-{_process_tag(os.getpid())}-", dir=serving_dir)
    try:
        payload = os.path.join(staging, "model")
        try:
            shutil.copytree(source, payload)
        except (OSError, shutil.Error) as exc:
            raise ComponentError(f"Pusher: copying {source} into {serving_dir} failed: {exc}") from None
        version = max(_existing_versions(serving_dir), default=0) + 1
        while True:
            destination = os.path.join(serving_dir, str(version))
            try:
                rename_no_replace(payload, destination)
            except OSError:
                if os.path.lexists(destination):  # a concurrent push took it
                    version += 1
                    continue
                raise
            return version, destination
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def rename_no_replace(source: str, destination: str) -> None:
    """Renames ``source`` to ``destination``; raises FileExistsError if ``destination`` exists.

    ``os.rename`` of a folder silently replaces an *empty* folder at ``destination``, so a version
    folder another process has just made (and not filled yet) would be lost. Linux's
    ``renameat2(RENAME_NOREPLACE)`` checks and renames in one step; where it is missing (other
    systems, file systems without it) the check comes just before the rename.
    """
    import ctypes
    import errno

    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None) if sys.platform == "linux" else None
    if renameat2 is not None:
        at_fdcwd, rename_noreplace = -100, 1  # from <fcntl.h> and <linux/fs.h>
        if renameat2(at_fdcwd, os.fsencode(source), at_fdcwd, os.fsencode(destination), rename_noreplace) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS):  # EINVAL: this file system cannot
            raise OSError(code, os.strerror(code), destination)
    if os.path.lexists(destination):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), destination)
    os.rename(source, destination)


def _register(ctx: ExecutionContext, name: str, source: str) -> dict:
    """Registers ``source`` as a new version of ``name``, aliased ``champion``."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(ctx.tracking_uri)
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="Pushed by Sluice's Pusher")
    version = client.create_model_version(name, source, run_id=ctx.mlflow_run_id)
    client.set_registered_model_alias(name, "champion", version.version)
    return {"name": name, "version": int(version.version), "alias": "champion"}


def _not_blessed_reason(model: Model, model_blessing: ModelBlessing | None) -> str | None:
    if model_blessing is None:
        return None
    blessed_marker = os.path.exists(model_blessing.path("BLESSED"))
    if not (model_blessing.blessed and blessed_marker):
        why = f": {model_blessing.reason}" if model_blessing.reason else ""
        return f"model not blessed{why}"
    if model_blessing.model_uri and model_blessing.model_uri != model.uri:
        return f"the blessing is for another model ({model_blessing.model_uri})"
    return None


def push_model(
    model: Input[Model],
    pushed_model: Output[PushedModel],
    serving_dir: str,
    model_blessing: Input[ModelBlessing] | None = None,
    registered_model_name: str | None = None,
    ctx: ExecutionContext = None,
) -> None:
    """Pushes ``model`` to ``serving_dir`` as a new TF Serving version if it is blessed.

    Without a ``model_blessing`` input the model is pushed unconditionally. With
    a tracking URI the pushed copy is registered in the MLflow Model Registry as
    ``registered_model_name`` (default: the pipeline name) with alias ``champion``.
    """
    ctx = ctx or ExecutionContext()
    serving_dir = _prepare_serving_dir(serving_dir)
    if not os.path.isfile(os.path.join(model.serving_dir, "saved_model.pb")):
        raise ComponentError(f"Pusher: model has no SavedModel at {model.serving_dir}")

    reason = _not_blessed_reason(model, model_blessing)
    record = {"pushed": False, "version": None, "destination": "", "reason": reason or "",
              "registered_model": None}
    if reason is None:
        version, destination = copy_as_new_version(model.serving_dir, serving_dir)
        record.update(pushed=True, version=version, destination=destination,
                      reason="blessed" if model_blessing is not None else "no blessing required")
        if ctx.tracking_uri:
            record["registered_model"] = _register(ctx, registered_model_name or ctx.pipeline_name, destination)

    with open(pushed_model.path("push.json"), "w") as out:
        json.dump(record, out, indent=2)
    pushed_model.pushed = record["pushed"]
    pushed_model.version = record["version"]
    pushed_model.destination = record["destination"]
    if "reason" in {f.name for f in dataclasses.fields(pushed_model)}:
        pushed_model.reason = record["reason"]
    ctx.log_metric("pushed", 1.0 if record["pushed"] else 0.0)


Pusher = component(push_model, name="Pusher")
