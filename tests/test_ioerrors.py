"""File input/output errors: damaged and truncated inputs, missing folders, failed writes.

Every file is written by GDAL; each error must be one of ours, name the file and carry
GDAL's (or the system's) own reason, which the tests learn from GDAL directly.
"""
import errno
import os
import re
import subprocess
import sys
import textwrap
from contextlib import nullcontext

import numpy as np
import pytest
from conftest import write_raster
from osgeo import gdal

from sharedapplier import applier, rioserrors
from sharedapplier.imageio import GdalErrorsAs
from sharedapplier.structures import (
    CW_PROCESSES,
    CW_THREADS,
    ConcurrencyStyle,
    FilenameAssociations,
)

WINDOW = 256
STYLES = {
    "none": dict(),
    "read-threads": dict(numReadWorkers=2),
    "compute-threads": dict(computeWorkerKind=CW_THREADS, numComputeWorkers=2,
                            numReadWorkers=1),
    "processes-read": dict(computeWorkerKind=CW_PROCESSES, numComputeWorkers=2,
                           computeWorkersRead=True),
}


def assoc(**files):
    fa = FilenameAssociations()
    for k, v in files.items():
        setattr(fa, k, v)
    return fa


def controls(style=None):
    c = applier.ApplierControls()
    c.setOutputDriverName("GTiff")
    c.setCreationOptions(["TILED=YES", f"BLOCKXSIZE={WINDOW}", f"BLOCKYSIZE={WINDOW}"])
    c.setWindowSize(WINDOW, WINDOW)
    c.setConcurrencyStyle(ConcurrencyStyle(**(style or {})))
    return c


def double(info, inputs, outputs):
    outputs.o = inputs.a * 2


@pytest.fixture
def exceptions_restored():
    """Put GDAL's exception setting back as it was when the test is done."""
    was_on = gdal.GetUseExceptions()
    yield
    if was_on:
        gdal.UseExceptions()
    else:
        gdal.DontUseExceptions()


def gdal_failures_reading(path, xoff, yoff, size):
    """The failure messages GDAL itself gives reading a window of ``path``."""
    failures = []
    gdal.PushErrorHandler(lambda cls, no, msg: failures.append(msg)
                          if cls >= gdal.CE_Failure else None)
    try:
        ds = gdal.Open(path)
        try:
            ds.GetRasterBand(1).ReadAsArray(xoff, yoff, size, size)
        except RuntimeError:
            pass
        ds = None
    finally:
        gdal.PopErrorHandler()
    assert failures, f"GDAL read {path} without a failure: the file was not spoiled"
    return failures


def files_named_like(path):
    folder, name = os.path.split(str(path))
    stem = os.path.splitext(name)[0]
    return sorted(f for f in os.listdir(folder) if f.startswith(stem))


def our_read_error(err):
    """The message of our read error, raised as is or carried back from a worker."""
    if isinstance(err, rioserrors.WorkerExceptionError):
        if err.__cause__ is not None:
            assert isinstance(err.__cause__, rioserrors.ImageReadError)
        found = re.search(r"rioserrors\.ImageReadError: (.*)", str(err))
        assert found, str(err)
        return found.group(1)
    assert isinstance(err, rioserrors.ImageReadError), repr(err)
    return str(err)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """A tiled DEFLATE GTiff whose tile (1, 1) is overwritten with garbage."""
    folder = tmp_path_factory.mktemp("damaged")
    rng = np.random.default_rng(15)
    path = write_raster(folder / "damaged.tif",
                        rng.integers(0, 1000, (512, 512)).astype(np.int16),
                        options=["TILED=YES", "COMPRESS=DEFLATE", "BLOCKXSIZE=256",
                                 "BLOCKYSIZE=256"])
    ds = gdal.Open(path)
    band = ds.GetRasterBand(1)
    offset = int(band.GetMetadataItem("BLOCK_OFFSET_1_1", "TIFF"))
    size = int(band.GetMetadataItem("BLOCK_SIZE_1_1", "TIFF"))
    ds = None
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


@pytest.mark.parametrize("use_exceptions", [True, False], ids=["UseExceptions", "Dont"])
@pytest.mark.parametrize("style", list(STYLES))
def test_damaged_tile_is_our_error_with_file_and_gdal_reason(damaged, tmp_path, style,
                                                             use_exceptions,
                                                             exceptions_restored,
                                                             no_shm_leak):
    expected = gdal_failures_reading(damaged, 256, 256, 256)
    if use_exceptions:
        gdal.UseExceptions()
    else:
        gdal.DontUseExceptions()
    out = tmp_path / "o.tif"
    with pytest.raises(rioserrors.RiosError) as info:
        applier.apply(double, assoc(a=damaged), assoc(o=str(out)),
                      controls=controls(STYLES[style]))
    assert gdal.GetUseExceptions() == use_exceptions
    message = our_read_error(info.value)
    assert f"the window (256, 256, 256x256) of '{damaged}'" in message
    for reason in expected:
        assert " ".join(reason.split()) in message
    assert damaged in str(info.value)
    assert files_named_like(out) == []


def test_truncated_input_carries_gdal_message(tmp_path):
    rng = np.random.default_rng(3)
    path = write_raster(tmp_path / "whole.tif",
                        rng.integers(0, 30000, (512, 512)).astype(np.int16))
    data = open(path, "rb").read()
    truncated = str(tmp_path / "truncated.tif")
    open(truncated, "wb").write(data[:len(data) * 3 // 4])
    expected = gdal_failures_reading(truncated, 0, 256, 256)
    with pytest.raises(rioserrors.ImageReadError) as info:
        applier.apply(double, assoc(a=truncated), assoc(o=str(tmp_path / "o.tif")),
                      controls=controls())
    message = str(info.value)
    assert f"could not read the window (0, 256, 256x256) of '{truncated}'" in message
    reason = message.split("): ", 1)[1]
    assert reason.strip()
    for failure in expected:
        assert " ".join(failure.split()) in reason
    assert files_named_like(tmp_path / "o.tif") == []


def test_output_in_missing_folder_names_folder_and_fix(damaged, tmp_path):
    folder = tmp_path / "nosuch"
    with pytest.raises(rioserrors.PermissionError) as info:
        applier.apply(double, assoc(a=damaged), assoc(o=str(folder / "o.tif")),
                      controls=controls())
    message = str(info.value)
    assert f"folder '{folder}' does not exist" in message
    assert "create it first" in message
    assert not folder.exists()


WRITE_SCRIPT = """
import resource, signal
import numpy as np
from sharedapplier import applier
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY))
def noise(info, inputs, outputs):
    rng = np.random.default_rng(info.getBlockCount()[0] * 10 + info.getBlockCount()[1])
    outputs.o = rng.random(inputs.a.shape)
c = applier.ApplierControls()
c.setOutputDriverName({driver!r})
if {driver!r} == "GTiff":
    c.setCreationOptions(["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256"])
c.setWindowSize(256, 256)
c.setConcurrencyStyle(applier.ConcurrencyStyle(numReadWorkers={readers}))
fi = applier.FilenameAssociations(); fi.a = {src!r}
fo = applier.FilenameAssociations(); fo.o = {out!r}
try:
    applier.apply(noise, fi, fo, controls=c)
except Exception as e:
    print(type(e).__name__, "|", e)
else:
    print("no error")
"""


@pytest.mark.parametrize("driver,readers", [("GTiff", 0), ("HFA", 0), ("GTiff", 1)])
def test_write_past_file_size_limit_is_our_error_and_leaves_no_file(tmp_path, driver,
                                                                    readers):
    src = write_raster(tmp_path / "src.tif", np.ones((1024, 1024), np.uint8))
    out = tmp_path / ("o.tif" if driver == "GTiff" else "o.img")
    limit = 2**20  # the float64 output takes 8 MiB
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(WRITE_SCRIPT.format(
        limit=limit, driver=driver, readers=readers, src=src, out=str(out))))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    name, _, message = proc.stdout.strip().partition(" | ")
    assert name == "ImageWriteError", proc.stdout + proc.stderr
    assert f"Cannot write output '{out}'" in message
    assert os.strerror(errno.EFBIG) in message  # "File too large"
    assert f"at most {limit} bytes" in message
    assert files_named_like(out) == []


@pytest.mark.parametrize("use_exceptions", [True, False], ids=["UseExceptions", "Dont"])
def test_gdal_errors_as_keeps_every_failure_and_passes_warnings_on(tmp_path, use_exceptions,
                                                                   exceptions_restored):
    if use_exceptions:
        gdal.UseExceptions()
    else:
        gdal.DontUseExceptions()
    heard = []
    gdal.PushErrorHandler(lambda cls, no, msg: heard.append((cls, msg)))
    try:
        with pytest.raises(rioserrors.ImageReadError) as info:
            with GdalErrorsAs(rioserrors.ImageReadError, "reading 'x'"):
                gdal.Error(gdal.CE_Warning, 1, "just a warning")
                with pytest.raises(RuntimeError) if use_exceptions else nullcontext():
                    gdal.Error(gdal.CE_Failure, 1, "first cause")
                gdal.Open(str(tmp_path / "missing.tif"))
    finally:
        gdal.PopErrorHandler()
    assert str(info.value).startswith("reading 'x': first cause; ")
    assert "missing.tif: No such file or directory" in str(info.value)
    assert heard == [(gdal.CE_Warning, "just a warning")]
    assert gdal.GetUseExceptions() == use_exceptions
