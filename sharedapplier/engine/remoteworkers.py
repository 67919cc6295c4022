"""Remote compute workers: batch jobs that pull blocks over the network data channel.

Each remote worker is served by a proxy thread of the main process. To the rest of the
engine a proxy looks exactly like a compute thread: it takes a slot (an input-complete one,
or a free one when workers read for themselves), leaves the outputs in the slot and tells
the writer over its pipe. Between taking and finishing a slot it talks to its worker::

    proxy (main process)                        worker (sharedapplier computeworker)
    <--------------------------------------  WorkerHello(id, identity) after the handshake
    ("init", job, reads, sys.path) --------->
    <--------------------------------------  ("next",)
    ("block", index, input specs) + one raw buffer per input (none when the worker reads)
                                             ... or ("stop",) when no blocks are left
    <--------------------------------------  ("result", index, output specs) + raw buffers
    <--------------------------------------  ("finished", timers, otherArgs bytes)
    <--------------------------------------  ("error", WorkerErrorRecord)
    <------------- ("heartbeat",) ---------> both ways, while either side waits

Pixels travel as raw buffers, never pickled. A worker that goes silent, whose connection
drops, or whose job ends is reported with what its scheduler says about it (job id, host,
state, exit code, log), within seconds.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import replace
from multiprocessing import connection
from pathlib import Path

import cloudpickle
import numpy
from osgeo import gdal

from .. import imagewriter, rioserrors
from ..imagereader import BlockReader
from ..launchers.base import WorkerCommand
from ..structures import Timers, WorkerErrorRecord
from . import signals as sig
from .channel import ChannelAddress, WorkerChannel, WorkerHello, connectToChannel
from .computeworkers import WorkerState, sizeReadCache, storeOutputs, tellMain

HEARTBEAT_SECONDS = 5.0
DEFAULT_HEARTBEAT_TIMEOUT = 60.0
# How long a worker waits for the main process before deciding it is gone.
MAIN_SILENCE_SECONDS = 120.0
# After a worker's connection drops, how long to wait for its scheduler to say how it ended.
FINAL_STATE_WAIT_SECONDS = 5.0
# After a successful run, how long jobs may take to end by themselves before being cancelled.
JOB_END_GRACE_SECONDS = 10.0
# After cancelling, how long to wait for the scheduler to say every job has ended (it stops
# jobs asynchronously: a terminated job runs on until its process has gone).
CANCEL_CONFIRM_SECONDS = 15.0
# Exit status of a worker that ends because its main process has gone.
WORKER_ORPHANED_STATUS = 3

ARRAY_INDEX_VARIABLES = ("SLURM_ARRAY_TASK_ID", "PBS_ARRAY_INDEX", "PBS_ARRAYID",
                         "AWS_BATCH_JOB_ARRAY_INDEX")
JOB_ID_VARIABLES = ("SLURM_JOB_ID", "PBS_JOBID", "AWS_BATCH_JOB_ID")


class WorkerLost(Exception):
    """A remote worker stopped answering or its job ended; the message says how."""


class RemoteFailure(Exception):
    """A remote worker sent an error record."""

    def __init__(self, record):
        super().__init__(str(record))
        self.record = record


# ---------------------------------------------------------------------------------------
# Sending blocks


def byteView(arr: numpy.ndarray) -> numpy.ndarray:
    """A flat uint8 view of a contiguous array: ``Connection.send_bytes`` and
    ``recv_bytes_into`` count the first axis of a multi-dimensional 1-byte buffer, not its
    bytes, so every array crosses the channel in this form."""
    return arr.reshape(-1).view(numpy.uint8)


def sendArrays(conn, tag, blockIndex, arrays: dict) -> None:
    """A header with each array's key, dtype and shape, then each array's raw bytes."""
    specs = [(key, arr.dtype.str, arr.shape) for key, arr in arrays.items()]
    conn.send((tag, blockIndex, specs))
    for arr in arrays.values():
        conn.send_bytes(byteView(numpy.ascontiguousarray(arr)))


def receiveArrays(conn, specs, destinations: dict | None = None) -> dict:
    """The arrays whose raw bytes follow a header, each received in place: into the
    matching array of ``destinations`` (same key, dtype and shape) or a new one."""
    arrays = {}
    destinations = destinations or {}
    for key, dtype, shape in specs:
        arr = destinations.get(key)
        if (arr is None or arr.dtype != numpy.dtype(dtype) or arr.shape != tuple(shape)
                or not arr.flags.c_contiguous):
            arr = numpy.empty(shape, dtype=dtype)
        received = conn.recv_bytes_into(byteView(arr))
        if received != arr.nbytes:
            raise WorkerLost(f"a block array arrived with {received} bytes, not {arr.nbytes}")
        arrays[key] = arr
    return arrays


# ---------------------------------------------------------------------------------------
# Main-process side


class RemoteWorkers:
    """Compute workers started by a launcher; one proxy thread of this process serves each.

    The channel's address reaches the workers in a 0600 file in ``rundir`` (a private
    directory on the shared filesystem), or on their command line when the style says
    there is no shared temp directory.
    """

    def __init__(self, job, pool, signals, count, reads, launcher, rundir):
        style = job.concurrency
        self.job = job
        self.pool = pool
        self.signals = signals
        self.reads = reads
        self.launcher = launcher
        self.rundir = Path(rundir)
        self.extra = dict(style.computeWorkerExtraParams or {})
        self.blocksPerWorker = 1 if style.singleBlockComputeWorkers else None
        self.heartbeatTimeout = float(self.extra.get("heartbeatTimeout",
                                                     DEFAULT_HEARTBEAT_TIMEOUT))
        self.jobBytes = cloudpickle.dumps(job)
        self.connected = threading.Event()
        self.finishedCleanly = set()
        self.channel = None
        self.conns, self.states, self.threads = [], [], []
        for i in range(count):
            mainEnd, proxyEnd = connection.Pipe(duplex=True)
            self.conns.append(mainEnd)
            self.states.append(WorkerState(i, proxyEnd, None, reads=False))
            self.threads.append(threading.Thread(target=self._serve, args=(i,), daemon=True,
                                                 name=f"sharedapplier-remote-{i}"))

    # --- the interface the runner uses (as for local workers) -------------------------
    def start(self):
        self.channel = WorkerChannel(
            hostname=self.extra.get("channelHost"),
            interface=self.extra.get("channelInterface", self.launcher.defaultInterface),
            portRange=tuple(self.extra.get("channelPortRange", (30000, 50000))))
        self.launcher.submit(list(range(len(self.conns))), self._workerCommand())
        self.startTime = time.monotonic()
        for thread in self.threads:
            thread.start()

    def waitingForStart(self) -> bool:
        return not self.connected.is_set()

    def deadWorkers(self, finished):
        return [i for i, t in enumerate(self.threads) if i not in finished and not t.is_alive()]

    def describeDeath(self, workerID):
        return f"the proxy of remote worker {workerID} ended unexpectedly"

    def stop(self, timeout=3.0):
        self.signals.stop.set()
        try:
            if len(self.finishedCleanly) == len(self.conns):
                self._liveJobsAfter(JOB_END_GRACE_SECONDS)
            self.launcher.cancel()
            live = self._liveJobsAfter(CANCEL_CONFIRM_SECONDS)
            if live:
                print(f"sharedapplier: warning: {len(live)} compute job(s) had not ended "
                      f"{CANCEL_CONFIRM_SECONDS:.0f} s after being cancelled: "
                      + "; ".join(self.launcher.describe(i).identity() for i in live),
                      file=sys.stderr)
        finally:
            if self.channel is not None:
                self.channel.shutdown()
            for thread in self.threads:
                if thread.ident is not None:
                    thread.join(timeout)
            shutil.rmtree(self.rundir, ignore_errors=True)

    def _liveJobsAfter(self, seconds) -> list[int]:
        """Wait up to ``seconds`` for every worker's job to end; the workers whose have not."""
        deadline = time.monotonic() + seconds
        while True:
            live = [i for i in self.launcher.recorded() if not self.launcher.describe(i).finished]
            if not live or time.monotonic() >= deadline:
                return live
            time.sleep(0.2)

    # --- how workers find the channel ----------------------------------------------
    def _workerCommand(self):
        base = self.extra.get("workerCommand") or self.launcher.defaultWorkerCommand()
        address = self.channel.address
        if self.job.concurrency.haveSharedTemp and self.launcher.sharedFilesystem:
            path = self.rundir / "channel_address.json"
            address.writeFile(str(path))
            return WorkerCommand((*base, "--channaddrfile", str(path)))
        extra = self.launcher.addressArguments(address)
        if extra is None:
            print("sharedapplier: warning: haveSharedTemp=False puts the channel key on the "
                  "workers' command line, where other users of the machine may see it",
                  file=sys.stderr)
            extra = ["--channaddr", address.addressStr()]
        return WorkerCommand((*base, *extra))

    # --- one proxy ------------------------------------------------------------------
    def _serve(self, i):
        state = self.states[i]
        blockIndex = remote = None
        try:
            link = self._awaitConnection(i)
            if link is None:
                self._tellMain(state, ("finished", i, Timers(), cloudpickle.dumps(None)))
                return
            remote = _RemoteLink(link, self, i)
            remote.send(("init", self.jobBytes, self.reads, list(sys.path)))
            done = 0
            while self.blocksPerWorker is None or done < self.blocksPerWorker:
                remote.expect("next")
                claimed = self._nextSlot(state, remote)
                if claimed is None:
                    break
                slot, blockIndex = claimed
                arrays = remote.compute(slot, blockIndex, state.layouts)
                if state.layouts is not None:
                    # what computeBlock's layouts argument does for local workers
                    arrays = imagewriter.conformToLayouts(arrays, state.layouts)
                storeOutputs(self.job, self.pool, self.signals, state, slot, blockIndex, arrays)
                blockIndex, done = None, done + 1
            if self.blocksPerWorker is not None:
                remote.expect("next")
            remote.send(("stop",))
            _, timers, otherArgsBytes = remote.expect("finished")
            self.finishedCleanly.add(i)
            self._tellMain(state, ("finished", i, timers, otherArgsBytes))
        except (sig.StopRequested, sig.PeerGone):
            return
        except RemoteFailure as e:
            self._tellMain(state, ("error", e.record))
        except Exception as e:
            blockDefn = None if blockIndex is None else self.job.blockList[blockIndex]
            record = WorkerErrorRecord(e, "compute", i, blockDefn=blockDefn)
            self.noteOrigin(record, i)
            if isinstance(e, (WorkerLost, rioserrors.TimeoutError)):
                # the message says it all; the proxy's own stack would only distract
                record.formattedTraceback = traceback.format_exception_only(e)
            self._tellMain(state, ("error", record))
        finally:
            if remote is not None:
                remote.conn.close()

    def _tellMain(self, state, message):
        tellMain(self.pool, self.signals, state, message)

    def _awaitConnection(self, i):
        """The worker's connection; None if others started and this one never came."""
        timeout = self.job.concurrency.computeBarrierTimeout
        while True:
            link = self.channel.awaitWorker(i, timeout=sig.POLL_SECONDS)
            if link is not None:
                self.connected.set()
                self.launcher.noteHost(i, str(link[1].get("host", "")))
                return link
            if self.signals.stop.is_set():
                raise sig.StopRequested()
            desc = self.launcher.describe(i)
            if desc.finished:
                raise WorkerLost(self._lostText(
                    i, f"ended before connecting to the main process ({desc.status()})"))
            waited = time.monotonic() - self.startTime
            if timeout is not None and waited > timeout:
                if self.connected.is_set():
                    print(f"sharedapplier: warning: compute worker {i} ({desc.identity()}) "
                          f"has not started after {timeout} s ({desc.status()}); carrying on "
                          "with the workers that did", file=sys.stderr)
                    return None
                raise rioserrors.TimeoutError(
                    f"no compute worker started within {timeout} s; worker {i} is "
                    f"{desc.identity()}, {desc.status()}. Try increasing "
                    f"computeBarrierTimeout (current value = {timeout}) in the "
                    "ConcurrencyStyle, or check the queue")

    def _nextSlot(self, state, remote):
        worker = state.workerID + 1
        style = self.job.concurrency
        if not self.reads:
            return sig.takeReady(self.pool, self.signals, worker, style.readBufferPopTimeout,
                                 remote.keepAlive)
        return sig.claimBlock(self.pool, self.signals, worker, style.readBufferInsertTimeout,
                              remote.keepAlive)

    def _lostText(self, i, what):
        self.launcher.describe(i)  # the scheduler's latest word, which _identity reads
        text = f"compute worker {i} ({self._identity(i)}) {what}"
        tail = self.launcher.logTail(i)
        if tail:
            text += "\nlast lines of its log:\n" + tail.rstrip()
        return text

    def _identity(self, i) -> str:
        """Who worker ``i`` is, naming its log only if the log outlives the run directory
        (which :meth:`stop` removes before the user reads the error)."""
        desc = self.launcher.describe(i, refresh=False)
        if desc.logLocation and Path(desc.logLocation).resolve().is_relative_to(self.rundir):
            desc = replace(desc, logLocation=None)
        return desc.identity()

    def noteOrigin(self, record: WorkerErrorRecord, i) -> None:
        """Add where worker ``i`` ran to its error record, and its log's last lines."""
        record.origin = self._identity(i)
        record.logTail = self.launcher.logTail(i).rstrip() or None

    def lostWorker(self, i, what):
        """Wait briefly for the scheduler's final word on a worker, then describe it."""
        deadline = time.monotonic() + FINAL_STATE_WAIT_SECONDS
        while time.monotonic() < deadline and not self.launcher.describe(i).finished:
            time.sleep(0.2)
        desc = self.launcher.describe(i)
        return WorkerLost(self._lostText(i, f"{what} ({desc.status()})"))


class _RemoteLink:
    """The proxy's end of one worker's connection, with heartbeats and liveness checks."""

    def __init__(self, link, owner: RemoteWorkers, workerID):
        self.conn, self.identity = link
        self.owner = owner
        self.workerID = workerID
        self.lastSent = time.monotonic()
        self.blockIndex = None

    def send(self, message):
        self.conn.send(message)
        self.lastSent = time.monotonic()

    def keepAlive(self) -> bool:
        """While the proxy waits for a slot: heartbeat the worker, notice if it went away."""
        if time.monotonic() - self.lastSent > HEARTBEAT_SECONDS:
            try:
                self.send(("heartbeat",))
            except OSError:
                raise self._lost("dropped its connection") from None
        return True

    def expect(self, kind):
        """The worker's next message other than heartbeats; it must be of ``kind``."""
        message = self._receive()
        if message[0] != kind:
            raise WorkerLost(f"compute worker {self.workerID} sent {message[0]!r} where "
                             f"{kind!r} was expected")
        return message

    def compute(self, slot, blockIndex, layouts):
        """Have the worker compute one block; its outputs, as arrays.

        Once the first block has fixed the output ``layouts``, outputs that keep to them
        are received straight into the slot.
        """
        self.blockIndex = blockIndex
        job, pool = self.owner.job, self.owner.pool
        blockDefn = job.blockList[blockIndex]
        pool.noteUserFunctionStart(slot)
        if self.owner.reads:
            self.send(("block", blockIndex, None))
        else:
            sendArrays(self.conn, "block", blockIndex,
                       pool.inputViews(slot, job.inputShapes(blockDefn)))
            self.lastSent = time.monotonic()
        _, index, specs = self.expect("result")
        slotViews = None
        if layouts is not None:
            slotViews = pool.outputViews(slot, job.outputShapes(blockDefn, layouts))
        arrays = receiveArrays(self.conn, specs, slotViews)
        self.blockIndex = None
        return arrays

    def _receive(self):
        owner = self.owner
        lastHeard = time.monotonic()
        while True:
            if owner.signals.stop.is_set():
                raise sig.StopRequested()
            try:
                ready = self.conn.poll(sig.POLL_SECONDS)
                message = self.conn.recv() if ready else None
            except (EOFError, OSError):
                raise self._lost("lost its connection") from None
            now = time.monotonic()
            if message is None:
                if now - lastHeard > owner.heartbeatTimeout:
                    raise self._lost(f"sent nothing for {owner.heartbeatTimeout:.0f} s "
                                     "(raise 'heartbeatTimeout' in computeWorkerExtraParams "
                                     "if its user function holds the GIL that long)")
                continue
            lastHeard = now
            if now - self.lastSent > HEARTBEAT_SECONDS:
                with contextlib.suppress(OSError):
                    self.send(("heartbeat",))
            if message[0] == "heartbeat":
                continue
            if message[0] == "error":
                record = message[1]
                owner.noteOrigin(record, self.workerID)
                raise RemoteFailure(record)
            return message

    def _lost(self, what):
        if self.blockIndex is not None:
            what += f" while processing block {self.owner.job.blockList[self.blockIndex]!r}"
        return self.owner.lostWorker(self.workerID, what)


# ---------------------------------------------------------------------------------------
# Worker side: the body of ``sharedapplier computeworker``


def workerIdentity() -> dict:
    """Who this worker is, as the main process will report it."""
    jobID = next((os.environ[v] for v in JOB_ID_VARIABLES if os.environ.get(v)), None)
    return {"host": socket.gethostname(), "pid": os.getpid(), "jobID": jobID}


def workerNumberFromEnvironment() -> int | None:
    """The worker number of an array job, from the scheduler's array index."""
    for name in ARRAY_INDEX_VARIABLES:
        value = os.environ.get(name)
        if value not in (None, ""):
            return int(value)
    return None


class _MainLink:
    """The worker's end of the channel: one lock for sends, heartbeats from a thread."""

    def __init__(self, conn):
        self.conn = conn
        self.sendLock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)
        self.thread.start()

    def send(self, message):
        with self.sendLock:
            self.conn.send(message)

    def sendArrays(self, blockIndex, arrays):
        with self.sendLock:
            sendArrays(self.conn, "result", blockIndex, arrays)

    def receive(self):
        """The main process's next message other than heartbeats; EOFError if it is gone."""
        waited = 0.0
        while waited < MAIN_SILENCE_SECONDS:
            if self.conn.poll(1.0):
                message = self.conn.recv()
                if message[0] != "heartbeat":
                    return message
                waited = 0.0
            else:
                waited += 1.0
        raise EOFError(f"the main process sent nothing for {MAIN_SILENCE_SECONDS:.0f} s")

    def close(self):
        self.stopped.set()
        self.conn.close()

    def _beat(self):
        """Heartbeats; if the main process is gone, end this process, even mid-block."""
        while not self.stopped.wait(HEARTBEAT_SECONDS):
            try:
                self.send(("heartbeat",))
            except OSError:
                if self.stopped.is_set():
                    return
                print("sharedapplier computeworker: the main process has gone; exiting",
                      file=sys.stderr, flush=True)
                os._exit(WORKER_ORPHANED_STATUS)


def runRemoteWorker(address: ChannelAddress, workerID: int) -> int:
    """Connect, pull blocks until none are left, return otherArgs; the exit status.

    A failure in the user function (or reading) goes back to the main process as an error
    record and the worker exits 0, as RIOS's does; a failure to connect or a lost main
    process exits non-zero with a message on stderr.
    """
    gdal.UseExceptions()
    conn = connectToChannel(address, WorkerHello(workerID, workerIdentity()))
    link = _MainLink(conn)
    try:
        _, jobBytes, reads, mainPath = link.receive()
        _extendPath(mainPath)
        job = cloudpickle.loads(jobBytes)
        job.loggingstream = sys.stdout
        sizeReadCache(job)
        _computeBlocks(link, job, workerID, reads)
    except (EOFError, OSError) as e:
        print(f"sharedapplier computeworker {workerID}: lost the main process: {e}",
              file=sys.stderr)
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


def _computeBlocks(link, job, workerID, reads):
    timings = Timers(worker=f"compute {workerID}")
    reader = BlockReader(job.specs, job.overlap) if reads else None
    blockDefn = None
    try:
        while True:
            link.send(("next",))
            message = link.receive()
            if message[0] == "stop":
                break
            _, blockIndex, specs = message
            blockDefn = job.blockList[blockIndex]
            if reads:
                with timings.interval("reading"):
                    inputs = reader.readBlock(blockDefn)
            else:
                inputs = receiveArrays(link.conn, specs)
            arrays = job.computeBlock(blockDefn, inputs, job.otherArgs, timings)
            link.sendArrays(blockIndex, arrays)
            blockDefn = None
        link.send(("finished", timings, cloudpickle.dumps(job.otherArgs)))
    except (EOFError, OSError):
        raise
    except Exception as e:
        link.send(("error", WorkerErrorRecord(e, "compute", workerID, blockDefn=blockDefn)))
    finally:
        if reader is not None:
            reader.close()


def makeRunDirectory(tempdir: str) -> Path:
    """A private directory for the run's address file, job scripts and logs."""
    return Path(tempfile.mkdtemp(prefix="sharedapplier_run_", dir=tempdir or None)).resolve()
