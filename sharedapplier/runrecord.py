"""What a run may leave behind if its process dies, written down while it runs.

Every ``apply`` keeps a small record (JSON) in the user's run-record folder: the host, the
pid and start time of its process, its folders (the ``rios_*`` folder of temporary files,
and a remote run's directory with the channel's key file and the workers' logs) and the
output files it has created and not yet finished. A run
that ends, well or not, removes what it made and then its record; a record whose process
has gone without removing it (SIGKILL, a lost node, the out-of-memory killer) says what
``sharedapplier cleanup`` should remove. Shared-memory segments need no record: their names
carry the owner's pid (``engine.slabpool.staleSegments``).

The folder is ``$SHAREDAPPLIER_RUN_RECORDS``, else ``$XDG_STATE_HOME/sharedapplier/runs``
(``~/.local/state/sharedapplier/runs``). Records name their host: on a home folder shared
by a cluster's nodes, ``cleanup`` acts only on the records of the host it runs on.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import socket
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

RECORDS_ENV = "SHAREDAPPLIER_RUN_RECORDS"
RECORD_SUFFIX = ".json"

logger = logging.getLogger(__name__)


def recordsFolder() -> Path:
    """Where run records are kept (made when first needed)."""
    explicit = os.environ.get(RECORDS_ENV)
    if explicit:
        return Path(explicit)
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"),
                                                              ".local", "state")
    return Path(state) / "sharedapplier" / "runs"


def _processStart(pid: int) -> float | None:
    """When process ``pid`` started; None if there is no such process."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


@dataclass
class RunLeftovers:
    """What one record lists (a run's, as it stood when last written)."""

    host: str
    pid: int
    started: float
    folders: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def processGone(self) -> bool:
        """Whether the run's process has ended (a new process with its pid is another)."""
        start = _processStart(self.pid)
        return start is None or abs(start - self.started) > 1.0

    def stillThere(self) -> bool:
        """Whether any listed output or folder still exists."""
        return (any(os.path.exists(output) for output in self.outputs)
                or any(os.path.isdir(folder) for folder in self.folders))

    def describe(self) -> str:
        return f"run of pid {self.pid} on {self.host}"


class RunRecord:
    """The record of one run in this process; :meth:`end` removes it."""

    def __init__(self, folder: Path | None = None):
        self.folder = Path(folder) if folder is not None else recordsFolder()
        me = os.getpid()
        self.leftovers = RunLeftovers(socket.gethostname(), me, _processStart(me) or 0.0)
        self.path = self.folder / (f"{self.leftovers.host}_{me}_{secrets.token_hex(4)}"
                                   f"{RECORD_SUFFIX}")
        self.lock = threading.Lock()
        self.written = False

    def noteFolder(self, path) -> None:
        """A folder of the run's own now exists (removed with everything in it)."""
        with self.lock:
            self.leftovers.folders.append(str(Path(path).resolve()))
            self._write()

    def noteOutput(self, filename: str) -> None:
        """An output file now exists, unfinished."""
        with self.lock:
            self.leftovers.outputs.append(str(Path(filename).resolve()))
            self._write()

    def outputDone(self, filename: str) -> None:
        """An output was finished (or removed): it is not a leftover."""
        with self.lock:
            path = str(Path(filename).resolve())
            if path in self.leftovers.outputs:
                self.leftovers.outputs.remove(path)
                self._write()

    def end(self) -> None:
        """The run is over: forget it, unless something it made could not be removed (an
        output it failed to delete, a run directory still there), which the record keeps
        naming for ``cleanup``."""
        with self.lock:
            if self.leftovers.stillThere():
                self._write()
                return
            with contextlib.suppress(OSError):  # never written, or its folder unusable
                self.path.unlink()

    def _write(self) -> None:
        """Replace the record at once (a reader never sees half of one). A folder that
        cannot be written costs the run nothing but its record, with a warning."""
        try:
            if not self.written:
                self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
                self.written = True
            partial = self.path.with_suffix(".tmp")
            partial.write_text(json.dumps(asdict(self.leftovers)))
            os.replace(partial, self.path)
        except OSError as e:
            _warnUnwritable(self.folder, e)


_warnedFolders: set = set()


def _warnUnwritable(folder: Path, error: OSError) -> None:
    if folder not in _warnedFolders:
        _warnedFolders.add(folder)
        logger.warning(f"sharedapplier: warning: cannot keep run records in {folder} "
                       f"({error}); set {RECORDS_ENV} to a writable folder so that "
                       "'sharedapplier cleanup' can find what a killed run leaves")


def readRecords(folder: Path | None = None) -> dict[Path, RunLeftovers]:
    """Every readable record in the folder, by path (unreadable ones are skipped)."""
    folder = Path(folder) if folder is not None else recordsFolder()
    records = {}
    for path in sorted(folder.glob(f"*{RECORD_SUFFIX}")) if folder.is_dir() else []:
        with contextlib.suppress(OSError, ValueError, TypeError):
            records[path] = RunLeftovers(**json.loads(path.read_text()))
    return records


def staleRecords(folder: Path | None = None) -> dict[Path, RunLeftovers]:
    """The records of this host's runs whose process has gone."""
    host = socket.gethostname()
    return {path: rec for path, rec in readRecords(folder).items()
            if rec.host == host and rec.processGone()}


def removeLeftovers(path: Path, leftovers: RunLeftovers, deleteOutput) -> list[str]:
    """Remove what a dead run left (its unfinished outputs, with ``deleteOutput``, and its
    folders), then its record; what was removed."""
    removed = []
    for output in leftovers.outputs:
        if os.path.exists(output):
            deleteOutput(output)
            removed.append(f"unfinished output {output}")
    for folder in leftovers.folders:
        if os.path.isdir(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(f"folder {folder}")
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return removed
