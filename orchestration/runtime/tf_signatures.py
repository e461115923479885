"""SavedModel signatures wrapped without AutoGraph.

``tf.saved_model.save`` wraps each signature in a new ``tf.function`` (TensorFlow's
``signature_serialization.canonicalize_signatures``) that calls the signature's concrete
function and puts its outputs in a dict. It leaves AutoGraph on, so the first save in a
process converts that wrapper: it reads and parses the wrapper's source, rewrites and
compiles it (40-60 ms of a Transform run, bench/PROFILES.md). The wrapper has no Python
control flow, so the converted function traces to the same graph: ``apply`` has the wrapper
made with ``autograph=False``, nothing else changed.

Runners call ``apply()`` before a node whose ``warm_imports`` include TensorFlow, once it is
imported; it does nothing for a TensorFlow other than 2.x or a module laid out otherwise.
"""

from __future__ import annotations

import types


def apply() -> None:
    """Makes SavedModel signature wrappers without AutoGraph (idempotent)."""
    try:
        import tensorflow as tf
        from tensorflow.python.eager import def_function
        from tensorflow.python.saved_model import signature_serialization
    except ImportError:
        return
    if not tf.__version__.startswith("2.") or getattr(signature_serialization, "_sluice_patched", False):
        return
    original = getattr(signature_serialization, "def_function", None)
    if original is not def_function or not hasattr(signature_serialization, "canonicalize_signatures"):
        return  # another layout: leave it alone

    def function(func=None, **kwargs):
        kwargs.setdefault("autograph", False)
        return def_function.function(func, **kwargs)

    # Only this module's name is rebound: every other tf.function keeps its own setting.
    signature_serialization.def_function = types.SimpleNamespace(Function=def_function.Function, function=function)
    signature_serialization._sluice_patched = True
