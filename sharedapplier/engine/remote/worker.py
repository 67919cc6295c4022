"""The remote compute worker: the body of ``sharedapplier computeworker``.

It connects to the channel, receives the job, then runs the one
:class:`~..stages.WorkerLoop`: its source asks the main process for a block (and reads it,
or receives its inputs), its sink sends the outputs back. A heartbeat thread keeps the main
process informed and ends this process if the main process has gone.
"""
from __future__ import annotations

import logging
import os
import socket
import sys
import threading

import cloudpickle
from osgeo import gdal

from ... import launchers
from ...blockreader import BlockReader
from ...launchers.base import ChannelAddress
from .. import messages as msg
from ..computeworkers import runWorkerLoop
from ..processes import sizeReadCache
from ..stages import ClaimedBlock, UserFunction, WorkerLoop, WorkerState
from . import wire
from .channel import connectToChannel
from .link import HEARTBEAT_SECONDS

# How long a worker waits for the main process before deciding it is gone.
MAIN_SILENCE_SECONDS = 120.0
# Exit status of a worker that ends because its main process has gone.
WORKER_ORPHANED_STATUS = 3

# Its messages reach the job log through stderr (Python's last-resort handler).
logger = logging.getLogger(__name__)


def workerIdentity() -> dict:
    """Who this worker is, as the main process will report it."""
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "jobID": launchers.jobIdFromEnvironment()}


class MainGone(ConnectionError):
    """The connection to the main process failed (not the user function)."""


class MainLink:
    """The worker's end of the channel: one lock for sends, heartbeats from a thread.
    Every failure of the connection is a :class:`MainGone`."""

    def __init__(self, conn):
        self.conn = conn
        self.sendLock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)
        self.thread.start()

    def send(self, message, arrays: dict | None = None) -> None:
        """Send ``message``, then the raw bytes of ``arrays`` it announces."""
        try:
            with self.sendLock:
                self.conn.send(message)
                if arrays:
                    wire.sendArrayBytes(self.conn, arrays)
        except OSError as e:
            raise MainGone(f"sending to the main process failed: {e}") from e

    def receiveArrays(self, specs) -> dict:
        try:
            return wire.receiveArrays(self.conn, specs)
        except (EOFError, OSError, wire.WireError) as e:
            raise MainGone(f"receiving a block failed: {e}") from e

    def receive(self):
        """The main process's next message other than heartbeats."""
        waited = 0.0
        while waited < MAIN_SILENCE_SECONDS:
            try:
                message = self.conn.recv() if self.conn.poll(1.0) else None
            except (EOFError, OSError) as e:
                raise MainGone(f"the connection to the main process closed: {e}") from e
            if message is None:
                waited += 1.0
            elif not isinstance(message, msg.Heartbeat):
                return message
            else:
                waited = 0.0
        raise MainGone(f"the main process sent nothing for {MAIN_SILENCE_SECONDS:.0f} s")

    def close(self):
        self.stopped.set()
        self.conn.close()

    def _beat(self):
        """Heartbeats; if the main process is gone, end this process, even mid-block."""
        while not self.stopped.wait(HEARTBEAT_SECONDS):
            try:
                self.send(msg.Heartbeat())
            except OSError:
                if self.stopped.is_set():
                    return
                logger.error("sharedapplier computeworker: the main process has gone; exiting")
                os._exit(WORKER_ORPHANED_STATUS)


class BlocksFromMain:
    """The remote worker's source: ask for a block; read it, or receive its inputs."""

    def __init__(self, link: MainLink, job, reader: BlockReader | None, timings):
        self.link = link
        self.job = job
        self.reader = reader
        self.timings = timings

    def next(self) -> ClaimedBlock | None:
        self.link.send(msg.NextBlockPlease())
        message = self.link.receive()
        if isinstance(message, msg.NoMoreBlocks):
            return None
        if self.reader is None:
            return ClaimedBlock(message.blockIndex, None, self.link.receiveArrays(message.specs))
        with self.timings.interval("reading"):
            inputs = self.reader.readBlock(self.job.blockList[message.blockIndex])
        return ClaimedBlock(message.blockIndex, None, inputs)


class ResultsToMain:
    """The remote worker's sink: the outputs go back to the proxy."""

    def __init__(self, link: MainLink):
        self.link = link

    def store(self, block: ClaimedBlock, arrays: dict) -> None:
        self.link.send(msg.BlockResult(block.index, wire.arraySpecs(arrays)), arrays)


def runRemoteWorker(address: ChannelAddress, workerID: int) -> int:
    """Connect, pull blocks until none are left, send otherArgs back; the exit status.

    A failure in the user function (or reading) goes back to the main process as an error
    record and the worker exits 0, as RIOS's does; a failure to connect or a lost main
    process exits non-zero with a message on stderr.
    """
    gdal.UseExceptions()
    conn = connectToChannel(address, msg.WorkerHello(workerID, workerIdentity()))
    link = MainLink(conn)
    try:
        start = link.receive()
        _extendPath(start.mainPath)
        job = cloudpickle.loads(start.jobBytes)
        job.loggingstream = sys.stdout
        sizeReadCache(job)
        _computeBlocks(link, job, workerID, start.reads)
    except (EOFError, OSError) as e:
        logger.error(f"sharedapplier computeworker {workerID}: lost the main process: {e}")
        return 1
    finally:
        link.close()
    return 0


def _extendPath(mainPath):
    """Make the main process's import path ours too (where it exists on this host).

    cloudpickle ships functions of importable modules by reference, so a user function in
    the user's own module needs that module's folder, as it would on a shared filesystem.
    """
    for entry in mainPath:
        if entry and entry not in sys.path and os.path.isdir(entry):
            sys.path.append(entry)


def _computeBlocks(link: MainLink, job, workerID: int, reads: bool) -> None:
    state = WorkerState(workerID, job.otherArgs)
    reader = BlockReader(job.specs, job.overlap) if reads else None
    try:
        loop = WorkerLoop(BlocksFromMain(link, job, reader, state.timings),
                          UserFunction(job, None, None, state), ResultsToMain(link))
        runWorkerLoop(loop, job, workerID, lambda: False, link.send,
                      lambda: msg.WorkerFinished(workerID, state.timings,
                                                 cloudpickle.dumps(state.otherArgs)),
                      passThrough=(MainGone,))
    finally:
        if reader is not None:
            reader.close()
