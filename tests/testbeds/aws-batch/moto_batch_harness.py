#!/usr/bin/env python3
"""moto_batch_harness -- AWS Batch TEST BED: real boto3 calls, moto's Batch API, jobs run as
local processes (no Docker, no AWS).

What is real: every Batch API call (CreateComputeEnvironment, CreateJobQueue,
RegisterJobDefinition, SubmitJob with containerOverrides, DescribeJobs, ListJobs,
TerminateJob, CancelJob) goes through botocore to moto's Batch implementation,
over HTTP when run as a server.  What is faked: instead of moto's Docker runner
(`moto.batch.models.Job.run`, which needs a Docker daemon) each job's final
command (job definition command, overridden by containerOverrides.command,
Ref::params substituted) is run as a LOCAL subprocess, with the job definition's
+ override environment and the AWS_BATCH_* variables.  The container image is
ignored: the command must exist on this host (e.g. use sys.executable, or a PATH
that finds python).

Status sequence a client sees: SUBMITTED -> PENDING -> RUNNABLE -> STARTING ->
RUNNING -> SUCCEEDED (exit 0) | FAILED (exit != 0, terminate_job, timeout).
terminate_job: SIGTERM to the job's process group, SIGKILL after
HARNESS_KILL_GRACE s (default 2; real Batch/ECS uses a 30 s stop timeout);
statusReason = the reason given; container.exitCode = 128+signal like Docker.
cancel_job: only before RUNNING (moto semantics), job -> FAILED.
stdout+stderr go to $HARNESS_LOG_DIR/<jobId>.log and to moto's CloudWatch Logs
(/aws/batch/job, stream <jobdef-name>/default/<jobId>) when the job ends.

Two ways to use it:
  1. server (what a launcher test would do):
       python moto_batch_harness.py --host 127.0.0.1 --port 0 --ready-file /tmp/h.json
     -> prints/writes {"endpoint": "http://127.0.0.1:NNNNN", "pid": ...}; point boto3 at it
        with endpoint_url=... and dummy credentials.  SIGTERM/SIGINT: stops the server and
        kills every job process group it started.
  2. in-process with mock_aws (pytest):
       import moto_batch_harness; moto_batch_harness.install()
       with mock_aws(): ... boto3 calls ...     # jobs run as local subprocesses
       moto_batch_harness.kill_all()

Env knobs: HARNESS_MAX_RUNNING (0 = unlimited; else jobs wait in RUNNABLE),
HARNESS_KILL_GRACE, HARNESS_LOG_DIR (default /tmp/moto_batch_harness_logs),
HARNESS_STEP_DELAY (s between the early status steps, default 0.2, so pollers can see them).
"""
import argparse
import atexit
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime

_procs = {}                      # job_id -> Popen
_lock = threading.Lock()
_slots = None


def _env_float(name, default):
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def _local_run(self):
    """Replacement for moto.batch.models.Job.run (runs inside the Job thread)."""
    from moto.batch.utils import JobStatus
    step = _env_float("HARNESS_STEP_DELAY", 0.2)
    grace = _env_float("HARNESS_KILL_GRACE", 2.0)
    logdir = os.environ.get("HARNESS_LOG_DIR", "/tmp/moto_batch_harness_logs")
    os.makedirs(logdir, exist_ok=True)
    slot_taken = False
    try:
        time.sleep(step)                                # let pollers see SUBMITTED
        self.status = JobStatus.PENDING.value
        time.sleep(step)
        if self.depends_on and not self._wait_for_dependencies():
            return
        self.status = JobStatus.RUNNABLE.value
        time.sleep(step)
        while _slots is not None and not self.stop:
            if _slots.acquire(timeout=0.2):
                slot_taken = True
                break
        if self.stop:                                   # cancelled / terminated before start
            self._mark_stopped(success=False)
            return
        self.status = JobStatus.STARTING.value
        time.sleep(step)

        cp = self.job_definition.container_properties
        if cp is None:
            self.job_stopped_reason = "moto_batch_harness: only container jobs are supported"
            self._mark_stopped(success=False)
            return
        command = self.container_overrides.get("command", cp.get("command"))
        if not command:
            self.job_stopped_reason = "moto_batch_harness: job has no command"
            self._mark_stopped(success=False)
            return
        command = self._add_parameters_to_command(command)
        # environment: job definition < containerOverrides < AWS_BATCH_* (read without the
        # moto helper, which appends AWS_BATCH_JOB_ID to the override list on every call)
        env = dict(os.environ)
        env.update({e["name"]: e["value"] for e in cp.get("environment", [])})
        env.update({e["name"]: e["value"] for e in self.container_overrides.get("environment", [])
                    if e["name"] != "AWS_BATCH_JOB_ID"})
        env.update({
            "AWS_BATCH_JOB_ID": self.job_id,
            "AWS_BATCH_JQ_NAME": self.job_queue.name,
            "AWS_BATCH_CE_NAME": (self.job_queue.env_order_json[0]["computeEnvironment"].split("/")[-1]
                                  if getattr(self.job_queue, "env_order_json", None) else ""),
            "AWS_BATCH_JOB_ATTEMPT": str(len(self.attempts) + 1),
        })
        if "index" in (self.array_properties or {}):
            env["AWS_BATCH_JOB_ARRAY_INDEX"] = str(self.array_properties["index"])
        logpath = os.path.join(logdir, self.job_id.replace(":", "_") + ".log")
        logf = open(logpath, "wb")
        self.job_started_at = datetime.now()
        self.log_stream_name = self._stream_name
        try:
            proc = subprocess.Popen([str(c) for c in command], env=env, stdin=subprocess.DEVNULL,
                                    stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            logf.write(f"moto_batch_harness: cannot start {command}: {e}\n".encode())
            logf.close()
            self.job_stopped_reason = f"CannotStartContainerError: {e}"
            self._start_attempt()
            self.exit_code = 127
            self._mark_stopped(success=False)
            return
        with _lock:
            _procs[self.job_id] = proc
        self._start_attempt()
        self.latest_attempt["container"]["taskArn"] = f"local-pid:{proc.pid}"
        self.status = JobStatus.RUNNING.value

        duration = self._get_attempt_duration()
        deadline = time.time() + duration if duration else None
        term_at = None
        while True:
            try:
                rc = proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                pass
            if term_at is None and (self.stop or (deadline and time.time() > deadline)):
                if not self.stop:
                    self.job_stopped_reason = "Job attempt duration exceeded timeout"
                    self.stop = True
                _killpg(proc.pid, signal.SIGTERM)
                term_at = time.time()
            elif term_at is not None and time.time() - term_at > grace:
                _killpg(proc.pid, signal.SIGKILL)
        _killpg(proc.pid, signal.SIGKILL)            # stragglers in the job's group
        logf.close()
        with _lock:
            _procs.pop(self.job_id, None)
        self.exit_code = rc if rc >= 0 else 128 - rc   # docker-style: 143 = SIGTERM, 137 = SIGKILL
        if self.latest_attempt is not None:
            self.latest_attempt["container"]["exitCode"] = self.exit_code
        self._ship_logs(logpath)
        if self.exit_code != 0 and self.job_stopped_reason is None:
            self.job_stopped_reason = "Essential container in task exited"
        self._mark_stopped(success=(self.exit_code == 0 and not self.stop))
    except Exception as err:                            # never leave a job hanging
        self.job_stopped_reason = f"moto_batch_harness error: {err!r}"
        self._mark_stopped(success=False)
    finally:
        if slot_taken:
            _slots.release()


def _ship_logs(self, logpath):
    try:
        with open(logpath, "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
        now = int(time.time() * 1000)
        events = [{"timestamp": now, "message": ln} for ln in lines if ln]
        self._log_backend.ensure_log_group(self._log_group)
        self._log_backend.ensure_log_stream(self._log_group, self.log_stream_name)
        if events:
            self._log_backend.put_log_events(self._log_group, self.log_stream_name, events)
    except Exception:
        pass


def _container_details(self):
    """moto's describe_jobs omits container.exitCode/reason and duplicates AWS_BATCH_JOB_ID
    in environment on every call; return what AWS returns instead."""
    d = _orig_container_details(self)
    env, seen = [], set()
    for e in d.get("environment", []):
        if e["name"] not in seen:
            seen.add(e["name"])
            env.append(e)
    d["environment"] = env
    if self.exit_code is not None:
        d["exitCode"] = self.exit_code
    if self.job_stopped and self.job_stopped_reason:
        d["reason"] = self.job_stopped_reason
    return d


_orig_container_details = None


def _killpg(pid, sig):
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill_all():
    """Kill every job process group this harness started."""
    with _lock:
        procs = list(_procs.values())
    for p in procs:
        _killpg(p.pid, signal.SIGKILL)


def install():
    """Patch moto's Batch Job runner.  Call before submitting jobs (before or inside mock_aws)."""
    global _slots, _orig_container_details
    from moto.batch.models import Job
    if Job.run is not _local_run:
        _orig_container_details = Job._container_details
        Job._container_details = _container_details
    Job.run = _local_run
    Job._ship_logs = _ship_logs
    n = int(os.environ.get("HARNESS_MAX_RUNNING", "0") or 0)
    _slots = threading.BoundedSemaphore(n) if n > 0 else None
    atexit.register(kill_all)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    ap.add_argument("--ready-file", help="write {endpoint, pid} JSON here once listening")
    a = ap.parse_args()
    install()
    from moto.server import ThreadedMotoServer
    srv = ThreadedMotoServer(ip_address=a.host, port=a.port, verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    info = {"endpoint": f"http://{host}:{port}", "pid": os.getpid()}
    if a.ready_file:
        tmp = a.ready_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(info, f)
        os.replace(tmp, a.ready_file)
    print(json.dumps(info), flush=True)
    stop = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: stop.set())
    stop.wait()
    kill_all()
    srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
