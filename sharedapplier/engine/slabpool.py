"""Shared-memory slabs of fixed slots, and the small shared header that tracks them.

A slot holds one block: every input array (margin included) in the input slab and, once
block 0 has fixed the output layout, every output array (margin stripped) in the output
slab and the worker's summary of each output (``..blocksummary``) in the summary slab, at
the same slot index. The header segment holds the slot table and counters, which
only :class:`~.slots.SlotBoard` reads and changes.

The pool's owner (the main process) creates and unlinks every segment, under the
run-unique prefix ``sa_<pid>_<random>_``; workers attach by name without registering with
Python's resource tracker, which would otherwise unlink the segments when a worker exits
(Python < 3.13, gh-82300).
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
from dataclasses import dataclass, field, replace
from multiprocessing import resource_tracker, shared_memory

import numpy

from .. import rioserrors
from .slots import headerLength

SHM_DIR = "/dev/shm"
SEGMENT_PREFIX = "sa_"

@dataclass(frozen=True)
class Field:
    """One array inside a slot: its key, dtype, band count and largest rows/cols."""

    key: tuple
    dtype: str
    nbands: int
    maxrows: int
    maxcols: int

    @property
    def nbytes(self) -> int:
        return self.nbands * self.maxrows * self.maxcols * numpy.dtype(self.dtype).itemsize


def _aligned(n: int, to: int = 64) -> int:
    return (n + to - 1) // to * to


@dataclass
class SlotLayout:
    """Where each field lives inside a slot."""

    fields: list[Field]
    offsets: dict = field(default_factory=dict)
    slotbytes: int = 0

    def __post_init__(self):
        offset = 0
        for f in self.fields:
            self.offsets[f.key] = offset
            offset += _aligned(f.nbytes)
        self.slotbytes = max(_aligned(offset), 64)

    def views(self, buf, slot: int, shapes: dict) -> dict:
        """numpy views of one slot: ``shapes`` maps key -> (bands, rows, cols)."""
        base = slot * self.slotbytes
        return {f.key: numpy.ndarray(shapes[f.key], dtype=f.dtype, buffer=buf,
                                     offset=base + self.offsets[f.key])
                for f in self.fields}


@contextlib.contextmanager
def _untracked():
    """Attach to a segment without telling this process's resource tracker."""
    original = resource_tracker.register

    def skipSharedMemory(name, rtype):
        if rtype != "shared_memory":
            original(name, rtype)

    resource_tracker.register = skipSharedMemory
    try:
        yield
    finally:
        resource_tracker.register = original


def newRunPrefix() -> str:
    """A segment-name prefix unique to this run, carrying the owner's pid."""
    return f"{SEGMENT_PREFIX}{os.getpid()}_{secrets.token_hex(4)}_"


def shmFreeBytes() -> int | None:
    """Free bytes in /dev/shm, or None where there is no such folder."""
    if not os.path.isdir(SHM_DIR):
        return None
    return shutil.disk_usage(SHM_DIR).free


def _noSpaceError(nbytes, free, what):
    need = nbytes / 2**20
    have = "unknown" if free is None else f"{free / 2**20:.0f} MiB"
    return rioserrors.SharedMemoryError(
        f"sharedapplier needs {need:.0f} MiB of shared memory in {SHM_DIR} for the {what} but "
        f"only {have} is free. Give the container more (docker run --shm-size=2g, or "
        "shm_size: 2gb in compose), lower ConcurrencyStyle(memoryBudget=...), use a smaller "
        "window size, or use computeWorkerKind=CW_THREADS which needs no shared memory")


class Segment:
    """One shared-memory segment, created (and reserved) by its owner or attached."""

    def __init__(self, name: str, nbytes: int = 0, create: bool = False):
        self.name = name
        self.owner = create
        if create:
            free = shmFreeBytes()
            if free is not None and nbytes > free:
                raise _noSpaceError(nbytes, free, name)
            self.shm = shared_memory.SharedMemory(name=name, create=True, size=max(nbytes, 1))
            self._reserve(nbytes, free)
        else:
            with _untracked():
                self.shm = shared_memory.SharedMemory(name=name)

    def _reserve(self, nbytes, free):
        """Allocate the pages now so a full /dev/shm is an error here, not SIGBUS later."""
        path = os.path.join(SHM_DIR, self.name)
        if not os.path.exists(path) or nbytes == 0:
            return
        fd = os.open(path, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, nbytes)
        except OSError as e:
            self.release()
            raise _noSpaceError(nbytes, free, self.name) from e
        finally:
            os.close(fd)

    @property
    def buf(self):
        return self.shm.buf

    def release(self):
        """Close this process's mapping; the owner also removes the segment."""
        with contextlib.suppress(BufferError, OSError):
            self.shm.close()
        if self.owner:
            with contextlib.suppress(FileNotFoundError):
                self.shm.unlink()
            self.owner = False


class LocalSegment:
    """In-process memory with the Segment interface, for thread-only runs."""

    def __init__(self, name: str, nbytes: int):
        self.name = name
        self.buf = memoryview(bytearray(max(nbytes, 1)))

    def release(self):
        pass


@dataclass(frozen=True)
class PoolDescription:
    """What a worker process needs to attach to a pool (small, picklable)."""

    prefix: str
    nslots: int
    nblocks: int
    inputFields: tuple
    outputFields: tuple | None
    summaryFields: tuple = ()


class SlabPool:
    """The slots of one run: input slab, output slab (made later) and header."""

    def __init__(self, desc: PoolDescription, shared: bool, create: bool):
        self.desc = desc
        self.shared = shared
        self.inputLayout = SlotLayout(list(desc.inputFields))
        self.outputLayout = None
        self.outputSegment = None
        self.segments = []
        self.header = None
        self._outputViewCache = {}
        self.summaryLayout = None
        self.summarySegment = None
        self._summaryViewCache = {}
        try:
            self._open(desc, create)
        except BaseException:
            self.release()
            raise

    def _open(self, desc, create):
        nbytes = headerLength(desc.nslots, desc.nblocks) * 8
        self.headerSegment = self._segment("hdr", nbytes, create)
        self.inputSegment = self._segment("in", desc.nslots * self.inputLayout.slotbytes, create)
        # plain int64 memory: indexing it gives Python ints, much faster than numpy scalars
        self.header = self.headerSegment.buf[:nbytes].cast("q")
        if create:
            self.headerSegment.buf[:nbytes] = bytes(nbytes)
        if desc.outputFields is not None:
            self.attachOutputs(desc.outputFields, desc.summaryFields, create=False)

    def _segment(self, suffix, nbytes, create):
        name = self.desc.prefix + suffix
        if not self.shared:
            seg = LocalSegment(name, nbytes)
        else:
            seg = Segment(name, nbytes, create=create)
        self.segments.append(seg)
        return seg

    # --- slabs -------------------------------------------------------------------
    def inputViews(self, slot, shapes):
        return self.inputLayout.views(self.inputSegment.buf, slot, shapes)

    def outputViews(self, slot, shapes):
        """Views of a slot's outputs, made once per slot and shape: only the engine sees
        them (users get the input views, which are made afresh since a user function may
        reshape what it was given)."""
        key = (slot, *shapes.values())
        views = self._outputViewCache.get(key)
        if views is None:
            views = self.outputLayout.views(self.outputSegment.buf, slot, shapes)
            self._outputViewCache[key] = views
        return views

    def summaryViews(self, slot) -> dict:
        """The slot's summary records (:mod:`..blocksummary`), as bytes, by output key."""
        views = self._summaryViewCache.get(slot)
        if views is None:
            shapes = {f.key: (1, 1, f.maxcols) for f in self.summaryLayout.fields}
            views = self.summaryLayout.views(self.summarySegment.buf, slot, shapes)
            self._summaryViewCache[slot] = views
        return views

    def createOutputs(self, outputFields, summaryFields=()):
        """Owner: make the output and summary slabs once block 0 has fixed the layout."""
        self.attachOutputs(outputFields, summaryFields, create=True)

    def attachOutputs(self, outputFields, summaryFields=(), create=False):
        if self.outputLayout is not None:
            return
        layout = SlotLayout(list(outputFields))
        self.outputSegment = self._segment("out", self.desc.nslots * layout.slotbytes, create)
        self.outputLayout = layout
        self.summaryLayout = SlotLayout(list(summaryFields))
        if summaryFields:
            self.summarySegment = self._segment(
                "sum", self.desc.nslots * self.summaryLayout.slotbytes, create)
        self.desc = replace(self.desc, outputFields=tuple(outputFields),
                            summaryFields=tuple(summaryFields))

    def totalBytes(self):
        total = self.desc.nslots * self.inputLayout.slotbytes
        if self.outputLayout is not None:
            total += self.desc.nslots * self.outputLayout.slotbytes
            if self.desc.summaryFields:
                total += self.desc.nslots * self.summaryLayout.slotbytes
        return total

    def release(self):
        """Drop every view's backing: the owner unlinks, others just close."""
        if self.header is not None:
            self.header.release()
            self.header = None
        self._outputViewCache = {}
        self._summaryViewCache = {}
        for seg in reversed(self.segments):
            seg.release()
        self.segments = []


def slotCount(slotbytes, budget, minimum, useful):
    """How many slots: what the budget allows, at least ``minimum``, at most ``useful``."""
    fromBudget = budget // max(slotbytes, 1)
    return int(max(minimum, min(useful, fromBudget)))


def defaultBudget() -> int:
    """A quarter of available memory, half the free /dev/shm, at most 2 GiB."""
    import psutil
    budget = min(psutil.virtual_memory().available // 4, 2 * 2**30)
    free = shmFreeBytes()
    if free is not None:
        budget = min(budget, free // 2)
    return max(int(budget), 0)


def _pidAlive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def staleSegments() -> list[str]:
    """Our segments in /dev/shm whose owner process is gone."""
    if not os.path.isdir(SHM_DIR):
        return []
    stale = []
    for name in os.listdir(SHM_DIR):
        if not name.startswith(SEGMENT_PREFIX):
            continue
        pidtext = name[len(SEGMENT_PREFIX):].split("_", 1)[0]
        if pidtext.isdigit() and not _pidAlive(int(pidtext)):
            stale.append(name)
    return sorted(stale)


def removeStaleSegments(out=sys.stdout) -> list[str]:
    """Remove segments left by dead runs (``sharedapplier cleanup``)."""
    removed = []
    for name in staleSegments():
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(SHM_DIR, name))
            removed.append(name)
            print(f"removed {SHM_DIR}/{name}", file=out)
    return removed
