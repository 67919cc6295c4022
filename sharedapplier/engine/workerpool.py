"""Compute processes that stay: started once per program, lent to one run at a time.

A :class:`WorkerSet` is a group of compute processes and the one :class:`~.slots.
SlotSignals` they were started with (semaphores can only be handed to a process as it
starts). A run leases a whole set (:func:`leaseWorkers`), which starts the processes it
lacks, all at once from a few threads, and tells each of the ones it uses its run through
its pipe (``RunForWorker``: the pickled job, whose user function and otherArgs each worker
unpickles afresh, and the run's slab names). A set whose run ended cleanly, every worker
used having sent ``WorkerFinished``, goes back to the idle sets; its signals are reset
(:meth:`SlotSignals.reset`) when it is next leased, while no worker of it can be waiting
on them. Any other end (a worker failed or died, a timeout, an interrupt, an error in the
main process) tears the set down: its processes are told to go, and killed if they do not
within STOP_SECONDS. The next run then starts fresh ones.

An idle set never outlives the program: its processes are daemons, an ``atexit`` hook
stops them, and each exits by itself when its main process is gone (it checks every
IDLE_POLL_SECONDS while it waits for a run).
"""
from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time
from multiprocessing import connection

import cloudpickle

from . import messages as msg
from .processes import MainModuleHidden, workerProcessMain
from .slots import SlotSignals

# Threads that start a set's new processes together: each start waits for the forkserver
# to fork and answer, and several starts in flight keep it busy (on 2 cores, 8 new
# processes took 55 ms from 8 threads against 60-150 ms from one; 32 took 180 against 190-215).
START_THREADS = 8

# How long processes told to go (their pipe closed) may take before they are killed.
STOP_SECONDS = 3.0


class WorkerSet:
    """Compute processes sharing one SlotSignals, used by one run at a time.

    :attr:`procs` and :attr:`conns` (the main process's ends of their pipes) are in
    worker-number order; a run of ``count`` workers uses the first ``count``.
    """

    def __init__(self, mpContext, method: str):
        self.mpContext = mpContext
        self.method = method
        self.signals = SlotSignals.create(0, mpContext)
        self.procs: list = []
        self.conns: list = []
        self.pending: list = []  # (process, the worker's pipe end) not started yet
        self.run: dict = {}  # the fields of the RunForWorker of the run it serves
        self.ownerPid = os.getpid()

    def __len__(self) -> int:
        return len(self.procs)

    def prepare(self, nslots: int) -> bool:
        """Reset the signals for a run of ``nslots`` slots and forget processes that died
        while idle; whether the set can serve (not when a signal is held)."""
        if not self.signals.reset(nslots):
            return False
        alive = [i for i, proc in enumerate(self.procs) if proc.is_alive()]
        if len(alive) < len(self.procs):
            for i in set(range(len(self.procs))) - set(alive):
                self.procs[i].join(0)
                self.conns[i].close()
            self.procs = [self.procs[i] for i in alive]
            self.conns = [self.conns[i] for i in alive]
        return True

    def reserve(self, count: int) -> None:
        """Make the processes (and pipes) that ``count`` workers lack, not started yet."""
        for i in range(len(self.procs), count):
            proc, mainEnd, workerEnd = self._newProcess(i)
            self.procs.append(proc)
            self.conns.append(mainEnd)
            self.pending.append((proc, workerEnd))

    def _newProcess(self, i):
        mainEnd, workerEnd = self.mpContext.Pipe(duplex=True)
        proc = self.mpContext.Process(
            target=workerProcessMain, name=f"sharedapplier-compute-{i}", daemon=True,
            args=(self.signals, workerEnd))
        return proc, mainEnd, workerEnd

    def replace(self, i: int) -> None:
        """Worker ``i`` died during a run: start another in its place, on the same signals,
        and give it the run."""
        self.procs[i].join(0)
        self.conns[i].close()
        proc, mainEnd, workerEnd = self._newProcess(i)
        with MainModuleHidden():
            proc.start()
        workerEnd.close()
        self.procs[i], self.conns[i] = proc, mainEnd
        mainEnd.send(msg.RunForWorker(workerID=i, **self.run))

    def startPending(self) -> None:
        """Start every reserved process, from up to START_THREADS threads at once."""
        pending, self.pending = self.pending, []
        if not pending:
            return
        errors: list[BaseException] = []

        def startEvery(chunk):
            try:
                for proc, workerEnd in chunk:
                    proc.start()
                    workerEnd.close()
            except BaseException as e:  # raised below, in the caller's thread
                errors.append(e)

        nthreads = min(START_THREADS, len(pending))
        chunks = [pending[i::nthreads] for i in range(nthreads)]
        with MainModuleHidden():
            threads = [threading.Thread(target=startEvery, args=(chunk,), daemon=True)
                       for chunk in chunks[1:]]
            for thread in threads:
                thread.start()
            startEvery(chunks[0])
            for thread in threads:
                thread.join()
        if errors:
            raise errors[0]

    def assign(self, count: int, job, poolDesc, reads: bool) -> None:
        """Tell the first ``count`` workers their run (each unpickles its own job copy)."""
        self.run = dict(jobBytes=cloudpickle.dumps(job), poolDesc=poolDesc, reads=reads,
                        cwd=os.getcwd(), mainPath=tuple(sys.path))
        for i, conn in enumerate(self.conns[:count]):
            conn.send(msg.RunForWorker(workerID=i, **self.run))

    def close(self, timeout: float = STOP_SECONDS) -> None:
        """Tell every process to go (its pipe closes), kill those still there after
        ``timeout``, and join them all."""
        for conn in self.conns:
            conn.close()
        started = [proc for proc in self.procs if proc.pid is not None]
        deadline = time.monotonic() + timeout
        for proc in started:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in started:
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)
        for _, workerEnd in self.pending:
            workerEnd.close()
        self.procs, self.conns, self.pending = [], [], []
        _live.discard(self)


# The idle sets, one per start method, and every set not closed yet (for the exit hook).
_lock = threading.Lock()
_idle: dict[str, WorkerSet] = {}
_live: set[WorkerSet] = set()
_hooked = False


def leaseWorkers(mpContext, method: str, count: int, nslots: int,
                 reuse: bool = True) -> WorkerSet:
    """A worker set for one run of ``count`` workers and ``nslots`` slots: the idle one
    (when ``reuse``) or a new one; the processes it lacks are reserved, not started."""
    global _hooked
    workers = None
    with _lock:
        if not _hooked:
            atexit.register(stopAllWorkers)
            _hooked = True
        if reuse:
            workers = _idle.pop(method, None)
    if workers is not None and (workers.ownerPid != os.getpid()
                                or not workers.prepare(nslots)):
        _discard(workers)
        workers = None
    if workers is None:
        workers = WorkerSet(mpContext, method)
        workers.prepare(nslots)
        with _lock:
            _live.add(workers)
    workers.reserve(count)
    return workers


def returnWorkers(workers: WorkerSet, clean: bool, reuse: bool = True) -> None:
    """A run is over: a set whose run ended ``clean`` waits for the next run (the larger
    one stays when another run has returned a set meanwhile); any other is closed."""
    if not (clean and reuse) or workers.pending:
        workers.close()
        return
    with _lock:
        other = _idle.get(workers.method)
        keep, drop = workers, other
        if other is not None and len(other) > len(workers):
            keep, drop = other, workers
        _idle[workers.method] = keep
    if drop is not None:
        drop.close()


def _discard(workers: WorkerSet) -> None:
    if workers.ownerPid == os.getpid():
        workers.close()
    else:  # a forked copy of another process's set: its processes are not ours
        _live.discard(workers)


def idleWorkerPids(method: str = "forkserver") -> list[int]:
    """The pids of the idle set of ``method`` (for tests and diagnostics)."""
    with _lock:
        workers = _idle.get(method)
        return [] if workers is None else [proc.pid for proc in workers.procs]


def stopAllWorkers() -> None:
    """Close every worker set of this process (the exit hook; also for tests)."""
    with _lock:
        sets = list(_live) + list(_idle.values())
        _idle.clear()
        _live.clear()
    for workers in set(sets):
        if workers.ownerPid == os.getpid():
            workers.close(timeout=1.0)


def describeDeath(proc, workerID: int) -> str:
    """How a compute process ended, for the error that reports it."""
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


class ComputeProcesses:
    """The compute processes of one run: the first ``count`` of a leased worker set."""

    def __init__(self, job, pool, count: int, reads: bool, mpContext, method: str,
                 reuse: bool = True):
        self.job, self.pool, self.count, self.reads = job, pool, count, reads
        self.reuse = reuse
        self.workerSet = leaseWorkers(mpContext, method, count, pool.desc.nslots, reuse)
        self.signals = self.workerSet.signals
        self.conns = self.workerSet.conns[:count]
        self.started: list = []

    def waitingForStart(self) -> bool:
        return False

    def start(self):
        self.workerSet.startPending()
        self.started = self.workerSet.procs[:self.count]
        self.workerSet.assign(self.count, self.job, self.pool.desc, self.reads)

    def describeDeath(self, workerID):
        return describeDeath(self.started[workerID], workerID)

    def canReplace(self) -> bool:
        """Whether a worker that dies can be replaced and its blocks computed again: always
        (:mod:`.recovery` finds its blocks in the slots it held)."""
        return True

    def replace(self, workerID):
        """Start another worker in place of ``workerID``, which died; its new pipe."""
        self.workerSet.replace(workerID)
        self.started[workerID] = self.workerSet.procs[workerID]
        self.conns[workerID] = self.workerSet.conns[workerID]
        return self.conns[workerID]

    def deadWorkers(self, finished):
        """The workers not ``finished`` that have died: one wait on all their sentinels
        (``is_alive`` on each would make a selector per process, every check)."""
        running = {p.sentinel: i for i, p in enumerate(self.started) if i not in finished}
        ended = connection.wait(list(running), timeout=0) if running else []
        return sorted(running[s] for s in ended if not self.started[running[s]].is_alive())

    def stop(self, clean: bool = False):
        """Give the set back: to the idle sets when the run ended ``clean``."""
        returnWorkers(self.workerSet, clean and len(self.started) == self.count, self.reuse)
