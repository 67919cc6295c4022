"""Read workers: threads of the main process that fill free slots with input blocks.

Each thread owns its own :class:`~sharedapplier.blockreader.BlockReader` (GDAL handles are
never shared), claims the next block and a free slot, reads every input with GDAL straight
into the slot's views, and marks the slot ready for the compute workers. GDAL releases the
GIL while it reads, so these threads overlap with computing and writing. A failure goes to
the main process as a :class:`~.messages.WorkerFailed` on the thread's pipe, as a compute
worker's does, and stops the run.
"""
from __future__ import annotations

import threading
from multiprocessing import connection

from ..blockreader import BlockReader
from ..structures import Timers, WorkerErrorRecord
from . import messages as msg
from . import slots
from .computeworkers import PipeToMain
from .slots import Party, Role, SlotBoard
from .stages import readSlot


def readLoop(job, pool, board: SlotBoard, readerID: int, timings: Timers,
             pipe: PipeToMain) -> None:
    """Fill slots until every block has been claimed, or the run stops."""
    reader = BlockReader(job.specs, job.overlap)
    party = Party(Role.READER, readerID)
    timeout = job.concurrency.readBufferInsertTimeout
    blockDefn = None
    try:
        while True:
            with timings.interval("wait_free_slot"):
                claimed = board.claimFree(party, timeout)
            if claimed is None:
                return
            slot, blockIndex = claimed
            blockDefn = job.blockList[blockIndex]
            with timings.interval("reading"):
                readSlot(reader, job, pool, slot, blockDefn)
            board.markReady(slot)
    except slots.StopRequested:
        return
    except Exception as e:
        if not board.stopping:
            pipe.send(msg.WorkerFailed(WorkerErrorRecord(e, "read", readerID,
                                                         blockDefn=blockDefn)))
            board.requestStop()
    finally:
        reader.close()


class ReadWorkers:
    """A set of read threads; :attr:`conns` are the main process's ends of their pipes."""

    def __init__(self, job, pool, board: SlotBoard, count: int):
        self.timers = [Timers(worker=f"read {i}") for i in range(count)]
        self.conns, self.threads = [], []
        for i in range(count):
            mainEnd, workerEnd = connection.Pipe(duplex=False)
            self.conns.append(mainEnd)
            self.threads.append(threading.Thread(
                target=readLoop, name=f"sharedapplier-read-{i}", daemon=True,
                args=(job, pool, board, i, self.timers[i], PipeToMain(workerEnd, board))))

    def start(self):
        for thread in self.threads:
            thread.start()

    def alive(self) -> bool:
        """Whether a read thread is still running (after :meth:`join` gave up on it)."""
        return any(thread.is_alive() for thread in self.threads)

    def join(self, timeout=5.0):
        for thread in self.threads:
            thread.join(timeout)
        for conn in self.conns:
            conn.close()
