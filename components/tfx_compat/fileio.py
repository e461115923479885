"""``tfx.dsl.io.fileio``: TFX's file I/O over ``tf.io.gfile`` (local paths, ``gs://``, ``s3://``, ...).

The same functions as TFX's, with its defaults: a missing file or folder raises
``NotFoundError`` (an ``IOError``), and ``glob`` of nothing is ``[]``. TensorFlow is
imported on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

PathType = bytes | str


class NotFoundError(IOError):
    """A file or folder that does not exist (TFX's ``fileio.NotFoundError``)."""


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def _not_found(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    import tensorflow as tf

    try:
        return call(*args, **kwargs)
    except tf.errors.NotFoundError as exc:
        raise NotFoundError(str(exc)) from None


def open(path: PathType, mode: str = "r"):  # noqa: A001 - TFX's name
    """Opens a file (a ``tf.io.gfile.GFile``)."""
    return _gfile().GFile(path, mode=mode)


def copy(src: PathType, dst: PathType, overwrite: bool = False) -> None:
    _not_found(_gfile().copy, src, dst, overwrite=overwrite)


def exists(path: PathType) -> bool:
    return _gfile().exists(path)


def glob(pattern: PathType) -> list[PathType]:
    try:
        return _not_found(_gfile().glob, pattern)
    except NotFoundError:
        return []


def isdir(path: PathType) -> bool:
    return _gfile().isdir(path)


def listdir(path: PathType) -> list[PathType]:
    return _not_found(_gfile().listdir, path)


def makedirs(path: PathType) -> None:
    _gfile().makedirs(path)


def mkdir(path: PathType) -> None:
    _not_found(_gfile().mkdir, path)


def remove(path: PathType) -> None:
    _not_found(_gfile().remove, path)


def rename(src: PathType, dst: PathType, overwrite: bool = False) -> None:
    _not_found(_gfile().rename, src, dst, overwrite=overwrite)


def rmtree(path: PathType) -> None:
    _not_found(_gfile().rmtree, path)


def stat(path: PathType) -> Any:
    return _not_found(_gfile().stat, path)


def walk(top: PathType, topdown: bool = True, onerror: Callable[..., None] | None = None
         ) -> Iterable[tuple[PathType, list[PathType], list[PathType]]]:
    yield from _gfile().walk(top, topdown=topdown, onerror=onerror)



__all__ = ["NotFoundError", "PathType", "copy", "exists", "glob", "isdir", "listdir", "makedirs", "mkdir", "open",
           "remove", "rename", "rmtree", "stat", "walk"]
