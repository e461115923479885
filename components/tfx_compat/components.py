"""``tfx.components``: what module files use of it (TFX's ``tfx.v1.components`` "for UDF needs")."""

from __future__ import annotations

from typing import Any, NamedTuple

from sluice.components.training.fn_args import DataAccessor, FnArgs


class TunerFnResult(NamedTuple):
    """What a module file's ``tuner_fn(fn_args)`` returns, as in TFX: a keras-tuner tuner
    (a ``BaseTuner``) and the keyword arguments of its ``search`` (datasets, steps)."""

    tuner: Any
    fit_kwargs: dict[str, Any]


__all__ = ["DataAccessor", "FnArgs", "TunerFnResult"]
