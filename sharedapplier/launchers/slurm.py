"""CW_SLURM: compute workers as one SLURM array job (one array task per worker).

A worker whose task died is submitted again as a one-task array of the same script
(``sbatch --array=N``), so that it keeps its number; each worker is described from the
latest job that ran it.
"""
from __future__ import annotations

import re

from .. import rioserrors
from .base import Launcher, WorkerCommand, WorkerDescription
from .jobscript import (
    SCRIPT_PARAMS,
    jobScriptText,
    optionLines,
    parseKeyValues,
    resourceLines,
    runCommand,
    writeJobScript,
)

TERMINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
                   "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT", "REVOKED"}
SCRIPT_NAME = "slurm_job.sh"


class SlurmLauncher(Launcher):
    """Submits ``sbatch --array``; watches with ``scontrol show job``; cancels with scancel.

    computeWorkerExtraParams: ``sbatchOptions`` (extra ``#SBATCH`` lines: a string of lines
    or a list), ``initCmds``, ``cmdPrefix``, ``cmdSuffix`` (strings, as in RIOS), and the
    typed options of :mod:`.settings`.
    """

    backend = "SLURM"
    arrayIndexVariables = ("SLURM_ARRAY_TASK_ID",)
    jobIdVariables = ("SLURM_JOB_ID",)
    paramNames = ("sbatchOptions", *SCRIPT_PARAMS)

    canResubmit = True

    def __init__(self, extraParams, rundir, jobName):
        super().__init__(extraParams, rundir, jobName)
        self.jobID = None
        self.workerIDs: list[int] = []
        self.jobOf: dict[int, str] = {}  # worker -> the latest job that runs it
        self.script = None

    def checkAvailable(self) -> None:
        try:
            runCommand(["squeue", "--noheader", "--me"], "CW_SLURM")
        except rioserrors.JobMgrError as e:
            raise rioserrors.UnavailableError(f"SLURM is not available: {e}") from None

    def submit(self, workerIDs: list[int], command: WorkerCommand) -> None:
        self.workerIDs = list(workerIDs)
        self.script = writeJobScript(self.rundir / SCRIPT_NAME,
                                     self.jobScript(len(workerIDs), command))
        self.jobID = self._sbatch([str(self.script)])
        for i in self.workerIDs:
            self.jobOf[i] = self.jobID
            self.record(self._pending(i, "PENDING"))

    def preview(self, workerIDs: list[int], command: WorkerCommand) -> dict[str, str]:
        return {SCRIPT_NAME: self.jobScript(len(workerIDs), command)}

    def jobScript(self, count: int, command: WorkerCommand) -> str:
        """The array job's script: our lines, the typed options', then the user's own."""
        log = self.rundir / "worker_%a.log"
        name = f"sharedapplier_{self.jobName}" if self.jobName else "sharedapplier"
        header = [f"#SBATCH --array=0-{count - 1}", f"#SBATCH -o {log}", f"#SBATCH -e {log}",
                  f"#SBATCH -J {name}", *self._resourceLines(),
                  *optionLines("#SBATCH", self.extraParams.get("sbatchOptions"))]
        return jobScriptText(header, command.argv(), self.extraParams)

    def _resourceLines(self) -> list[str]:
        given = self.resources
        return resourceLines("#SBATCH", [
            ("--partition=", given.queue), ("--time=", given.wallClock()),
            ("--mem=", given.memoryMiB and f"{given.memoryMiB}M"),
            ("--cpus-per-task=", given.cpusPerWorker)])

    def resubmit(self, workerID: int, command: WorkerCommand) -> None:
        task = self.workerIDs.index(workerID)
        self.jobOf[workerID] = self._sbatch([f"--array={task}", "--open-mode=append",
                                             str(self.script)])
        self.record(self._pending(workerID, "PENDING"))

    @staticmethod
    def _sbatch(args) -> str:
        result = runCommand(["sbatch", "--parsable", *args], "CW_SLURM")
        match = re.match(r"\s*(\d+)(;\S+)?\s*$", result.stdout)
        if match is None:
            raise rioserrors.JobMgrError(
                f"sbatch printed no job id: {result.stdout.strip()!r} {result.stderr.strip()}")
        return match.group(1)

    def query(self) -> dict[int, WorkerDescription]:
        found = {}
        for jobID in sorted(set(self.jobOf.values())):
            workers = {i for i, j in self.jobOf.items() if j == jobID}
            found.update({i: d for i, d in self._queryJob(jobID).items() if i in workers})
        return found

    def _queryJob(self, jobID) -> dict[int, WorkerDescription]:
        result = runCommand(["scontrol", "-o", "show", "job", jobID], "CW_SLURM",
                            check=False)
        if result.returncode != 0:
            # the job has left slurmctld's memory (MinJobAge): it ended long ago
            return {i: self._pending(i, "GONE", finished=True) for i in self.workerIDs}
        found = {}
        for line in result.stdout.splitlines():
            fields = parseKeyValues(line)
            for task in _taskNumbers(fields.get("ArrayTaskId", "")):
                if task < len(self.workerIDs):
                    found[self.workerIDs[task]] = self._fromFields(self.workerIDs[task],
                                                                   task, fields)
        return found

    def cancel(self) -> None:
        jobs = sorted(set(self.jobOf.values()))
        if jobs:
            runCommand(["scancel", *jobs], "CW_SLURM", check=False)

    def _pending(self, workerID, state, finished=False):
        return WorkerDescription(workerID, self.backend, backendID=self._taskID(workerID),
                                 logLocation=str(self.rundir / f"worker_{workerID}.log"),
                                 state=state, finished=finished)

    def _taskID(self, workerID):
        jobID = self.jobOf.get(workerID, self.jobID)
        return None if jobID is None else f"{jobID}_{workerID}"

    def _fromFields(self, workerID, task, fields):
        state = fields.get("JobState", "UNKNOWN")
        nodes = fields.get("NodeList")
        reason = fields.get("Reason")
        return WorkerDescription(
            workerID, self.backend, backendID=self._taskID(workerID),
            host=None if nodes in (None, "(null)") else nodes,
            logLocation=str(self.rundir / f"worker_{task}.log"), state=state,
            exitCode=fields.get("ExitCode"),
            reason=None if reason in (None, "None") else reason,
            finished=state in TERMINAL_STATES)


def _taskNumbers(spec: str) -> list[int]:
    """``3``, ``0-3``, ``0,2,4-6%2`` (a throttle after %) -> task numbers."""
    numbers = []
    for part in spec.split("%")[0].split(","):
        low, _, high = part.partition("-")
        if low.isdigit():
            numbers.extend(range(int(low), int(high if high.isdigit() else low) + 1))
    return numbers
