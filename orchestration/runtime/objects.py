"""Long-lived objects kept out of the cyclic garbage collector's way.

A runner process imports large libraries (TensorFlow, Beam) whose objects live as long as
the process. Left in the collector's generations, every ``gc.collect()`` (one after each
component, see ``heap.release_memory``) walks all of them again; frozen, it walks only what
the components made.
"""

from __future__ import annotations


def freeze_long_lived() -> None:
    """Moves every object alive now out of the cyclic collector's reach.

    Called once imports are done: their objects live as long as the process, and without this
    each ``gc.collect()`` walks them.
    """
    import gc
    import linecache

    linecache.clearcache()  # source lines read while importing (large for TensorFlow)
    gc.collect()
    gc.freeze()
