"""Whole Parquet files folded into accumulators: cut into pieces, decoded ahead, summarized on threads.

The files of a bundle (e.g. the train and the eval split), and the pieces of whole
row groups a big file is cut into (``file_pieces``), are summarized at the same
time on ``file_pool``, one thread per piece with its columns done inline: this
keeps the cores busy without the per-batch wait for the slowest column that a
column pool has. A bundle's ``ReadAhead`` decodes the pieces ahead of them, in order,
and an element's ``InOrderMerge`` folds each piece's accumulator into the element's as soon
as the pieces before it are folded.
"""

from __future__ import annotations

import os

from sluice.components.io.examples import DEFAULT_BATCH_ROWS, open_parquet, read_batches
from sluice.components.sdk import ComponentError
from sluice.components.statistics_gen.accumulate import DatasetAccumulator, add_batch, compact, merge_datasets

# Pieces of files summarized at once per process.
FILES_IN_FLIGHT = min(4, os.cpu_count() or 1)
# Decoded batches waiting for a summarizing thread, per bundle (see ReadAhead): one being
# summarized and one ready, per thread.
BATCHES_AHEAD = 2 * FILES_IN_FLIGHT
# A file of more rows is summarized in pieces of whole row groups, about this many rows each,
# at the same time: a big train file beside a small eval file then keeps every core busy to
# the end. Fixed, not a function of the cores, so the statistics do not depend on the machine.
PIECE_ROWS = DEFAULT_BATCH_ROWS

_FILE_POOL = None


def file_pool():
    """A process-wide thread pool of ``FILES_IN_FLIGHT`` threads summarizing pieces of files."""
    global _FILE_POOL
    if _FILE_POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        _FILE_POOL = ThreadPoolExecutor(max_workers=FILES_IN_FLIGHT, thread_name_prefix="statistics-file")
    return _FILE_POOL


def file_pieces(path: str, piece_rows: int) -> list[list[int] | None]:
    """One Parquet file as runs of consecutive row groups of about ``piece_rows`` rows each.

    ``[None]`` (the whole file, one piece) when it has fewer than ~1.5 pieces of rows or a
    single row group; a broken file is reported by the read that follows.
    """
    try:
        metadata = open_parquet(path, "StatisticsGen").metadata
    except ComponentError:
        return [None]
    if metadata.num_row_groups < 2 or metadata.num_rows < piece_rows * 3 // 2:
        return [None]
    pieces, current, rows = [], [], 0
    for index in range(metadata.num_row_groups):
        current.append(index)
        rows += metadata.row_group(index).num_rows
        if rows >= piece_rows:
            pieces.append(current)
            current, rows = [], 0
    if current:
        if rows < piece_rows // 2 and pieces:  # a short tail joins the piece before it
            pieces[-1].extend(current)
        else:
            pieces.append(current)
    return pieces


def summarize_piece(read_ahead: ReadAhead, handoff, categorical_int_features: frozenset[str],
                    merge: InOrderMerge, index: int) -> None:
    """Hands ``merge`` the compacted DatasetAccumulator of piece number ``index`` of an element,
    its batches as ``read_ahead`` decodes them (not returned: a future would keep it alive)."""
    accumulator = DatasetAccumulator()
    for batch in read_ahead.batches(handoff):
        add_batch(accumulator, batch, categorical_int_features, parallel_columns=False)
    merge.add(index, compact(accumulator))


class InOrderMerge:
    """An element's piece accumulators merged in piece order as they are done (``add``).

    The same left fold as ``merge_datasets`` over the whole list, so the same statistics, but
    only the pieces done ahead of an earlier one wait: a split of many pieces (the 1000x train
    split has 76) no longer holds every piece's sketches until the last is done.
    """

    def __init__(self):
        import threading

        self._lock = threading.Lock()
        self._done: dict[int, DatasetAccumulator] = {}
        self._next = 0
        self._merged: DatasetAccumulator | None = None

    def add(self, index: int, accumulator: DatasetAccumulator) -> None:
        """Piece ``index``'s accumulator (each index once, from 0), merged once those before it are."""
        with self._lock:
            self._done[index] = accumulator
            while self._next in self._done:
                piece = self._done.pop(self._next)
                self._merged = piece if self._merged is None else merge_datasets([self._merged, piece])
                self._next += 1

    def result(self, pieces: int) -> DatasetAccumulator:
        """The merge of pieces ``0..pieces-1``, all added; compacted when there was more than one."""
        with self._lock:
            if self._next != pieces:
                raise RuntimeError(f"InOrderMerge: {self._next} of {pieces} pieces merged")
            return compact(self._merged) if pieces > 1 else self._merged


class ReadAhead:
    """Decodes a bundle's pieces of files in order on one helper thread, ahead of the threads
    that summarize them, with at most ``limit`` decoded batches waiting in all.

    Decoding (pyarrow, without the GIL, a batch's columns on Arrow's own threads) then overlaps
    with summarizing, which holds the GIL much of the time, and a piece's first batch is ready
    when a thread comes to it (decoded only once its thread started, a one-batch piece would wait
    for all of its decoding). Each piece has its queue (``add``), which its summary drains
    (``batches``). Pieces are decoded in the order they are added and summarized in that order
    too (``file_pool`` is first come, first served), so the oldest unfinished piece always has
    its batches coming: with ``limit`` at least the summarizing threads, waiting on it cannot
    deadlock. Strings are read as dictionaries: value counts then count small integer codes
    instead of hashing strings.
    """

    _DONE = object()

    def __init__(self, limit: int):
        import collections
        import threading

        self.limit = limit
        self.waiting = 0  # batches decoded, not yet summarized
        self.pieces: collections.deque = collections.deque()  # (path, row groups, batch size, queue) to decode
        self.changed = threading.Condition()
        self.stopped = False
        self.thread = None

    def add(self, path: str, row_groups: list[int] | None, batch_size: int):
        """Queues one piece for decoding; returns the queue its batches will come through."""
        import queue
        import threading

        handoff: queue.Queue = queue.Queue()
        with self.changed:
            self.pieces.append((path, row_groups, batch_size, handoff))
            self.changed.notify_all()
        if self.thread is None:  # one thread: a batch's columns are decoded on Arrow's threads (two did no better)
            self.thread = threading.Thread(target=self._decode, name="statistics-read", daemon=True)
            self.thread.start()
        return handoff

    def batches(self, handoff):
        """A piece's batches as they are decoded; its read error is raised here."""
        while True:
            batch, error = handoff.get()
            if batch is self._DONE:
                if error is not None:
                    raise error
                return
            try:
                yield batch
            finally:  # summarized (or given up on): room for one more
                with self.changed:
                    self.waiting -= 1
                    self.changed.notify_all()

    def stop(self) -> None:
        """Ends the decoding; a piece not fully decoded ends with an error for whoever waits on it."""
        with self.changed:
            self.stopped = True
            self.changed.notify_all()
        if self.thread is not None:
            self.thread.join()

    def _decode(self) -> None:
        while True:
            with self.changed:
                while not self.pieces and not self.stopped:
                    self.changed.wait()
                if self.stopped:
                    break
                path, row_groups, batch_size, handoff = self.pieces.popleft()
            try:
                for batch in read_batches(path, "StatisticsGen", batch_size, strings_as_dictionary=True,
                                          row_groups=row_groups):
                    with self.changed:
                        while self.waiting >= self.limit and not self.stopped:
                            self.changed.wait()
                        if self.stopped:
                            break
                        self.waiting += 1
                    handoff.put((batch, None))
                else:
                    handoff.put((self._DONE, None))
                    continue
            except BaseException as exc:  # noqa: BLE001 - handed to the piece's summary, which raises it
                handoff.put((self._DONE, exc))
                continue
            handoff.put((self._DONE, self._stopped_error()))  # stopped in the middle of this piece
            break
        with self.changed:
            left, self.pieces = list(self.pieces), type(self.pieces)()
        for *_, handoff in left:
            handoff.put((self._DONE, self._stopped_error()))

    @staticmethod
    def _stopped_error() -> ComponentError:
        return ComponentError("StatisticsGen: reading stopped before the end of a file")
