"""CW_AWSBATCH: compute workers as an AWS Batch array job, through boto3.

The channel's address and key never appear in the job's command, environment or anything
else ``describe_jobs`` shows: they go into an AWS Secrets Manager secret made for the run
(deleted after it), and workers get only the secret's ARN. The job role needs
``secretsmanager:GetSecretValue`` on it.

computeWorkerExtraParams:

=========================  ===========================================================
``jobQueue``               job queue name or ARN (required)
``jobDefinition``          job definition name or ARN (required)
``region``                 AWS region (default: boto3's)
``resourceRequirements``   e.g. ``[{"type": "VCPU", "value": "2"}, ...]``
``environment``            extra environment for workers, ``{"NAME": "value"}``
``workerCommand``          the worker's command (default ``sharedapplier computeworker``)
``endpointUrl``            a non-AWS endpoint (a test double); also given to workers
``channelHost``            the address workers connect to (default: this host's name)
=========================  ===========================================================

The typed options of :mod:`.settings` work too: ``queue`` for ``jobQueue``,
``cpusPerWorker`` and ``memory`` for ``resourceRequirements``, ``wallTime`` as the job's
``timeout`` (at least 60 s, AWS Batch's minimum).
"""
from __future__ import annotations

import json
import secrets

from .. import rioserrors
from .base import Launcher, WorkerCommand, WorkerDescription

FINAL_STATES = {"SUCCEEDED", "FAILED"}
NOT_STARTED = {"SUBMITTED", "PENDING", "RUNNABLE"}
LOG_GROUP = "/aws/batch/job"
DESCRIBE_BATCH = 100


def _boto3():
    try:
        import boto3
    except ImportError:
        raise rioserrors.UnavailableError(
            "CW_AWSBATCH requires the boto3 package: pip install boto3") from None
    return boto3


def addressFromSecret(secretID: str):
    """The channel address stored in a Secrets Manager secret (worker side)."""
    import os

    from .base import ChannelAddress
    client = _boto3().client("secretsmanager", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))
    value = client.get_secret_value(SecretId=secretID)["SecretString"]
    return ChannelAddress(**json.loads(value))


class AWSBatchLauncher(Launcher):
    """Submits one array job (a single job for one worker); cancels it on the way out."""

    backend = "AWS Batch"
    arrayIndexVariables = ("AWS_BATCH_JOB_ARRAY_INDEX",)
    jobIdVariables = ("AWS_BATCH_JOB_ID",)
    paramNames = ("jobQueue", "jobDefinition", "region", "resourceRequirements",
                  "environment", "endpointUrl")
    sharedFilesystem = False

    def __init__(self, extraParams, rundir, jobName):
        super().__init__(extraParams, rundir, jobName)
        self.jobIDs: dict[int, str] = {}
        self.parentID = None
        self.secretArn = None
        self._clients = {}

    def _client(self, service):
        if service not in self._clients:
            kwargs = {}
            if self.extraParams.get("region"):
                kwargs["region_name"] = self.extraParams["region"]
            if self.extraParams.get("endpointUrl"):
                kwargs["endpoint_url"] = self.extraParams["endpointUrl"]
            self._clients[service] = _boto3().client(service, **kwargs)
        return self._clients[service]

    def checkAvailable(self) -> None:
        missing = [name for name, value in (("jobQueue", self._jobQueue()),
                                            ("jobDefinition",
                                             self.extraParams.get("jobDefinition")))
                   if not value]
        if missing:
            raise ValueError(f"CW_AWSBATCH needs {', '.join(missing)} in "
                             "computeWorkerExtraParams (or the config file)")
        self._client("batch")

    def defaultWorkerCommand(self) -> list[str]:
        return ["sharedapplier", "computeworker"]

    def addressArguments(self, address) -> list[str]:
        if address is None:
            return ["--channaddrsecret", "ARN_OF_THE_RUN_S_SECRET"]
        name = f"sharedapplier/{self.jobName or 'run'}-{secrets.token_hex(8)}"
        reply = self._client("secretsmanager").create_secret(
            Name=name, SecretString=json.dumps({"hostname": address.hostname,
                                                "portnum": address.portnum,
                                                "authkey": address.authkey}))
        self.secretArn = reply["ARN"]
        return ["--channaddrsecret", self.secretArn]

    def submit(self, workerIDs: list[int], command: WorkerCommand) -> None:
        count = len(workerIDs)
        self.parentID = self._client("batch").submit_job(
            **self.jobRequest(workerIDs, command))["jobId"]
        for i, workerID in enumerate(workerIDs):
            self.jobIDs[workerID] = f"{self.parentID}:{i}" if count > 1 else self.parentID
            self.record(WorkerDescription(workerID, self.backend, self.jobIDs[workerID],
                                          state="SUBMITTED"))

    canResubmit = True

    def resubmit(self, workerID: int, command: WorkerCommand) -> None:
        """A job of its own for a worker whose job died, its number on its command line."""
        request = self.jobRequest([workerID], command)
        request["jobName"] += f"_{workerID}"
        self.jobIDs[workerID] = self._client("batch").submit_job(**request)["jobId"]
        self.record(WorkerDescription(workerID, self.backend, self.jobIDs[workerID],
                                      state="SUBMITTED"))

    def preview(self, workerIDs: list[int], command: WorkerCommand) -> dict[str, str]:
        return {"submit_job request": json.dumps(self.jobRequest(workerIDs, command),
                                                 indent=2) + "\n"}

    def jobRequest(self, workerIDs: list[int], command: WorkerCommand) -> dict:
        """The ``submit_job`` arguments: one array job, or a single job for one worker."""
        count = len(workerIDs)
        overrides = {"command": command.argv(None if count > 1 else workerIDs[0]),
                     "environment": self._environment()}
        requirements = self.extraParams.get("resourceRequirements") or self._typedRequirements()
        if requirements:
            overrides["resourceRequirements"] = requirements
        request = {"jobName": f"sharedapplier_{self.jobName or 'workers'}",
                   "jobQueue": self._jobQueue(),
                   "jobDefinition": self.extraParams.get("jobDefinition"),
                   "containerOverrides": overrides}
        if self.resources.wallSeconds is not None:
            request["timeout"] = {"attemptDurationSeconds": max(60, self.resources.wallSeconds)}
        if count > 1:
            request["arrayProperties"] = {"size": count}
        return request

    def _jobQueue(self) -> str | None:
        return self.extraParams.get("jobQueue") or self.resources.queue

    def _typedRequirements(self) -> list[dict]:
        given = [("VCPU", self.resources.cpusPerWorker), ("MEMORY", self.resources.memoryMiB)]
        return [{"type": kind, "value": str(value)} for kind, value in given
                if value is not None]

    def _environment(self):
        env = dict(self.extraParams.get("environment") or {})
        if self.extraParams.get("endpointUrl"):
            env["AWS_ENDPOINT_URL"] = self.extraParams["endpointUrl"]
        region = self.extraParams.get("region") or self._client("batch").meta.region_name
        env.setdefault("AWS_DEFAULT_REGION", region)
        return [{"name": k, "value": str(v)} for k, v in env.items()]

    def query(self) -> dict[int, WorkerDescription]:
        byJob = {jobID: workerID for workerID, jobID in self.jobIDs.items()}
        found = {}
        ids = list(byJob)
        for start in range(0, len(ids), DESCRIBE_BATCH):
            reply = self._client("batch").describe_jobs(jobs=ids[start:start + DESCRIBE_BATCH])
            for job in reply["jobs"]:
                workerID = byJob.get(job["jobId"])
                if workerID is not None:
                    found[workerID] = self._describe(workerID, job)
        return found

    def _describe(self, workerID, job):
        container = job.get("container", {})
        status = job.get("status")
        stream = container.get("logStreamName")
        return WorkerDescription(
            workerID, self.backend, backendID=job["jobId"],
            logLocation=f"CloudWatch {LOG_GROUP} {stream}" if stream else None,
            state=status, exitCode=container.get("exitCode"),
            reason=job.get("statusReason") or container.get("reason"),
            finished=status in FINAL_STATES)

    def logTail(self, workerID: int, lines: int = 20) -> str:
        location = self.describe(workerID, refresh=False).logLocation
        if not location:
            return ""
        stream = location.split()[-1]
        try:
            events = self._client("logs").get_log_events(
                logGroupName=LOG_GROUP, logStreamName=stream, limit=lines)["events"]
        except Exception:
            return ""
        return "".join(e["message"].rstrip("\n") + "\n" for e in events)

    def cancel(self) -> None:
        batch = self._client("batch")
        try:
            states = self.query() if self.jobIDs else {}
            for workerID, jobID in self.jobIDs.items():
                desc = states.get(workerID)
                if desc is not None and desc.finished:
                    continue
                reason = "sharedapplier run ended"
                if desc is not None and desc.state in NOT_STARTED:
                    batch.cancel_job(jobId=jobID, reason=reason)
                else:
                    batch.terminate_job(jobId=jobID, reason=reason)
            if self.parentID is not None and len(self.jobIDs) > 1:
                batch.terminate_job(jobId=self.parentID, reason="sharedapplier run ended")
        finally:
            self._deleteSecret()

    def _deleteSecret(self):
        if self.secretArn is not None:
            self._client("secretsmanager").delete_secret(
                SecretId=self.secretArn, ForceDeleteWithoutRecovery=True)
            self.secretArn = None
