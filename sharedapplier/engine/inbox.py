"""The main process's inbox: every message from read threads, compute workers and proxies.

Each party has a pipe to the main process and announces each message on the board before
sending it, so the main process reads the pipes only when something is there
(:meth:`Inbox.expecting`), and then asks one selector, kept for the run, which pipes have
something: a wait costs the same with 64 workers as with 2. Messages are handled by their
class (:mod:`.messages`); a :class:`~.messages.WorkerFailed` is the one way any failure
reaches the main process, and is raised there as a WorkerExceptionError whose
``__cause__`` is the worker's own exception, rebuilt.
"""
from __future__ import annotations

import contextlib
import selectors
import warnings

import cloudpickle

from .. import rioserrors
from ..structures import WorkerErrorRecord
from . import messages as msg
from .slots import SlotBoard


def raiseRecord(record: WorkerErrorRecord):
    """Raise a failure in the main process, once: the message carries the worker's
    traceback and ``__cause__`` the worker's own exception."""
    raise rioserrors.WorkerExceptionError(str(record)) from record.exc


class Inbox:
    """The pipes of one run's parties, and what their messages have told so far.

    ``onFailure(record)`` may explain a failure better before it is raised (see
    :mod:`.watch`); ``workerConns`` are the compute workers' pipes, answered with
    :class:`~.messages.OutputsReady` once block 0 has fixed the layout.
    """

    def __init__(self, job, board: SlotBoard, writer, timings, readerConns, workerConns,
                 onFailure=None):
        self.job = job
        self.board = board
        self.writer = writer
        self.timings = timings
        self.workerConns = list(workerConns)
        self.closed: set = set()
        self.selector = selectors.DefaultSelector()
        self.fdOf: dict = {}  # conn -> the fd it was registered with (closed conns have none)
        for conn in list(readerConns) + self.workerConns:
            self._watch(conn)
        self.finished: set[int] = set()
        self.otherArgsList: list = []
        self.received = 0
        self.onFailure = onFailure

    def expecting(self) -> bool:
        """A message has been announced that has not been read yet."""
        return self.board.messagesAnnounced() > self.received

    def allFinished(self, nworkers: int) -> bool:
        return len(self.finished) >= nworkers

    def _watch(self, conn) -> None:
        if not conn.closed:
            self.fdOf[conn] = conn.fileno()
            self.selector.register(self.fdOf[conn], selectors.EVENT_READ, conn)

    def _unwatch(self, conn) -> None:
        fd = self.fdOf.pop(conn, None)
        if fd is not None:
            self.selector.unregister(fd)

    def close(self) -> None:
        """Let go of the selector (the pipes belong to their workers)."""
        self.selector.close()

    def waitForMessages(self, timeout: float) -> list:
        """The pipes with something to read (or at their end), waiting up to ``timeout``."""
        return [key.data for key, _ in self.selector.select(timeout) if not key.data.closed]

    def hasUnread(self, conn) -> bool:
        return conn not in self.closed and not conn.closed and conn.poll(0)

    def readAll(self) -> bool:
        """Handle every message waiting in the pipes; whether there were any."""
        handled = False
        for conn in self.waitForMessages(0):
            while self.hasUnread(conn):
                handled = self._readOne(conn) or handled
        return handled

    def _readOne(self, conn) -> bool:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            self.closed.add(conn)
            self._unwatch(conn)
            return False
        self.received += 1
        return self.handle(message)

    def handle(self, message) -> bool:
        """Act on one message; whether it was one the run expects."""
        if isinstance(message, msg.LayoutProposal):
            self._fixLayouts(message)
        elif isinstance(message, msg.WorkerWarning):
            warnings.warn(message.text, message.category, stacklevel=1)
        elif isinstance(message, msg.WorkerFinished):
            self.finished.add(message.workerID)
            self.timings.merge(message.timers)
            otherArgs = cloudpickle.loads(message.otherArgsBytes)
            if otherArgs is not None:
                self.otherArgsList.append(otherArgs)
        elif isinstance(message, msg.WorkerFailed):
            if self.onFailure is not None:
                self.onFailure(message.record)
            raiseRecord(message.record)
        else:
            return False
        return True

    def replaceWorkerPipe(self, workerID: int, conn) -> None:
        """A new worker took the place of ``workerID``, which died, with pipe ``conn``; it
        hears the output layout at once if block 0 has fixed it. Messages the dead worker
        announced and never sent are written off."""
        old = self.workerConns[workerID]
        self.workerConns[workerID] = conn
        self._unwatch(old)  # before watching conn, which may have been given its fd
        self._watch(conn)
        self.received = max(self.received, self.board.messagesAnnounced())
        if self.writer.ready is not None:
            conn.send(self.writer.ready)

    def _fixLayouts(self, proposal: msg.LayoutProposal) -> None:
        """Block 0's layout is the run's (as RIOS creates outputs from the first block)."""
        if self.writer.layouts is not None or proposal.blockIndex != 0:
            return
        ready = self.writer.setLayouts(proposal.layouts)
        for conn in self.workerConns:
            with contextlib.suppress(OSError):
                conn.send(ready)
