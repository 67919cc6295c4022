"""Compute workers: threads or processes running the user function on slots of the board.

Each runs the one :class:`~.stages.WorkerLoop` over a :class:`~.stages.SlotSource` (it
takes the lowest ready slot, or claims a free one and reads it itself) and a
:class:`~.stages.SlotSink`. Nothing crosses its pipe per block; only these messages do
(:mod:`.messages`), each announced by a ring of the writer's doorbell:

    worker -> main   LayoutProposal    its first block's output layout (block 0's wins)
                     WorkerWarning     a warning, shown once by the main process
                     WorkerFinished    its timers and otherArgs copy, at the end
                     WorkerFailed      an error record with the traceback and the block
    main -> worker   OutputsReady      the output and summary slabs exist: attach to them
"""
from __future__ import annotations

import copy
import threading
from multiprocessing import connection

import cloudpickle

from .. import blockwriter
from ..blockreader import BlockReader
from ..structures import WorkerErrorRecord
from . import messages as msg
from . import slots
from .slots import Party, Role, SlotBoard
from .stages import SlotSink, SlotSource, UserFunction, WorkerLoop, WorkerState


class PipeToMain:
    """A worker's end of its pipe: each message announced on the board before it is sent."""

    def __init__(self, conn, board: SlotBoard, peerAlive=None):
        self.conn = conn
        self.board = board
        self.peerAlive = peerAlive

    def send(self, message) -> None:
        self.board.noteMessage()
        self.conn.send(message)

    def agreeLayouts(self, workerID: int, blockIndex: int, arrays: dict,
                     timeout) -> msg.OutputsReady:
        """Propose this worker's first block's output layout (unless the main process has
        answered already) and wait for the answer: block 0's, whoever computed it."""
        if not self.conn.poll(0):
            self.send(msg.LayoutProposal(workerID, blockIndex,
                                         blockwriter.layoutsFromArrays(arrays)))
        slots.waitWithin(self.conn.poll, timeout, self.board.signals.stop,
                         "the output buffers", "computeBufferInsertTimeout", self.peerAlive)
        return self.conn.recv()


def slotSink(job, pool, board: SlotBoard, state: WorkerState, pipe: PipeToMain) -> SlotSink:
    """Where a worker of the main process's board leaves its outputs: the layout agreed
    with the main process on its first block."""
    timeout = job.concurrency.computeBufferInsertTimeout

    def agreeLayouts(blockIndex, arrays):
        ready = pipe.agreeLayouts(state.workerID, blockIndex, arrays, timeout)
        pool.attachOutputs(ready.fields, ready.summaryFields)
        return ready

    return SlotSink(job, pool, board, state, agreeLayouts)


def localWorkerLoop(job, pool, board: SlotBoard, state: WorkerState, pipe: PipeToMain,
                    reader: BlockReader | None) -> WorkerLoop:
    """The loop of a compute thread or process (``reader`` when it reads for itself)."""
    party = Party(Role.COMPUTE, state.workerID)
    source = SlotSource(job, pool, board, party, state.timings, claims=reader is not None,
                        reader=reader, peerAlive=pipe.peerAlive)
    return WorkerLoop(source, UserFunction(job, pool, board, state),
                      slotSink(job, pool, board, state, pipe))


def runWorkerLoop(loop: WorkerLoop, job, workerID: int, stopping, send, finished,
                  passThrough: tuple[type[BaseException], ...] = ()) -> bool:
    """Run ``loop``; ``send`` the main process a WorkerFailed if it fails, else what
    ``finished()`` makes; whether it finished. A run that is ``stopping()`` hears nothing
    more (its pool may be gone already); ``passThrough`` exceptions (the link to the main
    process failed) go to the caller."""
    try:
        loop.run()
    except (slots.StopRequested, slots.PeerGone):
        return False
    except passThrough:
        raise
    except Exception as e:
        if not stopping():
            blockDefn = None if loop.current is None else job.blockList[loop.current]
            send(msg.WorkerFailed(WorkerErrorRecord(e, "compute", workerID,
                                                    blockDefn=blockDefn)))
        return False
    send(finished())
    return True


def computeWorkerMain(job, pool, board: SlotBoard, state: WorkerState, pipe: PipeToMain,
                      reads: bool) -> bool:
    """The body of a local compute worker, thread or process; whether it finished (sent
    its WorkerFinished)."""
    reader = BlockReader(job.specs, job.overlap) if reads else None
    try:
        loop = localWorkerLoop(job, pool, board, state, pipe, reader)
        return runWorkerLoop(loop, job, state.workerID, lambda: board.stopping, pipe.send,
                      lambda: msg.WorkerFinished(state.workerID, state.timings,
                                                 cloudpickle.dumps(state.otherArgs)))
    finally:
        if reader is not None:
            reader.close()


class ComputeThreads:
    """Compute threads in the main process (numpy code that releases the GIL scales)."""

    def __init__(self, job, pool, board: SlotBoard, count: int, otherArgs):
        self.conns = []
        self.threads = []
        for i in range(count):
            mainEnd, workerEnd = connection.Pipe(duplex=True)
            state = WorkerState(i, copy.deepcopy(otherArgs))
            self.conns.append(mainEnd)
            self.threads.append(threading.Thread(
                target=computeWorkerMain, name=f"sharedapplier-compute-{i}", daemon=True,
                args=(job, pool, board, state, PipeToMain(workerEnd, board), False)))

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
