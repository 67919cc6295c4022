"""Runs with several outputs write each file on a thread of its own, in block order."""
import threading

import numpy as np
import pytest
from conftest import assertSameAsGdalSees, whatGdalSees, write_raster

from sharedapplier import applier, blockwriter, rioserrors
from sharedapplier.structures import (
    CW_PROCESSES,
    CW_THREADS,
    ConcurrencyStyle,
    FilenameAssociations,
)

STYLES = {
    "none": None,
    "threads": dict(computeWorkerKind=CW_THREADS, numComputeWorkers=2, numReadWorkers=1),
    "processes": dict(computeWorkerKind=CW_PROCESSES, numComputeWorkers=2,
                      computeWorkersRead=True),
}
OUTPUTS = {"deflate": "tif", "hfa": "img", "raw": "tif"}


def threeOutputs(info, inputs, outputs):
    outputs.deflate = inputs.a
    outputs.hfa = (inputs.a // 7).astype(np.uint8)
    outputs.raw = (inputs.a.astype(np.float32) / 3)


def runThree(tmp_path, infile, style, prefix, resumable=False):
    controls = applier.ApplierControls()
    controls.setResumable(resumable)
    controls.setWindowSize(64, 64)
    controls.setOutputDriverName("GTiff")
    controls.setOutputDriverName("HFA", imagename="hfa")
    controls.setCreationOptions(["COMPRESS=DEFLATE", "TILED=YES", "BLOCKXSIZE=64",
                                 "BLOCKYSIZE=64"], imagename="deflate")
    controls.setCreationOptions(["TILED=YES", "BLOCKXSIZE=64", "BLOCKYSIZE=64"],
                                imagename="raw")
    controls.setOverviewMinDim(16)
    if STYLES[style] is not None:
        controls.setConcurrencyStyle(ConcurrencyStyle(**STYLES[style]))
    infiles, outfiles = FilenameAssociations(), FilenameAssociations()
    infiles.a = infile
    for name, ext in OUTPUTS.items():
        setattr(outfiles, name, str(tmp_path / f"{prefix}_{name}.{ext}"))
    applier.apply(threeOutputs, infiles, outfiles, controls=controls)
    return {name: getattr(outfiles, name) for name in OUTPUTS}


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    rng = np.random.default_rng(5)
    arr = rng.integers(0, 1700, (1, 300, 250), dtype=np.uint16)
    return arr, write_raster(tmp_path_factory.mktemp("scene") / "in.tif", arr)


@pytest.fixture
def writesSeen(monkeypatch):
    """(thread, output, block) of every block written, in the order written."""
    seen = []
    lock = threading.Lock()
    original = blockwriter.OutputWriter.writeFileBlock

    def recording(self, key, blockDefn, arr, record=None):
        with lock:
            seen.append((threading.get_ident(), key[0], (blockDefn.top, blockDefn.left)))
        return original(self, key, blockDefn, arr, record)

    monkeypatch.setattr(blockwriter.OutputWriter, "writeFileBlock", recording)
    return seen


@pytest.mark.parametrize("resumable", [False, True], ids=["", "resumable"])
@pytest.mark.parametrize("style", ["threads", "processes"])
def test_each_file_is_written_by_its_own_thread_in_block_order(scene, style, resumable,
                                                               tmp_path, writesSeen,
                                                               no_shm_leak):
    arr, infile = scene
    truth = runThree(tmp_path, infile, "none", "none")
    del writesSeen[:]  # CW_NONE's writes are the main thread's: not these threads
    mine = runThree(tmp_path, infile, style, style, resumable)
    for name in OUTPUTS:
        assertSameAsGdalSees(whatGdalSees(mine[name]), whatGdalSees(truth[name]))
        writes = [(thread, block) for thread, output, block in writesSeen if output == name]
        assert len({thread for thread, _ in writes}) == 1
        assert [block for _, block in writes] == sorted(block for _, block in writes)
        assert len(writes) == 5 * 4
    threads = {thread for thread, _, _ in writesSeen}
    assert len(threads) == 3 and threading.main_thread().ident not in threads
    np.testing.assert_array_equal(whatGdalSees(mine["deflate"])["pixels"], arr[0])
    assert not [t for t in threading.enumerate() if t.name.startswith("sharedapplier-write")]


@pytest.mark.parametrize("driver,options,ownThread", [
    ("GTiff", ["COMPRESS=DEFLATE", "TILED=YES", "BLOCKXSIZE=64", "BLOCKYSIZE=64"],
     False),  # compressed on GDAL's NUM_THREADS
    ("HFA", None, True),  # COMPRESSED=YES: run-length coded as it is written
    ("HFA", ["COMPRESSED=NO"], False),
    ("HFA", ["compressed=yes"], True),
])
def test_a_single_output_has_a_thread_of_its_own_when_gdal_compresses_as_it_writes(
        scene, tmp_path, writesSeen, driver, options, ownThread):
    arr, infile = scene
    infiles, outfiles = FilenameAssociations(), FilenameAssociations()
    infiles.a, outfiles.out = infile, str(tmp_path / "one.img")
    controls = applier.ApplierControls()
    controls.setOutputDriverName(driver)
    controls.setWindowSize(64, 64)
    if options is not None:
        controls.setCreationOptions(options)
    controls.setConcurrencyStyle(ConcurrencyStyle(**STYLES["processes"]))
    applier.apply(lambda info, inputs, outputs: setattr(outputs, "out", inputs.a),
                  infiles, outfiles, controls=controls)
    threads = {thread for thread, _, _ in writesSeen}
    assert len(threads) == 1
    assert (threading.main_thread().ident not in threads) == ownThread
    assert [block for _, _, block in writesSeen] == sorted(block for _, _, block in writesSeen)
    np.testing.assert_array_equal(whatGdalSees(outfiles.out)["pixels"], arr[0])


def test_a_failing_file_stops_the_run_and_leaves_nothing(scene, tmp_path, monkeypatch,
                                                         no_shm_leak):
    _, infile = scene
    original = blockwriter.OutputWriter.writeFileBlock

    def failing(self, key, blockDefn, arr, record=None):
        if key[0] == "hfa" and blockDefn.top >= 128:
            raise rioserrors.ImageWriteError(f"disk full writing {key[0]}")
        return original(self, key, blockDefn, arr, record)

    monkeypatch.setattr(blockwriter.OutputWriter, "writeFileBlock", failing)
    with pytest.raises(rioserrors.ImageWriteError, match="disk full writing hfa"):
        runThree(tmp_path, infile, "processes", "failed")
    assert not list(tmp_path.glob("failed_*"))
    assert not [t for t in threading.enumerate() if t.name.startswith("sharedapplier-write")]
