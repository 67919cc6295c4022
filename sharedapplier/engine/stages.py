"""The stages every route is made of, and the one loop that drives a worker through them.

A worker, whatever it is (a compute thread or process, the proxy of a remote worker, the
remote worker itself, or the main thread running without workers), is a
:class:`WorkerLoop` over three parts:

    source.next()             -> ClaimedBlock (its index, its slot if any, its inputs) or None
    compute(block)            -> the block's output arrays
    sink.store(block, arrays)    puts them where the next stage takes them

The parts differ by route: a :class:`SlotSource` takes (or claims and reads) a slot of the
board and a :class:`SlotSink` copies outputs into the slot for the writer, while the
sequential route reads with a :class:`ReaderSource` and writes at once. The loop itself
never changes.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .. import blockwriter
from ..blockreader import BlockReader
from ..structures import Timers
from .slots import Party, SlotBoard


@dataclass
class ClaimedBlock:
    """A block a worker is working on: ``slot`` is None off the board, ``inputs`` None
    until read or received."""

    index: int
    slot: int | None = None
    inputs: dict | None = None


class BlockSource(Protocol):
    def next(self) -> ClaimedBlock | None: ...


class BlockSink(Protocol):
    def store(self, block: ClaimedBlock, arrays: dict) -> None: ...


class WorkerState:
    """One worker's private things: its number, timers, otherArgs copy, and the output
    layout and summary plans once block 0 has fixed them."""

    def __init__(self, workerID: int, otherArgs, timings: Timers | None = None):
        self.workerID = workerID
        self.otherArgs = otherArgs
        self.timings = timings if timings is not None else Timers(worker=f"compute {workerID}")
        self.layouts = None
        self.summaries: dict = {}


class WorkerLoop:
    """Take a block, compute it, store it; until the source runs dry or ``limit`` blocks.

    :attr:`current` is the index of the block in hand, so that whoever catches an
    exception from :meth:`run` can say which block failed.
    """

    def __init__(self, source: BlockSource, compute: Callable[[ClaimedBlock], dict],
                 sink: BlockSink, limit: int | None = None):
        self.source = source
        self.compute = compute
        self.sink = sink
        self.limit = limit
        self.current: int | None = None
        self.done = 0

    def run(self) -> int:
        while self.limit is None or self.done < self.limit:
            block = self.source.next()
            if block is None:
                break
            self.current = block.index
            self.sink.store(block, self.compute(block))
            self.current = None
            self.done += 1
        return self.done


def readSlot(reader: BlockReader, job, pool, slot: int, blockDefn) -> dict:
    """Read every input of one block into its slot; the views it read into."""
    views = pool.inputViews(slot, job.inputShapes(blockDefn))
    for spec in job.specs:
        reader.readInto(spec, blockDefn, views[spec.key])
    return views


class SlotSource:
    """Blocks from the board. A source that ``claims`` takes the next free slot and fills
    it with ``reader`` (a compute worker that reads for itself; without a reader, the
    proxy of a remote worker that reads); otherwise it takes the lowest ready slot."""

    def __init__(self, job, pool, board: SlotBoard, party: Party, timings: Timers,
                 claims: bool = False, reader: BlockReader | None = None, peerAlive=None):
        self.job = job
        self.pool = pool
        self.board = board
        self.party = party
        self.timings = timings
        self.claims = claims
        self.reader = reader
        self.peerAlive = peerAlive

    def next(self) -> ClaimedBlock | None:
        style = self.job.concurrency
        if not self.claims:
            with self.timings.interval("wait_input"):
                taken = self.board.takeReady(self.party, style.readBufferPopTimeout,
                                             self.peerAlive)
            return None if taken is None else ClaimedBlock(taken[1], taken[0])
        with self.timings.interval("wait_free_slot"):
            claimed = self.board.claimFree(self.party, style.readBufferInsertTimeout,
                                           self.peerAlive)
        if claimed is None:
            return None
        slot, index = claimed
        if self.reader is None:
            return ClaimedBlock(index, slot)
        with self.timings.interval("reading"):
            views = readSlot(self.reader, self.job, self.pool, slot, self.job.blockList[index])
        return ClaimedBlock(index, slot, views)


class ReaderSource:
    """Every block in order, read with ``reader`` (the route without a board)."""

    def __init__(self, job, reader: BlockReader, timings: Timers):
        self.job = job
        self.reader = reader
        self.timings = timings
        self.nextIndex = 0

    def next(self) -> ClaimedBlock | None:
        index = self.nextIndex
        if index >= len(self.job.blockList):
            return None
        self.nextIndex += 1
        start = time.time()
        inputs = self.reader.readBlock(self.job.blockList[index])
        self.timings.addInterval("reading", start, time.time())
        return ClaimedBlock(index, None, inputs)


class UserFunction:
    """The compute stage: the user function on the block's inputs (the slot's views when
    the source left them in the slot)."""

    def __init__(self, job, pool, board: SlotBoard | None, state: WorkerState):
        self.job = job
        self.pool = pool
        self.board = board
        self.state = state

    def __call__(self, block: ClaimedBlock) -> dict:
        blockDefn = self.job.blockList[block.index]
        inputs = block.inputs
        if inputs is None:
            inputs = self.pool.inputViews(block.slot, self.job.inputShapes(blockDefn))
        if self.board is not None:
            self.board.noteUserFunctionStart(block.slot)
        return self.job.computeBlock(blockDefn, inputs, self.state.otherArgs,
                                     self.state.timings, self.state.layouts)


class SlotSink:
    """Outputs into the block's slot (the one copy on the way to the writer) with their
    summaries for the writer (:mod:`..blocksummary`), then marked computed.
    ``agreeLayouts(blockIndex, arrays)`` fixes the layout on this worker's first block:
    the main process's :class:`~.messages.OutputsReady`, with block 0's layout."""

    def __init__(self, job, pool, board: SlotBoard, state: WorkerState,
                 agreeLayouts: Callable[[int, dict], Any]):
        self.job = job
        self.pool = pool
        self.board = board
        self.state = state
        self.agreeLayouts = agreeLayouts

    def store(self, block: ClaimedBlock, arrays: dict) -> None:
        state = self.state
        if state.layouts is None:
            ready = self.agreeLayouts(block.index, arrays)
            state.layouts, state.summaries = ready.layouts, ready.summaries
        arrays = blockwriter.conformToLayouts(arrays, state.layouts)
        blockDefn = self.job.blockList[block.index]
        with state.timings.interval("copy_output"):
            views = self.pool.outputViews(block.slot,
                                          self.job.outputShapes(blockDefn, state.layouts))
            for key, arr in arrays.items():
                if arr is not views[key]:  # remote outputs may have been received in place
                    views[key][...] = arr
        if state.summaries:
            with state.timings.interval("summarising"):
                self._summarise(block.slot, blockDefn, views)
        self.board.markComputed(block.slot, block.index)

    def _summarise(self, slot, blockDefn, views):
        records = self.pool.summaryViews(slot)
        for key, plan in self.state.summaries.items():
            plan.summarise(views[key], blockDefn.left, blockDefn.top, plan.record(records[key]))


class WriterSink:
    """Outputs written at once, in block order (the route without workers); the first
    block fixes the layout that later blocks are held to."""

    def __init__(self, job, outputWriter, progress, state: WorkerState):
        self.job = job
        self.outputWriter = outputWriter
        self.progress = progress
        self.state = state

    def store(self, block: ClaimedBlock, arrays: dict) -> None:
        if self.state.layouts is None:
            self.state.layouts = blockwriter.layoutsFromArrays(arrays)
        self.outputWriter.writeBlock(self.job.blockList[block.index], arrays)
        self.progress.update(block.index + 1)
