"""Read workers: threads of the main process that fill free slots with input blocks.

Each thread owns its own :class:`~sharedapplier.imagereader.BlockReader` (GDAL handles are
never shared), claims the next block and a free slot, reads every input with GDAL straight
into the slot's views, and marks the slot ready for the compute workers. GDAL releases the
GIL while it reads, so these threads overlap with computing and writing.
"""
from __future__ import annotations

import queue
import threading

from ..imagereader import BlockReader
from ..structures import Timers, WorkerErrorRecord
from . import signals as sig


def readSlot(reader: BlockReader, job, pool, slot: int, blockDefn) -> dict:
    """Read every input of one block into its slot; return the views it read into."""
    views = pool.inputViews(slot, job.inputShapes(blockDefn))
    for spec in job.specs:
        reader.readInto(spec, blockDefn, views[spec.key])
    return views


def readLoop(job, pool, signals, readerID: int, timings: Timers, errors: queue.Queue) -> None:
    """Fill slots until every block has been claimed, or the run stops."""
    reader = BlockReader(job.specs, job.overlap)
    worker = -(readerID + 1)
    timeout = job.concurrency.readBufferInsertTimeout
    blockDefn = None
    try:
        while True:
            with timings.interval("wait_free_slot"):
                claimed = sig.claimBlock(pool, signals, worker, timeout)
            if claimed is None:
                return
            slot, blockIndex = claimed
            blockDefn = job.blockList[blockIndex]
            with timings.interval("reading"):
                readSlot(reader, job, pool, slot, blockDefn)
            sig.markReady(pool, signals, slot)
    except sig.StopRequested:
        return
    except Exception as e:
        errors.put(WorkerErrorRecord(e, "read", readerID, blockDefn=blockDefn))
        signals.stop.set()
    finally:
        reader.close()


class ReadWorkers:
    """A set of read threads and the queue where they report errors."""

    def __init__(self, job, pool, signals, count: int):
        self.errors: queue.Queue = queue.Queue()
        self.timers = [Timers(worker=f"read {i}") for i in range(count)]
        self.threads = [
            threading.Thread(target=readLoop, name=f"sharedapplier-read-{i}", daemon=True,
                             args=(job, pool, signals, i, self.timers[i], self.errors))
            for i in range(count)]

    def start(self):
        for thread in self.threads:
            thread.start()

    def firstError(self):
        """The first error a reader reported, or None."""
        try:
            return self.errors.get_nowait()
        except queue.Empty:
            return None

    def join(self, timeout=5.0):
        for thread in self.threads:
            thread.join(timeout)
