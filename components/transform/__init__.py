"""The Transform component: full-pass feature preprocessing with a user's ``preprocessing_fn``.

    from sluice.components.transform import Transform
    from sluice import tft          # the analyzers a preprocessing_fn calls

Modules: ``component`` (the executor ``run_transform`` and the ``Transform`` component) and
``transforms`` (its Beam transforms, imported when it runs). The transform-graph engine and
the ``preprocessing_fn`` API are the shared ``sluice.components.tft``.
"""

from sluice.components.tft import TransformOutput
from sluice.components.transform.component import Transform, run_transform

__all__ = ["Transform", "TransformOutput", "run_transform"]
