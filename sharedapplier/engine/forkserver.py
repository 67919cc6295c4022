"""The forkserver compute processes start from, preloaded with what the user function imports.

A worker forked from a forkserver starts in milliseconds, but unpickling the user function
then imports the modules it uses (scipy.ndimage alone takes about 0.2 s), in every worker of
every run. So the forkserver is started with those modules already imported, and when a
later run's function needs modules the running forkserver lacks, it is restarted between
runs, while no compute process is alive. Only modules the main process has already imported
are preloaded, and the forkserver never opens a dataset.
"""
from __future__ import annotations

import multiprocessing
import pickletools
import sys
from multiprocessing import forkserver

import cloudpickle

# The worker's code, and what unpickling a ComputeJob imports (5 ms in every worker if not).
BASE_PRELOAD = frozenset({"sharedapplier.engine.computeworkers", "sharedapplier.engine.job"})
_NEVER = frozenset({"__main__", "__mp_main__", "builtins"})

# what the forkserver this module started has imported (None: it has started none)
_preloaded: frozenset | None = None


def modulesToPreload(userFunction, otherArgs) -> frozenset:
    """Modules that unpickling the user function and otherArgs imports, as imported here."""
    data = cloudpickle.dumps((userFunction, otherArgs))
    names = set()
    for _, arg, _ in pickletools.genops(data):
        if isinstance(arg, str) and arg not in _NEVER:
            module = sys.modules.get(arg)
            if module is not None and getattr(module, "__spec__", None) is not None:
                names.add(arg)
    return frozenset(names)


def workerContext(method: str, userFunction=None, otherArgs=None):
    """The multiprocessing context to start compute processes with."""
    global _preloaded
    ctx = multiprocessing.get_context(method)
    if method != "forkserver":
        return ctx
    wanted = BASE_PRELOAD | modulesToPreload(userFunction, otherArgs)
    if _preloaded is not None:
        if wanted <= _preloaded or not _restartable():
            return ctx
        forkserver._forkserver._stop()
        wanted |= _preloaded
    ctx.set_forkserver_preload(sorted(wanted))
    _preloaded = wanted
    return ctx


def _restartable() -> bool:
    """Whether the forkserver can be stopped now: no process started from it is alive."""
    server = getattr(forkserver, "_forkserver", None)
    return hasattr(server, "_stop") and not multiprocessing.active_children()
