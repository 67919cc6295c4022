"""How pixels cross the channel: a message naming the arrays, then each array's raw bytes.

Arrays are never pickled. The sender sends a message whose ``specs`` are
:func:`arraySpecs` of its arrays, then :func:`sendArrayBytes`; the receiver reads the
message, then :func:`receiveArrays` with those specs, straight into arrays it already has
(the slot's views) when they match.
"""
from __future__ import annotations

import numpy

from ..messages import ArraySpec


class WireError(Exception):
    """The bytes on the channel do not match what the message announced."""


def byteView(arr: numpy.ndarray) -> numpy.ndarray:
    """A flat uint8 view of a contiguous array: ``Connection.send_bytes`` and
    ``recv_bytes_into`` count the first axis of a multi-dimensional 1-byte buffer, not its
    bytes, so every array crosses the channel in this form."""
    return arr.reshape(-1).view(numpy.uint8)


def arraySpecs(arrays: dict) -> tuple[ArraySpec, ...]:
    return tuple(ArraySpec(key, arr.dtype.str, arr.shape) for key, arr in arrays.items())


def sendArrayBytes(conn, arrays: dict) -> None:
    for arr in arrays.values():
        conn.send_bytes(byteView(numpy.ascontiguousarray(arr)))


def receiveArrays(conn, specs, destinations: dict | None = None) -> dict:
    """The arrays whose raw bytes follow a message, each received in place: into the
    matching array of ``destinations`` (same key, dtype and shape) or a new one."""
    arrays = {}
    destinations = destinations or {}
    for spec in specs:
        arr = destinations.get(spec.key)
        if (arr is None or arr.dtype != numpy.dtype(spec.dtype)
                or arr.shape != tuple(spec.shape) or not arr.flags.c_contiguous):
            arr = numpy.empty(spec.shape, dtype=spec.dtype)
        received = conn.recv_bytes_into(byteView(arr))
        if received != arr.nbytes:
            raise WireError(f"a block array arrived with {received} bytes, not {arr.nbytes}")
        arrays[spec.key] = arr
    return arrays
