"""RIOS's ``computemanager`` names, which sharedapplier does not provide.

RIOS's compute-worker managers are the machinery behind ``apply``; here that machinery is
:mod:`sharedapplier.engine` and :mod:`sharedapplier.launchers`, which a script drives with a
:class:`~sharedapplier.structures.ConcurrencyStyle`. The names can be imported, so a script
that only imports them still runs; using one raises
:class:`~sharedapplier.rioserrors.NotProvidedError` saying what to do instead.
"""
from .rioserrors import notProvided

_INSTEAD = ("choose the compute workers with controls.setConcurrencyStyle(ConcurrencyStyle("
            "computeWorkerKind=CW_..., numComputeWorkers=n)); apply starts and stops them")

ComputeWorkerManager = notProvided("computemanager.ComputeWorkerManager", _INSTEAD)
ThreadsComputeWorkerMgr = notProvided("computemanager.ThreadsComputeWorkerMgr", _INSTEAD)
SubprocComputeWorkerManager = notProvided("computemanager.SubprocComputeWorkerManager",
                                          _INSTEAD)
ClassicBatchComputeWorkerMgr = notProvided("computemanager.ClassicBatchComputeWorkerMgr",
                                           _INSTEAD)
AWSBatchComputeWorkerMgr = notProvided("computemanager.AWSBatchComputeWorkerMgr", _INSTEAD)
ECSComputeWorkerMgr = notProvided("computemanager.ECSComputeWorkerMgr", _INSTEAD)
getComputeWorkerManager = notProvided("computemanager.getComputeWorkerManager", _INSTEAD)
