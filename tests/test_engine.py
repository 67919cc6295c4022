"""The shared-memory engine: every style gives CW_NONE's files; faults end fast and clean."""
import colorsys
import fractions
import gc
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from conftest import read_raster, write_raster
from osgeo import gdal

from sharedapplier import applier, imagereader, rioserrors
from sharedapplier.engine import slabpool
from sharedapplier.structures import (
    CW_PROCESSES,
    CW_THREADS,
    ConcurrencyStyle,
    FilenameAssociations,
    OtherInputs,
)

STYLES = {
    "none": dict(),
    "readers": dict(numReadWorkers=2),
    "threads": dict(computeWorkerKind=CW_THREADS, numComputeWorkers=2, numReadWorkers=1),
    "proc1": dict(computeWorkerKind=CW_PROCESSES, numComputeWorkers=1),
    "proc2": dict(computeWorkerKind=CW_PROCESSES, numComputeWorkers=2),
    "proc2-readers": dict(computeWorkerKind=CW_PROCESSES, numComputeWorkers=2,
                          computeWorkersRead=False, numReadWorkers=2),
}


def assoc(**files):
    fa = FilenameAssociations()
    for k, v in files.items():
        setattr(fa, k, v)
    return fa


def controls(style=None, window=64, **style_kw):
    c = applier.ApplierControls()
    c.setOutputDriverName("GTiff")
    c.setCreationOptions(["TILED=YES", f"BLOCKXSIZE={window}", f"BLOCKYSIZE={window}"])
    c.setWindowSize(window, window)
    c.setConcurrencyStyle(ConcurrencyStyle(**(style or {}), **style_kw))
    return c


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    d = tmp_path_factory.mktemp("scene")
    rng = np.random.default_rng(7)
    a = rng.integers(0, 3000, (3, 230, 300)).astype(np.uint16)
    b = (rng.random((1, 230, 300)) * 100).astype(np.float32)
    return dict(a=write_raster(d / "a.tif", a, nodata=0), b=write_raster(d / "b.tif", b),
                arrays=(a, b))


def model(info, inputs, outputs, other):
    other.blocks += 1
    other.names.add(info.getFilenameFor(inputs.a))
    other.nulls.add(int(info.getNoDataValueFor(inputs.a)))
    total = inputs.a.astype(np.int32).sum(axis=0, keepdims=True)
    outputs.counts = total // 7
    outputs.ratio = (inputs.b / (1.0 + inputs.a[:1])).astype(np.float32)


def run_style(scene, tmp_path, name, style, userFunction=model):
    c = controls(style)
    c.setOverlap(2)
    c.setOverviewLevels([2, 4])
    c.setOverviewMinDim(8)
    c.setStatsIgnore(None, imagename="ratio")
    other = OtherInputs()
    other.blocks, other.names, other.nulls = 0, set(), set()
    outs = assoc(counts=str(tmp_path / f"counts_{name}.tif"),
                 ratio=str(tmp_path / f"ratio_{name}.tif"))
    rtn = applier.apply(userFunction, assoc(a=scene["a"], b=scene["b"]), outs, other,
                        controls=c)
    return rtn, other, outs


def band_metadata(path):
    ds = gdal.Open(path)
    return [(ds.GetRasterBand(i + 1).GetMetadata(), ds.GetRasterBand(i + 1).GetOverviewCount())
            for i in range(ds.RasterCount)]


def test_every_style_writes_the_same_files(scene, tmp_path, no_shm_leak):
    a, b = scene["arrays"]
    base_rtn, base_other, base = run_style(scene, tmp_path, "none", STYLES["none"])
    expected = a.astype(np.int32).sum(axis=0, keepdims=True) // 7
    assert np.array_equal(read_raster(base.counts), expected)
    assert np.array_equal(read_raster(base.ratio), (b / (1.0 + a[:1])).astype(np.float32))
    nblocks = 4 * 5
    assert base_other.blocks == nblocks
    for name, style in STYLES.items():
        if name == "none":
            continue
        rtn, caller_other, outs = run_style(scene, tmp_path, name, style)
        with open(outs.counts, "rb") as f1, open(base.counts, "rb") as f2:
            assert f1.read() == f2.read(), f"{name}: integer output differs byte for byte"
        assert np.array_equal(read_raster(outs.ratio), read_raster(base.ratio)), name
        assert band_metadata(outs.counts) == band_metadata(base.counts), name
        assert band_metadata(outs.ratio) == band_metadata(base.ratio), name
        copies = rtn.otherArgsList
        assert sum(o.blocks for o in copies) == nblocks, name
        assert set().union(*(o.names for o in copies)) == {scene["a"]}, name
        assert set().union(*(o.nulls for o in copies)) == {0}, name
        if "proc" in name or name == "threads":
            assert caller_other.blocks == 0, f"{name}: caller's otherArgs must not change"
            assert all(o is not caller_other for o in copies)


def slow_model(info, inputs, outputs, other):
    time.sleep(0.005)
    model(info, inputs, outputs, other)


def test_idle_writer_flushes_finished_rows_and_files_stay_identical(scene, tmp_path,
                                                                     no_shm_leak):
    """With slow workers the writer hands finished rows of blocks to the files as it goes;
    the files are still byte for byte those of CW_NONE."""
    _, _, base = run_style(scene, tmp_path, "none", STYLES["none"])
    rtn, _, outs = run_style(scene, tmp_path, "p2slow", STYLES["proc2"], slow_model)
    with open(outs.counts, "rb") as f1, open(base.counts, "rb") as f2:
        assert f1.read() == f2.read()
    assert np.array_equal(read_raster(outs.ratio), read_raster(base.ratio))
    # one "writing" interval per block and output, one per output at close; more = flushes
    assert len(rtn.timings.intervalsByWorker["main"]["writing"]) > 20 * 2 + 2


def test_timers_record_each_worker(scene, tmp_path):
    rtn, _, _ = run_style(scene, tmp_path, "p2", STYLES["proc2"])
    report = rtn.timings.formatReport()
    for name in ("reading", "userfunction", "writing", "startcomputeworkers"):
        assert name in report
    byWorker = rtn.timings.intervalsByWorker
    assert {"compute 0", "compute 1", "main"} <= set(byWorker)
    calls = [pair for w in ("compute 0", "compute 1")
             for pair in byWorker[w].get("userfunction", [])]
    assert len(calls) == 20 and all(end >= start for start, end in calls)
    assert len(byWorker["main"]["writing"]) >= 20


def test_forkserver_preloads_what_the_user_function_imports(scene, tmp_path, no_shm_leak):
    """Modules the function's pickle names are preloaded into the forkserver; a later run
    needing another module imports it in its workers, and both runs are right."""
    from sharedapplier.engine import processes as forkserver

    def uses_colorsys(info, inputs, outputs):  # local, so pickled by value
        outputs.o = inputs.a + np.uint16(colorsys.rgb_to_hsv(0, 0, 1)[2])

    def uses_fractions(info, inputs, outputs):
        outputs.o = inputs.a * np.uint16(fractions.Fraction(4, 2))

    assert {"colorsys", "numpy"} <= forkserver.modulesToPreload(uses_colorsys, None)
    assert "fractions" in forkserver.modulesToPreload(uses_fractions, OtherInputs())
    a = scene["arrays"][0]
    for func, expected in ((uses_colorsys, a + 1), (uses_fractions, a * 2)):
        out = tmp_path / f"{func.__name__}.tif"
        applier.apply(func, assoc(a=scene["a"]), assoc(o=str(out)),
                      controls=controls(STYLES["proc2"]))
        np.testing.assert_array_equal(read_raster(out), expected)
    assert forkserver.BASE_PRELOAD <= forkserver._preloaded


def fail_on_block(info, inputs, outputs):
    if info.getBlockCount() == (1, 1):
        raise ZeroDivisionError("deliberate failure in block (1, 1)")
    outputs.o = inputs.a


def kill_self_on_block(info, inputs, outputs):
    if info.getBlockCount() == (2, 1):
        os.kill(os.getpid(), signal.SIGKILL)
    outputs.o = inputs.a


def sleep_on_block(info, inputs, outputs):
    if info.getBlockCount() == (0, 1):
        time.sleep(4)
    outputs.o = inputs.a


@pytest.mark.parametrize("style", ["proc2", "threads", "proc2-readers"])
def test_user_exception_in_worker_names_worker_block_and_traceback(scene, tmp_path, style,
                                                                   no_shm_leak):
    out = tmp_path / "o.tif"
    with pytest.raises(rioserrors.WorkerExceptionError) as e:
        applier.apply(fail_on_block, assoc(a=scene["a"]), assoc(o=str(out)),
                      controls=controls(STYLES[style]))
    text = str(e.value)
    assert "deliberate failure in block (1, 1)" in text and "ZeroDivisionError" in text
    assert "Error in compute worker" in text
    assert "ApplierBlockDefn(64, 64, 64, 64)" in text
    assert "fail_on_block" in text
    assert not out.exists()


def test_killed_worker_is_reported(scene, tmp_path, no_shm_leak):
    out = tmp_path / "o.tif"
    with pytest.raises(rioserrors.WorkerExceptionError, match="SIGKILL") as e:
        applier.apply(kill_self_on_block, assoc(a=scene["a"]), assoc(o=str(out)),
                      controls=controls(STYLES["proc2"]))
    assert "ApplierBlockDefn(64, 128, 64, 64)" in str(e.value)
    assert not out.exists()


def test_timeout_names_the_option(scene, tmp_path, no_shm_leak):
    c = controls(STYLES["proc2"], computeBufferPopTimeout=1)
    with pytest.raises(rioserrors.WorkerExceptionError,
                       match=r"computeBufferPopTimeout \(current value = 1\)"):
        applier.apply(sleep_on_block, assoc(a=scene["a"]), assoc(o=str(tmp_path / "o.tif")),
                      controls=c)


def test_small_dev_shm_is_a_clear_error(scene, tmp_path, monkeypatch, no_shm_leak):
    monkeypatch.setattr(slabpool, "shmFreeBytes", lambda: 4096)
    with pytest.raises(rioserrors.SharedMemoryError, match="--shm-size"):
        applier.apply(fail_on_block, assoc(a=scene["a"]), assoc(o=str(tmp_path / "o.tif")),
                      controls=controls(STYLES["proc2"]))


def test_tiny_memory_budget_still_keeps_workers_busy(scene, tmp_path, no_shm_leak):
    c = controls(STYLES["proc2"], memoryBudget=1)
    applier.apply(lambda i, inp, o: setattr(o, "o", inp.a), assoc(a=scene["a"]),
                  assoc(o=str(tmp_path / "o.tif")), controls=c)
    assert np.array_equal(read_raster(tmp_path / "o.tif"), scene["arrays"][0])


SCRIPT = """
import sys, time
import numpy as np
from sharedapplier import applier
fi = applier.FilenameAssociations(); fi.a = {a!r}
fo = applier.FilenameAssociations(); fo.o = {out!r}
c = applier.ApplierControls(); c.setOutputDriverName("GTiff")
c.setCreationOptions(["TILED=YES", "BLOCKXSIZE=64", "BLOCKYSIZE=64"]); c.setWindowSize(64, 64)
c.setConcurrencyStyle(applier.ConcurrencyStyle(computeWorkerKind=applier.CW_PROCESSES,
                                                numComputeWorkers=2))
def slow(info, inputs, outputs):
    open({marker!r}, "a").close()
    time.sleep({delay})
    outputs.o = inputs.a
applier.apply(slow, fi, fo, controls=c)   # no __main__ guard, as in many RIOS scripts
print("finished")
"""


def run_script(tmp_path, scene, delay):
    marker = tmp_path / "started"
    out = tmp_path / "o.tif"
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(SCRIPT.format(a=scene["a"], out=str(out),
                                                    marker=str(marker), delay=delay)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    return proc, marker, out


def test_unguarded_script_runs_with_processes(scene, tmp_path, no_shm_leak):
    proc, _, out = run_script(tmp_path, scene, 0)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "finished" in stdout
    assert np.array_equal(read_raster(out), scene["arrays"][0])


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_cleans_up(scene, tmp_path, signum, no_shm_leak):
    proc, marker, out = run_script(tmp_path, scene, 0.5)
    deadline = time.monotonic() + 60
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate()[1]
    segments = [n for n in os.listdir("/dev/shm") if n.startswith(f"sa_{proc.pid}_")]
    assert segments, "the run should be using shared memory"
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "finished" not in stdout
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"sa_{proc.pid}_")]
    assert not out.exists()


def test_stale_segments_of_dead_owners_are_found(tmp_path):
    pid = 2**22 + 12345
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    path = f"/dev/shm/sa_{pid}_feedf00d_in"
    open(path, "wb").close()
    try:
        assert os.path.basename(path) in slabpool.staleSegments()
        slabpool.removeStaleSegments(out=open(os.devnull, "w"))
        assert not os.path.exists(path)
    finally:
        if os.path.exists(path):
            os.unlink(path)


def test_job_blocks_survive_the_trip_to_a_worker():
    import cloudpickle

    from sharedapplier.engine.job import ComputeJob
    from sharedapplier.pixelgrid import PixelGridDefn
    grid = PixelGridDefn(xMin=0, xMax=1000, yMin=0, yMax=700, xRes=10, yRes=10)
    controls = applier.ApplierControls()
    controls.setWindowSize(32, 16)
    blocks = applier.makeBlockList(grid, controls)
    job = ComputeJob(lambda info, inputs, outputs: None, FilenameAssociations(),
                     FilenameAssociations(), None, grid, blocks, [], 32, 16, 0,
                     ConcurrencyStyle())
    copy = cloudpickle.loads(cloudpickle.dumps(job))
    assert copy.blockList == blocks and len(blocks) == 4 * 5
    assert copy.blockList[1:3] == blocks[1:3]
    assert copy.blockList.rows.nbytes == 32 * len(blocks)   # no object per block in a worker
    assert cloudpickle.loads(cloudpickle.dumps(copy)).blockList == blocks
    assert copy.blockList[-1] == applier.ApplierBlockDefn(64, 96, 6, 4)
    assert all(type(v) is int for b in copy.blockList for v in (b.top, b.left, b.nrows, b.ncols))
    assert job.blockList is blocks          # the main process's list is left alone


def note_process_settings(info, inputs, outputs, other):
    other.settings.add((os.getpriority(os.PRIO_PROCESS, 0), os.sched_getscheduler(0),
                        gc.get_freeze_count() > 0, gdal.GetCacheMax()))
    outputs.o = inputs.a[:1]


@pytest.mark.parametrize("style", ["none", "proc2"])
def test_blocks_run_with_old_objects_frozen_and_workers_at_low_priority(
        scene, tmp_path, style, no_shm_leak):
    """The collector skips objects older than the run while blocks run (and only then);
    compute processes run niced, under SCHED_BATCH, so that they never preempt the writer,
    with a GDAL block cache sized for reading (the smallest, for this small scene)."""
    other = OtherInputs()
    other.settings = set()
    rtn = applier.apply(note_process_settings, assoc(a=scene["a"]),
                        assoc(o=str(tmp_path / f"o_{style}.tif")), other,
                        controls=controls(STYLES[style]))
    settings = set().union(*(o.settings for o in rtn.otherArgsList))
    assert gc.get_freeze_count() == 0
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    if style == "none":
        assert settings == {(mine, os.sched_getscheduler(0), True, gdal.GetCacheMax())}
    else:
        assert settings == {(min(19, mine + 10), os.SCHED_BATCH, True,
                             imagereader.READ_CACHE_MIN_BYTES)}


def note_bytes_read(info, inputs, outputs, other):
    with open("/proc/self/io") as f:
        fields = dict(line.split(": ") for line in f.read().splitlines())
    other.readBytes = max(getattr(other, "readBytes", 0), int(fields["rchar"]))
    outputs.o = inputs.a


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs /proc/<pid>/io")
def test_workers_read_each_strip_of_a_striped_input_about_once(tmp_path, no_shm_leak):
    """A striped input 20000 pixels wide: one row of blocks covers 10 MB of strips, more
    than the smallest worker cache. Each worker reads every strip of the rows it works in,
    once if its cache holds a row of blocks; with a cache too small it would read the strips
    again for every block of the row (79 blocks). However the blocks are shared out, the
    two workers read at most twice the file; a worker that got no block has no count."""
    rng = np.random.default_rng(3)
    a = rng.integers(0, 60000, (1, 600, 20000)).astype(np.uint16)
    src = write_raster(tmp_path / "striped.tif", a)        # GTiff's default: strips
    assert gdal.Open(src).GetRasterBand(1).GetBlockSize()[0] == 20000
    other = OtherInputs()
    rtn = applier.apply(note_bytes_read, assoc(a=src), assoc(o=str(tmp_path / "o.tif")),
                        other, controls=controls(STYLES["proc2"], window=256))
    readBytes = sum(getattr(o, "readBytes", 0) for o in rtn.otherArgsList)
    assert readBytes < 2.5 * a.nbytes          # two workers, each reading every row
    np.testing.assert_array_equal(read_raster(str(tmp_path / "o.tif")), a)
