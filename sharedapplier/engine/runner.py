"""Runs the blocks of a job by the route its concurrency style asks for.

Three routes, one :class:`~.stages.WorkerLoop` in each:

* no workers, no read threads: the main thread reads, computes and writes each block in
  turn (:func:`runSequentially`);
* read threads and no compute workers: the main thread computes the blocks they read and
  writes them (:meth:`PipelinedRun.computeInMain`);
* compute workers (threads, processes, or remote through a launcher): the main thread
  only writes, and reads too when nobody else does (:meth:`PipelinedRun.writeFromWorkers`).
"""
from __future__ import annotations

import contextlib
import gc
import shutil
import signal
import threading

from .. import blockwriter, launchers
from ..blockreader import BlockReader
from ..structures import CW_NONE, CW_PROCESSES, CW_THREADS
from . import slabpool, slots
from .computeworkers import ComputeThreads
from .inbox import Inbox
from .processes import workerContext
from .readworkers import ReadWorkers
from .remote.proxy import RemoteWorkers, makeRunDirectory
from .slots import MAIN_THREAD, SlotBoard, SlotSignals
from .stages import (
    ReaderSource,
    SlotSink,
    SlotSource,
    UserFunction,
    WorkerLoop,
    WorkerState,
    WriterSink,
    readSlot,
)
from .watch import WorkerWatch, blameForTimeout
from .workerpool import ComputeProcesses
from .writer import ApplierProgress, OrderedWriter


def runBlocks(job, outputWriter, controls, timings, record=None) -> list:
    """Process every block of ``job``; return the otherArgs copies (RIOS's otherArgsList).
    ``record`` (a :class:`~..runrecord.RunRecord`) hears of a remote run's directory."""
    with _collectorSkipsOlderObjects():
        return _runInStyle(job, outputWriter, controls, timings, record)


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


def _runInStyle(job, outputWriter, controls, timings, record) -> list:
    style = job.concurrency
    progress = ApplierProgress(controls, len(job.blockList))
    kind = style.computeWorkerKind
    if kind == CW_NONE and style.numReadWorkers == 0:
        runSequentially(job, outputWriter, progress, timings)
        return [job.otherArgs]
    if kind in (CW_NONE, CW_THREADS, CW_PROCESSES):
        return PipelinedRun(job, outputWriter, progress, timings).run()
    rundir = makeRunDirectory(controls.tempdir)
    if record is not None:
        record.noteFolder(rundir)
    try:
        launcher = launchers.makeLauncher(kind, style.computeWorkerExtraParams, rundir,
                                          controls.jobName or "")
        launcher.checkAvailable()
        run = PipelinedRun(job, outputWriter, progress, timings, launcher, rundir)
    except BaseException:
        shutil.rmtree(rundir, ignore_errors=True)
        raise
    return run.run()


def runSequentially(job, outputWriter, progress, timings) -> None:
    """The route with no workers: read, compute and write each block in turn."""
    reader = BlockReader(job.specs, job.overlap)
    state = WorkerState(0, job.otherArgs, timings)
    progress.update(0)
    try:
        WorkerLoop(ReaderSource(job, reader, timings), UserFunction(job, None, None, state),
                   WriterSink(job, outputWriter, progress, state)).run()
    finally:
        reader.close()


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


# How long the main process waits on the pipes at a time while an announced message is on
# its way (blocks computed meanwhile are written between these waits).
MESSAGE_POLL_SECONDS = 0.001


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


def signalsAndProcesses(job, pool, nworkers: int, reads: bool, mpContext):
    """The run's signals, with its compute processes when it has some (None otherwise):
    the processes of a leased worker set and the signals they were started with (see
    ``workerpool``)."""
    style = job.concurrency
    if style.computeWorkerKind != CW_PROCESSES:
        return None, SlotSignals.create(pool.desc.nslots, mpContext)
    workers = ComputeProcesses(job, pool, nworkers, reads, mpContext,
                               style.workerStartMethod, style.reuseComputeWorkers)
    return workers, workers.signals


def stopWorkers(workers, clean: bool) -> None:
    """Stop a run's workers; persistent processes wait for the next run if it ended
    ``clean``."""
    if isinstance(workers, ComputeProcesses):
        workers.stop(clean=clean)
    elif workers is not None:
        workers.stop()


class PipelinedRun:
    """A run with read threads and/or compute workers sharing a slab pool."""

    def __init__(self, job, outputWriter, progress, timings, launcher=None, rundir=None):
        style = job.concurrency
        self.job, self.style, self.timings = job, style, timings
        kind = style.computeWorkerKind
        remote = launcher is not None
        reads = (kind == CW_PROCESSES or remote) and style.resolvedComputeWorkersRead()
        nworkers = 0 if kind == CW_NONE else style.numComputeWorkers
        if style.singleBlockComputeWorkers:
            nworkers = len(job.blockList)
        nreaders = 0 if reads else style.numReadWorkers
        if remote and not reads:
            nreaders = max(1, nreaders)
        nslots = planSlots(job, min(nworkers, len(job.blockList)), nreaders)
        mpContext = None
        if kind == CW_PROCESSES:
            mpContext = workerContext(style.workerStartMethod, job.userFunction, job.otherArgs)
        desc = slabpool.PoolDescription(slabpool.newRunPrefix(), nslots, len(job.blockList),
                                        job.inputFields(), None)
        self.pool = slabpool.SlabPool(desc, shared=mpContext is not None, create=True)
        self.workers = None
        self.endedCleanly = False
        try:
            self._setUp(nworkers, nreaders, reads, mpContext, launcher, rundir, progress,
                        outputWriter)
        except BaseException:
            if isinstance(self.workers, ComputeProcesses):
                stopWorkers(self.workers, clean=False)
            self.pool.release()
            raise

    def _setUp(self, nworkers, nreaders, reads, mpContext, launcher, rundir, progress,
               outputWriter):
        """The run's signals, board, readers, workers, writer and inbox."""
        job, kind, nslots = self.job, self.style.computeWorkerKind, self.pool.desc.nslots
        self.workers, self.signals = signalsAndProcesses(job, self.pool, nworkers, reads,
                                                         mpContext)
        self.board = SlotBoard(self.pool.header, nslots, len(job.blockList), self.signals)
        self.readers = ReadWorkers(job, self.pool, self.board, nreaders)
        if launcher is not None:
            self.workers = RemoteWorkers(job, self.pool, self.board, nworkers, reads,
                                         launcher, rundir)
        elif kind == CW_THREADS:
            self.workers = ComputeThreads(job, self.pool, self.board, nworkers, job.otherArgs)
        # CW_THREADS with no read workers: the main thread reads, between writes
        self.mainReader = None
        if self.workers is not None and not reads and nreaders == 0:
            self.mainReader = BlockReader(job.specs, job.overlap)
        self.writer = OrderedWriter(job, self.pool, self.board, outputWriter, progress)
        self.inbox = Inbox(job, self.board, self.writer, self.timings, self.readers.conns,
                           [] if self.workers is None else self.workers.conns,
                           onFailure=lambda record: blameForTimeout(job, self.board, record))

    def run(self) -> list:
        try:
            with _sigtermRaises():
                if self.workers is not None:
                    with self.timings.interval("startcomputeworkers"):
                        self.workers.start()
                self.readers.start()
                if self.workers is None:
                    return self.computeInMain()
                otherArgsList = self.writeFromWorkers()
                self.endedCleanly = True
                return otherArgsList
        finally:
            self._shutdown()

    def computeInMain(self) -> list:
        """CW_NONE with read threads: the main thread computes the blocks and writes them."""
        state = WorkerState(0, self.job.otherArgs, self.timings)

        def layoutsFromFirstBlock(blockIndex, arrays):
            return self.writer.setLayouts(blockwriter.layoutsFromArrays(arrays))

        source = SlotSource(self.job, self.pool, self.board, MAIN_THREAD, self.timings)
        sink = WriteAsComputed(SlotSink(self.job, self.pool, self.board, state,
                                        layoutsFromFirstBlock), self.writer, self.inbox)
        try:
            WorkerLoop(source, UserFunction(self.job, self.pool, self.board, state), sink).run()
        except slots.StopRequested:
            self.inbox.readAll()  # a reader's failure stopped the run: raise that
            raise
        return [self.job.otherArgs]

    def writeFromWorkers(self) -> list:
        """Write blocks as the doorbell announces them; read the pipes only when told to.

        Pipes, deaths and timeouts are also checked every POLL_SECONDS, so a worker that
        dies without a word is noticed within a fraction of a second.
        """
        nblocks = len(self.job.blockList)
        watch = WorkerWatch(self.job, self.pool, self.board, self.workers, self.inbox,
                            self.timings)
        wrote = False
        while not self.inbox.allFinished(len(self.workers.conns)) or \
                self.writer.written < nblocks:
            if self.mainReader is not None:
                self._readFreeSlots()
            self._awaitWork(wrote)
            wrote = self.writer.writeComputed() > 0
            if wrote:
                watch.progressed()
            watch.check(self.inbox.expecting())
        return self.inbox.otherArgsList

    def _awaitWork(self, wrote: bool) -> None:
        """Wait for the doorbell (or, while a message is on its way, on the pipes)."""
        if self.inbox.expecting():
            self.inbox.waitForMessages(MESSAGE_POLL_SECONDS)
            self.board.awaitDoorbell(0)
        else:
            # after a batch there may be more to write at once; writeComputed asks to be
            # woken only when it found nothing
            self.board.awaitDoorbell(0 if wrote else slots.POLL_SECONDS)

    def _readFreeSlots(self):
        """Fill every free slot with the next block (when no read workers do)."""
        while (claimed := self.board.tryClaimFree(MAIN_THREAD)) is not None:
            slot, blockIndex = claimed
            with self.timings.interval("reading"):
                readSlot(self.mainReader, self.job, self.pool, slot,
                         self.job.blockList[blockIndex])
            self.board.markReady(slot)

    def _shutdown(self):
        self.board.requestStop()
        try:
            self.writer.stop()
            if self.mainReader is not None:
                self.mainReader.close()
            self.readers.join()
            if self.readers.alive():
                self.endedCleanly = False  # they may still touch the signals
            stopWorkers(self.workers, self.endedCleanly)
            for timers in self.readers.timers:
                self.timings.merge(timers)
        finally:
            self.inbox.close()
            self.pool.release()


class WriteAsComputed:
    """The main thread's sink when it computes: each block into its slot, then every block
    that can be written is, and what the read threads said is heard."""

    def __init__(self, sink: SlotSink, writer: OrderedWriter, inbox: Inbox):
        self.sink = sink
        self.writer = writer
        self.inbox = inbox

    def store(self, block, arrays) -> None:
        self.sink.store(block, arrays)
        self.writer.writeComputed()
        self.inbox.readAll()
