"""Every message that crosses a pipe or the channel, one small frozen class each.

Pixels never travel in a message: on the channel a :class:`BlockToCompute` or
:class:`BlockResult` names its arrays (:class:`ArraySpec`) and their raw bytes follow it
(:mod:`.remote.wire`). Receivers dispatch on the class, never on a position.

Worker -> main process (pipes, and the channel for the last two)::

    LayoutProposal   a worker's first block computed: its output layout (block 0's wins)
    WorkerWarning    a warning raised in a worker, shown once by the main process
    WorkerFinished   no blocks left: the worker's timers and its otherArgs copy
    WorkerFailed     the one error path: a WorkerErrorRecord (traceback, block, origin)

Main process -> worker (pipe): ``OutputsReady``, the output and summary slabs exist.
Remote worker -> channel: ``WorkerHello``, its first message after the handshake.
Proxy <-> remote worker (channel): ``JobForWorker``, ``NextBlockPlease``,
``BlockToCompute``, ``NoMoreBlocks``, ``BlockResult``, ``Heartbeat``, and the two above.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the messages carry these, but need not import them
    from ..structures import Timers, WorkerErrorRecord


@dataclass(frozen=True)
class ArraySpec:
    """The key, dtype (numpy's ``dtype.str``) and shape of an array whose bytes follow."""

    key: Any
    dtype: str
    shape: tuple


@dataclass(frozen=True)
class LayoutProposal:
    workerID: int
    blockIndex: int
    layouts: dict


@dataclass(frozen=True)
class OutputsReady:
    """The output slab exists: its fields, block 0's layouts, and what to summarise of
    each block for the writer (:class:`~..blocksummary.SummaryPlan` by output key)."""

    fields: tuple
    layouts: dict
    summaries: dict
    summaryFields: tuple = ()


@dataclass(frozen=True)
class WorkerWarning:
    category: type
    text: str


@dataclass(frozen=True)
class WorkerFinished:
    workerID: int
    timers: Timers
    otherArgsBytes: bytes


@dataclass(frozen=True)
class WorkerFailed:
    record: WorkerErrorRecord


@dataclass(frozen=True)
class JobForWorker:
    jobBytes: bytes
    reads: bool
    mainPath: tuple


@dataclass(frozen=True)
class NextBlockPlease:
    pass


@dataclass(frozen=True)
class BlockToCompute:
    """``specs`` is None when the worker reads the block's inputs itself."""

    blockIndex: int
    specs: tuple | None


@dataclass(frozen=True)
class NoMoreBlocks:
    pass


@dataclass(frozen=True)
class BlockResult:
    blockIndex: int
    specs: tuple


@dataclass(frozen=True)
class Heartbeat:
    pass


@dataclass(frozen=True)
class WorkerHello:
    """A compute worker's first message after the handshake: its number and identity."""

    workerID: int
    identity: dict


@dataclass(frozen=True)
class RunForWorker:
    """Main -> persistent compute process (pipe): serve one run as worker ``workerID``
    (closing the pipe instead tells the process to exit; see ``workerpool``).

    ``jobBytes`` (the cloudpickled job: user function, otherArgs, blocks) is unpickled by
    each worker, so each has its own otherArgs copy; ``poolDesc`` names the run's slabs;
    ``cwd`` and ``mainPath`` are the main process's working folder and import path now,
    which may have changed since the worker started.
    """

    workerID: int
    jobBytes: bytes
    poolDesc: Any
    reads: bool
    cwd: str
    mainPath: tuple
