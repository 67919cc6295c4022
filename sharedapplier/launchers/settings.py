"""Batch settings: the typed options every batch kind reads, and a user's own defaults.

Beside each scheduler's own lines (``sbatchOptions``, ``qsubOptions``, ...),
``computeWorkerExtraParams`` may hold, for any batch kind:

=================  =============================================================
``queue``          the partition (SLURM), queue (PBS) or job queue (AWS Batch)
``wallTime``       time limit of each worker: ``"HH:MM:SS"``, ``"MM:SS"`` or seconds
``memory``         memory of each worker: ``"4G"``, ``"512M"``, ``"4GB"``, or MiB
``cpusPerWorker``  CPUs of each worker
=================  =============================================================

Each launcher turns them into its scheduler's options (:class:`BatchResources`). Defaults
for any key come from the user's config file (:func:`configPath`), a TOML table per kind,
as dask-jobqueue users know from its YAML::

    [CW_SLURM]
    queue = "work"
    wallTime = "02:00:00"
    sbatchOptions = ["--account=rs0042"]

What a script's ``computeWorkerExtraParams`` says wins over the file.
"""
from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .. import rioserrors

CONFIG_ENV = "SHAREDAPPLIER_CONFIG"
TYPED_PARAMS = ("queue", "wallTime", "memory", "cpusPerWorker")
# what the engine itself reads from computeWorkerExtraParams, for every remote kind
ENGINE_PARAMS = ("workerCommand", "channelHost", "channelInterface", "channelPortRange",
                 "heartbeatTimeout")
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)
_MIB_PER_UNIT = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 ** 2}


def configPath(environ: Mapping[str, str] | None = None) -> Path:
    """The config file: ``$SHAREDAPPLIER_CONFIG``, else ``sharedapplier/config.toml`` in
    ``$XDG_CONFIG_HOME`` (default ``~/.config``)."""
    environ = os.environ if environ is None else environ
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV]).expanduser()
    home = environ.get("HOME") or os.path.expanduser("~")
    folder = environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    return Path(folder) / "sharedapplier" / "config.toml"


def configDefaults(kind: str, known: tuple[str, ...], path: Path | None = None) -> dict:
    """The config file's table for ``kind`` ({} without a file or table); ParameterError,
    naming the file, for a file that is not TOML or a key no launcher of ``kind`` reads."""
    path = configPath() if path is None else path
    try:
        with open(path, "rb") as f:
            tables = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise rioserrors.ParameterError(
            f"cannot read the sharedapplier config file {path}: {e}; fix it, or point "
            f"${CONFIG_ENV} at another") from None
    table = tables.get(kind, {})
    if not isinstance(table, dict):
        raise rioserrors.ParameterError(f"[{kind}] in {path} must be a table of settings")
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise rioserrors.ParameterError(
            f"{path} sets {', '.join(unknown)} for {kind}, which it does not read; "
            f"its settings are {', '.join(sorted(known))}")
    return table


def withConfigDefaults(kind: str, extraParams: dict | None, known: tuple[str, ...]) -> dict:
    """``extraParams`` over the config file's defaults for ``kind``."""
    return {**configDefaults(kind, known), **(extraParams or {})}


@dataclass(frozen=True)
class BatchResources:
    """The typed options, checked: None where the user left the scheduler's default."""

    queue: str | None = None
    wallSeconds: int | None = None
    memoryMiB: int | None = None
    cpusPerWorker: int | None = None

    @classmethod
    def fromParams(cls, params: Mapping) -> BatchResources:
        """From computeWorkerExtraParams; ParameterError naming a bad option and its form."""
        queue = params.get("queue")
        if queue is not None and not (isinstance(queue, str) and queue.strip()):
            raise _bad("queue", queue, "a non-empty name")
        return cls(queue=queue, wallSeconds=_seconds(params.get("wallTime")),
                   memoryMiB=_mebibytes(params.get("memory")),
                   cpusPerWorker=_positiveInt("cpusPerWorker", params.get("cpusPerWorker")))

    def wallClock(self) -> str | None:
        """The time limit as ``HH:MM:SS``, the form SLURM and PBS both read."""
        if self.wallSeconds is None:
            return None
        hours, rest = divmod(self.wallSeconds, 3600)
        return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def _bad(name, value, form) -> rioserrors.ParameterError:
    return rioserrors.ParameterError(
        f"computeWorkerExtraParams[{name!r}] = {value!r} is not {form}")


def _seconds(value) -> int | None:
    if value is None:
        return None
    form = "a time limit such as '02:00:00', '45:00' or 3600 (seconds)"
    if isinstance(value, bool):
        raise _bad("wallTime", value, form)
    if isinstance(value, (int, float)):
        seconds = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\d+(:\d{1,2}){0,2}", value.strip()):
        seconds = 0
        for part in value.strip().split(":"):
            seconds = seconds * 60 + int(part)
    else:
        raise _bad("wallTime", value, form)
    if seconds <= 0:
        raise _bad("wallTime", value, form)
    return seconds


def _mebibytes(value) -> int | None:
    if value is None:
        return None
    form = "an amount of memory such as '4G', '512M' or 4096 (MiB)"
    if isinstance(value, bool):
        raise _bad("memory", value, form)
    if isinstance(value, (int, float)):
        amount = float(value)
    else:
        match = _MEMORY.match(str(value))
        if match is None:
            raise _bad("memory", value, form)
        amount = float(match.group(1)) * _MIB_PER_UNIT[match.group(2).upper()]
    if amount < 1:
        raise _bad("memory", value, form)
    return int(round(amount))


def _positiveInt(name, value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _bad(name, value, "a whole number of at least 1")
    return value
