"""The slot board and the engine's messages on their own: no GDAL, no files, no processes."""
import pickle
import subprocess
import sys
import threading

import pytest

from sharedapplier import rioserrors
from sharedapplier.engine import messages as msg
from sharedapplier.engine import slots
from sharedapplier.engine.slots import (
    COMPUTED,
    COMPUTING,
    FILLING,
    FREE,
    READY,
    Party,
    Role,
    SlotBoard,
    SlotSignals,
)
from sharedapplier.structures import Timers, WorkerErrorRecord

READER = Party(Role.READER, 0)
WORKER = Party(Role.COMPUTE, 3)


def newBoard(nslots, nblocks):
    header = memoryview(bytearray(slots.headerLength(nslots, nblocks) * 8)).cast("q")
    return SlotBoard(header, nslots, nblocks, SlotSignals.create(nslots))


def test_a_slot_goes_round_its_cycle():
    board = newBoard(2, 3)
    slot, block = board.claimFree(READER, timeout=1)
    assert (board.slotState(slot), block, board.slotHolder(slot)) == (FILLING, 0, READER)
    board.markReady(slot)
    assert board.slotState(slot) == READY
    assert board.takeReady(WORKER, timeout=1) == (slot, 0)
    assert board.slotState(slot) == COMPUTING and board.holderOf(WORKER) == 0
    board.markComputed(slot, 0)
    assert board.slotState(slot) == COMPUTED and board.holderOf(WORKER) is None
    assert board.computedRun(0) == [slot]
    board.handBack(slot, 1)
    assert board.slotState(slot) == FREE and board.counter(slots.BLOCKS_WRITTEN) == 1


def test_a_dead_workers_taken_block_is_the_main_threads_to_read_and_taken_again():
    """The last block taken by a worker that dies: after the main thread reads it again,
    another worker takes it, where without the repair every worker would see the end."""
    board = newBoard(2, 2)
    for _ in range(2):
        slot, _ = board.claimFree(READER, 1)
        board.markReady(slot)
    first = board.takeReady(WORKER, 1)
    other = Party(Role.COMPUTE, 4)
    second = board.takeReady(other, 1)
    board.markComputed(*first)
    assert board.reclaimComputing(Party(Role.COMPUTE, 9), 1) == []
    assert board.reclaimComputing(other, 1) == [second]
    slot, block = second
    assert board.slotState(slot) == FILLING and board.slotHolder(slot) == Party(Role.MAIN, 0)
    board.markReady(slot)
    assert board.takeReady(WORKER, 1) == second
    assert board.takeReady(WORKER, 1) is None  # and now the end


def test_claiming_ends_when_every_block_has_a_slot():
    board = newBoard(4, 2)
    assert [board.claimFree(READER, 1)[1] for _ in range(2)] == [0, 1]
    assert board.claimFree(READER, 1) is None
    assert board.tryClaimFree(READER) is None
    # the free slots that were not needed are still free for nobody
    assert board.signals.free.acquire(False) and board.signals.free.acquire(False)


def test_a_full_board_makes_a_reader_wait_until_its_timeout_names_the_option():
    board = newBoard(1, 3)
    board.claimFree(READER, 1)
    with pytest.raises(rioserrors.TimeoutError, match=r"readBufferInsertTimeout \(current "
                                                       r"value = 0.3\)"):
        board.claimFree(READER, 0.3)
    assert board.tryClaimFree(READER) is None


def test_block_zero_is_taken_before_any_other_and_its_wait_is_bounded():
    board = newBoard(3, 3)
    claimed = [board.claimFree(READER, 1) for _ in range(3)]
    board.markReady(claimed[2][0])
    board.markReady(claimed[1][0])
    with pytest.raises(rioserrors.TimeoutError, match="readBufferPopTimeout"):
        board.takeReady(WORKER, timeout=0.3)  # blocks 1 and 2 are ready, block 0 is not
    board.markReady(claimed[0][0])
    assert [board.takeReady(WORKER, 1)[1] for _ in range(3)] == [0, 1, 2]
    assert board.takeReady(WORKER, 1) is None
    assert board.takeReady(Party(Role.COMPUTE, 4), 1) is None  # every worker sees the end


def test_a_stop_request_ends_every_wait():
    board = newBoard(1, 2)
    board.claimFree(READER, 1)
    errors = []

    def waitForFree():
        try:
            board.claimFree(READER, timeout=None)
        except slots.StopRequested as e:
            errors.append(e)

    thread = threading.Thread(target=waitForFree)
    thread.start()
    board.requestStop()
    thread.join(10)
    assert not thread.is_alive() and len(errors) == 1


def test_a_gone_peer_ends_a_wait():
    board = newBoard(1, 2)
    with pytest.raises(slots.PeerGone):
        board.takeReady(WORKER, timeout=None, peerAlive=lambda: False)


def test_a_waiting_writer_is_woken_for_a_batch_or_the_last_block():
    board = newBoard(6, 4)
    board.setWakeAt(2)
    for _ in range(4):
        board.markReady(board.claimFree(READER, 1)[0])
        board.takeReady(WORKER, 1)
    doorbell = board.signals.doorbell
    assert board.computedRun(0) == []            # nothing to write: the writer waits
    board.markComputed(1, 1)                     # not the next block to write
    board.markComputed(2, 2)                     # two ready, but block 0 is still missing
    assert not doorbell.acquire(False)
    board.markComputed(0, 0)                     # blocks 0..2 can be written now
    assert doorbell.acquire(False) and not doorbell.acquire(False)
    assert board.computedRun(0) == [0, 1, 2]
    for written, slot in enumerate([0, 1, 2], start=1):
        board.handBack(slot, written)
    assert board.computedRun(3) == []            # the writer waits again
    board.markComputed(3, 3)                     # one block waits, but it is the last one
    assert doorbell.acquire(False)


def test_messages_are_announced_on_the_board():
    board = newBoard(1, 1)
    board.noteMessage()
    board.noteMessage()
    assert board.messagesAnnounced() == 2
    assert board.awaitDoorbell(0) and not board.awaitDoorbell(0)


def test_find_slot_takes_the_lowest_block_in_a_state():
    board = newBoard(5, 10)
    claimed = [board.claimFree(READER, 1) for _ in range(5)]
    for slot, _ in claimed[::-1]:
        board.markReady(slot)
    assert board.findSlot(READY) == claimed[0][0]
    assert board.findSlot(COMPUTED) is None


@pytest.mark.parametrize("party", [READER, WORKER, slots.MAIN_THREAD, Party(Role.COMPUTE, 999)])
def test_a_party_survives_the_header(party):
    assert Party.fromCode(party.code()) == party
    assert Party.fromCode(0) is None


@pytest.mark.parametrize("message", [
    msg.LayoutProposal(1, 0, {("o", None): "layout"}),
    msg.OutputsReady((), {}, {}),
    msg.WorkerWarning(UserWarning, "careful"),
    msg.WorkerFinished(2, Timers(), pickle.dumps([1])),
    msg.WorkerFailed(WorkerErrorRecord(ValueError("bad"), "compute", 2)),
    msg.JobForWorker(b"job", True, ("/x",)),
    msg.NextBlockPlease(), msg.NoMoreBlocks(), msg.Heartbeat(),
    msg.BlockToCompute(4, (msg.ArraySpec(("a", None), "<u2", (1, 2, 2)),)),
    msg.BlockResult(4, ()),
    msg.WorkerHello(0, {"host": "h"}),
])
def test_every_message_crosses_a_pipe_as_its_own_class(message):
    again = pickle.loads(pickle.dumps(message))
    assert type(again) is type(message)
    with pytest.raises(AttributeError):
        message.extra = 1  # frozen: a message is never changed on the way
    if not isinstance(message, (msg.WorkerFailed, msg.WorkerFinished)):
        assert again == message


def test_the_board_and_the_messages_need_neither_gdal_nor_numpy():
    code = ("import sys; import sharedapplier.engine.slots, sharedapplier.engine.messages; "
            "print(sorted({'osgeo', 'numpy'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"
