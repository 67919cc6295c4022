"""The network data channel between the main process and remote compute workers.

Remote workers (batch jobs, or local subprocesses standing in for them) connect back to the
main process over TCP. Every connection is authenticated with an HMAC challenge on a random
key, both ways, before a single message is read from it, so nothing an unauthenticated peer
sends is ever unpickled. A peer that connects and stays silent only holds its own handshake
thread, which gives up after :data:`HANDSHAKE_SECONDS`.

:class:`ChannelListener` is the one listening end: it authenticates each peer and hands the
connection on according to the peer's first message. The engine's remote workers say a
:class:`WorkerHello` and wait in a :class:`WorkerChannel` for whoever awaits that worker;
RIOS's ``structures.NetworkDataChannel`` serves objects' methods on the same listener
(:mod:`.sharedobjects`). The address and key reach workers through
:class:`~sharedapplier.launchers.base.ChannelAddress`: a JSON file readable only by its owner
(mode 0600) in the run's shared directory, or, when there is no shared directory, a string on
the command line.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import queue
import random
import secrets
import socket
import threading
from multiprocessing import connection

import psutil

from ... import rioserrors
from ...launchers.base import DEFAULT_PORT_RANGE, ChannelAddress
from ..messages import WorkerHello

HANDSHAKE_SECONDS = 10.0
_BIND_ATTEMPTS = 200
_ACCEPT_POLL_SECONDS = 0.5


def tuneSocket(sock: socket.socket) -> None:
    """Options of every channel connection, at both ends.

    Blocks go as small request/reply exchanges; with Nagle's algorithm and delayed ACKs each
    one waited about 40 ms. Keepalive lets a peer whose host vanished be noticed by the OS.
    """
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


def interfaceFor(hostname: str) -> str:
    """The interface to listen on for workers told to connect to ``hostname``: the address
    of this host it resolves to, if it resolves here to one of this host's own addresses
    other than loopback; otherwise every interface ("").

    A name that resolves here to loopback (Debian's ``127.0.1.1`` entry, say) may still
    resolve elsewhere to the address the workers use, which cannot be known from here.
    """
    try:
        resolved = {info[4][0] for info in socket.getaddrinfo(hostname, None, socket.AF_INET)}
    except OSError:
        return ""
    own = {addr.address for addrs in psutil.net_if_addrs().values() for addr in addrs
           if addr.family == socket.AF_INET}
    usable = sorted(a for a in resolved & own if not a.startswith("127."))
    return usable[0] if len(usable) == 1 else ""


def connectToChannel(address: ChannelAddress, hello, timeout: float = 30.0):
    """An authenticated connection to a :class:`ChannelListener` that has said ``hello``."""
    sock = socket.create_connection((address.hostname, address.portnum), timeout=timeout)
    sock.setblocking(True)
    tuneSocket(sock)
    conn = connection.Connection(sock.detach())
    key = address.authkey
    if isinstance(key, str):
        key = key.encode()
    try:
        connection.answer_challenge(conn, key)
        connection.deliver_challenge(conn, key)
        conn.send(hello)
    except BaseException:
        conn.close()
        raise
    return conn


class ChannelListener:
    """The listening end of the channel: bind, accept, authenticate, hand on.

    It binds to ``interface`` (all interfaces when empty) on a free port drawn from
    ``portRange`` and advertises ``hostname`` to peers. Each peer gets a thread of its own,
    which proves the key both ways, reads one first message and, when that is an instance of
    ``helloType``, calls ``onHello(conn, hello)`` in that thread; from then on the connection
    belongs to ``onHello``. Peers that fail the handshake or say the wrong hello are counted in
    :attr:`rejected` and closed.
    """

    def __init__(self, onHello, helloType: type, hostname: str | None = None,
                 interface: str = "", portRange: tuple[int, int] = DEFAULT_PORT_RANGE):
        self.onHello = onHello
        self.helloType = helloType
        self.authkey = secrets.token_hex(32)
        self.sock = _bindInRange(interface, portRange)
        # set before the accept thread starts: the listener may be shut down at once, and
        # a closed socket has no timeout to set
        self.sock.settimeout(_ACCEPT_POLL_SECONDS)
        self.portnum = self.sock.getsockname()[1]
        self.hostname = hostname or interface or socket.gethostname()
        self.rejected = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._acceptLoop, daemon=True,
                                        name="sharedapplier-channel")
        self._thread.start()

    @property
    def address(self) -> ChannelAddress:
        return ChannelAddress(self.hostname, self.portnum, self.authkey)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def shutdown(self) -> None:
        """Stop accepting; connections already handed on belong to their takers."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept loop at once
        self.sock.close()
        self._thread.join(2 * _ACCEPT_POLL_SECONDS)

    def _acceptLoop(self):
        while not self._closed.is_set():
            try:
                peer, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._greet, args=(peer,), daemon=True,
                             name="sharedapplier-handshake").start()

    def _greet(self, peer):
        greeted = self._authenticate(peer)
        if greeted is not None:
            self.onHello(*greeted)

    def _authenticate(self, peer):
        """(conn, hello) of a peer that proved the key and said hello; None otherwise."""
        peer.settimeout(None)
        tuneSocket(peer)
        conn = connection.Connection(os.dup(peer.fileno()))
        timer = threading.Timer(HANDSHAKE_SECONDS, _hangUp, args=(peer,))
        timer.start()
        try:
            key = self.authkey.encode()
            connection.deliver_challenge(conn, key)
            connection.answer_challenge(conn, key)
            hello = conn.recv()
            if not isinstance(hello, self.helloType) or self._closed.is_set():
                raise EOFError()
            return conn, hello
        except (connection.AuthenticationError, EOFError, OSError, ValueError, TypeError,
                AttributeError, ImportError, pickle.UnpicklingError):
            with self._lock:
                self.rejected += 1
            conn.close()
            return None
        except BaseException:
            conn.close()
            raise
        finally:
            timer.cancel()
            peer.close()


class WorkerChannel:
    """Where the engine's remote compute workers connect back to the main process.

    A worker's connection waits, after its :class:`WorkerHello`, for whoever awaits that
    worker number (:meth:`awaitWorker`).
    """

    def __init__(self, hostname: str | None = None, interface: str = "",
                 portRange: tuple[int, int] = DEFAULT_PORT_RANGE):
        self._waiting: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        self.listener = ChannelListener(self._takeHello, WorkerHello, hostname, interface,
                                        portRange)

    @property
    def address(self) -> ChannelAddress:
        return self.listener.address

    @property
    def rejected(self) -> int:
        return self.listener.rejected

    def awaitWorker(self, workerID: int, timeout: float):
        """The (connection, identity) of worker ``workerID``, or None if it has not come."""
        try:
            return self._queueFor(workerID).get(timeout=timeout)
        except queue.Empty:
            return None

    def shutdown(self) -> None:
        """Stop accepting and close the connections nobody took."""
        self.listener.shutdown()
        with self._lock:
            leftovers = list(self._waiting.values())
        for q in leftovers:
            while not q.empty():
                conn, _ = q.get_nowait()
                conn.close()

    def _takeHello(self, conn, hello: WorkerHello):
        self._queueFor(int(hello.workerID)).put((conn, hello.identity))

    def _queueFor(self, workerID):
        with self._lock:
            return self._waiting.setdefault(workerID, queue.Queue())


def _hangUp(peer):
    with contextlib.suppress(OSError):
        peer.shutdown(socket.SHUT_RDWR)


def _bindInRange(interface, portRange):
    low, high = portRange
    if not (0 < low <= high < 65536):
        raise ValueError(f"channel port range {portRange} is invalid: give (low, high) "
                         "with 0 < low <= high < 65536")
    ports = range(low, high + 1)
    candidates = random.sample(ports, min(len(ports), _BIND_ATTEMPTS))
    for port in candidates:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((interface, port))
            sock.listen(64)
            return sock
        except OSError:
            sock.close()
    raise rioserrors.UnavailableError(
        f"no free port for the worker channel on interface {interface or 'all'} in "
        f"{low}-{high}: widen 'channelPortRange' in computeWorkerExtraParams")
