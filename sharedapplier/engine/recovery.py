"""When a compute worker dies: its block goes to another worker, and another takes its place.

A compute process can die without a word (the out-of-memory killer, a SIGKILL, a crash in
native code). What it was doing is all in the slots it held: the main process puts those
blocks back on the board, starts a new worker under the same number, and the run goes on.
A worker that read its own blocks held them FILLING: they become ``REDO``, read and
computed again by whichever worker claims a slot next. One fed by read threads held them
COMPUTING: the main thread reads them into their slots again (the dead worker may have
changed the inputs there; the read threads may have ended) and marks them ready. A remote worker's proxy does the same when its launcher can
submit the worker's job again (:class:`~.remote.proxy.Replacement`:
CW_SUBPROC, CW_SLURM, CW_PBS, CW_AWSBATCH). A block that has killed MAX_WORKERS_KILLED_BY_BLOCK workers is
taken to be the cause, and the run stops with an error naming it and how each worker died
(as dask's ``allowed-failures``).

The dead worker's otherArgs copy dies with it: its replacement starts from the caller's
otherArgs, so the blocks the dead worker finished before dying are not in any copy of
``otherArgsList`` (the warning says so).
"""
from __future__ import annotations

import logging
import threading
from collections import defaultdict

from .. import rioserrors
from ..blockreader import BlockReader
from .inbox import Inbox
from .slots import Party, Role, SlotBoard
from .stages import readSlot

MAX_WORKERS_KILLED_BY_BLOCK = 3
# How long to wait for the slot table's lock after a death: longer means the dead worker
# held it, and no slot can move again.
LOCK_SECONDS = 5.0

logger = logging.getLogger(__name__)


class BlockStrikes:
    """How many workers each block has killed (counted from any thread)."""

    def __init__(self, job):
        self.job = job
        self.lock = threading.Lock()
        self.killedBy: dict[int, list[str]] = defaultdict(list)

    def count(self, blocks, death: str) -> None:
        """``death`` (its first line says how the worker died; the rest, such as its log's
        last lines, is quoted for the last one) befell the worker of ``blocks``; raise when
        one of them has killed too many."""
        with self.lock:
            for block in blocks:
                deaths = self.killedBy[block]
                deaths.append(death)
                if len(deaths) >= MAX_WORKERS_KILLED_BY_BLOCK:
                    raise rioserrors.WorkerExceptionError(
                        f"block {self.job.blockList[block]!r} killed {len(deaths)} compute "
                        "workers, one after another, and is taken to be the cause: "
                        + "; ".join(d.splitlines()[0] for d in deaths)
                        + "".join("\n" + line for line in death.splitlines()[1:]))


def warnReplaced(job, workerID: int, death: str, blocks) -> None:
    again = ", ".join(repr(job.blockList[b]) for b in blocks) or "no block"
    logger.warning(f"sharedapplier: warning: {death}; {again} will be computed again, and a "
                   f"new compute worker {workerID} has started. Its otherArgs copy starts "
                   "afresh: the blocks the dead worker finished are in no copy of "
                   "otherArgsList")


class WorkerDeaths:
    """Replaces dead compute processes while the blocks they held have not killed too
    many (remote workers are replaced by their proxies, :mod:`.remote.proxy`)."""

    def __init__(self, job, pool, board: SlotBoard, workers, inbox: Inbox, timings):
        self.job = job
        self.pool = pool
        self.board = board
        self.workers = workers
        self.inbox = inbox
        self.timings = timings
        self.strikes = BlockStrikes(job)

    def canRecover(self) -> bool:
        return getattr(self.workers, "canReplace", lambda: False)()

    def recover(self, workerID: int) -> None:
        """Put the dead worker's blocks back and start another worker in its place; raise
        when that cannot be done or a block has killed too many workers."""
        death = self.workers.describeDeath(workerID)
        party = Party(Role.COMPUTE, workerID)
        blocks = self.board.reclaimFrom(party, LOCK_SECONDS)
        refills = self.board.reclaimComputing(party, LOCK_SECONDS)
        if blocks is None or refills is None:
            raise rioserrors.WorkerExceptionError(
                f"{death} while holding the lock of the slot table; the run cannot go on")
        blocks += [block for _, block in refills]
        self.strikes.count(blocks, death)
        self._readAgain(refills)
        with self.timings.interval("restartworker"):
            conn = self.workers.replace(workerID)
        self.inbox.replaceWorkerPipe(workerID, conn)
        warnReplaced(self.job, workerID, death, blocks)

    def _readAgain(self, refills) -> None:
        """Read the blocks a worker that did not read died computing into their slots
        again, here (the read threads may have ended), and hand them to the workers."""
        if not refills:
            return
        reader = BlockReader(self.job.specs, self.job.overlap)
        try:
            for slot, block in refills:
                with self.timings.interval("reading"):
                    readSlot(reader, self.job, self.pool, slot, self.job.blockList[block])
                self.board.markReady(slot)
        finally:
            reader.close()
