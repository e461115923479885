"""What training code shares (the Trainer's and the Tuner's executors, and module files' ``run_fn``/``tuner_fn``).

Modules: ``data`` (the Parquet input pipeline), ``fn_args`` (what ``run_fn`` and ``tuner_fn``
receive), ``callbacks`` (Keras callbacks; imports TensorFlow), ``distribution`` (strategies).
Nothing here imports TensorFlow at import time.
"""
