"""The writer: the main thread writes computed slots, in block order.

Blocks may finish computing in any order; a computed slot waits until every block before
it has been written, then is written from its shared-memory views and freed. With two or
more outputs, or one that GDAL compresses as it writes (HFA), each file is written by a
thread of its own (:class:`FileThreads`), still in
block order, and the slot is freed once every file has the block. The writer
learns which slot holds the next block from the header, woken by the doorbell, so no
message is needed per block. Writing in block order makes every output, statistic and
histogram identical to a run with no workers. It cannot deadlock: blocks are given slots
in block order, so the next block to write always already holds a slot.
"""
from __future__ import annotations

import concurrent.futures
from concurrent.futures import Future, ThreadPoolExecutor

from . import slots
from .messages import OutputsReady
from .slots import SlotBoard


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


class FileThreads:
    """One writing thread per output file (see ``OutputWriter.wantsFileThreads``).

    GDAL releases the GIL while it writes and compresses, so files are written side by side,
    each by its own thread in block order (one thread per file: GDAL datasets are not
    shared between threads). A block's slot goes back only once every file has it. The
    writer queues a batch of blocks at once, except in a resumable run, whose journal is
    brought up to date between two blocks: it queues one block at a time.
    """

    def __init__(self, outputWriter, board: SlotBoard):
        self.outputWriter = outputWriter
        self.board = board
        self.threads = {key: ThreadPoolExecutor(1, thread_name_prefix=f"sharedapplier-write-"
                                                f"{key[0]}{'' if key[1] is None else key[1]}")
                        for key in outputWriter.files}

    def submit(self, blockDefn, views: dict, records: dict) -> list[Future]:
        """Queue one block of every output; the futures of its writes."""
        return [thread.submit(self.outputWriter.writeFileBlock, key, blockDefn, views[key],
                              records[key]) for key, thread in self.threads.items()]

    def wait(self, futures: list[Future]) -> None:
        """Until every write of a block is done (raising the first failure); a stop
        request ends the wait."""
        while True:
            done, pending = concurrent.futures.wait(futures, slots.POLL_SECONDS,
                                                    concurrent.futures.FIRST_EXCEPTION)
            for future in done:
                future.result()
            if not pending:
                return
            if self.board.stopping:
                raise slots.StopRequested()

    def stop(self) -> None:
        """Drop writes not started and wait for those running (before files are closed)."""
        for thread in self.threads.values():
            thread.shutdown(wait=True, cancel_futures=True)


class OrderedWriter:
    """Writes computed slots in block order and hands their slots back to the readers."""

    def __init__(self, job, pool, board: SlotBoard, outputWriter, progress):
        self.job = job
        self.pool = pool
        self.board = board
        self.outputWriter = outputWriter
        self.progress = progress
        self.written = 0
        self.layouts = None
        self.ready = None
        self.fileThreads = (FileThreads(outputWriter, board)
                            if outputWriter.wantsFileThreads() else None)
        board.setWakeAt(max(1, board.nslots // 2))

    def setLayouts(self, layouts) -> OutputsReady:
        """Fix the output layout (block 0's): create the files, make the output and summary
        slabs; what the workers are told."""
        self.layouts = layouts
        summaries = self.outputWriter.openFiles(layouts)
        self.ready = OutputsReady(self.job.outputFields(layouts), layouts, summaries,
                                  self.job.summaryFields(summaries))
        self.pool.createOutputs(self.ready.fields, self.ready.summaryFields)
        return self.ready

    def writeComputed(self) -> int:
        """Write every computed block that is next in order; return how many were written.

        The header is read once per batch, and each slot is handed back as soon as its
        block is written, so that workers waiting for a free slot can read the next block
        while the rest of the batch is written. With nothing to write, the writer asks the
        workers to wake it once half the slots hold blocks it can write (or the last block
        is done): waking it for every block would cost a compute-bound run a context switch
        per block.
        """
        batch = self.board.computedRun(self.written)
        # a resumable run's journal commits between two blocks: its files write one at a time
        ahead = not self.outputWriter.resumable
        writes = [self._write(slot, self.written + i) for i, slot in enumerate(batch)] \
            if ahead else []
        for i, slot in enumerate(batch):
            futures = writes[i] if ahead else self._write(slot, self.written)
            if futures:
                self.fileThreads.wait(futures)
                self.outputWriter.endBlock(self.job.blockList[self.written])
            self.written += 1
            self.board.handBack(slot, self.written)
            self.progress.update(self.written)
        return len(batch)

    def _write(self, slot, blockIndex) -> list[Future]:
        """Write one block (or, with file threads, queue it: the futures to wait for)."""
        blockDefn = self.job.blockList[blockIndex]
        views = self.pool.outputViews(slot, self.job.outputShapes(blockDefn, self.layouts))
        if self.fileThreads is not None:
            self.outputWriter.beginBlock()
            return self.fileThreads.submit(blockDefn, views, self._records(slot))
        self.outputWriter.writeBlock(blockDefn, views, self._records(slot))
        return []

    def _records(self, slot) -> dict:
        """The summary records the worker left in ``slot``, for every output (None where
        the output's blocks have nothing to summarise)."""
        summaries = self.ready.summaries
        views = self.pool.summaryViews(slot) if summaries else {}
        return {key: summaries[key].record(views[key]) if key in summaries else None
                for key in self.layouts}

    def stop(self):
        """End the file threads, if any, before the files are closed or discarded."""
        if self.fileThreads is not None:
            self.fileThreads.stop()
