"""When a compute worker dies: its block goes to another worker, and another takes its place.

A compute process can die without a word (the out-of-memory killer, a SIGKILL, a crash in
native code). When workers read their own blocks, what it was doing is all in the slots it
was filling: the main process puts those blocks back on the board (``REDO``: read and
computed again, by whichever worker claims a slot next), starts a new worker under the same
number, and the run goes on. A block that has killed MAX_WORKERS_KILLED_BY_BLOCK workers is
taken to be the cause, and the run stops with an error naming it and how each worker died
(as dask's ``allowed-failures``).

The dead worker's otherArgs copy dies with it: its replacement starts from the caller's
otherArgs, so the blocks the dead worker finished before dying are not in any copy of
``otherArgsList`` (the warning says so).
"""
from __future__ import annotations

import sys
from collections import defaultdict

from .. import rioserrors
from .inbox import Inbox
from .slots import Party, Role, SlotBoard

MAX_WORKERS_KILLED_BY_BLOCK = 3
# How long to wait for the slot table's lock after a death: longer means the dead worker
# held it, and no slot can move again.
LOCK_SECONDS = 5.0


class WorkerDeaths:
    """Replaces dead compute workers while the blocks they held have not killed too many."""

    def __init__(self, job, board: SlotBoard, workers, inbox: Inbox, timings):
        self.job = job
        self.board = board
        self.workers = workers
        self.inbox = inbox
        self.timings = timings
        self.killedBy: dict[int, list[str]] = defaultdict(list)

    def canRecover(self) -> bool:
        return getattr(self.workers, "canReplace", lambda: False)()

    def recover(self, workerID: int) -> None:
        """Put the dead worker's blocks back and start another worker in its place; raise
        when that cannot be done or a block has killed too many workers."""
        death = self.workers.describeDeath(workerID)
        blocks = self.board.reclaimFrom(Party(Role.COMPUTE, workerID), LOCK_SECONDS)
        if blocks is None:
            raise rioserrors.WorkerExceptionError(
                f"{death} while holding the lock of the slot table; the run cannot go on")
        for block in blocks:
            self.killedBy[block].append(death)
            self._stopIfDeadly(block)
        with self.timings.interval("restartworker"):
            conn = self.workers.replace(workerID)
        self.inbox.replaceWorkerPipe(workerID, conn)
        again = ", ".join(repr(self.job.blockList[b]) for b in blocks) or "no block"
        print(f"sharedapplier: warning: {death}; {again} will be computed again, and a new "
              f"compute worker {workerID} has started. Its otherArgs copy starts afresh: "
              "the blocks the dead worker finished are in no copy of otherArgsList",
              file=sys.stderr)

    def _stopIfDeadly(self, block: int) -> None:
        deaths = self.killedBy[block]
        if len(deaths) < MAX_WORKERS_KILLED_BY_BLOCK:
            return
        raise rioserrors.WorkerExceptionError(
            f"block {self.job.blockList[block]!r} killed {len(deaths)} compute workers, one "
            "after another, and is taken to be the cause: " + "; ".join(deaths))
