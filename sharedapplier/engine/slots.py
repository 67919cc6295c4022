"""The slot board: every slot's state, the run's counters, and the waits on them.

A slot goes round one cycle, each step taken by one party under the run's lock::

    FREE --claimFree--> FILLING --markReady--> READY --takeReady--> COMPUTING
      ^    (a reader; or a compute worker that reads, which computes the block while
      |     the slot stays FILLING, then marks it computed)              |
      +----------handBack (the writer) <---- COMPUTED <--markComputed----+

    FILLING held by a worker that died --reclaimFrom (the main process)--> REDO, which
    claimFree hands out before any new block: the same block, read and computed again.
    COMPUTING held by a worker that died --reclaimComputing--> FILLING held by the main
    thread, which reads the block again (the worker may have changed its inputs) and marks
    it READY.

The board keeps this table in the header segment of the :class:`~.slabpool.SlabPool` (so
every process sees it) and the semaphores in :class:`SlotSignals`: ``free`` and ``ready``
count FREE and READY slots, ``doorbell`` wakes the writer. Every wait goes through
:func:`acquireWithin`, which gives up on a stop request, a dead peer, or its RIOS timeout.
"""
from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import rioserrors

POLL_SECONDS = 0.2
_FIRST_BLOCK_POLL_SECONDS = 0.005

# slot states
FREE, FILLING, READY, COMPUTING, COMPUTED, REDO = range(6)
# header columns per slot. STARTED is when the user function began on the slot's block
# (CLOCK_MONOTONIC in ns, shared by the processes of one host; 0 = not running): written by
# the slot's holder alone, without the lock, and read when a timeout needs explaining.
STATE, BLOCK, HOLDER, STARTED = range(4)
SLOT_COLUMNS = 4
# run counters, after the slot rows. MESSAGES counts pipe messages announced to the main
# process, so that it reads the pipes only when there is something to read. The writer
# publishes BLOCKS_WRITTEN and, when it has nothing to write, sets WRITER_WAITING; workers
# count BLOCKS_COMPUTED and wake a waiting writer once WAKE_AT blocks are ready for it.
NEXT_TO_FILL, BLOCKS_TAKEN, MESSAGES, BLOCKS_COMPUTED, BLOCKS_WRITTEN, WRITER_WAITING, \
    WAKE_AT = range(7)
COUNTERS = 7
# after the counters: one entry per block, 1 + the slot holding it once computed (0 = not yet)


def headerLength(nslots: int, nblocks: int) -> int:
    """How many int64 entries the header of a pool of ``nslots`` and ``nblocks`` needs."""
    return nslots * SLOT_COLUMNS + COUNTERS + nblocks


class StopRequested(Exception):
    """The run is stopping (another party failed, or the user interrupted)."""


class PeerGone(Exception):
    """The process this worker serves has gone away."""


class Role(enum.IntEnum):
    READER = 1
    COMPUTE = 2
    MAIN = 3


@dataclass(frozen=True)
class Party:
    """Who holds a slot: a read thread, a compute worker (by number) or the main thread."""

    role: Role
    number: int = 0

    def code(self) -> int:
        """The party as the header stores it (0 is nobody)."""
        return int(self.role) << 20 | self.number

    @classmethod
    def fromCode(cls, code: int) -> Party | None:
        return None if code == 0 else cls(Role(code >> 20), code & 0xFFFFF)


MAIN_THREAD = Party(Role.MAIN)


@dataclass
class SlotSignals:
    """The lock over the header; semaphores counting free and ready slots; the writer's
    doorbell; the run's stop flag. Made once by the main process (from a multiprocessing
    context when processes share them) and handed to each worker when it starts."""

    lock: Any
    free: Any
    ready: Any
    doorbell: Any
    stop: Any

    @classmethod
    def create(cls, nslots: int, mpContext=None) -> SlotSignals:
        mod = mpContext if mpContext is not None else threading
        return cls(mod.Lock(), mod.Semaphore(nslots), mod.Semaphore(0), mod.Semaphore(0),
                   mod.Event())

    def reset(self, nslots: int) -> bool:
        """Make the signals as :meth:`create` makes them, for a run of ``nslots`` slots:
        every count drained, ``nslots`` free slots, no stop request. Whether it could (not
        when the lock is held).

        Only sound while nobody else waits on or signals them: persistent compute
        processes (``workerpool``) touch them only between a run's start and their
        ``WorkerFinished``, and a worker set is reset only when all of its workers are idle.
        """
        if not self.lock.acquire(False):
            return False
        self.lock.release()
        for sem in (self.free, self.ready, self.doorbell):
            while sem.acquire(False):
                pass
        for _ in range(nslots):
            self.free.release()
        self.stop.clear()
        return True


def timeoutError(what: str, option: str, value) -> rioserrors.TimeoutError:
    return rioserrors.TimeoutError(
        f"Timed out after {value} s waiting for {what}. Try increasing {option} "
        f"(current value = {value}) in the ConcurrencyStyle")


def waitWithin(ready: Callable[[float], bool], timeout, stop, what: str, option: str,
               peerAlive: Callable[[], bool] | None = None) -> None:
    """Wait until ``ready(POLL_SECONDS)`` is true; raise StopRequested when ``stop`` is
    set, PeerGone when the peer is gone, and a TimeoutError naming ``option`` after
    ``timeout`` seconds (None: no limit)."""
    start = time.monotonic()
    while not ready(POLL_SECONDS):
        if stop.is_set():
            raise StopRequested()
        if peerAlive is not None and not peerAlive():
            raise PeerGone()
        if timeout is not None and time.monotonic() - start > timeout:
            raise timeoutError(what, option, timeout)


def acquireWithin(sem, timeout, signals: SlotSignals, what: str, option: str,
                  peerAlive: Callable[[], bool] | None = None) -> None:
    """Acquire ``sem`` as :func:`waitWithin` waits."""
    waitWithin(lambda seconds: sem.acquire(timeout=seconds), timeout, signals.stop, what,
               option, peerAlive)


class SlotTable:
    """The slot table and counters as the header segment stores them: what each slot holds,
    and the run's counts. Changed only by :class:`SlotBoard`, under the run's lock."""

    def __init__(self, header, nslots: int, nblocks: int):
        self.header = header
        self.nslots = nslots
        self.nblocks = nblocks
        self._counters = nslots * SLOT_COLUMNS
        self._computedTable = self._counters + COUNTERS

    def slotState(self, slot: int) -> int:
        return self.header[slot * SLOT_COLUMNS + STATE]

    def slotBlock(self, slot: int) -> int:
        return self.header[slot * SLOT_COLUMNS + BLOCK]

    def slotHolder(self, slot: int) -> Party | None:
        return Party.fromCode(self.header[slot * SLOT_COLUMNS + HOLDER])

    def counter(self, which: int) -> int:
        return self.header[self._counters + which]

    def computedSlot(self, block: int) -> int | None:
        """The slot holding ``block`` once it is computed, else None."""
        slot = self.header[self._computedTable + block] - 1
        return None if slot < 0 else slot

    def findSlot(self, state: int) -> int | None:
        """The slot in ``state`` holding the lowest block (any one if FREE), or None."""
        states = self.header[STATE:self._counters:SLOT_COLUMNS].tolist()
        if state not in states:
            return None
        if state == FREE:
            return states.index(state)
        blocks = self.header[BLOCK:self._counters:SLOT_COLUMNS].tolist()
        return min((b, slot) for slot, (s, b) in enumerate(zip(states, blocks, strict=True))
                   if s == state)[1]

    def _setSlot(self, slot, state, block=None, holder: Party | None = None):
        row = slot * SLOT_COLUMNS
        self.header[row + STATE] = state
        if block is not None:
            self.header[row + BLOCK] = block
        if holder is not None:
            self.header[row + HOLDER] = holder.code()

    def _setCounter(self, which, value):
        self.header[self._counters + which] = value

    def _bump(self, which) -> int:
        """Increase a counter by one; its previous value."""
        idx = self._counters + which
        value = self.header[idx]
        self.header[idx] = value + 1
        return value

    def noteUserFunctionStart(self, slot: int) -> None:
        """(The slot's holder) the user function starts on the slot's block now."""
        self.header[slot * SLOT_COLUMNS + STARTED] = time.monotonic_ns()

    def userFunctionsRunning(self) -> list[tuple[float, int, Party]]:
        """(seconds running, block, holder) of every block whose user function runs."""
        now = time.monotonic_ns()
        running = []
        for slot in range(self.nslots):
            started = self.header[slot * SLOT_COLUMNS + STARTED]
            if started and self.slotState(slot) in (FILLING, COMPUTING):
                running.append(((now - started) / 1e9, self.slotBlock(slot),
                                self.slotHolder(slot)))
        return running

    def _worthWaking(self) -> bool:
        """The next block to write is computed, and WAKE_AT blocks wait or all are done.

        It cannot stall a run: when no worker can go on, every slot holds a computed block
        (the next one to write among them, since blocks get slots in order) and WAKE_AT is
        no more than the slots, so the last of them rang. The writer's waits are short.
        """
        written = self.counter(BLOCKS_WRITTEN)
        if self.computedSlot(written) is None:
            return False
        computed = self.counter(BLOCKS_COMPUTED)
        return computed == self.nblocks or computed - written >= self.counter(WAKE_AT)

    def messagesAnnounced(self) -> int:
        # read without the lock: the count only grows, and a ring of the doorbell follows it
        return self.counter(MESSAGES)

    def _computedFrom(self, written: int) -> list[int]:
        """The slots of the computed blocks that follow the ``written`` first ones."""
        slots = []
        while written + len(slots) < self.nblocks:
            slot = self.computedSlot(written + len(slots))
            if slot is None:
                break
            slots.append(slot)
        return slots

    def _heldBy(self, party: Party) -> int | None:
        for slot in range(self.nslots):
            if self.slotHolder(slot) == party and self.slotState(slot) in (FILLING, COMPUTING):
                return self.slotBlock(slot)
        return None


class BoardRepairs:
    """What the main process asks of, and does to, a :class:`SlotBoard` when a party has
    failed or died (part of SlotBoard, kept apart from the parties' transitions)."""

    def holderOf(self, party: Party) -> int | None:
        """The block ``party`` is reading or computing, if any."""
        with self.signals.lock:
            return self._heldBy(party)

    def reclaimFrom(self, party: Party, lockTimeout: float) -> list[int] | None:
        """(The main process) ``party`` died: every block it was reading and computing goes
        back on the board, to be read and computed again; those blocks. None when the lock
        stays held (``party`` died holding it, and nobody can move a slot any more)."""
        held = self._moveHeld(party, FILLING, REDO, None, lockTimeout)
        if held is None:
            return None
        for _ in held:
            self.signals.free.release()
        return [self.slotBlock(slot) for slot in held]

    def reclaimComputing(self, party: Party, lockTimeout: float) -> list[tuple[int, int]] | None:
        """(The main process) ``party``, a worker that did not read, died computing: each
        slot it had taken becomes the main thread's to fill again (and its block one not
        yet taken); (slot, block) of each. None when the lock stays held."""
        held = self._moveHeld(party, COMPUTING, FILLING, Party(Role.MAIN, 0), lockTimeout)
        return None if held is None else [(slot, self.slotBlock(slot)) for slot in held]

    def _moveHeld(self, party, state, newState, newHolder, lockTimeout) -> list[int] | None:
        """Under the lock, move ``party``'s slots in ``state`` to ``newState`` (a block
        taken but no longer computing is one not yet taken); the slots, or None when the
        lock stays held."""
        if not self.signals.lock.acquire(timeout=lockTimeout):
            return None
        try:
            held = [slot for slot in range(self.nslots) if self.slotHolder(slot) == party
                    and self.slotState(slot) == state]
            for slot in held:
                self._setSlot(slot, newState, holder=newHolder)
                self.header[slot * SLOT_COLUMNS + STARTED] = 0
                if state == COMPUTING:
                    self._setCounter(BLOCKS_TAKEN, self.counter(BLOCKS_TAKEN) - 1)
            return held
        finally:
            self.signals.lock.release()


class SlotBoard(SlotTable, BoardRepairs):
    """The slot table of one run with the semaphores over it: the only code that moves a
    slot on, and every wait for one."""

    def __init__(self, header, nslots: int, nblocks: int, signals: SlotSignals):
        super().__init__(header, nslots, nblocks)
        self.signals = signals

    @property
    def stopping(self) -> bool:
        return self.signals.stop.is_set()

    def requestStop(self) -> None:
        self.signals.stop.set()

    # --- readers ------------------------------------------------------------------
    def claimFree(self, party: Party, timeout, peerAlive=None):
        """A free slot and the next block to fill it, (slot, block); None when no blocks
        are left. Waits for a free slot up to ``timeout`` (readBufferInsertTimeout)."""
        acquireWithin(self.signals.free, timeout, self.signals, "a free block slot",
                      "readBufferInsertTimeout", peerAlive)
        return self._claimAcquired(party)

    def tryClaimFree(self, party: Party):
        """:meth:`claimFree` without waiting: None also when no slot is free."""
        if not self.signals.free.acquire(False):
            return None
        return self._claimAcquired(party)

    def _claimAcquired(self, party):
        with self.signals.lock:
            slot = self.findSlot(REDO)
            if slot is not None:
                self._setSlot(slot, FILLING, holder=party)
                return slot, self.slotBlock(slot)
            block = self.counter(NEXT_TO_FILL)
            if block >= self.nblocks:
                self.signals.free.release()
                return None
            self._bump(NEXT_TO_FILL)
            slot = self.findSlot(FREE)
            self._setSlot(slot, FILLING, block, party)
        return slot, block

    def markReady(self, slot: int) -> None:
        """Every input of the slot is read: hand it to the compute workers."""
        with self.signals.lock:
            self._setSlot(slot, READY)
        self.signals.ready.release()

    # --- compute workers ------------------------------------------------------------
    def takeReady(self, party: Party, timeout, peerAlive=None):
        """The ready slot with the lowest block, (slot, block); None when all are taken.

        Block 0 is always taken first: its outputs fix the output layout, which every
        worker's first block waits for, so it must not wait behind them. The whole wait,
        for block 0 too, is bounded by ``timeout`` (readBufferPopTimeout).
        """
        taken = []

        def tryTake(seconds):
            if not self.signals.ready.acquire(timeout=seconds):
                return False
            with self.signals.lock:
                result = self._takeLowestReady(party)
            if result is False:
                time.sleep(_FIRST_BLOCK_POLL_SECONDS)
                return False
            taken.append(result)
            return True

        waitWithin(tryTake, timeout, self.signals.stop, "a block of input data",
                   "readBufferPopTimeout", peerAlive)
        return taken[0]

    def _takeLowestReady(self, party):
        """(Under the lock) (slot, block), None at the end, False to wait for block 0."""
        slot = self.findSlot(READY)
        if slot is None:
            if self.counter(BLOCKS_TAKEN) >= self.nblocks:
                self.signals.ready.release()  # let the next worker see the end too
                return None
            return False
        if self.counter(BLOCKS_TAKEN) == 0 and self.slotBlock(slot) != 0:
            self.signals.ready.release()
            return False
        self._setSlot(slot, COMPUTING, holder=party)
        if self._bump(BLOCKS_TAKEN) + 1 == self.nblocks:
            self.signals.ready.release()
        return slot, self.slotBlock(slot)

    def markComputed(self, slot: int, block: int) -> None:
        """The block's outputs are in its slot: hand it to the writer.

        The writer is woken only when it waits and a batch is worth its while (see
        :meth:`_worthWaking`): every wake costs the workers' cores a context switch and the
        writer a pass over the header, once per block in a compute-bound run.
        """
        with self.signals.lock:
            self._setSlot(slot, COMPUTED)
            self.header[slot * SLOT_COLUMNS + STARTED] = 0
            self.header[self._computedTable + block] = slot + 1
            self._bump(BLOCKS_COMPUTED)
            wake = self.counter(WRITER_WAITING) and self._worthWaking()
            if wake:
                self._setCounter(WRITER_WAITING, 0)
        if wake:
            self.signals.doorbell.release()

    def noteMessage(self) -> None:
        """A message to the main process is on its way through a pipe: wake it to read it.

        Rung before the message is sent, since a large message only fits through the pipe
        while the main process reads it.
        """
        with self.signals.lock:
            self._bump(MESSAGES)
        self.signals.doorbell.release()

    # --- the writer -------------------------------------------------------------------
    def setWakeAt(self, blocks: int) -> None:
        self._setCounter(WAKE_AT, blocks)

    def computedRun(self, written: int) -> list[int]:
        """The slots of the computed blocks from block ``written`` on, in order; when there
        are none, the writer is asked to be woken (see :meth:`markComputed`)."""
        with self.signals.lock:
            slots = self._computedFrom(written)
            if not slots:
                self._setCounter(WRITER_WAITING, 1)
        return slots

    def handBack(self, slot: int, written: int) -> None:
        """A written block's slot is free for the next block to be read into."""
        with self.signals.lock:
            self._setSlot(slot, FREE)
            self._setCounter(BLOCKS_WRITTEN, written)
        self.signals.free.release()

    def awaitDoorbell(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for a ring; swallow the rings already made (one pass of the
        writer serves them all). Whether it rang."""
        rang = self.signals.doorbell.acquire(timeout=timeout) if timeout else \
            self.signals.doorbell.acquire(False)
        while rang and self.signals.doorbell.acquire(False):
            pass
        return rang
