"""Which concurrency styles this operating system runs.

sharedapplier is built and tested on Linux, where everything works. On macOS and Windows
only ``CW_NONE`` and ``CW_THREADS`` (with read threads or not) run: compute processes and
the remote kinds rest on what Linux gives them (segments in ``/dev/shm`` that a cleanup can
find, the forkserver, process groups, the schedulers' Linux nodes), and they are not tested
elsewhere. A run asks for one of those there and is refused before it opens a file, with
what to use instead, rather than failing half way.
"""
from __future__ import annotations

import sys

from . import rioserrors
from .structures import CW_NONE, CW_THREADS

PORTABLE_KINDS = (CW_NONE, CW_THREADS)
_NAMES = {"darwin": "macOS", "win32": "Windows", "cygwin": "Cygwin"}


def isLinux(platform: str | None = None) -> bool:
    return (sys.platform if platform is None else platform).startswith("linux")


def checkStyleRuns(style, platform: str | None = None) -> None:
    """UnavailableError if ``style`` (a ConcurrencyStyle) cannot run on this system."""
    platform = sys.platform if platform is None else platform
    kind = style.computeWorkerKind
    if isLinux(platform) or kind in PORTABLE_KINDS:
        return
    name = _NAMES.get(platform, platform)
    raise rioserrors.UnavailableError(
        f"computeWorkerKind {kind} needs Linux, and this is {name}: use CW_THREADS (with "
        "numComputeWorkers and numReadWorkers as you wish) or CW_NONE, which run here, or "
        "run the script on Linux")
