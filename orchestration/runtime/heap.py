"""The heap of a runner process: how memory is kept between components, and handed back after each.

A component process allocates in large, short-lived blocks (numpy temporaries of whole
columns, Arrow buffers, TensorFlow graphs) from many threads. glibc's defaults suit neither
half of that: they give each thread its own arena, which keeps its own freed memory, and
they return every freed multi-megabyte block to the kernel, so the next one page-faults
afresh. ``tune_heap`` sets the heap up once per process; ``release_memory`` hands back what
a component freed once it is done.
"""

from __future__ import annotations

import os
import sys

# glibc's own ceiling for its adaptive mmap threshold (32 MiB on 64-bit), fixed from the start.
HEAP_MMAP_THRESHOLD = 32 << 20
HEAP_TRIM_THRESHOLD = 64 << 20


def tune_heap() -> None:
    """Sets the heap up for a component process: glibc malloc for Arrow too, few arenas, big blocks reused.

    - **One arena per core** (glibc's default: eight): a component's threads (Beam's, Arrow's,
      TensorFlow's pools) each get an arena, and each arena keeps its own freed memory, which
      adds up over a whole pipeline in one process.
    - **Blocks up to ``HEAP_MMAP_THRESHOLD`` from the heap, trimmed past ``HEAP_TRIM_THRESHOLD``.**
      With glibc's defaults a freed block of a few MB (a numpy temporary of a whole column)
      goes back to the kernel, and the next one page-faults afresh. The heap then keeps such
      blocks, and ``release_memory`` hands them back after each component.
    - **Arrow's buffers from this same heap** (Arrow's system pool). Arrow's default, mimalloc,
      kept handing out fresh pages to fault in and zero (2 MB at a time under transparent huge
      pages) where this heap reuses what was freed: a list-column Transform spent 9% of its
      CPU there, and StatisticsGen at 1000x grew no less with it. One heap for both also keeps the
      peak lowest. Set before pyarrow is imported, this covers the buffers Arrow's C++ code
      allocates for itself too (the Parquet reader's and writer's pages and levels), and the
      processes this one starts (bench/PROFILES.md).

    Runners call it once, before starting threads; ``MALLOC_*`` settings in the environment win,
    as does ``ARROW_DEFAULT_MEMORY_POOL``.
    """
    _choose_arrow_pool()
    if not sys.platform.startswith("linux") or any(k.startswith("MALLOC_") for k in os.environ):
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8  # from glibc's malloc.h
    mallopt(m_arena_max, max(2, os.cpu_count() or 1))
    mallopt(m_mmap_threshold, HEAP_MMAP_THRESHOLD)
    mallopt(m_trim_threshold, HEAP_TRIM_THRESHOLD)


def _choose_arrow_pool() -> None:
    """Arrow's system pool: through ``ARROW_DEFAULT_MEMORY_POOL``, which libarrow reads once, as
    it loads, for every buffer it allocates; once pyarrow is loaded, only as pyarrow's own pool
    (``pa.set_memory_pool``), which Arrow's C++ code does not use for its own buffers."""
    if "ARROW_DEFAULT_MEMORY_POOL" in os.environ:
        return
    if "pyarrow" not in sys.modules:
        os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "system"
        return
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())


def release_memory() -> None:
    """Collects garbage and hands freed memory back to the OS.

    Runners call it after each executor: the freed heap of a component (Arrow buffers,
    TensorFlow graphs) otherwise stays in the process and raises the peak of every later one.
    """
    import ctypes
    import gc

    from sluice.orchestration.runtime import imports

    # Cheap once the runner has frozen long-lived objects (gc.freeze); while a heavy import is
    # still running on another thread, walking its many new objects is costly, and they are
    # frozen when it ends, so the collection waits for the next component.
    if not imports.in_flight():
        gc.collect()
    if "pyarrow" in sys.modules:  # Arrow's own allocator keeps freed blocks otherwise
        sys.modules["pyarrow"].default_memory_pool().release_unused()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (e.g. musl)
            pass
