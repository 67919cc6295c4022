"""Objects served over the channel, for RIOS's ``structures.NetworkDataChannel``.

A script that builds its own workers shares a few named objects (buffers, an event, a
queue, a barrier) with them. The main process serves the objects' methods on a
:class:`.channel.ChannelListener`, so peers are authenticated exactly as the engine's
workers are, before anything they send is unpickled::

    ObjectClient (worker)                       ObjectServer (main process)
    ObjectsHello() ------------------------->   after the handshake, one thread per connection
    MethodCall(object, method, args) ------->   getattr(objects[object], method)(*args)
    <--------------------------------------     MethodResult(value) or MethodFailure(exc)

A client opens one connection per thread that uses it, so a call that blocks (a barrier's
``wait``, a buffer's pop) holds up only its own thread.
"""
from __future__ import annotations

import contextlib
import functools
import pickle
import socket
import threading
from dataclasses import dataclass, field

from ... import rioserrors
from .channel import DEFAULT_PORT_RANGE, ChannelAddress, ChannelListener, connectToChannel


@dataclass(frozen=True)
class ObjectsHello:
    """A client's first message: it wants the served objects."""


@dataclass(frozen=True)
class MethodCall:
    objectName: str
    method: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MethodResult:
    value: object


@dataclass(frozen=True)
class MethodFailure:
    error: BaseException


class ObjectServer:
    """Serve the methods of ``objects`` (name -> object) to authenticated clients."""

    def __init__(self, objects: dict, hostname: str | None = None, interface: str = "",
                 portRange: tuple[int, int] = DEFAULT_PORT_RANGE):
        self.objects = dict(objects)
        self._conns: set = set()
        self._lock = threading.Lock()
        self.listener = ChannelListener(self._serve, ObjectsHello, hostname, interface,
                                        portRange)

    @property
    def address(self) -> ChannelAddress:
        return self.listener.address

    def shutdown(self) -> None:
        """Stop accepting and hang up on every client (their calls raise)."""
        self.listener.shutdown()
        with self._lock:
            for conn in self._conns:
                _hangUp(conn)  # its serving thread sees EOF and closes it

    def _serve(self, conn, hello):
        with self._lock:
            if self.listener.closed:
                conn.close()
                return
            self._conns.add(conn)
        try:
            while True:
                call = conn.recv()
                conn.send(self._answer(call))
        except (EOFError, OSError):
            pass
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def _answer(self, call):
        if not isinstance(call, MethodCall) or call.objectName not in self.objects:
            return MethodFailure(rioserrors.ParameterError(
                f"the channel serves {sorted(self.objects)}, not {call!r}"))
        target = self.objects[call.objectName]
        if call.method.startswith("_"):
            return MethodFailure(AttributeError(
                f"{call.objectName}.{call.method} is private and not served"))
        try:
            reply = MethodResult(getattr(target, call.method)(*call.args, **call.kwargs))
        except Exception as e:
            reply = MethodFailure(e)
        return _picklable(reply)


def _hangUp(conn):
    with contextlib.suppress(OSError), socket.fromfd(conn.fileno(), socket.AF_INET,
                                                     socket.SOCK_STREAM) as sock:
        sock.shutdown(socket.SHUT_RDWR)


def _picklable(reply):
    """The reply, or a failure that says why the reply cannot travel."""
    try:
        pickle.dumps(reply)
        return reply
    except Exception as e:
        if isinstance(reply, MethodFailure):
            err = reply.error
            return MethodFailure(RuntimeError(f"{type(err).__name__}: {err}"))
        return MethodFailure(TypeError(f"the result cannot be sent over the channel: {e}"))


class ObjectClient:
    """Calls the methods of an :class:`ObjectServer`'s objects, one connection per thread."""

    def __init__(self, address: ChannelAddress, timeout: float = 30.0):
        self.address = address
        self.timeout = timeout
        self._local = threading.local()
        self._conns: list = []
        self._lock = threading.Lock()

    def proxy(self, objectName: str) -> ObjectProxy:
        return ObjectProxy(self, objectName)

    def call(self, objectName: str, method: str, *args, **kwargs):
        conn = self._connection()
        try:
            conn.send(MethodCall(objectName, method, args, kwargs))
            reply = conn.recv()
        except (EOFError, OSError) as e:
            raise rioserrors.JobMgrError(
                f"lost the channel at {self.address.hostname}:{self.address.portnum} calling "
                f"{objectName}.{method}: {e or 'the server hung up'}") from None
        if isinstance(reply, MethodFailure):
            raise reply.error
        return reply.value

    def close(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.close()

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connectToChannel(self.address, ObjectsHello(), timeout=self.timeout)
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn


class ObjectProxy:
    """Stands for one served object: each public method call goes to the server."""

    def __init__(self, client: ObjectClient, objectName: str):
        self._client = client
        self._objectName = objectName

    def __getattr__(self, method):
        if method.startswith("_"):
            raise AttributeError(method)
        return functools.partial(self._client.call, self._objectName, method)

    def __repr__(self):
        return f"<proxy of {self._objectName} at {self._client.address.hostname}>"
