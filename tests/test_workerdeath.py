"""A compute worker that dies: its block is computed again by another, a new worker takes its
place, and the output is what a run without deaths writes. A block that kills worker after
worker stops the run, naming it. Real processes killed with real signals."""
import os
import signal

import numpy as np
import pytest
from conftest import assertSameAsGdalSees, read_raster, whatGdalSees, write_raster

from sharedapplier import applier, rioserrors
from sharedapplier.engine import recovery
from sharedapplier.structures import (
    CW_PROCESSES,
    CW_SUBPROC,
    ConcurrencyStyle,
    FilenameAssociations,
)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    arr = np.random.default_rng(3).integers(0, 5000, (1, 256, 320), dtype=np.uint16)
    return arr, write_raster(tmp_path_factory.mktemp("scene") / "in.tif", arr)


class KillOnce:
    """Kill the worker computing ``block`` the first ``times`` times (a marker file per
    death, so that every worker process sees how many there were), after spoiling the
    block's inputs where they lie: the block must be read again, not computed from them."""

    def __init__(self, folder, block, times):
        self.folder, self.block, self.times = str(folder), block, times

    def __call__(self, info, inputs, outputs, otherArgs):
        if info.getBlockCount() == self.block:
            deaths = len([n for n in os.listdir(self.folder) if n.startswith("death")])
            if deaths < self.times:
                open(os.path.join(self.folder, f"death{deaths}"), "w").close()
                inputs.a += 1000
                os.kill(os.getpid(), signal.SIGKILL)
        otherArgs.blocks = getattr(otherArgs, "blocks", 0) + 1
        outputs.out = inputs.a + 1


def run(tmp_path, infile, function, name, workers=2, kind=CW_PROCESSES, tempdir=None,
        overviewMinDim=16, **style):
    """Apply ``function`` to ``infile`` on ``workers`` compute workers of ``kind`` (none:
    in this process) into tmp_path/name.tif: that file's name and the run's return.
    ``tempdir`` and ``overviewMinDim`` None leave the controls' defaults."""
    controls = applier.ApplierControls()
    controls.setWindowSize(64, 64)
    if overviewMinDim is not None:
        controls.setOverviewMinDim(overviewMinDim)
    if tempdir is not None:
        controls.setTempdir(str(tempdir))
    if workers:
        controls.setConcurrencyStyle(ConcurrencyStyle(
            computeWorkerKind=kind, numComputeWorkers=workers, **style))
    infiles, outfiles = FilenameAssociations(), FilenameAssociations()
    infiles.a, outfiles.out = infile, str(tmp_path / f"{name}.tif")
    rtn = applier.apply(function, infiles, outfiles, applier.OtherInputs(), controls=controls)
    return outfiles.out, rtn


@pytest.mark.parametrize("deaths", [1, 2])
def test_a_killed_worker_is_replaced_and_its_block_computed_again(scene, tmp_path, deaths,
                                                                  capfd, no_shm_leak):
    arr, infile = scene
    markers = tmp_path / "markers"
    markers.mkdir()
    truth, _ = run(tmp_path, infile, KillOnce(markers, (2, 1), 0), "truth", workers=0)
    out, rtn = run(tmp_path, infile, KillOnce(markers, (2, 1), deaths), "survived")
    assert len(os.listdir(markers)) == deaths
    np.testing.assert_array_equal(read_raster(out)[0], arr[0] + 1)
    assertSameAsGdalSees(whatGdalSees(out), whatGdalSees(truth))
    err = capfd.readouterr().err
    assert err.count("was killed by signal SIGKILL") == deaths
    assert "ApplierBlockDefn(64, 128, 64, 64) will be computed again" in err
    assert len(rtn.timings.getDurationsForName("restartworker")) == deaths
    # one copy per worker number (the dead workers' copies are gone with them); no block
    # was seen twice
    assert len(rtn.otherArgsList) == 2
    assert sum(o.blocks for o in rtn.otherArgsList) <= 4 * 5


def test_a_block_that_kills_every_worker_stops_the_run(scene, tmp_path, no_shm_leak):
    arr, infile = scene
    markers = tmp_path / "markers"
    markers.mkdir()
    with pytest.raises(rioserrors.WorkerExceptionError) as e:
        run(tmp_path, infile, KillOnce(markers, (1, 3), 100), "deadly")
    text = str(e.value)
    assert text.startswith(f"block ApplierBlockDefn(192, 64, 64, 64) killed "
                           f"{recovery.MAX_WORKERS_KILLED_BY_BLOCK} compute workers")
    assert text.count("killed by signal SIGKILL") == recovery.MAX_WORKERS_KILLED_BY_BLOCK
    assert len(os.listdir(markers)) == recovery.MAX_WORKERS_KILLED_BY_BLOCK
    assert not (tmp_path / "deadly.tif").exists()


@pytest.mark.parametrize("deaths", [1, 2])
def test_a_killed_worker_fed_by_read_threads_is_replaced_and_its_block_read_again(
        scene, tmp_path, deaths, capfd, no_shm_leak):
    arr, infile = scene
    markers = tmp_path / "markers"
    markers.mkdir()
    out, rtn = run(tmp_path, infile, KillOnce(markers, (2, 1), deaths), "readers",
                   computeWorkersRead=False, numReadWorkers=1)
    assert len(os.listdir(markers)) == deaths
    np.testing.assert_array_equal(read_raster(out)[0], arr[0] + 1)
    err = capfd.readouterr().err
    assert err.count("was killed by signal SIGKILL") == deaths
    assert "ApplierBlockDefn(64, 128, 64, 64) will be computed again" in err
    assert len(rtn.timings.getDurationsForName("restartworker")) == deaths


def test_a_block_that_kills_every_worker_fed_by_read_threads_stops_the_run(scene, tmp_path,
                                                                          no_shm_leak):
    _, infile = scene
    markers = tmp_path / "markers"
    markers.mkdir()
    with pytest.raises(rioserrors.WorkerExceptionError) as e:
        run(tmp_path, infile, KillOnce(markers, (1, 3), 100), "deadly",
            computeWorkersRead=False, numReadWorkers=2)
    assert str(e.value).startswith(f"block ApplierBlockDefn(192, 64, 64, 64) killed "
                                   f"{recovery.MAX_WORKERS_KILLED_BY_BLOCK} compute workers")
    assert len(os.listdir(markers)) == recovery.MAX_WORKERS_KILLED_BY_BLOCK
    assert not (tmp_path / "deadly.tif").exists()


def runSubproc(tmp_path, infile, function, name, reads=True):
    """``run`` on two CW_SUBPROC workers that read (or are sent what a read thread read),
    with the controls' own overviewMinDim; their run folders go in tmp_path, where the
    tests see that none is left."""
    style = dict(computeWorkersRead=True) if reads else dict(computeWorkersRead=False,
                                                             numReadWorkers=1)
    return run(tmp_path, infile, function, name, kind=CW_SUBPROC, tempdir=tmp_path,
               overviewMinDim=None, **style)


@pytest.mark.parametrize("reads", [True, False], ids=["reads", "sent"])
def test_a_killed_subprocess_worker_is_replaced_by_its_launcher(scene, tmp_path, capfd,
                                                                no_shm_leak, reads):
    """A remote worker (here CW_SUBPROC's) whose job died is started again by the
    launcher, and its proxy serves the new one."""
    arr, infile = scene
    markers = tmp_path / "markers"
    markers.mkdir()
    out, rtn = runSubproc(tmp_path, infile, KillOnce(markers, (2, 1), 1), "remote", reads)
    np.testing.assert_array_equal(read_raster(out)[0], arr[0] + 1)
    err = capfd.readouterr().err
    assert "ApplierBlockDefn(64, 128, 64, 64) will be computed again" in err
    assert "a new compute worker" in err
    assert len(rtn.otherArgsList) == 2
    assert not list(tmp_path.glob("sharedapplier_run_*"))


def test_a_block_that_kills_every_subprocess_worker_stops_the_run(scene, tmp_path,
                                                                  no_shm_leak):
    _, infile = scene
    markers = tmp_path / "markers"
    markers.mkdir()
    with pytest.raises(rioserrors.WorkerExceptionError) as e:
        runSubproc(tmp_path, infile, KillOnce(markers, (1, 3), 100), "deadly")
    assert f"killed {recovery.MAX_WORKERS_KILLED_BY_BLOCK} compute workers" in str(e.value)
    assert "ApplierBlockDefn(192, 64, 64, 64)" in str(e.value)
    assert len(os.listdir(markers)) == recovery.MAX_WORKERS_KILLED_BY_BLOCK
    assert not list(tmp_path.glob("sharedapplier_run_*"))
