"""Launchers start compute workers somewhere else: local subprocesses, SLURM, PBS, AWS Batch.

Each backend lives in its own module behind :class:`base.Launcher`. A third party adds a
kind without changing sharedapplier by declaring an entry point in the group
``sharedapplier.launchers`` whose name is the kind string and whose value is the class::

    [project.entry-points."sharedapplier.launchers"]
    CW_MYCLUSTER = "mypackage.launcher:MyClusterLauncher"

and then runs ``ConcurrencyStyle(computeWorkerKind="CW_MYCLUSTER", ...)``.
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

from .. import rioserrors
from .base import (
    ADDRESS_FILE_NAME,
    DEFAULT_PORT_RANGE,
    RUNDIR_PLACEHOLDER,
    ChannelAddress,
    Launcher,
    WorkerCommand,
    WorkerDescription,
)
from .settings import withConfigDefaults

ENTRY_POINT_GROUP = "sharedapplier.launchers"

BUILTIN_LAUNCHERS = {
    "CW_SUBPROC": "sharedapplier.launchers.subproc:SubprocLauncher",
    "CW_SLURM": "sharedapplier.launchers.slurm:SlurmLauncher",
    "CW_PBS": "sharedapplier.launchers.pbs:PBSLauncher",
    "CW_AWSBATCH": "sharedapplier.launchers.awsbatch:AWSBatchLauncher",
}

__all__ = ["DEFAULT_PORT_RANGE", "ENTRY_POINT_GROUP", "ChannelAddress", "Launcher",
           "WorkerCommand", "WorkerDescription", "jobIdFromEnvironment", "launcherClass",
           "launcherKinds", "makeLauncher", "previewJobScripts", "workerNumberFromEnvironment"]


def _entryPoints() -> dict:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def launcherKinds() -> list[str]:
    """Every kind a launcher exists for: the built-in ones and those of installed packages."""
    return sorted(set(BUILTIN_LAUNCHERS) | set(_entryPoints()))


def launcherClass(kind: str) -> type[Launcher]:
    """The launcher class for ``kind``; UnavailableError if there is none."""
    if kind in BUILTIN_LAUNCHERS:
        moduleName, className = BUILTIN_LAUNCHERS[kind].split(":")
        return getattr(importlib.import_module(moduleName), className)
    entry = _entryPoints().get(kind)
    if entry is None:
        raise rioserrors.UnavailableError(
            f"computeWorkerKind {kind} has no launcher: use one of "
            f"{', '.join(launcherKinds())}, or install the package that provides it")
    cls = entry.load()
    if not (isinstance(cls, type) and issubclass(cls, Launcher)):
        raise rioserrors.UnavailableError(
            f"the entry point {entry.value} for {kind} is not a sharedapplier Launcher class")
    return cls


def makeLauncher(kind: str, extraParams: dict | None, rundir: Path, jobName: str) -> Launcher:
    """The launcher of one run: ``extraParams`` over the user's config file's defaults."""
    cls = launcherClass(kind)
    return cls(withConfigDefaults(kind, extraParams, cls.knownParams()), rundir, jobName)


def previewJobScripts(style, jobName: str = "", tempdir: str = ".") -> dict[str, str]:
    """What a run in ``style`` (a ConcurrencyStyle) would submit, without submitting:
    name -> job script (or request). The run directory, made only when a run starts, shows
    as ``sharedapplier_run_XXXXXXXX``; the channel's address and key as placeholders."""
    rundir = Path(tempdir or ".").resolve() / RUNDIR_PLACEHOLDER
    launcher = makeLauncher(style.computeWorkerKind, style.computeWorkerExtraParams, rundir,
                            jobName or "")
    addressFile = rundir / ADDRESS_FILE_NAME
    if not (style.haveSharedTemp and launcher.sharedFilesystem):
        addressFile = None
    command = launcher.workerCommand(None, addressFile)
    return launcher.preview(list(range(style.numComputeWorkers)), command)


def _firstSet(names, environ: Mapping[str, str]) -> str | None:
    return next((environ[n] for n in names if environ.get(n) not in (None, "")), None)


def _declared(attribute: str) -> list[str]:
    """The variables named ``attribute`` that every launcher declares."""
    names = []
    for kind in launcherKinds():
        try:
            names.extend(getattr(launcherClass(kind), attribute))
        except rioserrors.UnavailableError:
            continue
    return names


def workerNumberFromEnvironment(environ: Mapping[str, str] | None = None) -> int | None:
    """A worker's number in an array job, from its scheduler's array index variable."""
    value = _firstSet(_declared("arrayIndexVariables"),
                      os.environ if environ is None else environ)
    return None if value is None else int(value)


def jobIdFromEnvironment(environ: Mapping[str, str] | None = None) -> str | None:
    """A worker's job id, from its scheduler's job id variable."""
    return _firstSet(_declared("jobIdVariables"), os.environ if environ is None else environ)
