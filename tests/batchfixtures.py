"""pytest fixtures for the batch-scheduler test beds in tests/testbeds/ (see its README.md).

- ``slurm_cluster``: a real one-node Slurm (started here if it is not running, stopped at the end)
- ``torque_qsub``: Debian's slurm-wlm-torque ``qsub``/``qstat``/``qdel`` over that Slurm
- ``pbs_double``: a PBS TEST DOUBLE (``qsub``/``qstat``/``qdel`` copying OpenPBS), not real PBS
- ``aws_batch``: AWS Batch API of a moto server whose jobs run as local processes

Every wait is bounded and everything started here is stopped again: daemons, jobs, temp dirs.
"""
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

TESTBEDS = Path(__file__).resolve().parent / "testbeds"
SLURM_DIR = TESTBEDS / "slurm"
PBS_BIN = TESTBEDS / "pbs-double" / "bin"
HARNESS = TESTBEDS / "aws-batch" / "moto_batch_harness.py"
TORQUE_QSUB = "/usr/bin/qsub"        # Debian's slurm-wlm-torque
USER = pwd.getpwuid(os.getuid()).pw_name
BOTO_KEYS = ("endpoint_url", "region_name", "aws_access_key_id", "aws_secret_access_key")


def _run(cmd, timeout=30, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,
                          **kw)


def _wait(pred, timeout, step=0.2):
    """Poll pred() until true or timeout seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while not (ok := pred()) and time.monotonic() < deadline:
        time.sleep(step)
    return ok


# ------------------------------------------------------------------------------------- Slurm --
def _slurm_up():
    try:                 # sinfo waits MessageTimeout (10 s) when slurmctld is down: cap it
        return _run(["sinfo", "-h"], timeout=3).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _my_slurm_jobs():
    try:
        r = _run(["squeue", "-h", "-u", USER, "-o", "%A"], timeout=15)
    except subprocess.TimeoutExpired:
        return set()
    return set(r.stdout.split()) if r.returncode == 0 else set()


def _stop_slurm(piddir):
    r = _run([SLURM_DIR / "stop_slurm.sh"], timeout=120, env=dict(os.environ, PIDDIR=piddir))
    shutil.rmtree(piddir, ignore_errors=True)
    return r


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running one-node Slurm.  Yields {"node", "cpus", "partition", "started_here"}.

    At session end the jobs of this user submitted during the session are scancelled, and the
    daemons this fixture started (recorded in its own PIDDIR) are stopped."""
    if not shutil.which("sbatch"):
        pytest.skip("Slurm is not installed (no sbatch): run `make testbeds` as root")
    piddir = None
    if not _slurm_up():
        if os.geteuid() != 0:
            pytest.skip("slurmctld is not running and starting it needs root "
                        "(tests/testbeds/slurm/start_slurm.sh)")
        piddir = tempfile.mkdtemp(prefix="slurm-testbed-")
        try:
            r = _run([SLURM_DIR / "start_slurm.sh"], timeout=120,
                     env=dict(os.environ, PIDDIR=piddir))
            out = f"{r.stdout}\n{r.stderr}"
            ok = r.returncode == 0 and _slurm_up()
        except subprocess.TimeoutExpired as e:
            out, ok = f"timed out: {e}", False
        if not ok:
            _stop_slurm(piddir)
            pytest.fail(f"could not start Slurm with start_slurm.sh:\n{out}")
    before = _my_slurm_jobs()
    try:
        r = _run(["sinfo", "-h", "-N", "-o", "%N %c %P"])
        node, cpus, partition = r.stdout.split()[:3]
        yield {"node": node, "cpus": int(cpus), "partition": partition.rstrip("*"),
               "started_here": piddir is not None}
    finally:
        ours = _my_slurm_jobs() - before
        if ours:
            try:
                _run(["scancel", *sorted(ours)])
            except subprocess.TimeoutExpired:
                pass
            _wait(lambda: not (_my_slurm_jobs() & ours), 60)
        if piddir:
            _stop_slurm(piddir)


@pytest.fixture
def torque_qsub(slurm_cluster, monkeypatch):
    """Slurm's PBS-style qsub/qstat/qdel (slurm-wlm-torque) first on PATH, the PBS double
    removed from PATH.  Yields the directory of that qsub.  It prints bare Slurm job ids and sets
    SLURM_* (not PBS_*) variables in the job."""
    try:
        with open(TORQUE_QSUB, errors="replace") as f:
            is_torque = "slurm" in f.read(4096).lower()
    except OSError:
        is_torque = False
    if not is_torque:
        pytest.skip("Slurm's qsub (slurm-wlm-torque) is not installed: run `make testbeds` as root")
    qdir = os.path.dirname(TORQUE_QSUB)
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep)
            if p and os.path.realpath(p) != os.path.realpath(PBS_BIN)]
    found = shutil.which("qsub", path=os.pathsep.join(path))
    if not found or os.path.realpath(found) != os.path.realpath(TORQUE_QSUB):
        path.insert(0, qdir)
    monkeypatch.setenv("PATH", os.pathsep.join(path))
    return qdir


# ------------------------------------------------------------------------------- PBS double --
def _pbs_runners(home):
    """PIDs of the PBS double's job runners (pbs_shim.py _run JOBID) using PBS_SHIM_HOME=home."""
    tag, pids = f"PBS_SHIM_HOME={home}\0".encode(), []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and b"pbs_shim.py\0_run\0" in (d / "cmdline").read_bytes() \
                    and tag in (d / "environ").read_bytes():
                pids.append(int(d.name))
        except OSError:
            pass
    return pids


def _pbs_jobs(home):
    jobs = []
    for f in (home / "jobs").glob("*.json"):
        try:
            jobs.append(json.loads(f.read_text()))
        except (OSError, ValueError):
            pass
    return jobs


@pytest.fixture
def pbs_double(monkeypatch):
    """The PBS TEST DOUBLE's qsub/qstat/qdel first on PATH, with its state in a fresh PBS_SHIM_HOME
    (yielded, a Path).  Teardown force-deletes jobs still queued or running."""
    home = Path(tempfile.mkdtemp(prefix="pbs-double-"))
    monkeypatch.setenv("PATH", f"{PBS_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("PBS_SHIM_HOME", str(home))
    try:
        yield home
    finally:
        env = dict(os.environ, PBS_SHIM_HOME=str(home))
        live = [j["id"] for j in _pbs_jobs(home) if j.get("job_state") in ("Q", "R", "E")]
        if live:
            _run([PBS_BIN / "qdel", "-W", "force", *live], env=env)
        # wait for the runners to record the final state and exit, then remove the state dir
        _wait(lambda: all(j.get("job_state") == "F" for j in _pbs_jobs(home))
              and not _pbs_runners(home), 30)
        shutil.rmtree(home, ignore_errors=True)


# -------------------------------------------------------------------------------- AWS Batch --
def boto_client(bed, service="batch"):
    """A boto3 client for the aws_batch fixture's moto server."""
    import boto3
    return boto3.client(service, **{k: bed[k] for k in BOTO_KEYS})


@pytest.fixture(scope="session")
def aws_batch():
    """A moto AWS Batch server (moto_batch_harness.py: jobs run as local processes) with an IAM
    role, an UNMANAGED compute environment, a job queue and a container job definition.
    Yields {endpoint_url, region_name, aws_access_key_id, aws_secret_access_key (boto3.client
    kwargs), jobQueue, jobDefinition, logDir (each job's stdout+stderr: <jobId>.log)}."""
    pytest.importorskip("boto3")
    pytest.importorskip("flask", reason="moto's server mode needs moto[server]")
    tmp = tempfile.mkdtemp(prefix="aws-batch-")
    ready, logdir = os.path.join(tmp, "ready.json"), os.path.join(tmp, "joblogs")
    bed = {"region_name": "us-east-1", "aws_access_key_id": "x", "aws_secret_access_key": "x"}
    env = dict(os.environ, HARNESS_LOG_DIR=logdir, AWS_DEFAULT_REGION=bed["region_name"],
               AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x")
    with open(os.path.join(tmp, "harness.log"), "wb") as log:
        proc = subprocess.Popen([sys.executable, str(HARNESS), "--host", "127.0.0.1", "--port", "0",
                                 "--ready-file", ready], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env)
    try:
        if not _wait(lambda: os.path.exists(ready) or proc.poll() is not None, 60, 0.05) \
                or not os.path.exists(ready):
            with open(os.path.join(tmp, "harness.log"), errors="replace") as f:
                pytest.fail(f"moto_batch_harness did not start:\n{f.read()}")
        with open(ready) as f:
            bed["endpoint_url"] = json.load(f)["endpoint"]
        batch, iam = boto_client(bed), boto_client(bed, "iam")
        role = iam.create_role(RoleName="sharedapplier-batch-test",
                               AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        ce = batch.create_compute_environment(computeEnvironmentName="sharedapplier-ce",
                                              type="UNMANAGED", state="ENABLED", serviceRole=role)
        batch.create_job_queue(jobQueueName="sharedapplier-q", state="ENABLED", priority=1,
                               computeEnvironmentOrder=[
                                   {"order": 1, "computeEnvironment": ce["computeEnvironmentArn"]}])
        batch.register_job_definition(jobDefinitionName="sharedapplier-jd", type="container",
                                      containerProperties={"image": "local", "vcpus": 1,
                                                           "memory": 256, "command": ["true"]})
        yield {**bed, "jobQueue": "sharedapplier-q", "jobDefinition": "sharedapplier-jd",
               "logDir": logdir}
    finally:
        proc.send_signal(signal.SIGTERM)      # the harness kills every job it started
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)
