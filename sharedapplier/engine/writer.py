"""The writer: the one thread (the main one) that writes computed slots, in block order.

Blocks may finish computing in any order; a computed slot waits until every block before
it has been written, then is written from its shared-memory views and freed. The writer
learns which slot holds the next block from the header, woken by the doorbell, so no
message is needed per block. Writing in block order makes every output, statistic and
histogram identical to a run with no workers. It cannot deadlock: blocks are given slots
in block order, so the next block to write always already holds a slot.
"""
from __future__ import annotations

import queue
import threading

import numpy

from .. import imagewriter
from ..structures import Timers
from ..timeline import WRITER
from . import signals as sig
from . import slabpool


class ApplierProgress:
    """Reports whole-percent progress to the user's progress object, only on change.

    A progress object with a ``setBlocks(done, total)`` method (such as
    ``cuiprogress.ProgressBar``) also hears of every block, before the percentage, so that it
    can show blocks per second and time left.
    """

    def __init__(self, controls, numBlocks):
        self.progress = controls.progress
        self.numBlocks = max(numBlocks, 1)
        self.last = None

    def update(self, blockNdx):
        if self.progress is None:
            return
        setBlocks = getattr(self.progress, "setBlocks", None)
        if setBlocks is not None:
            setBlocks(blockNdx, self.numBlocks)
        percent = int(round(100 * blockNdx / self.numBlocks))
        if percent != self.last:
            self.progress.setProgress(percent)
            self.last = percent


class OrderedWriter:
    """Writes computed slots in block order and hands their slots back to the readers."""

    def __init__(self, job, pool, signals, outputWriter, progress):
        self.job = job
        self.pool = pool
        self.signals = signals
        self.outputWriter = outputWriter
        self.progress = progress
        self.written = 0
        self.layouts = None

    def setLayouts(self, layouts):
        """Fix the output layout (first computed block) and make the output slab."""
        self.layouts = layouts
        self.pool.createOutputs(self.job.outputFields(layouts))

    def writeComputed(self) -> int:
        """Write every computed block that is next in order; return how many were written.

        The header is read, and the slots handed back, once per batch rather than once per
        block, so that the writer seldom contends with the workers for the lock.
        """
        with self.signals.lock:
            batch = self._computedRun()
        for slot in batch:
            blockDefn = self.job.blockList[self.written]
            views = self.pool.outputViews(slot, self.job.outputShapes(blockDefn, self.layouts))
            self.outputWriter.writeBlock(blockDefn, views)
            self.written += 1
            self.progress.update(self.written)
        if batch:
            with self.signals.lock:
                for slot in batch:
                    self.pool.setSlot(slot, slabpool.FREE)
            for _ in batch:
                self.signals.free.release()
        return len(batch)

    def _computedRun(self) -> list:
        """The slots of the computed blocks that follow the last one written, in order."""
        slots = []
        nblocks = len(self.job.blockList)
        while self.written + len(slots) < nblocks:
            slot = self.pool.computedSlot(self.written + len(slots))
            if slot is None:
                break
            slots.append(slot)
        return slots


# Blocks a WriteBehind thread may hold: enough to ride out a slow write, few enough that the
# copies cost little memory.
WRITE_BEHIND_DEPTH = 3


class WriteBehind:
    """Writes blocks, in order, in a thread of its own while the main thread goes on.

    GDAL releases the GIL while it reads and writes, so with no workers at all reading the
    next block overlaps with writing the last one. Each block's outputs are copied into one
    of a few buffer sets owned here (the user function may hand back arrays it will reuse);
    the outputs are written by this one thread only, and the main thread touches them again
    only after :meth:`finish`. The thread's intervals are timed as the "writer".
    """

    def __init__(self, outputWriter, windowShape, timings, depth=WRITE_BEHIND_DEPTH):
        self.outputWriter = outputWriter
        self.windowShape = windowShape
        self.runTimings = timings
        self.timings = Timers(worker=WRITER)
        self.depth = depth
        self.buffersMade = 0
        self.todo = queue.Queue()
        self.spare = queue.Queue()
        self.error = None
        outputWriter.useTimings(self.timings)
        self.thread = threading.Thread(target=self._loop, name="sharedapplier-writer",
                                       daemon=True)
        self.thread.start()

    def submit(self, blockDefn, arrays: dict):
        """Queue one block's outputs for writing (copied: ``arrays`` may be reused)."""
        buffers = self._spareBuffers(arrays)
        views = {}
        for key, arr in arrays.items():
            views[key] = buffers[key][:, :arr.shape[1], :arr.shape[2]]
            views[key][...] = arr
        self.todo.put((blockDefn, views, buffers))

    def _spareBuffers(self, arrays):
        if self.buffersMade < self.depth:
            self.buffersMade += 1
            return {key: numpy.empty((arr.shape[0], *self.windowShape), dtype=arr.dtype)
                    for key, arr in arrays.items()}
        while True:
            self._raiseError()
            try:
                return self.spare.get(timeout=sig.POLL_SECONDS)
            except queue.Empty:
                if not self.thread.is_alive():
                    raise RuntimeError("the output writer thread ended unexpectedly") from None

    def _loop(self):
        while True:
            item = self.todo.get()
            if item is None:
                return
            blockDefn, views, buffers = item
            try:
                if self.error is None:
                    self.outputWriter.writeBlock(blockDefn, views)
            except BaseException as e:
                self.error = e
            finally:
                self.spare.put(buffers)

    def _raiseError(self):
        if self.error is not None:
            raise self.error

    def finish(self, raiseErrors=True):
        """Wait for every queued block to be written; raise what the writing raised."""
        self.todo.put(None)
        self.thread.join()
        self.outputWriter.useTimings(self.runTimings)
        self.runTimings.merge(self.timings)
        if raiseErrors:
            self._raiseError()


def writeSequentially(job, reader, outputWriter, progress, timings):
    """The whole pipeline with no workers: read and compute each block in turn.

    Writing happens behind, in a :class:`WriteBehind` thread.
    """
    layouts = None
    writer = WriteBehind(outputWriter, (job.windowysize, job.windowxsize), timings)
    try:
        for blockIndex, blockDefn in enumerate(job.blockList):
            progress.update(blockIndex)
            with timings.interval("reading"):
                inputs = reader.readBlock(blockDefn)
            arrays = job.computeBlock(blockDefn, inputs, job.otherArgs, timings, layouts)
            if layouts is None:
                layouts = imagewriter.layoutsFromArrays(arrays)
            writer.submit(blockDefn, arrays)
    except BaseException:
        writer.finish(raiseErrors=False)
        raise
    writer.finish()
    progress.update(len(job.blockList))
