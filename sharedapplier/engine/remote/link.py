"""The main process's end of one remote worker's connection, and what is said when it fails.

A :class:`RemoteLink` sends and receives typed messages with heartbeats both ways, and turns
silence, a dropped connection or a job that ended into :class:`WorkerLost`, worded from what
the scheduler says about the worker (:class:`JobReports`).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from pathlib import Path

from ...structures import WorkerErrorRecord
from .. import messages as msg
from .. import slots

HEARTBEAT_SECONDS = 5.0
# After a worker's connection drops, how long to wait for its scheduler to say how it ended.
FINAL_STATE_WAIT_SECONDS = 5.0


class WorkerLost(Exception):
    """A remote worker stopped answering or its job ended; the message says how."""


class RemoteFailure(Exception):
    """A remote worker sent an error record."""

    def __init__(self, record: WorkerErrorRecord):
        super().__init__(str(record))
        self.record = record


class JobReports:
    """What the launcher says about each worker, in the words an error message needs."""

    def __init__(self, launcher, rundir: Path):
        self.launcher = launcher
        self.rundir = Path(rundir)

    def identity(self, i: int) -> str:
        """Who worker ``i`` is, naming its log only if the log outlives the run directory
        (which is removed before the user reads the error)."""
        desc = self.launcher.describe(i, refresh=False)
        if desc.logLocation and Path(desc.logLocation).resolve().is_relative_to(self.rundir):
            desc = replace(desc, logLocation=None)
        return desc.identity()

    def lostText(self, i: int, what: str) -> str:
        self.launcher.describe(i)  # the scheduler's latest word, which identity reads
        text = f"compute worker {i} ({self.identity(i)}) {what}"
        tail = self.launcher.logTail(i)
        if tail:
            text += "\nlast lines of its log:\n" + tail.rstrip()
        return text

    def noteOrigin(self, record: WorkerErrorRecord, i: int) -> None:
        """Add where worker ``i`` ran to its error record, and its log's last lines."""
        record.origin = self.identity(i)
        record.logTail = self.launcher.logTail(i).rstrip() or None

    def lost(self, i: int, what: str) -> WorkerLost:
        """Wait briefly for the scheduler's final word on a worker, then describe it."""
        deadline = time.monotonic() + FINAL_STATE_WAIT_SECONDS
        while time.monotonic() < deadline and not self.launcher.describe(i).finished:
            time.sleep(0.2)
        desc = self.launcher.describe(i)
        return WorkerLost(self.lostText(i, f"{what} ({desc.status()})"))


class RemoteLink:
    """One worker's connection, seen from its proxy: typed messages, heartbeats, liveness.

    ``stop`` is the run's stop event; ``blockInHand()`` names the block being worked on,
    for the message when the worker is lost.
    """

    def __init__(self, conn, workerID: int, stop, heartbeatTimeout: float,
                 reports: JobReports, blockInHand):
        self.conn = conn
        self.workerID = workerID
        self.stop = stop
        self.heartbeatTimeout = heartbeatTimeout
        self.reports = reports
        self.blockInHand = blockInHand
        self.lastSent = time.monotonic()

    def send(self, message) -> None:
        self.conn.send(message)
        self.lastSent = time.monotonic()

    def sent(self) -> None:
        """Raw bytes went out: that counts as a heartbeat."""
        self.lastSent = time.monotonic()

    def keepAlive(self) -> bool:
        """While the proxy waits for a slot: heartbeat the worker, notice if it went away."""
        if time.monotonic() - self.lastSent > HEARTBEAT_SECONDS:
            try:
                self.send(msg.Heartbeat())
            except OSError:
                raise self.lost("dropped its connection") from None
        return True

    def expect(self, kind: type):
        """The worker's next message other than heartbeats; it must be a ``kind``."""
        message = self._receive()
        if not isinstance(message, kind):
            raise WorkerLost(f"compute worker {self.workerID} sent {type(message).__name__} "
                             f"where {kind.__name__} was expected")
        return message

    def _receive(self):
        lastHeard = time.monotonic()
        while True:
            if self.stop.is_set():
                raise slots.StopRequested()
            message = self._poll()
            now = time.monotonic()
            if message is None:
                if now - lastHeard > self.heartbeatTimeout:
                    raise self.lost(f"sent nothing for {self.heartbeatTimeout:.0f} s (raise "
                                    "'heartbeatTimeout' in computeWorkerExtraParams if its "
                                    "user function holds the GIL that long)")
                continue
            lastHeard = now
            if now - self.lastSent > HEARTBEAT_SECONDS:
                with contextlib.suppress(OSError):
                    self.send(msg.Heartbeat())
            if isinstance(message, msg.WorkerFailed):
                self.reports.noteOrigin(message.record, self.workerID)
                raise RemoteFailure(message.record)
            if not isinstance(message, msg.Heartbeat):
                return message

    def _poll(self):
        try:
            return self.conn.recv() if self.conn.poll(slots.POLL_SECONDS) else None
        except (EOFError, OSError):
            raise self.lost("lost its connection") from None

    def lost(self, what: str) -> WorkerLost:
        block = self.blockInHand()
        if block is not None:
            what += f" while processing block {block!r}"
        return self.reports.lost(self.workerID, what)
