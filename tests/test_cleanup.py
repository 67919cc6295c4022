"""What a run that dies leaves behind is found and removed by ``sharedapplier cleanup``.

A run keeps a record of its folders and unfinished outputs while it runs and removes
it when it ends; a record whose process is gone (killed with SIGKILL here) names what
``cleanup`` removes. Real processes, real signals, the real console script.
"""
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import psutil
import pytest
from conftest import waitUntil, write_raster

from sharedapplier import applier, runrecord
from sharedapplier.cmdline import main as cmdmain
from sharedapplier.structures import CW_SUBPROC, ConcurrencyStyle, FilenameAssociations


@pytest.fixture
def scene(tmp_path):
    arr = np.arange(200 * 150, dtype=np.int16).reshape(1, 150, 200)
    return write_raster(tmp_path / "in.tif", arr)


def double(info, inputs, outputs):
    outputs.out = inputs.a * 2


def failing(info, inputs, outputs):
    raise ZeroDivisionError("no")


@pytest.mark.parametrize("style", [None, dict(computeWorkerKind=CW_SUBPROC,
                                              numComputeWorkers=2)], ids=["none", "subproc"])
@pytest.mark.parametrize("function", [double, failing], ids=["succeeds", "fails"])
def test_a_run_that_ends_leaves_no_record(style, function, scene, tmp_path, runRecordsFolder):
    infiles, outfiles = FilenameAssociations(), FilenameAssociations()
    infiles.a, outfiles.out = scene, str(tmp_path / "out.tif")
    controls = applier.ApplierControls()
    controls.setTempdir(str(tmp_path))
    if style is not None:
        controls.setConcurrencyStyle(ConcurrencyStyle(**style))
    before = set(runRecordsFolder.iterdir())
    if function is failing:
        with pytest.raises(Exception, match="no"):
            applier.apply(function, infiles, outfiles, controls=controls)
    else:
        applier.apply(function, infiles, outfiles, controls=controls)
    assert set(runRecordsFolder.iterdir()) == before
    assert os.path.exists(outfiles.out) == (function is double)


def slowScript(scene, tmp_path):
    return textwrap.dedent(f"""
        import time
        from sharedapplier import applier
        from sharedapplier.structures import ConcurrencyStyle, CW_SUBPROC
        def slow(info, inputs, outputs):
            if info.getBlockCount() != (0, 0):
                time.sleep(600)
            outputs.out = inputs.a
        i = applier.FilenameAssociations(); i.a = {scene!r}
        o = applier.FilenameAssociations(); o.out = {str(tmp_path / 'out.tif')!r}
        c = applier.ApplierControls(); c.setTempdir({str(tmp_path)!r})
        c.setWindowSize(64, 64)
        c.setConcurrencyStyle(ConcurrencyStyle(computeWorkerKind=CW_SUBPROC,
            numComputeWorkers=2, computeBufferPopTimeout=900))
        applier.apply(slow, i, o, controls=c)
    """)


def recordOf(pid, folder):
    for path in folder.glob(f"*_{pid}_*.json"):
        return json.loads(path.read_text())
    return None


def workersOf(rundir):
    """The remote workers still running for a run directory."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with_rundir = [arg for arg in proc.info["cmdline"] or [] if rundir in arg]
        if with_rundir and proc.pid != os.getpid():
            found.append(proc)
    return found


def test_cleanup_removes_what_a_killed_run_left(scene, tmp_path, runRecordsFolder, capsys):
    main = subprocess.Popen([sys.executable, "-c", slowScript(scene, tmp_path)],
                            stderr=subprocess.PIPE, text=True)
    try:
        waitUntil(lambda: (recordOf(main.pid, runRecordsFolder) or {}).get("outputs"),
                  what="the run recording its output")
        record = recordOf(main.pid, runRecordsFolder)
        main.kill()
        main.communicate(timeout=30)
    finally:
        if main.poll() is None:
            main.kill()
    output = record["outputs"][0]
    (tempfolder,) = [f for f in record["folders"] if os.path.basename(f).startswith("rios_")]
    (rundir,) = [f for f in record["folders"] if "sharedapplier_run_" in f]
    assert output == str((tmp_path / "out.tif").resolve())
    assert os.path.isdir(rundir) and os.path.isdir(tempfolder)
    waitUntil(lambda: not workersOf(rundir), what="the orphaned workers exiting")
    assert cmdmain.main(["cleanup", "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert f"would remove unfinished output {output}" in listed and rundir in listed
    assert os.path.exists(output) and os.path.isdir(rundir)
    done = subprocess.run([str(Path(sys.executable).parent / "sharedapplier"), "cleanup"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"removed unfinished output {output} (run of pid {main.pid}" in done.stdout
    assert f"removed folder {rundir}" in done.stdout
    assert f"removed folder {tempfolder}" in done.stdout
    assert not os.path.exists(output) and not os.path.exists(rundir)
    assert not os.path.exists(tempfolder)
    assert recordOf(main.pid, runRecordsFolder) is None
    assert cmdmain.main(["cleanup"]) == 0
    assert "nothing to clean" in capsys.readouterr().out


def writeRecord(folder, **fields):
    leftovers = runrecord.RunLeftovers(**fields)
    path = folder / f"{leftovers.host}_{leftovers.pid}_test.json"
    path.write_text(json.dumps(vars(leftovers)))
    return path


@pytest.mark.parametrize("case", ["live", "other-host"])
def test_records_of_live_runs_and_other_hosts_are_left_alone(case, tmp_path, runRecordsFolder,
                                                             capsys):
    output = tmp_path / "keep.tif"
    output.write_bytes(b"x")
    me = psutil.Process()
    host = socket.gethostname() if case == "live" else "another-node"
    pid = me.pid if case == "live" else 999999
    path = writeRecord(runRecordsFolder, host=host, pid=pid, started=me.create_time(),
                       outputs=[str(output)])
    try:
        assert cmdmain.main(["cleanup"]) == 0
        capsys.readouterr()
        assert output.exists() and path.exists()
    finally:
        path.unlink()


def test_a_reused_pid_is_not_the_run(tmp_path, runRecordsFolder):
    """A record's pid now belongs to another process (started later): the run is gone."""
    output = tmp_path / "left.tif"
    output.write_bytes(b"x")
    path = writeRecord(runRecordsFolder, host=socket.gethostname(), pid=os.getpid(),
                       started=psutil.Process().create_time() - 3600, outputs=[str(output)])
    assert runrecord.staleRecords() == {path: runrecord.RunLeftovers(
        socket.gethostname(), os.getpid(), psutil.Process().create_time() - 3600,
        [], [str(output)])}
    assert cmdmain.main(["cleanup"]) == 0
    assert not output.exists() and not path.exists()


def test_an_output_that_could_not_be_removed_keeps_the_record(tmp_path):
    record = runrecord.RunRecord(tmp_path / "records")
    kept = tmp_path / "undeletable.tif"
    kept.write_bytes(b"x")
    record.noteOutput(str(kept))
    record.end()
    assert record.path.exists()
    kept.unlink()
    record.end()
    assert not record.path.exists()


def test_an_unwritable_records_folder_costs_only_a_warning(scene, tmp_path, monkeypatch,
                                                          capfd):
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    monkeypatch.setenv(runrecord.RECORDS_ENV, str(blocked / "runs"))
    infiles, outfiles = FilenameAssociations(), FilenameAssociations()
    infiles.a, outfiles.out = scene, str(tmp_path / "out.tif")
    applier.apply(double, infiles, outfiles)
    assert os.path.exists(outfiles.out)
    assert f"cannot keep run records in {blocked / 'runs'}" in capfd.readouterr().err

