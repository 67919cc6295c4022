"""Runs the blocks of a job in the concurrency style its controls ask for."""
from __future__ import annotations

import contextlib
import gc
import shutil
import signal
import threading
import time
import warnings
from multiprocessing import connection

import cloudpickle

from .. import imagewriter, launchers, rioserrors
from ..imagereader import BlockReader
from ..structures import CW_NONE, CW_PROCESSES, CW_THREADS, WorkerErrorRecord
from . import signals as sig
from . import slabpool
from .computeworkers import ComputeProcesses, ComputeThreads, WorkerState, computeSlot
from .forkserver import workerContext
from .readworkers import ReadWorkers, readSlot
from .remoteworkers import RemoteWorkers, makeRunDirectory
from .writer import ApplierProgress, OrderedWriter, writeSequentially


def runBlocks(job, outputWriter, controls, timings) -> list:
    """Process every block of ``job``; return the otherArgs copies (RIOS's otherArgsList)."""
    with _collectorSkipsOlderObjects():
        return _runInStyle(job, outputWriter, controls, timings)


_frozenRuns = 0
_frozenLock = threading.Lock()


@contextlib.contextmanager
def _collectorSkipsOlderObjects():
    """While blocks run, the garbage collector looks only at objects made since the start.

    Every block makes short-lived objects, and their count sets off collections; each full
    one walks every object of the program (tens of milliseconds in a program that has
    imported scipy), several times in a long run. The older objects are collected as usual
    once the last concurrent run ends.
    """
    global _frozenRuns
    with _frozenLock:
        if _frozenRuns == 0:
            gc.freeze()
        _frozenRuns += 1
    try:
        yield
    finally:
        with _frozenLock:
            _frozenRuns -= 1
            if _frozenRuns == 0:
                gc.unfreeze()


def _runInStyle(job, outputWriter, controls, timings) -> list:
    style = job.concurrency
    progress = ApplierProgress(controls, len(job.blockList))
    kind = style.computeWorkerKind
    if kind == CW_NONE and style.numReadWorkers == 0:
        reader = BlockReader(job.specs, job.overlap)
        try:
            writeSequentially(job, reader, outputWriter, progress, timings)
        finally:
            reader.close()
        return [job.otherArgs]
    if kind in (CW_NONE, CW_THREADS, CW_PROCESSES):
        return PipelinedRun(job, outputWriter, progress, timings).run()
    launcherClass = launchers.launcherClass(kind)
    rundir = makeRunDirectory(controls.tempdir)
    try:
        launcher = launcherClass(style.computeWorkerExtraParams, rundir,
                                 controls.jobName or "")
        launcher.checkAvailable()
        run = PipelinedRun(job, outputWriter, progress, timings, launcher, rundir)
    except BaseException:
        shutil.rmtree(rundir, ignore_errors=True)
        raise
    return run.run()


def planSlots(job, nworkers, nreaders) -> int:
    """Slots from the memory budget: enough to keep everyone busy, no more than useful."""
    inputBytes = sum(f.nbytes for f in job.inputFields())
    slotbytes = 2 * max(inputBytes, 2**16)
    budget = job.concurrency.memoryBudget
    if budget is None:
        budget = slabpool.defaultBudget()
    parties = nworkers + nreaders + 1
    minimum = min(2 * parties, len(job.blockList))
    useful = min(4 * parties + 2, len(job.blockList))
    return max(1, slabpool.slotCount(slotbytes, budget, minimum, useful))


# A timeout that ran out is put down to a user function that has run for at least this
# share of it (the wait began after the function did, give or take a poll).
USER_FUNCTION_BLAME_FRACTION = 0.9

# The worker number the main thread claims slots under when it reads (readers count down
# from -1, compute workers up from 1).
MAIN_READER = -1000

# How long the main process waits on the pipes at a time while an announced message is on
# its way (blocks computed meanwhile are written between these waits).
MESSAGE_POLL_SECONDS = 0.001

# A writer that waited this long for a block is idle enough to flush finished rows of
# blocks to the files as it goes (I/O-bound runs seldom wait this long).
IDLE_FLUSH_SECONDS = 0.001


@contextlib.contextmanager
def _sigtermRaises():
    """While running, turn SIGTERM into SystemExit so every ``finally`` cleans up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raiseRecord(record):
    """Raise a worker's failure in the main process, once: the message carries the worker's
    traceback and ``__cause__`` the worker's own exception, rebuilt here."""
    raise rioserrors.WorkerExceptionError(str(record)) from record.exc


class PipelinedRun:
    """A run with read threads and/or compute workers sharing a slab pool."""

    def __init__(self, job, outputWriter, progress, timings, launcher=None, rundir=None):
        style = job.concurrency
        self.job = job
        self.style = style
        self.timings = timings
        self.kind = style.computeWorkerKind
        remote = launcher is not None
        self.reads = (self.kind == CW_PROCESSES or remote) and style.resolvedComputeWorkersRead()
        nworkers = 0 if self.kind == CW_NONE else style.numComputeWorkers
        if style.singleBlockComputeWorkers:
            nworkers = len(job.blockList)
        nreaders = 0 if self.reads else style.numReadWorkers
        if remote and not self.reads:
            nreaders = max(1, nreaders)
        nslots = planSlots(job, min(nworkers, len(job.blockList)), nreaders)
        shared = self.kind == CW_PROCESSES
        self.mpContext = None
        if shared:
            self.mpContext = workerContext(style.workerStartMethod, job.userFunction,
                                           job.otherArgs)
        desc = slabpool.PoolDescription(slabpool.newRunPrefix(), nslots, len(job.blockList),
                                        job.inputFields(), None)
        self.pool = slabpool.SlabPool(desc, shared=shared, create=True)
        self.signals = sig.SlotSignals.create(nslots, self.mpContext)
        self.readers = ReadWorkers(job, self.pool, self.signals, nreaders)
        self.workers = None
        if remote:
            self.workers = RemoteWorkers(job, self.pool, self.signals, nworkers, self.reads,
                                         launcher, rundir)
        elif self.kind == CW_PROCESSES:
            self.workers = ComputeProcesses(job, self.pool, self.signals, nworkers,
                                            self.reads, self.mpContext)
        elif self.kind == CW_THREADS:
            self.workers = ComputeThreads(job, self.pool, self.signals, nworkers, job.otherArgs)
        # CW_THREADS with no read workers: the main thread reads, between writes
        self.mainReader = None
        if self.workers is not None and not self.reads and nreaders == 0:
            self.mainReader = BlockReader(job.specs, job.overlap)
        self.writer = OrderedWriter(job, self.pool, self.signals, outputWriter, progress)
        self.closedPipes = set()
        self.messagesReceived = 0

    def run(self) -> list:
        try:
            with _sigtermRaises():
                if self.workers is not None:
                    with self.timings.interval("startcomputeworkers"):
                        self.workers.start()
                self.readers.start()
                if self.workers is None:
                    return self._computeInMain()
                return self._writeFromWorkers()
        finally:
            self._shutdown()

    # --- CW_NONE with read workers: the main thread computes and writes -------------
    def _computeInMain(self):
        state = WorkerState(0, None, self.job.otherArgs, reads=False,
                            agreeLayouts=self._layoutsFromFirstBlock)
        state.timings = self.timings
        while self.writer.written < len(self.job.blockList):
            self._checkReaders()
            try:
                with self.timings.interval("wait_input"):
                    claimed = sig.takeReady(self.pool, self.signals, 1,
                                            self.style.readBufferPopTimeout)
            except sig.StopRequested:
                self._checkReaders()
                raise
            slot, blockIndex = claimed
            computeSlot(self.job, self.pool, self.signals, state, slot, blockIndex)
            self.writer.writeComputed()
        return [self.job.otherArgs]

    def _layoutsFromFirstBlock(self, arrays):
        layouts = imagewriter.layoutsFromArrays(arrays)
        self.writer.setLayouts(layouts)
        return layouts

    def _checkReaders(self):
        record = self.readers.firstError()
        if record is not None:
            if isinstance(record.exc, rioserrors.TimeoutError):
                self._blameSlowUserFunction("readBufferInsertTimeout",
                                            self.style.readBufferInsertTimeout)
            _raiseRecord(record)

    def _blameSlowUserFunction(self, option, timeout):
        """When the wait for ``option`` ran out because a user function has been running at
        least as long, say so, naming its block and worker, instead of blaming the wait."""
        running = self.pool.userFunctionsRunning()
        if not running or timeout is None:
            return
        seconds, block, worker = max(running)
        if seconds < USER_FUNCTION_BLAME_FRACTION * timeout:
            return
        _raiseRecord(_mainRecord(rioserrors.TimeoutError(
            f"the user function has been running for {seconds:.1f} s on block "
            f"{self.job.blockList[block]!r} in compute worker {worker - 1}, and the run "
            f"waited {timeout} s for it. If a block needs that long, raise {option} "
            f"(current value = {timeout}) in the ConcurrencyStyle, or set it to None to wait "
            "for ever")))

    def _blameForWorkersTimeout(self, record):
        """A worker's wait ran out: perhaps another worker's user function is the cause."""
        text = str(record.exc)
        for option in ("readBufferInsertTimeout", "readBufferPopTimeout",
                       "computeBufferInsertTimeout"):
            if option in text:
                self._blameSlowUserFunction(option, getattr(self.style, option))

    # --- compute workers: the main thread only writes ----------------------------------
    def _writeFromWorkers(self):
        """Write blocks as the doorbell announces them; read the pipes only when told to.

        Pipes, deaths and timeouts are also checked every POLL_SECONDS, so a worker that
        dies without a word is noticed within a fraction of a second. While an announced
        message has not arrived yet, the writer waits on the pipes, a millisecond at a time
        so that blocks computed meanwhile are written too.
        """
        nworkers = len(self.workers.conns)
        finished, otherArgsList = set(), []
        timeout = self.style.computeBufferPopTimeout
        lastProgress = lastCheck = time.monotonic()
        expecting = wrote = False
        while len(finished) < nworkers or self.writer.written < len(self.job.blockList):
            if self.mainReader is not None:
                self._readFreeSlots()
            waitStart = time.monotonic()
            if expecting:   # the doorbell rang before the message was sent: wait for it
                connection.wait(self._livePipes(finished), MESSAGE_POLL_SECONDS)
                rang = self.signals.doorbell.acquire(False)
            else:
                # after a batch there may be more to write at once; writeComputed asks to
                # be woken only when it found nothing
                rang = self.signals.doorbell.acquire(timeout=0 if wrote else sig.POLL_SECONDS)
            idle = time.monotonic() - waitStart > IDLE_FLUSH_SECONDS
            # every ring before this point is for blocks or a message already in the
            # header, which the writing and checks below see: one pass serves them all
            while rang and self.signals.doorbell.acquire(False):
                pass
            wrote = self.writer.writeComputed() > 0
            if wrote:
                lastProgress = time.monotonic()
                if idle:
                    self.writer.flushFinishedRows()
            now = time.monotonic()
            expecting = self._messagesAnnounced() > self.messagesReceived
            if not expecting and now - lastCheck < sig.POLL_SECONDS:
                continue
            lastCheck = now
            if self._readMessages(finished, otherArgsList):
                lastProgress = now
            expecting = self._messagesAnnounced() > self.messagesReceived
            self._checkReaders()
            self._checkDeaths(finished)
            if self.workers.waitingForStart():
                lastProgress = now
            elif timeout is not None and now - lastProgress > timeout:
                self._blameSlowUserFunction("computeBufferPopTimeout", timeout)
                _raiseRecord(_mainRecord(sig.timeoutError(
                    "the next computed block", "computeBufferPopTimeout", timeout)))
        return otherArgsList

    def _readFreeSlots(self):
        """Fill every free slot with the next block (when no read workers do)."""
        while True:
            claimed = sig.tryClaimBlock(self.pool, self.signals, MAIN_READER)
            if claimed is None:
                return
            slot, blockIndex = claimed
            with self.timings.interval("reading"):
                readSlot(self.mainReader, self.job, self.pool, slot,
                         self.job.blockList[blockIndex])
            sig.markReady(self.pool, self.signals, slot)

    def _messagesAnnounced(self) -> int:
        # no lock needed: the count only grows, and a ring of the doorbell follows it
        return self.pool.counter(slabpool.MESSAGES)

    def _livePipes(self, finished) -> list:
        """The pipes of the workers that may still send something."""
        conns = self.workers.conns
        return [conns[i] for i in range(len(conns))
                if i not in finished and i not in self.closedPipes]

    def _readMessages(self, finished, otherArgsList) -> bool:
        """Handle every message waiting in the workers' pipes; True if there were any."""
        conns = self.workers.conns
        handled = False
        for conn in connection.wait(self._livePipes(finished), timeout=0):
            i = conns.index(conn)
            while i not in self.closedPipes and not conn.closed and conn.poll(0):
                handled = self._handleMessage(i, finished, otherArgsList) or handled
        return handled

    def _handleMessage(self, workerID, finished, otherArgsList) -> bool:
        try:
            message = self.workers.conns[workerID].recv()
        except (EOFError, OSError):
            self.closedPipes.add(workerID)
            return False
        self.messagesReceived += 1
        kind = message[0]
        if kind == "layout":
            _, _, blockIndex, layouts = message
            if self.writer.layouts is None and blockIndex == 0:
                self.writer.setLayouts(layouts)
                fields = self.job.outputFields(self.writer.layouts)
                for conn in self.workers.conns:
                    with contextlib.suppress(OSError):
                        conn.send(("outputs", fields, self.writer.layouts))
            return True
        if kind == "error":
            if isinstance(message[1].exc, rioserrors.TimeoutError):
                self._blameForWorkersTimeout(message[1])
            _raiseRecord(message[1])
        if kind == "warning":
            warnings.warn(message[2], message[1], stacklevel=1)
            return True
        if kind == "finished":
            finished.add(message[1])
            self.timings.merge(message[2])
            otherArgs = cloudpickle.loads(message[3])
            if otherArgs is not None:
                otherArgsList.append(otherArgs)
            return True
        return False

    def _checkDeaths(self, finished):
        for i in self.workers.deadWorkers(finished):
            conn = self.workers.conns[i]
            if i not in self.closedPipes and not conn.closed and conn.poll(0):
                continue  # read what it sent before dying first
            block = self._blockOfWorker(i + 1)
            where = "" if block is None else f" while processing block {block}"
            _raiseRecord(_mainRecord(RuntimeError(self.workers.describeDeath(i) + where)))

    def _blockOfWorker(self, worker):
        with self.signals.lock:
            for slot in range(self.pool.desc.nslots):
                if (self.pool.slotWorker(slot) == worker and self.pool.slotState(slot) in
                        (slabpool.FILLING, slabpool.COMPUTING)):
                    return self.job.blockList[self.pool.slotBlock(slot)]
        return None

    def _shutdown(self):
        self.signals.stop.set()
        try:
            if self.mainReader is not None:
                self.mainReader.close()
            self.readers.join()
            if self.workers is not None:
                self.workers.stop()
            for timers in self.readers.timers:
                self.timings.merge(timers)
        finally:
            self.pool.release()


def _mainRecord(exc):
    return WorkerErrorRecord(exc, "main")
