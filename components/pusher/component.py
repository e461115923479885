"""The Pusher component: the push, step by step (see the package's docstring)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile

from sluice.components.artifacts import Examples, Model, ModelBlessing, PushedModel
from sluice.components.io.files import is_remote
from sluice.components.pusher.registry import (
    Registry,
)
from sluice.components.sdk import ComponentError, ExecutionContext, Input, Output, component

__all__ = [
    "MARKER",
    "Pusher",
    "model_fingerprint",
    "place_version",
    "push_model",
    "read_marker",
    "remove_stale_staging",
    "rename_no_replace",
    "stage_copy",
]

MARKER = ".sluice-push.json"  # in each version folder: which model it holds and where it is registered


# --- the serving folder ------------------------------------------------------------------------


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
    if is_remote(serving_dir):  # os.path.abspath would make ./s3:/bucket/... of it
        raise ComponentError(f"Pusher: parameter 'serving_dir' {serving_dir} is not a local folder; "
                             f"pushes go to a local (or mounted) folder: pass serving_dir=/path")
    serving_dir = os.path.abspath(serving_dir)
    if os.path.islink(serving_dir):
        raise ComponentError(f"Pusher: parameter 'serving_dir' {serving_dir} is a symlink; give the real folder")
    if os.path.exists(serving_dir) and not os.path.isdir(serving_dir):
        raise ComponentError(f"Pusher: parameter 'serving_dir' {serving_dir} is not a folder")
    os.makedirs(serving_dir, exist_ok=True)
    return serving_dir


def model_fingerprint(model: Model) -> str:
    """Names one pushed model: its artifact URI and the bytes of its SavedModel files.

    The URI is part of it so that two trainings that happen to give identical files stay
    two models (two pushes), while a re-run with the same (cached) model is recognised.
    """
    digest = hashlib.sha256(os.path.abspath(model.uri).encode())
    for base, dirs, names in os.walk(model.serving_dir):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(base, name)
            digest.update(b"\0" + os.path.relpath(path, model.serving_dir).encode() + b"\0")
            if os.path.islink(path):  # named by its target; the copy reports a broken one
                digest.update(os.readlink(path).encode())
                continue
            with open(path, "rb") as data:
                for block in iter(lambda: data.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def read_marker(version_dir: str) -> dict:
    """The marker of a version folder; ``{}`` for a folder pushed otherwise (or before markers)."""
    try:
        with open(os.path.join(version_dir, MARKER)) as data:
            marker = json.load(data)
    except (OSError, ValueError):
        return {}
    return marker if isinstance(marker, dict) else {}


def _write_marker(version_dir: str, marker: dict) -> None:
    """Writes the marker through a temporary file and a rename: never half a marker."""
    tmp = os.path.join(version_dir, f".{MARKER}.{os.getpid()}")
    with open(tmp, "w") as out:
        json.dump(marker, out, indent=2, sort_keys=True)
    os.replace(tmp, os.path.join(version_dir, MARKER))


def _process_tag(pid: int) -> str:
    """``<pid>.<start time>``: names a staging folder's owner, robust to pid reuse."""
    import psutil

    try:
        return f"{pid}.{int(psutil.Process(pid).create_time() * 100)}"
    except psutil.Error:
        return ""


def remove_stale_staging(serving_dir: str) -> list[str]:
    """Removes ``.push-<pid>.<start>-*`` folders whose pushing process is gone.

    A push killed before its rename leaves its staging folder behind (never a
    version folder); the next push into the same directory cleans it up.
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


def stage_copy(source: str, serving_dir: str) -> str:
    """Copies the SavedModel folder ``source`` into a new staging folder; returns the copy's path."""
    staging = tempfile.mkdtemp(prefix=f".push-{_process_tag(os.getpid())}-", dir=serving_dir)
    payload = os.path.join(staging, "model")
    try:
        shutil.copytree(source, payload)
    except (OSError, shutil.Error) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ComponentError(f"Pusher: copying {source} into {serving_dir} failed: {exc}") from None
    return payload


def place_version(payload: str, serving_dir: str) -> tuple[int, str]:
    """Renames the staged ``payload`` to ``<serving_dir>/<next version>``; removes its staging folder.

    >>> staged = stage_copy("/models/run-7/Format-Serving", "/srv/models/taxi")  # doctest: +SKIP
    >>> place_version(staged, "/srv/models/taxi")  # doctest: +SKIP
    (3, '/srv/models/taxi/3')
    """
    try:
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
        shutil.rmtree(os.path.dirname(payload), ignore_errors=True)


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


# --- the push ------------------------------------------------------------------------------------


def _markers(serving_dir: str) -> dict[int, dict]:  # version folder -> its marker
    return {v: read_marker(os.path.join(serving_dir, str(v))) for v in _existing_versions(serving_dir)}


def _placed_numbers(markers: dict[int, dict], name: str) -> set[int]:
    """Registry versions of ``name`` that some version folder holds."""
    return {m["registered"][name] for m in markers.values()
            if isinstance(m.get("registered"), dict) and isinstance(m["registered"].get(name), int)}


def _reuse(model: Model, serving_dir: str, version: int, marker: dict, fingerprint: str,
           registry: Registry | None, markers: dict[int, dict]) -> dict:
    """The model is already the newest version in the folder (pushed before, e.g. by a killed run)."""
    destination = os.path.join(serving_dir, str(version))
    registered = None
    if registry is not None:
        names = dict(marker.get("registered") or {})
        number = names.get(registry.name)
        if not registry.is_of(number, fingerprint):  # placed without (this) registry: register it now
            number = registry.unplaced(fingerprint, _placed_numbers(markers, registry.name))
            number = number or registry.register(model, fingerprint)
            _write_marker(destination, {**marker, "registered": {**names, registry.name: number}})
        registered = registry.complete(number, destination)
    return {"version": version, "destination": destination, "registered_model": registered, "reused": True}


def _push(model: Model, serving_dir: str, ctx: ExecutionContext, name: str, examples: Examples | None) -> dict:
    """Pushes ``model`` unless it is already the newest version; see the module docstring for the order."""
    fingerprint = model_fingerprint(model)
    remove_stale_staging(serving_dir)
    registry = Registry(ctx, name, examples) if ctx.tracking_uri else None
    markers = _markers(serving_dir)
    newest = max(markers, default=None)
    if newest is not None and markers[newest].get("fingerprint") == fingerprint:
        return _reuse(model, serving_dir, newest, markers[newest], fingerprint, registry, markers)

    payload = stage_copy(model.serving_dir, serving_dir)
    marker = {"fingerprint": fingerprint, "model_uri": model.uri, "registered": {}}
    if registry is not None:
        number = registry.unplaced(fingerprint, _placed_numbers(markers, registry.name))
        marker["registered"][registry.name] = number or registry.register(model, fingerprint)
    _write_marker(payload, marker)
    version, destination = place_version(payload, serving_dir)
    registered = registry.complete(marker["registered"][name], destination) if registry is not None else None
    return {"version": version, "destination": destination, "registered_model": registered, "reused": False}


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
    examples: Input[Examples] | None = None,
    ctx: ExecutionContext = None,
) -> None:
    """Pushes ``model`` to ``serving_dir`` as a new TF Serving version if it is blessed.

    Without a ``model_blessing`` input the model is pushed unconditionally. With
    a tracking URI the model is registered in the MLflow Model Registry as
    ``registered_model_name`` (default: the pipeline name); alias ``champion``
    names the newest version in place. A model that is already the newest version
    is not copied again: its push is completed where it stopped and reused.

    The registered version is an MLflow model too (``mlflow_model``): ``mlflow.pyfunc.load_model(
    "models:/<name>@champion")`` predicts from a pandas frame of raw rows, and ``sluice serve``
    serves it; ``examples`` (raw Examples, optional) gives its input example.
    """
    ctx = ctx or ExecutionContext()
    serving_dir = _prepare_serving_dir(serving_dir)
    if not os.path.isfile(os.path.join(model.serving_dir, "saved_model.pb")):
        raise ComponentError(f"Pusher: model has no SavedModel at {model.serving_dir}")

    reason = _not_blessed_reason(model, model_blessing)
    record = {"pushed": False, "version": None, "destination": "", "reason": reason or "",
              "registered_model": None, "reused": False}
    if reason is None:
        record.update(_push(model, serving_dir, ctx, registered_model_name or ctx.pipeline_name, examples), pushed=True,
                      reason="blessed" if model_blessing is not None else "no blessing required")

    with open(pushed_model.path("push.json"), "w") as out:
        json.dump(record, out, indent=2)
    pushed_model.pushed = record["pushed"]
    pushed_model.version = record["version"]
    pushed_model.destination = record["destination"]
    fields = {f.name for f in dataclasses.fields(pushed_model)}
    if "reason" in fields:
        pushed_model.reason = record["reason"]
    registered = record.get("registered_model")
    if "registered" in fields and registered:
        alias = f" @{registered['alias']}" if registered.get("alias") else ""
        pushed_model.registered = f"{registered['name']} version {registered['version']}{alias}"
    ctx.log_metric("pushed", 1.0 if record["pushed"] else 0.0)


# The examples give only the input example's first rows: read by URI, never downloaded whole.
Pusher = component(push_model, name="Pusher", remote_inputs=("examples",))
