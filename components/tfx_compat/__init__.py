"""TFX's module-file API, for TFX users' code: ``from sluice import tfx`` stands for ``from tfx import v1 as tfx``.

What TFX's example module files reach through ``tfx.``::

    tfx.components.FnArgs          # what run_fn / tuner_fn receive (Sluice's Trainer FnArgs)
    tfx.components.DataAccessor    # fn_args.data_accessor: tf_dataset_factory, record_batch_factory
    tfx.components.TunerFnResult   # what tuner_fn returns: (tuner, fit_kwargs)
    tfx.dsl.io.fileio              # open, exists, glob, listdir, makedirs, ... over tf.io.gfile
    tfx.utils.parse_pbtxt_file     # a text-format proto file into a message

Only the attribute form works (``tfx.components.FnArgs``); the modules themselves are
``sluice.components.tfx_compat.components``, ``.dsl``, ``.fileio`` and ``.utils``.
Importing this package imports neither TensorFlow nor the Trainer's input pipeline.
"""

from sluice.components.tfx_compat import components, dsl, utils

__all__ = ["components", "dsl", "utils"]
