"""Compute workers: threads or processes that run the user function on slots.

A worker takes the next input-complete slot (or, when workers read, claims a block and
reads it itself), calls the user function on zero-copy views of the slot, copies the
outputs into the slot's output views (the one copy on the way to the writer), notes in
the header which slot holds the block and, when the waiting writer now has a batch to
write, rings its doorbell. Nothing crosses a pipe per block; only these few messages do,
each announced by a ring of the doorbell:

    worker -> main   ("layout", id, block, layouts)  a worker's first block: output bands
                                               and dtypes (the main process takes block 0's)
                     ("error", record)         a WorkerErrorRecord with the traceback
                     ("warning", category, text)  a warning, shown once by the main process
                     ("finished", id, timers, otherArgs bytes)
    main -> worker   ("outputs", fields, layouts)  the output slab exists; attach to it
"""
from __future__ import annotations

import contextlib
import copy
import ctypes
import gc
import os
import signal
import sys
import threading
import time
import warnings
from multiprocessing import connection, parent_process

import cloudpickle
from osgeo import gdal

from .. import imagewriter
from ..imagereader import BlockReader
from ..structures import Timers, WorkerErrorRecord
from . import signals as sig
from . import slabpool
from .readworkers import readSlot

# Environment given to compute processes so that each uses one core for its own work.
PINNED_THREADS_ENV = {
    "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1", "GDAL_NUM_THREADS": "1", "VRT_NUM_THREADS": "1",
}


class WorkerState:
    """One worker's private things: its id, pipe, timers, otherArgs and output layout."""

    def __init__(self, workerID, conn, otherArgs, reads, peerAlive=None, agreeLayouts=None):
        self.workerID = workerID
        self.conn = conn
        self.otherArgs = otherArgs
        self.reads = reads
        self.peerAlive = peerAlive
        self.timings = Timers(worker=f"compute {workerID}")
        self.layouts = None
        # how the first block's outputs fix the layout: by asking the main process, or
        # (when the main thread computes) by making the output slab directly
        self.agreeLayouts = agreeLayouts


def _awaitOutputs(job, pool, signals, state, blockIndex, arrays):
    """A worker's first block: agree the output layout with the main process, attach the slab.

    Returns the layouts the main process fixed: those of the run's first block, as RIOS
    creates its outputs from the first block written, whichever worker computed it.
    """
    if not state.conn.poll(0):
        tellMain(pool, signals, state, ("layout", state.workerID, blockIndex,
                                        imagewriter.layoutsFromArrays(arrays)))
    timeout = job.concurrency.computeBufferInsertTimeout
    start = time.monotonic()
    while not state.conn.poll(sig.POLL_SECONDS):
        if signals.stop.is_set():
            raise sig.StopRequested()
        if state.peerAlive is not None and not state.peerAlive():
            raise sig.PeerGone()
        if timeout is not None and time.monotonic() - start > timeout:
            raise sig.timeoutError("the output buffers", "computeBufferInsertTimeout", timeout)
    _, fields, layouts = state.conn.recv()
    pool.attachOutputs(fields)
    return layouts


def tellMain(pool, signals, state, message):
    """Send the main process a message, waking it first so that it reads while we write."""
    sig.noteMessage(pool, signals)
    state.conn.send(message)


def _nextSlot(job, pool, signals, state, reader):
    """(slot, block index, the input views when this worker read them), or None at the end."""
    worker = state.workerID + 1
    if state.reads:
        with state.timings.interval("wait_free_slot"):
            claimed = sig.claimBlock(pool, signals, worker,
                                     job.concurrency.readBufferInsertTimeout, state.peerAlive)
        if claimed is None:
            return None
        slot, blockIndex = claimed
        with state.timings.interval("reading"):
            views = readSlot(reader, job, pool, slot, job.blockList[blockIndex])
        return slot, blockIndex, views  # the slot stays FILLING, with this worker's number
    with state.timings.interval("wait_input"):
        claimed = sig.takeReady(pool, signals, worker, job.concurrency.readBufferPopTimeout,
                                state.peerAlive)
    return None if claimed is None else (*claimed, None)


def computeSlot(job, pool, signals, state, slot, blockIndex, inputs=None):
    """Run the user function on one slot and leave its outputs in the slot.

    ``inputs`` are the slot's input views if the caller has them already.
    """
    blockDefn = job.blockList[blockIndex]
    if inputs is None:
        inputs = pool.inputViews(slot, job.inputShapes(blockDefn))
    pool.noteUserFunctionStart(slot)
    arrays = job.computeBlock(blockDefn, inputs, state.otherArgs, state.timings, state.layouts)
    storeOutputs(job, pool, signals, state, slot, blockIndex, arrays)


def storeOutputs(job, pool, signals, state, slot, blockIndex, arrays):
    """Copy a block's outputs into its slot (fixing the layout on the first block)."""
    blockDefn = job.blockList[blockIndex]
    if state.layouts is None:
        if state.agreeLayouts is not None:
            state.layouts = state.agreeLayouts(arrays)
        else:
            state.layouts = _awaitOutputs(job, pool, signals, state, blockIndex, arrays)
        arrays = imagewriter.conformToLayouts(arrays, state.layouts)
    with state.timings.interval("copy_output"):
        views = pool.outputViews(slot, job.outputShapes(blockDefn, state.layouts))
        for key, arr in arrays.items():
            if arr is not views[key]:  # remote outputs may have been received in place
                views[key][...] = arr
    sig.markComputed(pool, signals, slot, blockIndex)


def computeLoop(job, pool, signals, state):
    """Process slots until no blocks are left; report errors and results on the pipe."""
    reader = BlockReader(job.specs, job.overlap) if state.reads else None
    blockIndex = None
    try:
        while True:
            claimed = _nextSlot(job, pool, signals, state, reader)
            if claimed is None:
                break
            slot, blockIndex, inputs = claimed
            computeSlot(job, pool, signals, state, slot, blockIndex, inputs)
            blockIndex = None
    except (sig.StopRequested, sig.PeerGone):
        return
    except Exception as e:
        if signals.stop.is_set():
            return  # the run has ended without this worker (its pool may be gone)
        blockDefn = None if blockIndex is None else job.blockList[blockIndex]
        tellMain(pool, signals, state, ("error", WorkerErrorRecord(
            e, "compute", state.workerID, blockDefn=blockDefn)))
        return
    finally:
        if reader is not None:
            reader.close()
    tellMain(pool, signals, state, ("finished", state.workerID, state.timings,
                                    cloudpickle.dumps(state.otherArgs)))


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


def sizeReadCache(job):
    """Give GDAL the block cache that reading this job's blocks needs.

    GDAL's own limit (GDAL_CACHEMAX, or 5 % of RAM in every process) still caps it; that
    much would mostly hold blocks never read again, in fresh memory.
    """
    gdal.SetCacheMax(min(gdal.GetCacheMax(), job.readCacheBytes()))


def processMain(workerID, jobBytes, poolDesc, signals, conn, reads):
    """Entry point of a compute process (started with spawn or forkserver)."""
    _tuneWorkerProcess()
    parent = parent_process()
    pool = None
    try:
        job = cloudpickle.loads(jobBytes)
        job.loggingstream = sys.stdout
        sizeReadCache(job)
        pool = slabpool.SlabPool(poolDesc, shared=True, create=False)
        state = WorkerState(workerID, conn, job.otherArgs, reads,
                            peerAlive=parent.is_alive if parent is not None else None)
        gc.freeze()  # later collections skip the modules and the job (see runner.runBlocks)
        warnings.showwarning = _warningsToMain(pool, signals, state)
        computeLoop(job, pool, signals, state)
    except Exception as e:
        conn.send(("error", WorkerErrorRecord(e, "compute", workerID)))
    finally:
        if pool is not None:
            pool.release()
        conn.close()


def _warningsToMain(pool, signals, state):
    """A ``warnings.showwarning`` that hands warnings to the main process, which shows each
    once for the run instead of once per worker."""
    def showwarning(message, category, filename, lineno, file=None, line=None):
        if not (category.__module__ == "builtins"
                or category.__module__.startswith("sharedapplier")):
            category = UserWarning  # the user's own classes may not unpickle in the main
        tellMain(pool, signals, state, ("warning", category, str(message)))
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

    def __init__(self, job, pool, signals, count, reads, mpContext):
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


class ComputeThreads:
    """Compute threads in the main process (numpy code that releases the GIL scales)."""

    def __init__(self, job, pool, signals, count, otherArgs):
        self.conns = []
        self.threads = []
        for i in range(count):
            mainEnd, workerEnd = connection.Pipe(duplex=True)
            state = WorkerState(i, workerEnd, copy.deepcopy(otherArgs), reads=False)
            self.conns.append(mainEnd)
            self.threads.append(threading.Thread(
                target=computeLoop, name=f"sharedapplier-compute-{i}", daemon=True,
                args=(job, pool, signals, state)))

    def start(self):
        for thread in self.threads:
            thread.start()

    def waitingForStart(self) -> bool:
        return False

    def describeDeath(self, workerID):
        return f"compute thread {workerID} ended unexpectedly"

    def deadWorkers(self, finished):
        return [i for i, t in enumerate(self.threads) if i not in finished and not t.is_alive()]

    def stop(self, timeout=3.0):
        for thread in self.threads:
            thread.join(timeout)
