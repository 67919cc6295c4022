"""CW_SUBPROC: compute workers as local subprocesses that use the network channel.

It exercises the whole remote path (channel, worker entry point, launcher) on one machine,
which makes it the way to test a batch set-up before queueing real jobs.
"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time

from .base import Launcher, WorkerCommand, WorkerDescription

_STOP_GRACE_SECONDS = 2.0


class SubprocLauncher(Launcher):
    """One ``sharedapplier computeworker`` process per worker, in its own process group."""

    backend = "subprocess"
    pollInterval = 0.1
    defaultInterface = "127.0.0.1"

    def __init__(self, extraParams, rundir, jobName):
        super().__init__(extraParams, rundir, jobName)
        self.procs: dict[int, subprocess.Popen] = {}

    def checkAvailable(self) -> None:
        """Local subprocesses are always available."""

    def submit(self, workerIDs: list[int], command: WorkerCommand) -> None:
        for workerID in workerIDs:
            log = self.rundir / f"worker_{workerID}.log"
            with open(log, "wb") as out:
                proc = subprocess.Popen(command.argv(workerID), stdout=out,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
            self.procs[workerID] = proc
            self.record(self._describe(workerID, proc))

    def preview(self, workerIDs: list[int], command: WorkerCommand) -> dict[str, str]:
        return {f"worker {i}": shlex.join(command.argv(i)) + "\n" for i in workerIDs}

    canResubmit = True

    def resubmit(self, workerID: int, command: WorkerCommand) -> None:
        self.submit([workerID], command)

    def query(self) -> dict[int, WorkerDescription]:
        return {i: self._describe(i, proc) for i, proc in self.procs.items()}

    def cancel(self) -> None:
        live = [p for p in self.procs.values() if p.poll() is None]
        for proc in live:
            _signalGroup(proc, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE_SECONDS
        for proc in live:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signalGroup(proc, signal.SIGKILL)
                proc.wait()

    def _describe(self, workerID, proc):
        code = proc.poll()
        if code is None:
            state, reason = "RUNNING", None
        elif code < 0:
            state, reason = "KILLED", f"killed by signal {signal.Signals(-code).name}"
        else:
            state, reason = "EXITED", None
        return WorkerDescription(workerID, self.backend, backendID=f"pid {proc.pid}",
                                 host="localhost", logLocation=str(self.rundir /
                                                                   f"worker_{workerID}.log"),
                                 state=state, exitCode=code, reason=reason,
                                 finished=code is not None)


def _signalGroup(proc, signum):
    try:
        os.killpg(proc.pid, signum)
    except ProcessLookupError:
        pass
