"""Batch job scripts and scheduler commands shared by the SLURM and PBS launchers.

The script has RIOS's shape, so that site recipes carry over: the scheduler's header lines
(ours, then the user's ``sbatchOptions``/``qsubOptions``), the user's ``initCmds``, a begin
marker, ``cmdPrefix`` + the worker command + ``cmdSuffix``, the worker's exit status and an
end marker, so that a log can be read back after the job.
"""
from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from .. import rioserrors

BEGIN_MARKER = "Begin-sharedapplier-worker"
END_MARKER = "End-sharedapplier-worker"
STATUS_LABEL = "sharedapplier computeworker status:"
COMMAND_TIMEOUT_SECONDS = 60

# RIOS's names for the job-script parameters in computeWorkerExtraParams.
SCRIPT_PARAMS = ("initCmds", "cmdPrefix", "cmdSuffix")


def jobScriptText(headerLines: list[str], argv: list[str], extraParams: dict) -> str:
    """A bash job script running ``argv`` after the header lines and the user's initCmds."""
    for key in SCRIPT_PARAMS:
        value = extraParams.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"computeWorkerExtraParams[{key!r}] must be a string, "
                             f"not {type(value).__name__}")
    lines = ["#!/bin/bash", *headerLines]
    if extraParams.get("initCmds"):
        lines.append(extraParams["initCmds"].rstrip("\n"))
    command = (extraParams.get("cmdPrefix") or "") + shlex.join(argv) + \
        (extraParams.get("cmdSuffix") or "")
    lines += [f"echo '{BEGIN_MARKER}'", command, "status=$?", f"echo '{END_MARKER}'",
              f"echo '{STATUS_LABEL}' $status", "exit $status", ""]
    return "\n".join(lines)


def writeJobScript(path: Path, text: str) -> Path:
    """Write an executable job script that only its owner can read; returns its path."""
    path.write_text(text)
    path.chmod(0o700)
    return path


def optionLines(prefix: str, options) -> list[str]:
    """The user's scheduler options as header lines (a string of lines, or a list)."""
    if not options:
        return []
    if isinstance(options, str):
        options = options.splitlines()
    lines = []
    for option in options:
        option = option.strip()
        if option:
            lines.append(option if option.startswith(prefix) else f"{prefix} {option}")
    return lines


def resourceLines(prefix: str, options) -> list[str]:
    """Header lines of the typed options a user gave: ``(flag, value)`` pairs, a value of
    None left out, each line ``prefix flag+value``."""
    return [f"{prefix} {flag}{value}" for flag, value in options if value is not None]


def runCommand(argv: list[str], what: str, check: bool = True,
               cwd=None) -> subprocess.CompletedProcess:
    """Run a scheduler command; JobMgrError with its output if it fails."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, cwd=cwd,
                                timeout=COMMAND_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise rioserrors.UnavailableError(
            f"{argv[0]} was not found: {what} needs it on the PATH") from None
    except subprocess.TimeoutExpired:
        raise rioserrors.JobMgrError(
            f"'{shlex.join(argv)}' did not answer within {COMMAND_TIMEOUT_SECONDS} s") from None
    if check and result.returncode != 0:
        message = (result.stderr or result.stdout).strip()
        raise rioserrors.JobMgrError(
            f"'{shlex.join(argv)}' failed with exit code {result.returncode}: {message}")
    return result


def parseKeyValues(text: str) -> dict:
    """``Key=Value`` tokens separated by spaces (scontrol -o), into a dict."""
    values = {}
    for token in text.split():
        key, sep, value = token.partition("=")
        if sep:
            values[key] = value
    return values
