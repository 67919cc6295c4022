"""The data structures of the applier, under RIOS's names.

Filename and block bags, block definitions, timers, worker error records, temporary files,
cached vector rasterisation, the thread-safe block buffer kept for API compatibility, and
:class:`ConcurrencyStyle` with the ``CW_*`` kinds.
"""
import array
import collections
import contextlib
import os
import pickle
import queue
import shutil
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass

import numpy

from sharedapplier import rioserrors
from sharedapplier.cpus import usableCpuCount

try:
    import cloudpickle
except ImportError:  # pragma: no cover - depends on the environment
    cloudpickle = None

CW_NONE = "CW_NONE"
CW_THREADS = "CW_THREADS"
CW_PROCESSES = "CW_PROCESSES"
CW_SUBPROC = "CW_SUBPROC"
CW_PBS = "CW_PBS"
CW_SLURM = "CW_SLURM"
CW_AWSBATCH = "CW_AWSBATCH"
CW_ECS = "CW_ECS"

ALL_KINDS = (CW_NONE, CW_THREADS, CW_PROCESSES, CW_SUBPROC, CW_PBS, CW_SLURM, CW_AWSBATCH,
             CW_ECS)
WORKER_START_METHODS = ("spawn", "forkserver")
_KIND_DEFAULT_READ = {CW_NONE: False, CW_THREADS: False, CW_PROCESSES: True, CW_SUBPROC: False,
                      CW_PBS: True, CW_SLURM: True, CW_AWSBATCH: True, CW_ECS: True}


def _splitKey(key):
    """Turn an index key ("name" or (name, seqNum)) into (name, seqNum); KeyError otherwise."""
    if isinstance(key, str):
        return key, None
    if isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], str):
        return key
    raise KeyError(key)


class FilenameAssociations:
    """Attribute bag of input or output filenames: each value is a filename or a list of them."""

    def __iter__(self):
        return FilenameAssocIterator(self)

    def __len__(self):
        return sum(1 for _ in self)

    def __getitem__(self, key):
        name, seqNum = _splitKey(key)
        if name not in self.__dict__:
            raise KeyError(key)
        entry = self.__dict__[name]
        if not isinstance(entry, (str, list)):
            raise ValueError(f"Filename entry {name!r} must be a str or a list of str, "
                             f"not {type(entry).__name__}")
        if seqNum is None:
            return entry
        if isinstance(entry, str):
            raise KeyError(key)
        try:
            return entry[seqNum]
        except (IndexError, TypeError):
            raise KeyError(key) from None

    def __contains__(self, key):
        try:
            self[key]
        except KeyError:
            return False
        return True


class FilenameAssocIterator:
    """Iterator over a FilenameAssociations, yielding (symbolicName, seqNum, filename)."""

    def __init__(self, fnameAssoc: FilenameAssociations):
        self._items = list(self._flatten(vars(fnameAssoc)))
        self._position = 0

    @staticmethod
    def _flatten(entries):
        for name, entry in entries.items():
            if isinstance(entry, str):
                yield name, None, entry
            elif isinstance(entry, list):
                for seqNum, filename in enumerate(entry):
                    yield name, seqNum, filename

    def __iter__(self):
        return self

    def __next__(self):
        if self._position >= len(self._items):
            raise StopIteration
        self._position += 1
        return self._items[self._position - 1]


class BlockAssociations:
    """Attribute bag of the arrays of one block (``inputs`` and ``outputs`` of user functions)."""

    def __init__(self, fnameAssoc=None):
        if fnameAssoc is not None:
            for name, entry in vars(fnameAssoc).items():
                value = [None] * len(entry) if isinstance(entry, list) else None
                setattr(self, name, value)

    def __len__(self):
        return sum(len(v) if isinstance(v, list) else 1 for v in vars(self).values())

    def __getitem__(self, key):
        name, seqNum = _splitKey(key)
        if name not in self.__dict__:
            raise KeyError(key)
        entry = self.__dict__[name]
        if not isinstance(entry, list):
            return entry
        if seqNum is None:
            raise KeyError(f"{name!r} holds a list: index it as ({name!r}, seqNum)")
        try:
            return entry[seqNum]
        except (IndexError, TypeError):
            raise KeyError(key) from None

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        known = ", ".join(sorted(vars(self))) or "none"
        raise AttributeError(f"there is no input or output named {name!r}; the names this "
                             f"block has are: {known}")

    def __setitem__(self, key, value):
        name, seqNum = _splitKey(key)
        entry = self.__dict__.get(name)
        if seqNum is None or (name in self.__dict__ and not isinstance(entry, list)):
            setattr(self, name, value)
        elif name not in self.__dict__:
            raise KeyError(f"Cannot set {key!r}: {name!r} is not a known list entry")
        else:
            try:
                entry[seqNum] = value
            except (IndexError, TypeError):
                raise KeyError(key) from None


class OtherInputs:
    """Empty attribute bag for the user's own state (``otherArgs``)."""


@dataclass(frozen=True, order=True, slots=True, repr=False)
class ApplierBlockDefn:
    """One block of the working grid: pixel offsets and size, without the overlap margin."""

    top: int
    left: int
    nrows: int
    ncols: int

    def __repr__(self):
        return f"ApplierBlockDefn({self.top}, {self.left}, {self.nrows}, {self.ncols})"


RIOS_TIMER_ORDER = ("reading", "startcomputeworkers", "userfunction", "writing", "pyramids",
                    "basicstats", "stats+histogram", "histogram", "beforeclose",
                    "insert_readbuffer", "pop_readbuffer", "insert_computebuffer",
                    "pop_computebuffer")


class _TimedInterval:
    """The context manager behind :meth:`Timers.interval` (a class: it runs per block)."""

    __slots__ = ("timers", "name", "start")

    def __init__(self, timers, name):
        self.timers = timers
        self.name = name

    def __enter__(self):
        self.start = time.time()
        return self

    def __exit__(self, excType, exc, tb):
        if excType is None:
            self.timers.addInterval(self.name, self.start, time.time())
        return False


class Timers:
    """Named wall-clock intervals, thread-safe, mergeable across workers and picklable.

    ``pairs`` maps a name to its list of (start, end) ``time.time()`` pairs. When ``worker``
    names the thread or process that owns the object, its intervals also appear under that
    name in ``intervalsByWorker`` (worker -> name -> pairs), which survives merging, so that a
    per-worker timeline can be drawn after a run.

    Intervals are stored once, per worker and name, as flat arrays of doubles: 16 bytes an
    interval instead of about 100 for a tuple of floats, with several intervals per block
    in every worker. ``pairs`` and ``intervalsByWorker`` build their lists when read.
    """

    def __init__(self, worker: str | None = None):
        # worker (None for intervals of no named worker) -> name -> array [s0, e0, s1, ...]
        self._store = {}
        self.worker = worker
        self.lock = threading.Lock()

    def interval(self, name: str) -> "_TimedInterval":
        """Time the body of a ``with`` block; nothing is recorded if the body raises."""
        return _TimedInterval(self, name)

    def addInterval(self, name: str, start: float, end: float):
        """Record one (start, end) pair measured by the caller."""
        with self.lock:
            byName = self._store.get(self.worker)
            if byName is None:
                byName = self._store[self.worker] = {}
            values = byName.get(name)
            if values is None:
                values = byName[name] = array.array("d")
            values.append(start)
            values.append(end)

    @property
    def pairs(self) -> dict:
        """name -> [(start, end), ...] of every interval, whichever worker timed it."""
        with self.lock:
            out = {}
            for byName in self._store.values():
                for name, values in byName.items():
                    out.setdefault(name, []).extend(_asPairs(values))
            return out

    @property
    def intervalsByWorker(self) -> dict:
        """worker -> name -> [(start, end), ...] of the intervals of named workers."""
        with self.lock:
            return {worker: {name: _asPairs(values) for name, values in byName.items()}
                    for worker, byName in self._store.items() if worker is not None}

    def merge(self, other: "Timers"):
        """Add every interval of ``other`` (copied) to this object."""
        with other.lock:
            copied = {worker: {name: array.array("d", values) for name, values in d.items()}
                      for worker, d in other._store.items()}
        with self.lock:
            for worker, byName in copied.items():
                mine = self._store.setdefault(worker, {})
                for name, values in byName.items():
                    if name in mine:
                        mine[name].extend(values)
                    else:
                        mine[name] = values

    def _names(self) -> list:
        with self.lock:
            return list(dict.fromkeys(n for byName in self._store.values() for n in byName))

    def getDurationsForName(self, name: str) -> list[float] | None:
        """Durations (seconds) of the intervals of ``name``, or None if it was never timed."""
        durations = self._durations(name)
        return None if durations is None else durations.tolist()

    def _durations(self, name: str) -> numpy.ndarray | None:
        with self.lock:
            flat = [numpy.array(d[name], dtype=numpy.float64)
                    for d in self._store.values() if name in d]
        if not flat:
            return None
        flat = numpy.concatenate(flat)
        return flat[1::2] - flat[0::2]

    def makeSummaryDict(self) -> dict:
        """Per name: tot, min, max, lower (25th pct), median, upper (75th pct) and N."""
        summary = {}
        for name in self._names():
            durations = self._durations(name)
            if len(durations) == 0:
                continue
            lower, median, upper = numpy.percentile(durations, [25, 50, 75])
            summary[name] = {"tot": durations.sum(), "min": durations.min(),
                             "max": durations.max(), "lower": lower, "median": median,
                             "upper": upper, "N": len(durations)}
        return summary

    def _reportNames(self, summary):
        """RIOS's names in RIOS's order, then any others (not walltime) sorted."""
        fixed = [n for n in RIOS_TIMER_ORDER if n in summary]
        extra = sorted(n for n in summary if n not in RIOS_TIMER_ORDER and n != "walltime")
        return fixed + extra

    def formatReport(self, level: int = 0) -> str:
        """A text report of total time per timer name; level > 0 adds distribution columns.

        Unlike RIOS, a missing ``walltime`` timer does not raise: the report says so. With a
        ``walltime`` timer the report ends, after a blank line, with :meth:`bottleneck`'s line.
        """
        summary = self.makeSummaryDict()
        if "walltime" in summary:
            wall = "Wall clock elapsed time: %.1f seconds" % summary["walltime"]["tot"]
        else:
            wall = "Wall clock elapsed time: not recorded"
        names = self._reportNames(summary)
        lines = [wall, "", "Timer".ljust(20) + " " * 7 + "Total (sec)", "-" * 32]
        lines += [name.ljust(20) + " " * 4 + "%8.1f" % summary[name]["tot"] for name in names]
        workers = self.workerCount()
        if workers > 1:
            lines += ["", f"Totals add up the time of all {workers} workers (threads and "
                          "processes), so a timer such as userfunction can exceed the wall "
                          "clock."]
        if level > 0:
            header = "Timer".ljust(20) + " " * 7 + "N,Min,Lower,Median,Upper,Max"
            lines += ["", "", header, "-" * len(header)]
            lines += [name.ljust(20) + " " * 4 + self._statsText(summary[name])
                      for name in names]
        if "walltime" in summary:
            lines += ["", self.bottleneck()]
        return "\n".join(lines)

    def workerCount(self) -> int:
        """How many workers (the main thread included) recorded intervals."""
        with self.lock:
            return sum(1 for byName in self._store.values() if byName)

    def bottleneck(self) -> str:
        """One line: what limited the run and which ConcurrencyStyle change would help most.

        Reasoned from the busy fraction of each role (reading, computing, writing) over the
        walltime; the rule is documented in :func:`sharedapplier.timeline.diagnose`.
        """
        from . import timeline
        return timeline.bottleneck(self)

    def drawTimeline(self, filename: str, title: str | None = None) -> str:
        """Draw the run's timeline (one row per worker) to a PNG file; return its name.

        Needs matplotlib (raises ``rioserrors.UnavailableError`` without it); see
        :func:`sharedapplier.timeline.drawTimeline`.
        """
        from . import timeline
        return timeline.drawTimeline(self, filename, title)

    @staticmethod
    def _statsText(stats):
        values = [stats[k] for k in ("min", "lower", "median", "upper", "max")]
        return ",".join([str(stats["N"])] + ["%.4f" % v for v in values])

    def __getstate__(self):
        # the arrays pickle as their bytes: a worker's intervals cross a pipe at the end of
        # the run in a few hundred kilobytes, with no tuple to build on either side
        with self.lock:
            return {"store": {w: dict(d) for w, d in self._store.items()},
                    "worker": self.worker}

    def __setstate__(self, state):
        self._store = state["store"]
        self.worker = state["worker"]
        self.lock = threading.Lock()


def _asPairs(values: array.array) -> list[tuple[float, float]]:
    return list(zip(values[0::2], values[1::2], strict=True))


class WorkerErrorRecord:
    """An exception caught in a worker, with its formatted traceback, ready to send elsewhere.

    ``workerType`` is "read", "compute", "write" or "main". Pickling keeps the traceback text
    and the exception itself; one that cannot make the round trip is replaced by a
    RuntimeError giving its type name and message.
    """

    def __init__(self, exc: BaseException, workerType: str, workerID=None, blockDefn=None):
        self.exc = exc
        self.workerType = workerType
        self.workerID = workerID
        self.blockDefn = blockDefn
        self.formattedTraceback = traceback.format_exception(exc)
        # where the worker ran, for remote workers (e.g. "SLURM job 812 on node1"), and the
        # last lines of its log when the log goes with the run directory
        self.origin = None
        self.logTail = None

    def __str__(self):
        first = f"Error in {self.workerType} worker"
        if self.workerID is not None:
            first += f" {self.workerID}"
        if getattr(self, "origin", None):
            first += f" ({self.origin})"
        lines = [first]
        if self.blockDefn is not None:
            lines.append(f"while processing block {self.blockDefn!r}")
        lines += [line.rstrip("\n") for line in self.formattedTraceback]
        if getattr(self, "logTail", None):
            lines += ["last lines of the worker's log:", self.logTail]
        return "\n".join(lines) + "\n"

    def __getstate__(self):
        state = self.__dict__.copy()
        try:
            pickle.loads(pickle.dumps(self.exc))
        except Exception:
            state["exc"] = RuntimeError(f"{type(self.exc).__name__}: {self.exc}")
        return state


class TempfileManager:
    """A private ``rios_*`` sub-directory of ``tempdir`` holding this run's temporary files.

    ``cleanup()`` removes it all (and may be called more than once); it also runs when the
    object is garbage collected, but only in the process that created it, so a copy that
    travelled to a worker process never deletes the main process's files.
    """

    def __init__(self, tempdir: str):
        self.tempsubdir = tempfile.mkdtemp(prefix="rios_", dir=tempdir)
        self.tempfileList = []
        self.lock = threading.Lock()
        self._ownerPid = os.getpid()

    def mktempfile(self, prefix: str | None = None, suffix: str | None = None) -> str:
        """Create an empty private file in the sub-directory and return its full path."""
        fd, path = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=self.tempsubdir)
        os.close(fd)
        with self.lock:
            self.tempfileList.append(path)
        return path

    def cleanup(self):
        """Remove every recorded file or directory, then the sub-directory and its contents."""
        with self.lock:
            paths, self.tempfileList = self.tempfileList, []
        for path in paths:
            _removePath(path)
        shutil.rmtree(self.tempsubdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *excinfo):
        self.cleanup()

    def __del__(self):
        try:
            if os.getpid() == self._ownerPid:
                self.cleanup()
        except Exception:
            pass

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.lock = threading.Lock()


def _removePath(path):
    """Remove a file or a directory tree; a missing path is not an error."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _freeze(value):
    """A hashable, order-independent stand-in for a (nested) options value."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return tuple(sorted(repr(v) for v in value))
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


class RasterizationMgr:
    """Per-process cache of rasterised vector files.

    The cache key is the vector file together with the rasterisation options, so the same
    vector burnt with different options (RIOS shares one raster by filename) gets its own
    raster. Concurrent callers for one key wait for a single rasterisation.
    """

    def __init__(self):
        self.rasterizedFiles = {}
        self.lock = threading.Lock()
        self._keyLocks = {}

    def rasterize(self, vectorfile: str, rasterizeOptions: dict,
                  tmpfileMgr: TempfileManager) -> str:
        """Rasterise ``vectorfile`` with ``gdal.RasterizeOptions(**rasterizeOptions)``, once.

        Returns the filename of a ``rios_vecrast_*.tif`` temporary raster.
        """
        key = (vectorfile, _freeze(rasterizeOptions))
        with self.lock:
            keyLock = self._keyLocks.setdefault(key, threading.Lock())
        with keyLock:
            if key not in self.rasterizedFiles:
                outfile = tmpfileMgr.mktempfile(prefix="rios_vecrast_", suffix=".tif")
                _runRasterize(outfile, vectorfile, rasterizeOptions)
                self.rasterizedFiles[key] = outfile
            return self.rasterizedFiles[key]

    def __getstate__(self):
        return {"rasterizedFiles": dict(self.rasterizedFiles)}

    def __setstate__(self, state):
        self.__init__()
        self.rasterizedFiles.update(state["rasterizedFiles"])


def _runRasterize(outfile, vectorfile, rasterizeOptions):
    """Call gdal.Rasterize, turning any failure into VectorRasterizationError."""
    from osgeo import gdal

    options = dict(rasterizeOptions)
    options.setdefault("format", "GTiff")
    gdal.ErrorReset()
    try:
        ds = gdal.Rasterize(outfile, vectorfile, options=gdal.RasterizeOptions(**options))
    except (RuntimeError, TypeError, ValueError) as exc:
        raise rioserrors.VectorRasterizationError(
            f"Rasterizing vector file {vectorfile!r} failed: {exc}") from exc
    if ds is None:
        raise rioserrors.VectorRasterizationError(
            f"Rasterizing vector file {vectorfile!r} failed: {gdal.GetLastErrorMsg()}")
    ds.FlushCache()
    ds = None


class BlockBufferValue:
    """One block being assembled: its BlockAssociations and how many arrays are still missing."""

    def __init__(self, filenameAssoc=None, blockData=None):
        self.lock = threading.Lock()
        if blockData is not None:
            self.blockData = blockData
            self.numMissing = 0
        else:
            self.blockData = BlockAssociations(filenameAssoc)
            self.numMissing = len(filenameAssoc) if filenameAssoc is not None else 0

    def addData(self, name, seqNum, arr):
        """Store one file's array; a repeat for the same slot replaces it without recounting."""
        with self.lock:
            try:
                previous = self.blockData[(name, seqNum)]
            except KeyError:
                previous = None
            self.blockData[(name, seqNum)] = arr
            if previous is None:
                self.numMissing -= 1

    def complete(self) -> bool:
        """True once every expected array has arrived."""
        return self.numMissing <= 0


class BlockBuffer:
    """Bounded, thread-safe buffer of blocks between two pipeline stages.

    Kept for API compatibility (our process engine moves blocks in shared-memory slabs).
    Capacity is ``2 * numWorkers`` blocks (at least 2). Every timeout is honoured, and a
    timeout of None means wait forever.
    """

    def __init__(self, filenameAssoc, numWorkers, insertTimeout, popTimeout, bufferTypeName):
        self.filenameAssoc = filenameAssoc
        self.BUFFERMAX = max(2, 2 * numWorkers)
        self.insertTimeout = insertTimeout
        self.popTimeout = popTimeout
        self.bufferTypeName = bufferTypeName
        self.lock = threading.Lock()
        self.buffer = {}
        self.completionEvents = {}
        self.nextBlockQ = collections.deque()
        self.numBlocksPopped = 0
        self._slots = threading.Semaphore(self.BUFFERMAX)
        self._ready = threading.Condition(self.lock)

    def timeoutName(self, kind: str) -> str:
        """The ConcurrencyStyle parameter behind a timeout, kind "Insert" or "Pop"."""
        return f"{self.bufferTypeName}Buffer{kind}Timeout"

    def _timeoutError(self, kind, what):
        value = self.insertTimeout if kind == "Insert" else self.popTimeout
        return rioserrors.TimeoutError(
            f"Timed out {what}. Try increasing {self.timeoutName(kind)} "
            f"(current value = {value})")

    def _takeSlot(self):
        if not self._slots.acquire(timeout=self.insertTimeout):
            raise self._timeoutError(
                "Insert", f"inserting a block into the full {self.bufferTypeName} buffer "
                f"(capacity {self.BUFFERMAX} blocks)")

    def _eventFor(self, blockDefn):
        """The completion event of a block (lock held by the caller)."""
        return self.completionEvents.setdefault(blockDefn, threading.Event())

    def _markReady(self, blockDefn):
        """Signal a newly complete block and queue it (lock held by the caller)."""
        self._eventFor(blockDefn).set()
        self.nextBlockQ.append(blockDefn)
        self._ready.notify_all()

    def addBlockData(self, blockDefn, name, seqNum, arr):
        """Add one file's array to a block; a new block waits for a free slot first."""
        with self.lock:
            value = self.buffer.get(blockDefn)
        if value is None:
            self._takeSlot()
            with self.lock:
                value = self.buffer.get(blockDefn)
                if value is None:
                    value = BlockBufferValue(filenameAssoc=self.filenameAssoc)
                    self.buffer[blockDefn] = value
                else:
                    self._slots.release()
        with self.lock:
            wasComplete = value.complete()
            value.addData(name, seqNum, arr)
            if value.complete() and not wasComplete:
                self._markReady(blockDefn)

    def insertCompleteBlock(self, blockDefn, blockData):
        """Insert a whole block (replacing any existing one), waiting for a free slot."""
        self._takeSlot()
        with self.lock:
            old = self.buffer.get(blockDefn)
            if old is not None:
                self._slots.release()
            self.buffer[blockDefn] = BlockBufferValue(blockData=blockData)
            if old is None or not old.complete():
                self._markReady(blockDefn)

    def _remove(self, blockDefn):
        """Take a block out of the buffer (lock held by the caller) and return its data."""
        value = self.buffer.pop(blockDefn)
        self.completionEvents.pop(blockDefn, None)
        with contextlib.suppress(ValueError):
            self.nextBlockQ.remove(blockDefn)
        self.numBlocksPopped += 1
        self._slots.release()
        return value.blockData

    def popNextBlock(self):
        """Return (blockDefn, BlockAssociations) of the next completed block, in completion order."""
        with self._ready:
            if not self._ready.wait_for(lambda: self.nextBlockQ, timeout=self.popTimeout):
                raise self._timeoutError(
                    "Pop", f"waiting for the next block from the {self.bufferTypeName} "
                    f"buffer ({self.numBlocksPopped} blocks popped so far)")
            blockDefn = self.nextBlockQ[0]
            return blockDefn, self._remove(blockDefn)

    def popCompleteBlock(self, blockDefn):
        """Wait (at most popTimeout) for one block and remove it; None if it did not complete."""
        with self.lock:
            event = self._eventFor(blockDefn)
        if not event.wait(self.popTimeout):
            return None
        with self.lock:
            if blockDefn not in self.buffer:
                return None
            return self._remove(blockDefn)

    def waitCompletion(self, blockDefn, timeout=None) -> bool:
        """Wait for a block to be complete; True if it is."""
        with self.lock:
            event = self._eventFor(blockDefn)
        return event.wait(timeout)


class NetworkDataChannel:
    """RIOS's data channel between a main process and the workers it started.

    Given the major objects (at least ``workerInitData`` and ``outBlockBuffer``) it is the
    server: it serves them from a thread of its own on a port of its choosing, and
    :meth:`addressStr` gives workers ``hostname,port,authkey``. Given ``hostname``, ``portnum``
    and ``authkey`` it is a client whose attributes stand for the server's objects (their
    methods run in the server) and whose ``workerInitData`` is the server's dict. Peers prove
    the key before anything they send is read, as on the engine's own channel, which this
    shares. The creator of the server must call :meth:`shutdown`.
    """

    SERVED = ("inBlockBuffer", "outBlockBuffer", "outqueue", "forceExit", "exceptionQue",
              "workerBarrier")

    def __init__(self, workerInitData=None, inBlockBuffer=None, outBlockBuffer=None,
                 forceExit=None, exceptionQue=None, workerBarrier=None, hostname=None,
                 portnum=None, authkey=None):
        if cloudpickle is None:
            raise rioserrors.UnavailableError(
                "NetworkDataChannel requires the cloudpickle package: pip install cloudpickle")
        from sharedapplier.engine.remote import sharedobjects
        self._server = self._client = None
        if workerInitData is not None and outBlockBuffer is not None:
            self.workerInitData = cloudpickle.dumps(workerInitData)
            self.inBlockBuffer, self.outBlockBuffer = inBlockBuffer, outBlockBuffer
            self.outqueue = queue.Queue()
            self.forceExit, self.exceptionQue = forceExit, exceptionQue
            self.workerBarrier = workerBarrier
            served = {name: getattr(self, name) for name in self.SERVED}
            served["workerInitData"] = _Constant(self.workerInitData)
            self._server = sharedobjects.ObjectServer(served, hostname=hostname)
            address = self._server.address
        elif None not in (hostname, portnum, authkey):
            address = _channelAddress(hostname, portnum, authkey)
            self._client = sharedobjects.ObjectClient(address)
            for name in self.SERVED:
                setattr(self, name, self._client.proxy(name))
            self.workerInitData = cloudpickle.loads(self._client.call("workerInitData", "get"))
        else:
            raise rioserrors.ChannelParameterError(
                "NetworkDataChannel needs workerInitData and outBlockBuffer (to serve them) "
                "or hostname, portnum and authkey (to connect to a server)")
        self.hostname, self.portnum, self.authkey = (address.hostname, address.portnum,
                                                     authkey or address.authkey)

    def addressStr(self) -> str:
        """The address and key in one string, ``hostname,port,authkey``."""
        key = self.authkey.decode() if isinstance(self.authkey, bytes) else self.authkey
        return f"{self.hostname},{self.portnum},{key}"

    def shutdown(self) -> None:
        """Server: stop serving and abort the barrier. Client: nothing."""
        if self._server is None:
            return
        if self.workerBarrier is not None:
            self.workerBarrier.abort()
        self._server.shutdown()


class _Constant:
    """A served value: ``get()`` returns it."""

    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value


def _channelAddress(hostname, portnum, authkey):
    from sharedapplier.launchers.base import ChannelAddress
    key = authkey.decode() if isinstance(authkey, bytes) else str(authkey)
    return ChannelAddress(str(hostname), int(portnum), key)


class ApplierReturn:
    """What apply() returns: timings, otherArgsList, workinggrid, singlePassMgr, and
    ``resumedFrom``: how many blocks (the first ones, in row order) an earlier run of a
    resumable job had written; this run computed the others, and its otherArgs copies saw
    only those."""

    def __init__(self):
        self.timings = None
        self.otherArgsList = None
        self.workinggrid = None
        self.singlePassMgr = None
        self.resumedFrom = 0


def _check(condition, message):
    if condition:
        raise rioserrors.ConcurrencyStyleError(message)


def _isCount(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _isTimeout(value):
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                             and value >= 0)


def _isLauncherKind(kind) -> bool:
    """A kind that an installed package provides a launcher for."""
    from .launchers import launcherKinds
    return kind in launcherKinds()


class ConcurrencyStyle:
    """How apply() spreads reading and computing over threads, processes or batch jobs.

    The RIOS parameters come first; ``memoryBudget`` (bytes of shared memory for block slabs,
    None = automatic), ``workerStartMethod`` ("spawn" or "forkserver") and
    ``reuseComputeWorkers`` (keep the compute processes for later runs of the program,
    the default; False starts and ends them with each run) serve CW_PROCESSES.
    The constructor validates the combination and raises ConcurrencyStyleError (a RiosError
    and a ValueError) naming what to change.
    """

    _REPR_NAMES = ("numReadWorkers", "numComputeWorkers", "computeWorkerKind",
                   "computeWorkersRead", "singleBlockComputeWorkers", "haveSharedTemp",
                   "readBufferInsertTimeout", "readBufferPopTimeout",
                   "computeBufferInsertTimeout", "computeBufferPopTimeout",
                   "computeBarrierTimeout", "memoryBudget", "workerStartMethod",
                   "reuseComputeWorkers")

    def __init__(self, numReadWorkers: int = 0, numComputeWorkers: int = 0,
                 computeWorkerKind: str = CW_NONE, computeWorkerExtraParams: dict | None = None,
                 computeWorkersRead: bool | None = None, singleBlockComputeWorkers: bool = False,
                 haveSharedTemp: bool = True, readBufferInsertTimeout: float | None = 10,
                 readBufferPopTimeout: float | None = 10,
                 computeBufferInsertTimeout: float | None = 10,
                 computeBufferPopTimeout: float | None = 20,
                 computeBarrierTimeout: float | None = 600, memoryBudget: int | None = None,
                 workerStartMethod: str = "forkserver", reuseComputeWorkers: bool = True):
        self.numReadWorkers = numReadWorkers
        self.numComputeWorkers = numComputeWorkers
        self.computeWorkerKind = computeWorkerKind
        self.computeWorkerExtraParams = computeWorkerExtraParams
        self.computeWorkersRead = computeWorkersRead
        self.singleBlockComputeWorkers = singleBlockComputeWorkers
        self.haveSharedTemp = haveSharedTemp
        self.readBufferInsertTimeout = readBufferInsertTimeout
        self.readBufferPopTimeout = readBufferPopTimeout
        self.computeBufferInsertTimeout = computeBufferInsertTimeout
        self.computeBufferPopTimeout = computeBufferPopTimeout
        self.computeBarrierTimeout = computeBarrierTimeout
        self.memoryBudget = memoryBudget
        self.workerStartMethod = workerStartMethod
        self.reuseComputeWorkers = reuseComputeWorkers
        self._validateValues()
        self._validateRiosRules()
        self._validateOurRules()

    def __repr__(self):
        args = ", ".join(f"{name}={getattr(self, name)}" for name in self._REPR_NAMES)
        return f"ConcurrencyStyle({args})"

    def kindDefaultComputeWorkersRead(self) -> bool:
        """Whether compute workers of this kind read their own inputs when not told.

        Kinds that other packages add (launcher entry points) read, as batch kinds do.
        """
        return _KIND_DEFAULT_READ.get(self.computeWorkerKind, True)

    def resolvedComputeWorkersRead(self) -> bool:
        """computeWorkersRead, or the kind default when it is None (the object is not changed)."""
        if self.computeWorkersRead is None:
            return self.kindDefaultComputeWorkersRead()
        return bool(self.computeWorkersRead)

    def _validateValues(self):
        """Checks of single values (RIOS does none of these)."""
        _check(self.computeWorkerKind not in ALL_KINDS
               and not _isLauncherKind(self.computeWorkerKind),
               f"computeWorkerKind={self.computeWorkerKind!r} is not known: use one of "
               + ", ".join(ALL_KINDS))
        for name in ("numReadWorkers", "numComputeWorkers"):
            _check(not _isCount(getattr(self, name)),
                   f"{name}={getattr(self, name)!r} is invalid: give an integer >= 0")
        for name in ("readBufferInsertTimeout", "readBufferPopTimeout",
                     "computeBufferInsertTimeout", "computeBufferPopTimeout",
                     "computeBarrierTimeout"):
            _check(not _isTimeout(getattr(self, name)),
                   f"{name}={getattr(self, name)!r} is invalid: give seconds >= 0, "
                   "or None to wait forever")

    def _validateRiosRules(self):
        """RIOS's nine combination rules, in RIOS's order."""
        kind = self.computeWorkerKind
        single = self.singleBlockComputeWorkers
        nRead, nCompute = self.numReadWorkers, self.numComputeWorkers
        _check(single and nCompute > 0,
               "singleBlockComputeWorkers=True needs numComputeWorkers=0 (one worker per "
               "block is started): set numComputeWorkers=0 or singleBlockComputeWorkers=False")
        _check(single and nRead > 0,
               "singleBlockComputeWorkers=True needs numReadWorkers=0: set numReadWorkers=0 "
               "or singleBlockComputeWorkers=False")
        _check(bool(self.computeWorkersRead) and kind == CW_THREADS,
               "computeWorkersRead=True is not possible with computeWorkerKind=CW_THREADS: "
               "leave computeWorkersRead as None/False and use numReadWorkers")
        _check(single and kind == CW_THREADS,
               "singleBlockComputeWorkers=True is not possible with CW_THREADS: set "
               "singleBlockComputeWorkers=False")
        _check(nCompute > 0 and kind == CW_NONE,
               f"numComputeWorkers={nCompute} needs a computeWorkerKind other than CW_NONE: "
               "choose a kind (e.g. CW_THREADS or CW_PROCESSES) or set numComputeWorkers=0")
        _check(nCompute == 0 and kind != CW_NONE and not single,
               f"computeWorkerKind={kind} needs numComputeWorkers >= 1: set numComputeWorkers "
               "or use computeWorkerKind=CW_NONE")
        _check(nCompute > 0 and self.computeWorkersRead is False and nRead == 0,
               "computeWorkersRead=False with numReadWorkers=0 leaves nobody to read the "
               "inputs: set numReadWorkers >= 1 or computeWorkersRead=True")
        _check(kind == CW_AWSBATCH and single,
               "singleBlockComputeWorkers=True is not supported by CW_AWSBATCH: set "
               "singleBlockComputeWorkers=False")
        cpus = usableCpuCount()
        _check(kind == CW_THREADS and nCompute > cpus,
               f"numComputeWorkers={nCompute} exceeds the {cpus} CPUs this process may use: "
               f"set numComputeWorkers <= {cpus} for CW_THREADS")

    def _validateOurRules(self):
        """Our own checks: run-time failures of RIOS caught here instead."""
        kind = self.computeWorkerKind
        _check(kind == CW_PROCESSES and self.singleBlockComputeWorkers,
               "singleBlockComputeWorkers=True is only for batch kinds, not CW_PROCESSES: set "
               "singleBlockComputeWorkers=False")
        budget = self.memoryBudget
        _check(budget is not None and not (_isCount(budget) and budget > 0),
               f"memoryBudget={budget!r} is invalid: give a number of bytes > 0, or None to "
               "size it automatically")
        _check(not isinstance(self.reuseComputeWorkers, bool),
               f"reuseComputeWorkers={self.reuseComputeWorkers!r} is invalid: give True or "
               "False")
        _check(self.workerStartMethod not in WORKER_START_METHODS,
               f"workerStartMethod={self.workerStartMethod!r} is invalid: use 'spawn' or "
               "'forkserver'")
