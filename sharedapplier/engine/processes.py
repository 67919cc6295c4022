"""Compute processes: how they are started, set up, and watched.

Processes start from a forkserver preloaded with what the user function imports (or with
spawn), without re-running the user's script, at a lower priority than the main process,
each pinned to one thread of numeric work. Each attaches to the run's slab pool by name,
builds its own :class:`~.slots.SlotBoard` over the shared header and semaphores, and runs
:func:`~.computeworkers.computeWorkerMain`.
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
import time
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


def processMain(workerID, jobBytes, poolDesc, signals: SlotSignals, conn, reads):
    """Entry point of a compute process (started with spawn or forkserver)."""
    _tuneWorkerProcess()
    parent = parent_process()
    pool = None
    try:
        job = cloudpickle.loads(jobBytes)
        job.loggingstream = sys.stdout
        sizeReadCache(job)
        pool = slabpool.SlabPool(poolDesc, shared=True, create=False)
        board = SlotBoard(pool.header, poolDesc.nslots, poolDesc.nblocks, signals)
        pipe = PipeToMain(conn, board, parent.is_alive if parent is not None else None)
        gc.freeze()  # later collections skip the modules and the job (see runner.runBlocks)
        warnings.showwarning = _warningsToMain(pipe)
        computeWorkerMain(job, pool, board, WorkerState(workerID, job.otherArgs), pipe, reads)
    except Exception as e:
        conn.send(msg.WorkerFailed(WorkerErrorRecord(e, "compute", workerID)))
    finally:
        if pool is not None:
            pool.release()
        conn.close()


def sizeReadCache(job):
    """Give GDAL the block cache that reading this job's blocks needs.

    GDAL's own limit (GDAL_CACHEMAX, or 5 % of RAM in every process) still caps it; that
    much would mostly hold blocks never read again, in fresh memory.
    """
    gdal.SetCacheMax(min(gdal.GetCacheMax(), job.readCacheBytes()))


def _warningsToMain(pipe: PipeToMain):
    """A ``warnings.showwarning`` that hands warnings to the main process, which shows each
    once for the run instead of once per worker."""
    def showwarning(message, category, filename, lineno, file=None, line=None):
        if not (category.__module__ == "builtins"
                or category.__module__.startswith("sharedapplier")):
            category = UserWarning  # the user's own classes may not unpickle in the main
        pipe.send(msg.WorkerWarning(category, str(message)))
    return showwarning


class _MainModuleHidden:
    """Start spawned children without re-running the user's script as ``__mp_main__``.

    RIOS scripts often call ``apply`` at module level with no ``if __name__ == "__main__"``
    guard; spawn would re-import them in every worker and recurse. The user function
    travels by value with cloudpickle, so workers never need the main module.
    """

    def __enter__(self):
        self.main = sys.modules["__main__"]
        self.saved = {k: getattr(self.main, k) for k in ("__file__", "__spec__")
                      if hasattr(self.main, k)}
        self.main.__spec__ = None
        if hasattr(self.main, "__file__"):
            del self.main.__file__
        self.savedEnv = {k: os.environ.get(k) for k in PINNED_THREADS_ENV}
        os.environ.update(PINNED_THREADS_ENV)

    def __exit__(self, *exc):
        for key, value in self.saved.items():
            setattr(self.main, key, value)
        for key, value in self.savedEnv.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class ComputeProcesses:
    """A pool of compute processes sharing the slab pool."""

    def __init__(self, job, pool, signals: SlotSignals, count: int, reads: bool, mpContext):
        jobBytes = cloudpickle.dumps(job)
        self.conns = []
        self.procs = []
        for i in range(count):
            mainEnd, workerEnd = mpContext.Pipe(duplex=True)
            proc = mpContext.Process(
                target=processMain, name=f"sharedapplier-compute-{i}", daemon=True,
                args=(i, jobBytes, pool.desc, signals, workerEnd, reads))
            self.conns.append(mainEnd)
            self.procs.append((proc, workerEnd))
        self.started = []

    def waitingForStart(self) -> bool:
        return False

    def start(self):
        with _MainModuleHidden():
            for proc, workerEnd in self.procs:
                proc.start()
                workerEnd.close()
                self.started.append(proc)

    def describeDeath(self, workerID):
        proc = self.started[workerID]
        code = proc.exitcode
        if code is not None and code < 0:
            try:
                how = f"was killed by signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
            if code == -signal.SIGKILL:
                how += " (perhaps by the out-of-memory killer)"
        else:
            how = f"exited with code {code}"
        return f"compute worker {workerID} (pid {proc.pid}) {how}"

    def deadWorkers(self, finished):
        return [i for i, p in enumerate(self.started)
                if i not in finished and not p.is_alive()]

    def stop(self, timeout=3.0):
        deadline = time.monotonic() + timeout
        for proc in self.started:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in self.started:
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)
        for conn in self.conns:
            conn.close()



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
