"""Cache keys: what an execution's result depends on, hashed.

A component's cache key (``cache_key``) hashes its type, code version, parameters, the content
fingerprints of its input artifacts and of the files its parameters name: external data
(``fingerprint_path``), a module file with its folder's code, or a ``ModuleFunction``'s package
(``module_files.module_directory_sources``). ``execution.run_node`` looks it up in the store
before running anything.

File contents are hashed with XXH3-128 (``xxhash``): a run hashes its external data before its
first component and every output after it is written, so the hash is on the critical path, and
XXH3 keeps up with reading the file where BLAKE2b ran at an eighth of that (bench/PROFILES.md).
It guards against changed files, not against a forger; the cache key itself is SHA-256.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
from typing import Any

from sluice.components.artifacts import Artifact
from sluice.components.module_files import module_directory_sources
from sluice.orchestration import object_store

CACHE_KEY_VERSION = "2"  # 2: file contents hashed with XXH3-128, not BLAKE2b
# Bytes read per call while hashing a file.
READ_CHUNK = 4 << 20


def file_digest(path: str) -> bytes:
    """The XXH3-128 digest of a file's bytes."""
    import xxhash

    digest = xxhash.xxh3_128()
    buffer = bytearray(READ_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as fh:
        while read := fh.readinto(buffer):
            digest.update(view[:read])
    return digest.digest()


def fingerprint_path(path: str) -> str:
    """A content hash of a file, a folder (recursively) or a glob pattern.

    On an object store (``s3://``...) it hashes what the listing says of each object (name, size,
    time of last change) rather than downloading it.
    """
    if object_store.is_remote(path):
        return _fingerprint_listing(path)
    digest = hashlib.blake2b(digest_size=16)
    if any(ch in path for ch in "*?[") and not os.path.exists(path):
        files = sorted(glob.glob(path, recursive=True))
    elif os.path.isdir(path):
        files = []
        for root, dirs, names in os.walk(path):
            dirs.sort()
            files.extend(os.path.join(root, n) for n in sorted(names))
    elif os.path.isfile(path):
        files = [path]
    else:
        files = []
    base = path if os.path.isdir(path) else os.path.dirname(path)
    for file in files:
        if not os.path.isfile(file):
            continue
        digest.update(os.path.relpath(file, base).encode() + b"\0")
        digest.update(file_digest(file))
    if not files:
        digest.update(b"<missing>" + path.encode())
    return digest.hexdigest()


def _fingerprint_listing(uri: str) -> str:
    digest = hashlib.blake2b(digest_size=16)
    found = object_store.describe(uri)
    for name, size, updated in found:
        digest.update(f"{name}\0{size}\0{updated}\0".encode())
    if not found:
        digest.update(b"<missing>" + uri.encode())
    return digest.hexdigest()


def external_data_paths(value: str) -> list[str]:
    """What an ExternalData parameter names: a path or a pattern with placeholders."""
    return [re.sub(r"\{[A-Z]+\}", "*", value)]


_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")


def _package_sources(dotted: str) -> tuple[list[str], str]:
    """The code of a ``"package.module.function"`` name's top-level package, found without
    importing it: its folder's rule (``module_directory_sources``) for a package, the file for a
    module. Nothing for what is installed (site-packages, the standard library) or not found."""
    import importlib.util
    import sysconfig

    try:
        spec = importlib.util.find_spec(dotted.partition(".")[0])  # a top-level name: nothing runs
    except (ImportError, ValueError):
        return [], ""
    origin = spec.origin if spec is not None else None
    installed = {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib")}
    if (not origin or not os.path.isfile(origin) or any(origin.startswith(p + os.sep) for p in installed)
            or {"site-packages", "dist-packages"} & set(origin.split(os.sep))):
        return [], ""
    if os.path.basename(origin) == "__init__.py":
        return module_directory_sources(origin), os.path.dirname(origin)
    return [origin], os.path.dirname(origin)


def fingerprint_files(files: list[str], base: str) -> str:
    """A content hash of the files listed: their paths relative to ``base``, and contents."""
    digest = hashlib.blake2b(digest_size=16)
    for file in files:
        digest.update(os.path.relpath(file, base).encode() + b"\0" + fingerprint_path(file).encode())
    return digest.hexdigest()


def cache_key(node: dict[str, Any], inputs: dict[str, list[Artifact]]) -> str:
    """Hash of the component type, code version, parameters, module file
    contents and the input artifacts' content fingerprints.

    A module file (a ``.py`` file parameter) counts with its directory's code, the rule of
    ``module_files.module_directory_sources``: every ``.py`` in its folder and in the packages
    below it (hidden folders, ``__pycache__`` and virtual environments skipped, at most
    ``MAX_DIRECTORY_SOURCES`` files), so editing a helper beside it re-executes the component.
    A ``ModuleFunction`` (``"package.module.function"``) counts with its top-level package's
    code by the same rule, unless that package is installed (``_package_sources``)."""
    parts: dict[str, Any] = {
        "v": CACHE_KEY_VERSION,
        "type": node["type"],
        "code": node["code_version"],
        "parameters": node["parameters"],
        "inputs": {k: [a.fingerprint for a in v] for k, v in sorted(inputs.items())},
        "files": {},
    }
    for name in node.get("fingerprinted_parameters", []):
        value = node["parameters"].get(name)
        if value:
            parts["files"][name] = [fingerprint_path(p) for p in external_data_paths(value)]
            if isinstance(value, str) and value.endswith(".py") and os.path.isfile(value):
                # A module file imports helpers beside it: its directory's code is part of it.
                parts["files"][name].append(fingerprint_files(module_directory_sources(value), os.path.dirname(value)))
            elif isinstance(value, str) and _DOTTED.fullmatch(value):
                parts["files"][name].append(fingerprint_files(*_package_sources(value)))
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()
