"""CW_PBS: compute workers as PBS jobs, one job per worker (as RIOS does).

One job each, rather than an array, because the PBS-style commands found in practice differ
in their array options (PBS Pro ``-J``, Torque ``-t``, Slurm's Torque wrappers neither).
Job ids may be ``N.server`` (PBS Pro, Torque) or bare numbers (Slurm's ``qsub`` wrapper).
"""
from __future__ import annotations

import json
import re

from .. import rioserrors
from .base import Launcher, WorkerCommand, WorkerDescription
from .jobscript import (
    SCRIPT_PARAMS,
    jobScriptText,
    optionLines,
    resourceLines,
    runCommand,
    writeJobScript,
)

JOB_ID = re.compile(r"^\s*(\d+(?:\[\d*\])?(?:\.[\w.-]+)?)\s*$")
# qstat's single-letter states; F (PBS Pro) and C (Torque) are final
STATES = {"Q": "QUEUED", "H": "HELD", "W": "WAITING", "R": "RUNNING", "E": "EXITING",
          "B": "BEGUN", "S": "SUSPENDED", "T": "MOVING", "F": "FINISHED", "C": "COMPLETED",
          "X": "EXPIRED"}
FINAL = {"F", "C", "X"}


class PBSLauncher(Launcher):
    """Submits with qsub, watches with ``qstat -f`` (JSON when it can), cancels with qdel.

    computeWorkerExtraParams: ``qsubOptions`` (extra ``#PBS`` lines: a string of lines or a
    list), ``initCmds``, ``cmdPrefix``, ``cmdSuffix`` (strings, as in RIOS), and the
    typed options of :mod:`.settings`.
    """

    backend = "PBS"
    arrayIndexVariables = ("PBS_ARRAY_INDEX", "PBS_ARRAYID")
    jobIdVariables = ("PBS_JOBID",)
    paramNames = ("qsubOptions", *SCRIPT_PARAMS)

    def __init__(self, extraParams, rundir, jobName):
        super().__init__(extraParams, rundir, jobName)
        self.jobIDs: dict[int, str] = {}
        self.json = True

    def checkAvailable(self) -> None:
        try:
            runCommand(["qstat"], "CW_PBS")
        except rioserrors.JobMgrError as e:
            raise rioserrors.UnavailableError(f"PBS is not available: {e}") from None

    def submit(self, workerIDs: list[int], command: WorkerCommand) -> None:
        for workerID in workerIDs:
            log = self.rundir / f"worker_{workerID}.log"
            script = writeJobScript(self.rundir / _scriptName(workerID),
                                    self.jobScript(workerID, command))
            # the log options again on the command line: some qsub wrappers ignore #PBS
            # lines for them; and from the run directory, so that any stray file goes too
            result = runCommand(["qsub", "-j", "oe", "-o", str(log), str(script)], "CW_PBS",
                                cwd=self.rundir)
            match = JOB_ID.match(result.stdout)
            if match is None:
                raise rioserrors.JobMgrError(
                    f"qsub printed no job id: {result.stdout.strip()!r} "
                    f"{result.stderr.strip()}")
            self.jobIDs[workerID] = match.group(1)
            self.record(self._describe(workerID, {"job_state": "Q"}))

    def preview(self, workerIDs: list[int], command: WorkerCommand) -> dict[str, str]:
        return {_scriptName(i): self.jobScript(i, command) for i in workerIDs}

    def jobScript(self, workerID: int, command: WorkerCommand) -> str:
        """One worker's script: our lines, the typed options', then the user's own."""
        log = self.rundir / f"worker_{workerID}.log"
        name = f"sa_{self.jobName}_{workerID}" if self.jobName else f"sa_{workerID}"
        header = ["#PBS -j oe", f"#PBS -o {log}", f"#PBS -N {name[:15]}",
                  *self._resourceLines(),
                  *optionLines("#PBS", self.extraParams.get("qsubOptions"))]
        return jobScriptText(header, command.argv(workerID), self.extraParams)

    def _resourceLines(self) -> list[str]:
        given = self.resources
        return resourceLines("#PBS", [
            ("-q ", given.queue), ("-l walltime=", given.wallClock()),
            ("-l mem=", given.memoryMiB and f"{given.memoryMiB}mb"),
            ("-l ncpus=", given.cpusPerWorker)])

    canResubmit = True

    def resubmit(self, workerID: int, command: WorkerCommand) -> None:
        """Another job for a worker whose job died (one job per worker: a new one)."""
        self.submit([workerID], command)

    def query(self) -> dict[int, WorkerDescription]:
        return {workerID: self._describe(workerID, self._status(jobID))
                for workerID, jobID in self.jobIDs.items()}

    def cancel(self) -> None:
        live = [self.jobIDs[i] for i, d in self.recorded().items()
                if i in self.jobIDs and not d.finished]
        if live:
            runCommand(["qdel", *live], "CW_PBS", check=False)

    def _status(self, jobID) -> dict:
        """qstat's attributes of one job; an empty dict once PBS has forgotten it."""
        if self.json:
            result = runCommand(["qstat", "-x", "-f", "-F", "json", jobID], "CW_PBS",
                                check=False)
            try:
                jobs = json.loads(result.stdout).get("Jobs", {})
                return next(iter(jobs.values()), {})
            except (ValueError, AttributeError):
                self.json = False  # this qstat has no JSON output (e.g. Slurm's wrapper)
        result = runCommand(["qstat", "-f", jobID], "CW_PBS", check=False)
        return _parseFullStatus(result.stdout) if result.returncode == 0 else {}

    def _describe(self, workerID, attrs):
        letter = attrs.get("job_state")
        finished = letter in FINAL or not attrs
        host = attrs.get("exec_host")
        return WorkerDescription(
            workerID, self.backend, backendID=self.jobIDs.get(workerID),
            host=host.split("/")[0] if host else None,
            logLocation=str(self.rundir / f"worker_{workerID}.log"),
            state=STATES.get(letter, letter) if attrs else "GONE",
            exitCode=attrs.get("Exit_status", attrs.get("exit_status")),
            reason=attrs.get("comment"), finished=finished)


def _parseFullStatus(text: str) -> dict:
    """``qstat -f``'s ``key = value`` lines into a dict."""
    attrs = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(" = ")
        if sep:
            attrs[key.strip()] = value.strip()
    return attrs


def _scriptName(workerID: int) -> str:
    return f"pbs_job_{workerID}.sh"
