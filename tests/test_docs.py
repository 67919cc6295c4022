"""The documentation builds with Sphinx, every warning treated as an error (make docs), and
the job script it shows does what it says."""
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import waitUntil

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b",
                           "html", str(DOCS), str(tmp_path / "html")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "html" / "batch.html").is_file()


RESUBMIT = DOCS / "examples" / "resubmit.sbatch"
SHIM = "#!/bin/sh\n{body}\n"


def _jobFolder(tmp_path, program):
    """A folder with ``ndvi.py`` (``program``) and, first on PATH, a ``python`` that is this
    interpreter and an ``sbatch`` that only records what it was asked to submit."""
    bin = tmp_path / "bin"
    bin.mkdir()
    for name, body in (("python", f'exec {sys.executable} "$@"'),
                       ("sbatch", f'echo "$@" >> {tmp_path / "submitted"}')):
        (bin / name).write_text(SHIM.format(body=body))
        (bin / name).chmod(0o755)
    (tmp_path / "ndvi.py").write_text(program)
    return {"PATH": f"{bin}:/usr/bin:/bin", "HOME": str(tmp_path)}


@pytest.mark.parametrize("stopped", [True, False], ids=["time-limit", "finished"])
def test_the_job_script_that_resubmits_itself(tmp_path, stopped):
    """The documented job script, run by bash: a SIGTERM (the time limit's warning) stops
    Python and queues the script again; a run that ends by itself queues nothing."""
    program = ("import pathlib, time\npathlib.Path('started').touch()\n"
               + ("time.sleep(120)\n" if stopped else ""))
    env = _jobFolder(tmp_path, program)
    job = subprocess.Popen(["bash", str(RESUBMIT)], cwd=tmp_path, env=env)
    try:
        if stopped:
            waitUntil(lambda: (tmp_path / "started").exists() and _catchesSigterm(job.pid),
                      what="the job script running Python")
            job.send_signal(signal.SIGTERM)
        status = job.wait(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    submitted = tmp_path / "submitted"
    if stopped:
        assert status == 143 and submitted.read_text().split() == [str(RESUBMIT)]
    else:
        assert status == 0 and not submitted.exists()


def _catchesSigterm(pid):
    """Whether process ``pid`` has a handler for SIGTERM (bash: its trap is set)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    return False

