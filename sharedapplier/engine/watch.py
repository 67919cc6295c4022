"""Liveness and timeouts, as the main process checks them between writes.

A dead worker is replaced and its block computed again where that can be done
(:mod:`.recovery`), else reported with the block it held; a run that waits too long for the next
computed block raises TimeoutError naming the option to raise, unless a user function has
been running about that long, which is then named instead (block, worker, option).
"""
from __future__ import annotations

import time

from .. import rioserrors
from ..structures import WorkerErrorRecord
from . import slots
from .inbox import Inbox, raiseRecord
from .recovery import WorkerDeaths
from .slots import Party, Role, SlotBoard

# A timeout that ran out is put down to a user function that has run for at least this
# share of it (the wait began after the function did, give or take a poll).
USER_FUNCTION_BLAME_FRACTION = 0.9

TIMEOUT_OPTIONS = ("readBufferInsertTimeout", "readBufferPopTimeout",
                   "computeBufferInsertTimeout", "computeBufferPopTimeout")


def mainRecord(exc: Exception) -> WorkerErrorRecord:
    return WorkerErrorRecord(exc, "main")


def blameSlowUserFunction(job, board: SlotBoard, option: str, timeout) -> None:
    """When the wait for ``option`` ran out because a user function has been running at
    least as long, raise that, naming its block and worker, instead of blaming the wait."""
    running = board.userFunctionsRunning()
    if not running or timeout is None:
        return
    seconds, block, holder = max(running, key=lambda r: r[0])
    if seconds < USER_FUNCTION_BLAME_FRACTION * timeout:
        return
    who = "the main thread" if holder is None or holder.role != Role.COMPUTE else \
        f"compute worker {holder.number}"
    raiseRecord(mainRecord(rioserrors.TimeoutError(
        f"the user function has been running for {seconds:.1f} s on block "
        f"{job.blockList[block]!r} in {who}, and the run waited {timeout} s for it. If a "
        f"block needs that long, raise {option} (current value = {timeout}) in the "
        "ConcurrencyStyle, or set it to None to wait for ever")))


def blameForTimeout(job, board: SlotBoard, record: WorkerErrorRecord) -> None:
    """A party's wait ran out: perhaps a user function elsewhere is the cause."""
    if not isinstance(record.exc, rioserrors.TimeoutError):
        return
    text = str(record.exc)
    for option in TIMEOUT_OPTIONS:
        if option in text:
            blameSlowUserFunction(job, board, option, getattr(job.concurrency, option))


class WorkerWatch:
    """Checks, every POLL_SECONDS (or at once when a message is due), the inbox, whether
    every worker lives, and how long the run has waited for its next block."""

    def __init__(self, job, pool, board: SlotBoard, workers, inbox: Inbox, timings):
        self.job = job
        self.board = board
        self.workers = workers
        self.inbox = inbox
        self.deaths = WorkerDeaths(job, pool, board, workers, inbox, timings)
        self.timeout = job.concurrency.computeBufferPopTimeout
        self.lastProgress = self.lastCheck = time.monotonic()

    def progressed(self) -> None:
        self.lastProgress = time.monotonic()

    def check(self, due: bool) -> None:
        now = time.monotonic()
        if not due and now - self.lastCheck < slots.POLL_SECONDS:
            return
        self.lastCheck = now
        if self.inbox.readAll():
            self.lastProgress = now
        self._checkDeaths()
        if self.workers.waitingForStart():
            self.lastProgress = now
        elif self.timeout is not None and now - self.lastProgress > self.timeout:
            blameSlowUserFunction(self.job, self.board, "computeBufferPopTimeout",
                                  self.timeout)
            raiseRecord(mainRecord(slots.timeoutError(
                "the next computed block", "computeBufferPopTimeout", self.timeout)))

    def _checkDeaths(self) -> None:
        for i in self.workers.deadWorkers(self.inbox.finished):
            if self.inbox.hasUnread(self.workers.conns[i]):
                continue  # read what it sent before dying first
            if self.deaths.canRecover():
                self.deaths.recover(i)
                self.lastProgress = time.monotonic()
                continue
            block = self.board.holderOf(Party(Role.COMPUTE, i))
            where = "" if block is None else \
                f" while processing block {self.job.blockList[block]}"
            raiseRecord(mainRecord(RuntimeError(self.workers.describeDeath(i) + where)))
