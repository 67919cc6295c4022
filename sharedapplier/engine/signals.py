"""The run's synchronisation objects, and bounded waits that notice dead peers.

Every wait in the engine goes through :func:`acquireWithin`: it waits in short slices,
checking the stop event and whether its peers are alive, and gives up after the named
RIOS timeout with a message naming the option to raise and its current value.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import rioserrors
from . import slabpool

POLL_SECONDS = 0.2
_FIRST_BLOCK_POLL_SECONDS = 0.005


class StopRequested(Exception):
    """The run is stopping (another party failed, or the user interrupted)."""


class PeerGone(Exception):
    """The process this worker serves has gone away."""


@dataclass
class SlotSignals:
    """Lock over the header; semaphores counting free and input-complete slots; stop flag.

    ``doorbell`` wakes the writer: it is rung when the writer waits and enough computed
    blocks are ready for it (:func:`markComputed`), and before every message a worker sends
    the main process through its pipe.
    """

    lock: Any
    free: Any
    ready: Any
    doorbell: Any
    stop: Any

    @classmethod
    def create(cls, nslots: int, mpContext=None) -> SlotSignals:
        """For processes pass a multiprocessing context; threads use threading's objects."""
        mod = mpContext if mpContext is not None else threading
        return cls(mod.Lock(), mod.Semaphore(nslots), mod.Semaphore(0), mod.Semaphore(0),
                   mod.Event())


def timeoutError(what: str, option: str, value) -> rioserrors.TimeoutError:
    return rioserrors.TimeoutError(
        f"Timed out after {value} s waiting for {what}. Try increasing {option} "
        f"(current value = {value}) in the ConcurrencyStyle")


def acquireWithin(sem, timeout, signals: SlotSignals, what: str, option: str,
                  peerAlive: Callable[[], bool] | None = None) -> None:
    """Acquire ``sem``; raise on timeout, on a stop request, or when the peer is gone."""
    start = time.monotonic()
    while not sem.acquire(timeout=POLL_SECONDS):
        if signals.stop.is_set():
            raise StopRequested()
        if peerAlive is not None and not peerAlive():
            raise PeerGone()
        if timeout is not None and time.monotonic() - start > timeout:
            raise timeoutError(what, option, timeout)


def claimBlock(pool, signals: SlotSignals, worker: int, timeout, peerAlive=None):
    """Take a free slot and the next block to fill it; None when no blocks are left."""
    acquireWithin(signals.free, timeout, signals, "a free block slot",
                  "readBufferInsertTimeout", peerAlive)
    return _claimFreeSlot(pool, signals, worker)


def tryClaimBlock(pool, signals: SlotSignals, worker: int):
    """:func:`claimBlock` without waiting: None when no slot is free or no block is left."""
    if not signals.free.acquire(False):
        return None
    return _claimFreeSlot(pool, signals, worker)


def _claimFreeSlot(pool, signals: SlotSignals, worker: int):
    """(With a free slot acquired) the slot and the next block to fill it, or None."""
    with signals.lock:
        block = pool.counter(slabpool.NEXT_TO_FILL)
        if block >= pool.desc.nblocks:
            signals.free.release()
            return None
        pool.bumpCounter(slabpool.NEXT_TO_FILL)
        slot = pool.findSlot(slabpool.FREE)
        pool.setSlot(slot, slabpool.FILLING, block, worker)
    return slot, block


def markReady(pool, signals: SlotSignals, slot: int) -> None:
    """A reader has filled every input of a slot: hand it to the compute workers."""
    with signals.lock:
        pool.setSlot(slot, slabpool.READY)
    signals.ready.release()


def takeReady(pool, signals: SlotSignals, worker: int, timeout, peerAlive=None):
    """Take the input-complete slot with the lowest block; None when all are taken.

    The first block is always taken first: its outputs fix the output layout, which the
    other workers' first blocks wait for, so it must not wait behind them.
    """
    while True:
        acquireWithin(signals.ready, timeout, signals, "a block of input data",
                      "readBufferPopTimeout", peerAlive)
        with signals.lock:
            slot = pool.findSlot(slabpool.READY)
            if slot is None:
                if pool.counter(slabpool.BLOCKS_TAKEN) >= pool.desc.nblocks:
                    signals.ready.release()
                    return None
                continue
            if not _waitsForFirstBlock(pool, slot):
                pool.setSlot(slot, slabpool.COMPUTING, worker=worker)
                if pool.bumpCounter(slabpool.BLOCKS_TAKEN) + 1 == pool.desc.nblocks:
                    signals.ready.release()
                return slot, pool.slotBlock(slot)
            signals.ready.release()  # leave it for when the first block has been taken
        time.sleep(_FIRST_BLOCK_POLL_SECONDS)


def _waitsForFirstBlock(pool, slot) -> bool:
    return pool.counter(slabpool.BLOCKS_TAKEN) == 0 and pool.slotBlock(slot) != 0


def markComputed(pool, signals: SlotSignals, slot: int, block: int) -> None:
    """A worker has stored a block's outputs in its slot: hand it to the writer.

    The writer is woken only when it waits and a batch is worth its while (see
    :func:`_worthWaking`): every wake costs the workers' cores a context switch and the
    writer a pass over the header, once per block in a compute-bound run.
    """
    with signals.lock:
        pool.setComputed(slot, block)
        wake = pool.counter(slabpool.WRITER_WAITING) and _worthWaking(pool)
        if wake:
            pool.setCounter(slabpool.WRITER_WAITING, 0)
    if wake:
        signals.doorbell.release()


def _worthWaking(pool) -> bool:
    """The next block to write is computed, and either WAKE_AT blocks wait or all are done.

    It cannot stall a run: when no worker can go on, every slot holds a computed block (the
    next one to write among them, since blocks get slots in order) and WAKE_AT is no more
    than the slots, so the last of them rang. The writer's waits are short anyway.
    """
    written = pool.counter(slabpool.BLOCKS_WRITTEN)
    if pool.computedSlot(written) is None:
        return False
    computed = pool.counter(slabpool.BLOCKS_COMPUTED)
    return (computed == pool.desc.nblocks
            or computed - written >= pool.counter(slabpool.WAKE_AT))


def writerWaits(pool) -> None:
    """(Under the lock) the writer has nothing to write: ask to be woken."""
    pool.setCounter(slabpool.WRITER_WAITING, 1)


def noteMessage(pool, signals: SlotSignals) -> None:
    """A message to the main process is on its way through a pipe: wake it to read it.

    Rung before the message is sent, since a large message only fits through the pipe
    while the main process reads it.
    """
    with signals.lock:
        pool.bumpCounter(slabpool.MESSAGES)
    signals.doorbell.release()
