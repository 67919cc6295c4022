"""The one small interface every compute-worker launcher implements.

A launcher starts remote compute workers (as batch jobs, containers or local processes),
tells the engine how each one is doing, and cancels whatever is still queued or running
when the run ends. It knows nothing about blocks: each worker it starts runs
``sharedapplier computeworker``, which connects back to the main process over the
authenticated channel and pulls blocks until none are left.

The contract between the engine and the launchers is all here, and no launcher imports the
engine: the engine gives a launcher the :class:`WorkerCommand` to run and the
:class:`ChannelAddress` the workers connect to; a launcher declares the environment
variables its scheduler sets in each worker (:attr:`Launcher.arrayIndexVariables`,
:attr:`Launcher.jobIdVariables`), which the worker reads to learn its number and job id.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .. import rioserrors
from .settings import ENGINE_PARAMS, TYPED_PARAMS, BatchResources

# The file in the run directory that holds the channel's address, when workers share it.
ADDRESS_FILE_NAME = "channel_address.json"
# Where a preview's job scripts show the run directory, which exists only once a run starts.
RUNDIR_PLACEHOLDER = "sharedapplier_run_XXXXXXXX"

# The ports the channel listens on unless computeWorkerExtraParams says channelPortRange.
DEFAULT_PORT_RANGE = (30000, 50000)


@dataclass(frozen=True)
class ChannelAddress:
    """Where the channel listens and the key that opens it."""

    hostname: str
    portnum: int
    authkey: str

    def addressStr(self) -> str:
        """RIOS's form, ``hostname,port,authkey`` (for ``--channaddr``)."""
        return f"{self.hostname},{self.portnum},{self.authkey}"

    @classmethod
    def fromString(cls, text: str) -> ChannelAddress:
        try:
            hostname, port, key = text.strip().split(",")
            return cls(hostname, int(port), key)
        except ValueError:
            raise rioserrors.RiosError(
                f"channel address {text.strip()[:40]!r} is not 'hostname,port,authkey'") from None

    def writeFile(self, path: str) -> None:
        """Write the address to a new file that only its owner can read."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(self), f)

    @classmethod
    def fromFile(cls, path: str) -> ChannelAddress:
        try:
            with open(path) as f:
                text = f.read()
        except OSError as e:
            raise rioserrors.FileOpenError(
                f"cannot read the channel address file {path}: {e.strerror}") from None
        text = text.strip()
        if text.startswith("{"):
            return cls(**json.loads(text))
        return cls.fromString(text.splitlines()[0])


@dataclass(frozen=True)
class WorkerDescription:
    """What the backend says about one worker: where it runs and how it ended."""

    workerID: int
    backend: str
    backendID: str | None = None
    host: str | None = None
    logLocation: str | None = None
    state: str | None = None
    exitCode: int | str | None = None
    reason: str | None = None
    finished: bool = False

    def identity(self) -> str:
        """e.g. ``SLURM job 812_0 on node1, log /scratch/run/worker_0.log``."""
        text = f"{self.backend} job {self.backendID or '(not submitted)'}"
        if self.host:
            text += f" on {self.host}"
        if self.logLocation:
            text += f", log {self.logLocation}"
        return text

    def status(self) -> str:
        """e.g. ``state FAILED, exit code 1, reason NonZeroExitCode``."""
        parts = [f"state {self.state or 'unknown'}"]
        if self.exitCode is not None:
            parts.append(f"exit code {self.exitCode}")
        if self.reason:
            parts.append(f"reason {self.reason}")
        return ", ".join(parts)


@dataclass(frozen=True)
class WorkerCommand:
    """The command a worker runs; ``argv(i)`` adds the worker number when it is known.

    Array jobs leave the number out: the worker takes it from the scheduler's array index.
    """

    base: tuple[str, ...]

    def argv(self, workerID: int | None = None) -> list[str]:
        if workerID is None:
            return list(self.base)
        return [*self.base, "-i", str(workerID)]


class Launcher(ABC):
    """Starts, watches and cancels remote compute workers for one run.

    ``extraParams`` is ``ConcurrencyStyle.computeWorkerExtraParams`` (a dict, maybe empty);
    ``rundir`` is a private directory of this run on the shared filesystem, removed after
    the run; ``jobName`` names the jobs so users can find them in the queue.
    """

    #: the name used in messages, e.g. "SLURM"
    backend = "remote"
    #: the backend is asked about the workers at most this often (seconds)
    pollInterval = 1.0
    #: variables the scheduler sets in each worker to its index in an array job
    arrayIndexVariables: tuple[str, ...] = ()
    #: variables the scheduler sets in each worker to its job id
    jobIdVariables: tuple[str, ...] = ()
    #: the computeWorkerExtraParams keys of this kind, beside the engine's and the typed ones
    paramNames: tuple[str, ...] = ()

    def __init__(self, extraParams: dict, rundir: Path, jobName: str):
        self.extraParams = dict(extraParams or {})
        self.rundir = Path(rundir)
        self.jobName = jobName
        self.resources = BatchResources.fromParams(self.extraParams)
        self._descriptions: dict[int, WorkerDescription] = {}
        self._lock = threading.Lock()
        self._lastPoll = 0.0

    # --- what each backend implements -----------------------------------------------
    @abstractmethod
    def checkAvailable(self) -> None:
        """Raise UnavailableError, saying what to install or configure, if unusable."""

    @abstractmethod
    def submit(self, workerIDs: list[int], command: WorkerCommand) -> None:
        """Queue one worker per id; record a description for each."""

    @abstractmethod
    def query(self) -> dict[int, WorkerDescription]:
        """Ask the backend for the current state of every submitted worker."""

    @abstractmethod
    def cancel(self) -> None:
        """Cancel every submitted worker that may still be queued or running."""

    def logTail(self, workerID: int, lines: int = 20) -> str:
        """The last lines of a worker's log, when the launcher can read it."""
        path = self.describe(workerID, refresh=False).logLocation
        if not path or not Path(path).is_file():
            return ""
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])

    def preview(self, workerIDs: list[int], command: WorkerCommand) -> dict[str, str]:
        """What :meth:`submit` would submit, without submitting: name -> text (a job
        script, a request). A launcher that cannot show it says so."""
        raise rioserrors.UnavailableError(
            f"{type(self).__name__} cannot show what it submits")

    @classmethod
    def knownParams(cls) -> tuple[str, ...]:
        """Every computeWorkerExtraParams key a run of this kind reads."""
        return (*ENGINE_PARAMS, *TYPED_PARAMS, *cls.paramNames)

    # --- shared by all ------------------------------------------------------------------
    def describe(self, workerID: int, refresh: bool = True) -> WorkerDescription:
        """The latest description of a worker; the backend is asked every pollInterval."""
        with self._lock:
            due = time.monotonic() - self._lastPoll >= self.pollInterval
            if refresh and due:
                self._lastPoll = time.monotonic()
                for queried, new in self.query().items():
                    old = self._descriptions.get(queried)
                    if old is not None and old.host and not new.host:
                        new = replace(new, host=old.host)
                    self._descriptions[queried] = new
            return self._descriptions.get(workerID, WorkerDescription(workerID, self.backend))

    def record(self, description: WorkerDescription) -> None:
        """Store what is known about a worker (called by ``submit`` and ``query``)."""
        self._descriptions[description.workerID] = description

    def recorded(self) -> dict[int, WorkerDescription]:
        return dict(self._descriptions)

    def noteHost(self, workerID: int, host: str) -> None:
        """The worker said where it runs (batch schedulers may not)."""
        with self._lock:
            current = self._descriptions.get(workerID, WorkerDescription(workerID, self.backend))
            if not current.host:
                self._descriptions[workerID] = replace(current, host=host)

    # --- optional -------------------------------------------------------------------
    #: can :meth:`resubmit` start another job for a worker whose job died during the run?
    canResubmit = False

    def resubmit(self, workerID: int, command: WorkerCommand) -> None:
        """Start another job for ``workerID``, whose job has ended (see canResubmit)."""
        raise NotImplementedError(f"{type(self).__name__} cannot resubmit a worker")

    #: the interface the channel listens on by default: None is the one the channel's host
    #: name names (``engine.remote.channel.interfaceFor``), "" every interface
    defaultInterface: str | None = None
    #: can workers read a file in the run directory (is it on a filesystem they share)?
    sharedFilesystem = True

    def defaultWorkerCommand(self) -> list[str]:
        """How a worker starts ``sharedapplier computeworker`` (this Python, by default)."""
        return [sys.executable, "-m", "sharedapplier", "computeworker"]

    def addressArguments(self, address: ChannelAddress | None) -> list[str] | None:
        """Worker arguments that pass the channel address without a shared file.

        None means the backend has no private way: the address goes on the command line.
        ``address`` None is a preview's: make nothing, show what would be passed.
        """
        return None

    def workerCommand(self, address: ChannelAddress | None,
                      addressFile: Path | None) -> WorkerCommand:
        """The command every worker runs: the address in ``addressFile`` when the workers
        can read it (None when they cannot), else as :meth:`addressArguments` passes it,
        else on the command line. ``address`` None: a preview's placeholders."""
        base = self.extraParams.get("workerCommand") or self.defaultWorkerCommand()
        if addressFile is not None:
            return WorkerCommand((*base, "--channaddrfile", str(addressFile)))
        extra = self.addressArguments(address)
        if extra is None:
            shown = "HOST,PORT,KEY" if address is None else address.addressStr()
            extra = ["--channaddr", shown]
        return WorkerCommand((*base, *extra))
