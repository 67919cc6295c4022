"""Each batch test bed really runs a job: the job's Python worker connects back to the test over
TCP and sends its job id, which must equal the id the scheduler printed at submission."""
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time

from batchfixtures import boto_client


def _listener():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(60)
    return srv


def _worker(srv, idvar):
    """Python source of a worker that connects to srv and sends $idvar."""
    host, port = srv.getsockname()
    return textwrap.dedent(f"""
        import os, socket
        s = socket.create_connection(({host!r}, {port}), timeout=30)
        s.sendall((os.environ.get({idvar!r}, "?") + "\\n").encode())
    """)


def _received(srv):
    """The line the worker sent (raises TimeoutError if no worker connects within 60 s)."""
    with srv, srv.accept()[0] as conn:
        conn.settimeout(30)
        return conn.makefile().readline().strip()


def _script(path, directives, worker):
    path.write_text("#!/bin/bash\n" + "".join(d + "\n" for d in directives)
                    + f"exec {sys.executable} - <<'PY'\n{worker}\nPY\n")
    return str(path)


def _submit(cmd, cwd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=cwd)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_slurm_job_connects_back(slurm_cluster, tmp_path):
    srv = _listener()
    script = _script(tmp_path / "job.sh", [f"#SBATCH -o {tmp_path}/%j.out", "#SBATCH -n 1"],
                     _worker(srv, "SLURM_JOB_ID"))
    jid = _submit(["sbatch", "--parsable", script], tmp_path).split(";")[0]
    assert jid.isdigit()
    assert _received(srv) == jid


def test_torque_qsub_job_connects_back(torque_qsub, tmp_path):
    assert os.path.realpath(shutil.which("qsub")) == os.path.realpath(f"{torque_qsub}/qsub")
    srv = _listener()
    script = _script(tmp_path / "job.pbs", ["#PBS -N tbjob", f"#PBS -o {tmp_path}/out.txt",
                                            "#PBS -j oe"], _worker(srv, "SLURM_JOB_ID"))
    jid = _submit(["qsub", script], tmp_path)
    assert jid.isdigit(), jid                  # slurm-wlm-torque prints the bare Slurm id
    assert _received(srv) == jid


def test_pbs_double_job_connects_back_and_qdel(pbs_double, tmp_path):
    srv = _listener()
    script = _script(tmp_path / "job.pbs", ["#PBS -N w", "#PBS -l select=1:ncpus=1", "#PBS -j oe",
                                            'cd "$PBS_O_WORKDIR"'], _worker(srv, "PBS_JOBID"))
    jid = _submit(["qsub", script], tmp_path)
    assert jid.split(".")[0].isdigit(), jid    # OpenPBS style "<seq>.<server>"
    assert _received(srv) == jid
    # qdel of a running job: SIGTERM -> Exit_status 256 + 15
    victim = _submit(["qsub", "--", "/bin/sleep", "60"], tmp_path)
    assert _pbs_wait_state(victim, "R")["job_state"] == "R"
    assert subprocess.run(["qdel", victim], timeout=30).returncode == 0
    job = _pbs_wait_state(victim, "F")
    assert job["job_state"] == "F"
    assert job["Exit_status"] == 271


def _pbs_wait_state(jid, state, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(["qstat", "-xf", "-F", "json", jid], capture_output=True,
                             text=True, timeout=30).stdout
        job = json.loads(out)["Jobs"][jid]
        if job["job_state"] == state or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def test_aws_batch_job_connects_back(aws_batch):
    batch = boto_client(aws_batch)
    srv = _listener()
    r = batch.submit_job(jobName="tb", jobQueue=aws_batch["jobQueue"],
                         jobDefinition=aws_batch["jobDefinition"],
                         containerOverrides={"command": [sys.executable, "-c",
                                                         _worker(srv, "AWS_BATCH_JOB_ID")]})
    assert _received(srv) == r["jobId"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = batch.describe_jobs(jobs=[r["jobId"]])["jobs"][0]["status"]
        if status in ("SUCCEEDED", "FAILED"):
            break
        time.sleep(0.1)
    assert status == "SUCCEEDED"
