"""Compute processes: how they are started, set up, and watched.

Processes start from a forkserver preloaded with what the user function imports (or with
spawn), without re-running the user's script, at a lower priority than the main process,
each pinned to one thread of numeric work. Each attaches to the run's slab pool by name,
builds its own :class:`~.slots.SlotBoard` over the shared header and semaphores, and runs
:func:`~.computeworkers.computeWorkerMain`. A process serves one run after another while
each ends cleanly (:func:`workerProcessMain`); :mod:`.workerpool` keeps the idle ones.
"""
from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing
import os
import pickletools
import signal
import sys
import threading
import warnings
from multiprocessing import parent_process

import cloudpickle
from osgeo import gdal

from ..structures import WorkerErrorRecord
from . import messages as msg
from . import slabpool
from .computeworkers import PipeToMain, computeWorkerMain
from .slots import SlotBoard, SlotSignals
from .stages import WorkerState

# Environment given to compute processes so that each uses one core for its own work.
PINNED_THREADS_ENV = {
    "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1", "GDAL_NUM_THREADS": "1", "VRT_NUM_THREADS": "1",
}


# Compute processes yield the CPU to the main process, whose writer every worker waits on:
# with more processes than cores a starved writer would stall them all. It costs them
# nothing when the writer is idle, which is most of the time unless the run is I/O bound.
WORKER_NICENESS = 10


def _tuneWorkerProcess():
    """Settings of a compute process: each block is worked on one core.

    The process runs at a lower priority than the main process (``WORKER_NICENESS``) and,
    on Linux, under SCHED_BATCH: a worker woken by a freed slot then never preempts the
    writer, and CPU-bound workers are interrupted less (the GIL-holding benchmark ran 3 %
    faster, the copy 1 %).

    glibc is told to keep freed memory instead of returning it to the system after every
    block, which otherwise makes each numpy temporary fault its pages in again.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)
    if hasattr(os, "SCHED_BATCH"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    gdal.UseExceptions()
    for key, value in PINNED_THREADS_ENV.items():
        gdal.SetConfigOption(key, value)
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    libc.mallopt(M_MMAP_THRESHOLD, 32 * 2**20)
    libc.mallopt(M_TRIM_THRESHOLD, 256 * 2**20)


# How long an idle compute process waits on its pipe before it checks that the main
# process still lives.
IDLE_POLL_SECONDS = 0.2
# An idle compute process gives freed memory back after this long without a new run (not
# at once: that would slow runs that follow each other).
IDLE_TRIM_SECONDS = 0.1


def workerProcessMain(signals: SlotSignals, conn) -> None:
    """Entry point of a persistent compute process (started with spawn or forkserver).

    It serves one run after another (``RunForWorker`` on its pipe), as long as each ends
    cleanly, and exits when the main process closes the pipe or is gone, or when a run
    failed or was stopped (the main process then tears its worker set down anyway).
    """
    _tuneWorkerProcess()
    gc.freeze()  # later collections skip the modules (see runner.runBlocks)
    parent = parent_process()
    parentAlive = parent.is_alive if parent is not None else (lambda: True)
    try:
        while (run := awaitRun(conn, parentAlive)) is not None:
            if not serveRun(run, signals, conn, parentAlive):
                break
    finally:
        conn.close()


def returnFreedMemory() -> None:
    """Give the memory freed during a run back to the system while the worker idles.

    glibc keeps up to 256 MiB of it in a worker (see ``_tuneWorkerProcess``), which a run
    wants but an idle worker, of perhaps dozens, should not hold.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def awaitRun(conn, parentAlive) -> msg.RunForWorker | None:
    """The next run to serve; None once the pipe is closed or the main process is gone.

    What else is waiting is the last run's and is dropped: an ``OutputsReady`` that a
    worker which computed no block never read. Memory freed by the last run goes back to
    the system once the worker has idled IDLE_TRIM_SECONDS.
    """
    trimmed = False
    while True:
        try:
            if not conn.poll(IDLE_TRIM_SECONDS if not trimmed else IDLE_POLL_SECONDS):
                if not trimmed:
                    returnFreedMemory()
                    trimmed = True
                elif not parentAlive():
                    return None
                continue
            message = conn.recv()
        except (EOFError, OSError):
            return None
        if isinstance(message, msg.RunForWorker):
            return message


def serveRun(run: msg.RunForWorker, signals: SlotSignals, conn, parentAlive) -> bool:
    """Compute blocks of one run; whether the worker finished it (sent WorkerFinished)."""
    pool = None
    showwarning = warnings.showwarning
    try:
        _followMain(run)
        modules = len(sys.modules)
        job = cloudpickle.loads(run.jobBytes)  # this worker's own otherArgs copy
        if len(sys.modules) > modules:
            gc.freeze()  # what the user function imported, as the modules above
        job.loggingstream = sys.stdout
        sizeReadCache(job)
        desc = run.poolDesc
        pool = slabpool.SlabPool(desc, shared=True, create=False)
        board = SlotBoard(pool.header, desc.nslots, desc.nblocks, signals)
        pipe = FlushingPipe(conn, board, parentAlive)
        warnings.showwarning = _warningsToMain(pipe)
        return computeWorkerMain(job, pool, board, WorkerState(run.workerID, job.otherArgs),
                                 pipe, run.reads)
    except Exception as e:
        flushOutput()
        conn.send(msg.WorkerFailed(WorkerErrorRecord(e, "compute", run.workerID)))
        return False
    finally:
        warnings.showwarning = showwarning
        if pool is not None:
            pool.release()


def _followMain(run: msg.RunForWorker) -> None:
    """Work in the main process's folder, with its import path, as they are now (relative
    file names and user modules must resolve as they would in the main process)."""
    with contextlib.suppress(OSError):
        os.chdir(run.cwd)
    for entry in run.mainPath:
        if entry and entry not in sys.path:
            sys.path.append(entry)


def flushOutput() -> None:
    """Show what the user function printed before the run ends (the process lives on)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


class FlushingPipe(PipeToMain):
    """A persistent worker's pipe: what it printed is flushed before its last message."""

    def send(self, message) -> None:
        if isinstance(message, (msg.WorkerFinished, msg.WorkerFailed)):
            flushOutput()
        super().send(message)


# GDAL's block cache limit before any run lowered it (None: not looked at yet)
_gdalCacheMax: int | None = None


def sizeReadCache(job):
    """Give GDAL the block cache that reading this job's blocks needs.

    GDAL's own limit (GDAL_CACHEMAX, or 5 % of RAM in every process) still caps it; that
    much would mostly hold blocks never read again, in fresh memory. The limit is the one
    the process started with, so that a small run does not shrink a later one's cache.
    """
    global _gdalCacheMax
    if _gdalCacheMax is None:
        _gdalCacheMax = gdal.GetCacheMax()
    gdal.SetCacheMax(min(_gdalCacheMax, job.readCacheBytes()))


def _warningsToMain(pipe: PipeToMain):
    """A ``warnings.showwarning`` that hands warnings to the main process, which shows each
    once for the run instead of once per worker."""
    def showwarning(message, category, filename, lineno, file=None, line=None):
        if not (category.__module__ == "builtins"
                or category.__module__.startswith("sharedapplier")):
            category = UserWarning  # the user's own classes may not unpickle in the main
        pipe.send(msg.WorkerWarning(category, str(message)))
    return showwarning


class MainModuleHidden:
    """Start spawned children without re-running the user's script as ``__mp_main__``.

    RIOS scripts often call ``apply`` at module level with no ``if __name__ == "__main__"``
    guard; spawn would re-import them in every worker and recurse. The user function
    travels by value with cloudpickle, so workers never need the main module. Runs in
    several threads start their processes one after the other, so that each puts back
    what it found.
    """

    _lock = threading.Lock()

    def __enter__(self):
        self._lock.acquire()
        self.main = sys.modules["__main__"]
        self.saved = {k: getattr(self.main, k) for k in ("__file__", "__spec__")
                      if hasattr(self.main, k)}
        self.main.__spec__ = None
        if hasattr(self.main, "__file__"):
            del self.main.__file__
        self.savedEnv = {k: os.environ.get(k) for k in PINNED_THREADS_ENV}
        os.environ.update(PINNED_THREADS_ENV)

    def __exit__(self, *exc):
        try:
            for key, value in self.saved.items():
                setattr(self.main, key, value)
            for key, value in self.savedEnv.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        finally:
            self._lock.release()


# The worker's code, and what unpickling a ComputeJob imports (5 ms in every worker if not).
BASE_PRELOAD = frozenset({"sharedapplier.engine.processes", "sharedapplier.engine.job"})
_NEVER = frozenset({"__main__", "__mp_main__", "builtins"})

# what the forkserver this module started has imported (None: it has started none)
_preloaded: frozenset | None = None


def modulesToPreload(userFunction, otherArgs) -> frozenset:
    """Modules that unpickling the user function and otherArgs imports, as imported here."""
    data = cloudpickle.dumps((userFunction, otherArgs))
    names = set()
    for _, arg, _ in pickletools.genops(data):
        if isinstance(arg, str) and arg not in _NEVER:
            module = sys.modules.get(arg)
            if module is not None and getattr(module, "__spec__", None) is not None:
                names.add(arg)
    return frozenset(names)


def workerContext(method: str, userFunction=None, otherArgs=None):
    """The multiprocessing context to start compute processes with.

    The forkserver starts once per program, preloaded with what the first run's user
    function imports; Python offers no public way to restart it, so a later run's function
    that needs other modules imports them in each of its workers.
    """
    global _preloaded
    ctx = multiprocessing.get_context(method)
    if method == "forkserver" and _preloaded is None:
        _preloaded = BASE_PRELOAD | modulesToPreload(userFunction, otherArgs)
        ctx.set_forkserver_preload(sorted(_preloaded))
    return ctx
