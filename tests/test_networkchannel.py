"""structures.NetworkDataChannel: RIOS's documented channel, used by a script's own workers.

The workers here are real processes that know only the address string, as a script's batch
jobs would; they share block buffers, a queue, an event and a barrier with the main process.
"""
import contextlib
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from multiprocessing.connection import AuthenticationError

import numpy
import pytest

from sharedapplier import rioserrors, structures
from sharedapplier.structures import (
    ApplierBlockDefn,
    BlockAssociations,
    BlockBuffer,
    FilenameAssociations,
    NetworkDataChannel,
    Timers,
)

NUM_WORKERS = 2
BLOCK_ROWS = 16
WIDTH = 24


def blockDefns(numBlocks):
    return [ApplierBlockDefn(i * BLOCK_ROWS, 0, BLOCK_ROWS, WIDTH) for i in range(numBlocks)]


def scriptWorker(addressStr: str, workerID: int) -> None:
    """A worker as a RIOS script would write one: everything comes through the channel."""
    hostname, port, key = addressStr.split(",")
    chan = NetworkDataChannel(hostname=hostname, portnum=int(port), authkey=key.encode())
    init = chan.workerInitData
    chan.workerBarrier.wait(60)
    timers = Timers()
    for blockDefn in init["blockListByWorker"][workerID]:
        inputs = chan.inBlockBuffer.popCompleteBlock(blockDefn)
        with timers.interval("userfunction"):
            outputs = BlockAssociations()
            outputs.out = init["userFunction"](inputs.img)
        chan.outBlockBuffer.insertCompleteBlock(blockDefn, outputs)
    chan.outqueue.put((workerID, timers, os.getpid()))
    chan.shutdown()  # a client's shutdown does nothing; the main process's channel serves on


def scale(arr):
    return arr.astype(numpy.float64) * 0.5 + 3


def startWorker(addressStr, workerID):
    code = (f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); "
            f"import test_networkchannel as t; t.scriptWorker({addressStr!r}, {workerID})")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def buffers(numBlocks):
    infiles, outfiles = FilenameAssociations(), FilenameAssociations()
    infiles.img, outfiles.out = "in.tif", "out.tif"
    # room for every block (2 per "worker"), so no insert waits on the order of pops
    inBuffer = BlockBuffer(infiles, numBlocks, 30, 30, "read")
    outBuffer = BlockBuffer(outfiles, numBlocks, 30, 30, "compute")
    return inBuffer, outBuffer


def test_a_script_runs_its_own_worker_processes_on_the_channel():
    numBlocks = 6
    blocks = blockDefns(numBlocks)
    image = numpy.random.default_rng(7).integers(0, 255, (numBlocks * BLOCK_ROWS, WIDTH),
                                                 dtype=numpy.uint8)
    inBuffer, outBuffer = buffers(numBlocks)
    init = {"userFunction": scale,
            "blockListByWorker": {w: blocks[w::NUM_WORKERS] for w in range(NUM_WORKERS)}}
    barrier = threading.Barrier(NUM_WORKERS + 1)
    chan = NetworkDataChannel(init, inBuffer, outBuffer, threading.Event(), None, barrier)
    try:
        assert isinstance(chan.workerInitData, bytes)
        workers = [startWorker(chan.addressStr(), w) for w in range(NUM_WORKERS)]
        for b in blocks:
            inBuffer.addBlockData(b, "img", None, image[b.top:b.top + b.nrows].copy())
        barrier.wait(60)
        result = numpy.zeros(image.shape)
        for _ in blocks:
            b, outputs = outBuffer.popNextBlock()
            result[b.top:b.top + b.nrows] = outputs.out
        for w in workers:
            _, err = w.communicate(timeout=60)
            assert w.returncode == 0, err
        reports = sorted(chan.outqueue.get(timeout=5)[:2] for _ in workers)
    finally:
        chan.shutdown()
    numpy.testing.assert_array_equal(result, image.astype(numpy.float64) * 0.5 + 3)
    assert [workerID for workerID, _ in reports] == list(range(NUM_WORKERS))
    assert all(t.getDurationsForName("userfunction") for _, t in reports)


@pytest.fixture
def served():
    inBuffer, outBuffer = buffers(2)
    chan = NetworkDataChannel({"n": 1}, inBuffer, outBuffer, threading.Event(), None,
                              threading.Barrier(2))
    yield chan
    chan.shutdown()


def clientOf(server, authkey=None):
    return NetworkDataChannel(hostname=server.hostname, portnum=server.portnum,
                              authkey=authkey or server.authkey.encode())


def test_a_client_sees_the_server_objects_and_their_errors(served):
    client = clientOf(served)
    assert client.workerInitData == {"n": 1}
    assert client.addressStr() == served.addressStr()
    client.forceExit.set()
    assert served.forceExit.is_set()
    served.outqueue.put("from main")
    assert client.outqueue.get(timeout=5) == "from main"
    served.inBlockBuffer.popTimeout = 0.1
    with pytest.raises(rioserrors.TimeoutError, match="readBufferPopTimeout"):
        client.inBlockBuffer.popNextBlock()
    served.outqueue.put(threading.Lock())
    with pytest.raises(TypeError, match="cannot be sent over the channel"):
        client.outqueue.get()
    with pytest.raises(AttributeError):
        client.outqueue._private()


def test_blocking_calls_of_two_client_threads_do_not_wait_for_each_other(served):
    client = clientOf(served)
    got = []
    waiter = threading.Thread(target=lambda: got.append(client.outqueue.get(timeout=30)))
    waiter.start()
    time.sleep(0.2)  # the waiter blocks in the server; this thread must still get answers
    assert client.forceExit.is_set() is False
    client.outqueue.put("wake")
    waiter.join(30)
    assert got == ["wake"]


def test_a_wrong_key_is_refused_before_anything_is_read(served, tmp_path):
    with pytest.raises((AuthenticationError, EOFError, ConnectionError)):
        clientOf(served, authkey=b"0" * 64)
    # a pickle that would run a shell command if anyone unpickled it
    payload = f"cos\nsystem\n(S'touch {tmp_path}/pwned'\ntR.".encode()
    with socket.create_connection((served.hostname, served.portnum)) as raw:
        raw.sendall(struct.pack("!i", len(payload)) + payload)
        raw.settimeout(15)
        with contextlib.suppress(ConnectionResetError):
            while raw.recv(4096):  # until the server hangs up
                pass
    assert not (tmp_path / "pwned").exists()
    assert clientOf(served).workerInitData == {"n": 1}


def test_shutdown_breaks_the_barrier_and_hangs_up_on_clients(served):
    client = clientOf(served)
    failures = []

    def waitAtBarrier():
        try:
            client.workerBarrier.wait(60)
        except (threading.BrokenBarrierError, rioserrors.JobMgrError) as e:
            failures.append(e)

    waiter = threading.Thread(target=waitAtBarrier)
    waiter.start()
    time.sleep(0.2)
    served.shutdown()
    waiter.join(30)
    assert not waiter.is_alive() and len(failures) == 1
    assert served.workerBarrier.broken
    with pytest.raises(rioserrors.JobMgrError, match="lost the channel"):
        client.forceExit.is_set()
    with pytest.raises(OSError):
        socket.create_connection((served.hostname, served.portnum), timeout=5).close()


def test_a_client_shutdown_leaves_the_server_serving(served):
    clientOf(served).shutdown()
    assert clientOf(served).workerInitData == {"n": 1}


def test_neither_server_nor_client_arguments_is_a_parameter_error():
    with pytest.raises(rioserrors.ChannelParameterError, match="hostname, portnum and authkey") \
            as info:
        NetworkDataChannel(hostname="h", portnum=1)
    assert isinstance(info.value, ValueError) and isinstance(info.value, rioserrors.RiosError)


def test_without_cloudpickle_the_channel_is_unavailable(monkeypatch):
    monkeypatch.setattr(structures, "cloudpickle", None)
    with pytest.raises(rioserrors.UnavailableError, match="cloudpickle"):
        NetworkDataChannel({"n": 1}, None, object())


# ---------------------------------------------------------------------------------------
# Which interface the channel of a batch run listens on


def _ownAddresses():
    import psutil
    return sorted(addr.address for addrs in psutil.net_if_addrs().values() for addr in addrs
                  if addr.family == socket.AF_INET and not addr.address.startswith("127."))


def test_a_name_of_one_of_this_hosts_addresses_is_listened_on_alone():
    from sharedapplier.engine.remote.channel import WorkerChannel, interfaceFor
    own = _ownAddresses()
    if not own:
        pytest.skip("this host has no address other than loopback")
    assert interfaceFor(own[0]) == own[0]
    channel = WorkerChannel(hostname=own[0], interface=interfaceFor(own[0]))
    try:
        assert channel.listener.sock.getsockname()[0] == own[0]
        assert channel.address.hostname == own[0]
    finally:
        channel.shutdown()


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "no-such-host.invalid",
                                  "192.0.2.254"])
def test_names_that_say_nothing_of_the_workers_view_listen_everywhere(name):
    """Loopback, unknown names and addresses that are not this host's: every interface."""
    from sharedapplier.engine.remote.channel import interfaceFor
    if name in _ownAddresses():
        pytest.skip(f"{name} is this host's own address here")
    assert interfaceFor(name) == ""
