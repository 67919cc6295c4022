"""The writer: the one thread (the main one) that writes computed slots, in block order.

Blocks may finish computing in any order; a computed slot waits until every block before
it has been written, then is written from its shared-memory views and freed. The writer
learns which slot holds the next block from the header, woken by the doorbell, so no
message is needed per block. Writing in block order makes every output, statistic and
histogram identical to a run with no workers. It cannot deadlock: blocks are given slots
in block order, so the next block to write always already holds a slot.
"""
from __future__ import annotations

import time

from .. import imagewriter
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

    def flushFinishedRows(self):
        """Hand the finished rows of written blocks to the files (when the writer is idle)."""
        self.outputWriter.flushFinishedRows()

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


def writeSequentially(job, reader, outputWriter, progress, timings):
    """The whole pipeline with no workers: read, compute and write each block in turn."""
    layouts = None
    for blockIndex, blockDefn in enumerate(job.blockList):
        progress.update(blockIndex)
        start = time.time()
        inputs = reader.readBlock(blockDefn)
        timings.addInterval("reading", start, time.time())
        arrays = job.computeBlock(blockDefn, inputs, job.otherArgs, timings, layouts)
        if layouts is None:
            layouts = imagewriter.layoutsFromArrays(arrays)
        outputWriter.writeBlock(blockDefn, arrays)
    progress.update(len(job.blockList))
