"""Shared pytest fixtures: real raster files written by GDAL, and a /dev/shm leak check."""
import logging
import os
import time

import numpy as np
import pytest
from batchfixtures import aws_batch, pbs_double, slurm_cluster, torque_qsub  # noqa: F401
from osgeo import gdal, gdal_array, osr

gdal.UseExceptions()

DEFAULT_GT = (500000.0, 10.0, 0.0, 7000000.0, 0.0, -10.0)
DEFAULT_EPSG = 32755


def write_raster(path, array, geotransform=DEFAULT_GT, epsg=DEFAULT_EPSG, nodata=None,
                 driver="GTiff", options=None, thematic=False, wkt=None):
    """Write a 3-D (bands, rows, cols) or 2-D numpy array to a real file with GDAL."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[np.newaxis]
    nbands, nrows, ncols = array.shape
    gdaltype = gdal_array.NumericTypeCodeToGDALTypeCode(array.dtype)
    drv = gdal.GetDriverByName(driver)
    ds = drv.Create(str(path), ncols, nrows, nbands, gdaltype, options or [])
    ds.SetGeoTransform(geotransform)
    if wkt is None:
        sr = osr.SpatialReference()
        sr.ImportFromEPSG(epsg)
        wkt = sr.ExportToWkt()
    ds.SetProjection(wkt)
    for i in range(nbands):
        band = ds.GetRasterBand(i + 1)
        band.WriteArray(array[i])
        if nodata is not None:
            value = nodata[i] if isinstance(nodata, (list, tuple)) else nodata
            if value is not None:
                band.SetNoDataValue(value)
        if thematic:
            band.SetMetadataItem("LAYER_TYPE", "thematic")
    ds.FlushCache()
    ds = None
    return str(path)


def read_raster(path):
    """Read a whole file as a (bands, rows, cols) array."""
    ds = gdal.Open(str(path))
    arr = ds.ReadAsArray()
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    return arr


def open_fds(path):
    """How many of this process's file descriptors point at ``path``."""
    target = os.path.realpath(path)
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.path.realpath(os.readlink(f"/proc/self/fd/{fd}")) == target:
                count += 1
        except OSError:
            pass
    return count


@pytest.fixture(scope="session", autouse=True)
def runRecordsFolder(tmp_path_factory):
    """Run records (``sharedapplier.runrecord``) go to a folder of the test session's own,
    for its subprocesses too: never the user's, never another session's."""
    folder = tmp_path_factory.mktemp("runrecords")
    previous = os.environ.get("SHAREDAPPLIER_RUN_RECORDS")
    os.environ["SHAREDAPPLIER_RUN_RECORDS"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("SHAREDAPPLIER_RUN_RECORDS", None)
    else:
        os.environ["SHAREDAPPLIER_RUN_RECORDS"] = previous


@pytest.fixture(scope="session", autouse=True)
def messagesOnStderr():
    """The ``sharedapplier`` logger's messages reach stderr, as for a user who has configured
    no logging: pytest's log capture puts handlers on the root logger, which keeps Python's
    last-resort handler from printing them, so it is attached here (it writes to whatever
    sys.stderr is then, which capsys and capfd read)."""
    logger = logging.getLogger("sharedapplier")
    logger.addHandler(logging.lastResort)
    yield
    logger.removeHandler(logging.lastResort)


def waitUntil(condition, seconds=60.0, what="condition"):
    """Poll ``condition`` until it is true; AssertionError naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {seconds} s")


LEFTOVER_PREFIXES = ("rios_", "sharedapplier_run_")


def _leftovers() -> set:
    return {n for n in os.listdir(".") if n.startswith(LEFTOVER_PREFIXES)}


@pytest.fixture(autouse=True)
def nothingLeftInWorkingDirectory():
    """Fail the test that leaves a run's temporary folder (``rios_*``) or run directory in
    the working directory, where a run whose controls name no tempdir puts them."""
    before = _leftovers()
    yield
    left = _leftovers() - before
    assert not left, f"left behind in {os.getcwd()}: {sorted(left)}"


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def _our_shm_segments():
    try:
        names = os.listdir("/dev/shm")
    except FileNotFoundError:
        return set()
    return {n for n in names if n.startswith(f"sa_{os.getpid()}_")}


@pytest.fixture
def no_shm_leak():
    """Fail the test if this process leaves one of its shared-memory segments in /dev/shm.

    Segment names carry the owner's pid; tests that run apply in a subprocess check that
    subprocess's pid themselves.
    """
    before = _our_shm_segments()
    yield
    left = _our_shm_segments() - before
    assert not left, f"shared-memory segments left behind: {sorted(left)}"


def whatGdalSees(path):
    """Pixels, overview pixels, and every band's metadata, as GDAL's readers see them."""
    ds = gdal.Open(path)
    seen = {"pixels": ds.ReadAsArray()}
    for b in range(ds.RasterCount):
        band = ds.GetRasterBand(b + 1)
        seen[f"metadata{b}"] = band.GetMetadata()
        seen[f"overviews{b}"] = [band.GetOverview(k).ReadAsArray()
                                 for k in range(band.GetOverviewCount())]
        seen[f"histogram{b}"] = band.GetDefaultHistogram(force=False)
        rat = band.GetDefaultRAT()
        seen[f"rat{b}"] = None if rat is None else [
            rat.ReadAsArray(c) for c in range(rat.GetColumnCount())]
    return seen


def assertSameAsGdalSees(mine, truth):
    assert mine.keys() == truth.keys()
    for key in truth:
        np.testing.assert_equal(mine[key], truth[key], err_msg=key)
