"""Tests of sharedapplier.calcstats: pyramids, statistics, histograms, single-pass work.

Truth is computed independently with numpy over the whole array; files are real GDAL files.
"""
import contextlib
import os
import tempfile

import numpy as np
import pytest
from osgeo import gdal, gdal_array

from sharedapplier import calcstats, rioserrors
from sharedapplier.calcstats import (
    HistogramParams,
    SinglePassAccumulator,
    SinglePassManager,
)
from sharedapplier.const import DEFAULT_MINOVERVIEWDIM, DEFAULT_OVERVIEWLEVELS

gdal.UseExceptions()

HAVE_KEA = gdal.GetDriverByName("KEA") is not None
EXTENSIONS = {"GTiff": ".tif", "HFA": ".img", "ENVI": ".bin", "KEA": ".kea"}
DRIVERS = ["GTiff", "HFA", "ENVI"] + (["KEA"] if HAVE_KEA else [])


# ---------------------------------------------------------------------------------------
# Stand-ins for the objects the writer hands over


class FakeControls:
    """Dict lookup in place of ApplierControls.getOptionForImagename."""

    DEFAULTS = {
        "omitPyramids": False, "omitBasicStats": False, "omitHistogram": False,
        "overviewLevels": DEFAULT_OVERVIEWLEVELS, "overviewMinDim": DEFAULT_MINOVERVIEWDIM,
        "overviewAggType": None, "singlePassPyramids": None, "singlePassBasicStats": None,
        "singlePassHistogram": None, "thematic": False, "approxStats": False,
        "drivername": "GTiff", "creationoptions": None, "statsIgnore": 0,
        "progress": None, "tempdir": ".",
    }

    def __init__(self, **options):
        self.options = dict(self.DEFAULTS, **options)

    def getOptionForImagename(self, option, name):
        return self.options[option]


class FakeGrid:
    def __init__(self, nrows, ncols):
        self.dims = (nrows, ncols)

    def getDimensions(self):
        return self.dims


class FakeTmpfileMgr:
    def __init__(self, directory):
        self.directory = str(directory)
        self.made = []

    def mktempfile(self, prefix=None, suffix=None):
        fd, path = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=self.directory)
        os.close(fd)
        self.made.append(path)
        return path


class FakeTimings:
    def __init__(self):
        self.names = []

    @contextlib.contextmanager
    def interval(self, name):
        yield
        self.names.append(name)


class RecordingProgress:
    def __init__(self, cancel=False):
        self.calls = []
        self.cancel = cancel

    def setLabelText(self, text):
        self.calls.append(("label", text))

    def setProgress(self, value):
        self.calls.append(("progress", value))

    def wasCancelled(self):
        return self.cancel


# ---------------------------------------------------------------------------------------
# Writing an output the way the writer does


def _create(path, arr, controls):
    drivername = controls.options["drivername"]
    driver = gdal.GetDriverByName(drivername)
    gdaltype = gdal_array.NumericTypeCodeToGDALTypeCode(arr.dtype)
    nbands, nrows, ncols = arr.shape
    ds = driver.Create(str(path), ncols, nrows, nbands, gdaltype,
                       calcstats.creationOptionsForDriver(drivername))
    for i in range(nbands):
        band = ds.GetRasterBand(i + 1)
        if controls.options["thematic"]:
            band.SetMetadataItem("LAYER_TYPE", "thematic")
        if controls.options["statsIgnore"] is not None:
            band.SetNoDataValue(controls.options["statsIgnore"])
    return ds


def write_output(tmp_path, arr, block=(64, 64), fname=None, **options):
    """Write ``arr`` (bands, rows, cols) in blocks with single-pass work, then close it."""
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    controls = FakeControls(**options)
    driver = controls.options["drivername"]
    path = tmp_path / (fname or ("out" + EXTENSIONS[driver]))
    nbands, nrows, ncols = arr.shape
    mgr = SinglePassManager([("img", None, str(path))], controls, FakeGrid(nrows, ncols),
                            FakeTmpfileMgr(tmp_path))
    timings = FakeTimings()
    ds = _create(path, arr, controls)
    mgr.initFor(ds, "img", None, arr[:, :block[1], :block[0]])
    for top in range(0, nrows, block[1]):
        for left in range(0, ncols, block[0]):
            blk = arr[:, top:top + block[1], left:left + block[0]]
            ds.WriteArray(blk, left, top)
            calcstats.handleSinglePassActions(ds, blk, mgr, "img", None, left, top, timings)
    ds.FlushCache()
    calcstats.finishOutputStats(ds, "img", None, mgr, controls, timings)
    ds = None
    return str(path), mgr, timings


def band_metadata(path, bandnum=1):
    ds = gdal.Open(path)
    return ds.GetRasterBand(bandnum).GetMetadata()


def overview_count(path):
    ds = gdal.Open(path)
    return ds.GetRasterBand(1).GetOverviewCount()


def stats_keys(md):
    return {k for k in md if k.startswith("STATISTICS_")}


def hist_from(md):
    text = md["STATISTICS_HISTOBINVALUES"]
    assert text.endswith("|")
    return np.array([int(v) for v in text[:-1].split("|")])


def assert_stats_match(md, nonnull):
    nonnull = nonnull.astype(np.float64)
    assert float(md["STATISTICS_MINIMUM"]) == pytest.approx(nonnull.min(), rel=1e-6, abs=1e-6)
    assert float(md["STATISTICS_MAXIMUM"]) == pytest.approx(nonnull.max(), rel=1e-6, abs=1e-6)
    assert float(md["STATISTICS_MEAN"]) == pytest.approx(nonnull.mean(), rel=1e-6, abs=1e-6)
    assert float(md["STATISTICS_STDDEV"]) == pytest.approx(nonnull.std(), rel=1e-6, abs=1e-6)


def assert_hist_matches_numpy(md, nonnull):
    counts = hist_from(md)
    histMin = float(md["STATISTICS_HISTOMIN"])
    histMax = float(md["STATISTICS_HISTOMAX"])
    truth, _ = np.histogram(nonnull, bins=len(counts), range=(histMin, histMax))
    assert counts.sum() == nonnull.size
    np.testing.assert_array_equal(counts, truth)
    assert int(md["STATISTICS_HISTONUMBINS"]) == len(counts)


def median_mode_truth(counts, histMin, step):
    total = counts.sum()
    medianBin = int(np.argmax(np.cumsum(counts) >= total / 2))
    return medianBin * step + histMin, int(np.argmax(counts)) * step + histMin


# ---------------------------------------------------------------------------------------
# Overview levels and the driver probe


def test_level_truncation_rule():
    assert calcstats.overviewLevelsForSize(2048, 2048, DEFAULT_OVERVIEWLEVELS, 128) == [4, 8]
    assert calcstats.overviewLevelsForSize(500, 500, DEFAULT_OVERVIEWLEVELS, 128) == []
    assert calcstats.overviewLevelsForSize(2048, 600, [4, 8], 100) == [4]
    assert calcstats.overviewLevelsForSize(1000, 1000, [2, 64, 4], 100) == [2, 64]


@pytest.mark.parametrize("drivername", ["HFA", "GTiff", "ENVI"])
def test_driver_probe_supported(tmp_path, drivername):
    mgr = FakeTmpfileMgr(tmp_path)
    options = calcstats.creationOptionsForDriver(drivername)
    assert calcstats.directPyramidsSupportedForDriver(drivername, options, mgr) is True
    assert os.listdir(tmp_path) == []
    assert os.path.basename(mgr.made[0]).startswith("pyrcheck_")


def test_unknown_driver_names_the_driver(tmp_path):
    with pytest.raises(rioserrors.ImageOpenError, match="NoSuchDriver"):
        calcstats.directPyramidsSupportedForDriver("NoSuchDriver", [], FakeTmpfileMgr(tmp_path))
    with pytest.raises(rioserrors.ImageOpenError, match="NoSuchDriver"):
        SinglePassManager([("img", None, "x")], FakeControls(drivername="NoSuchDriver"),
                          FakeGrid(10, 10), FakeTmpfileMgr(tmp_path))


def test_manager_records_decisions(tmp_path):
    outfiles = [("a", 0, "a0"), ("a", 1, "a1"), ("b", None, "b")]
    controls = FakeControls(overviewMinDim=10, overviewLevels=[4, 8, 64])
    mgr = SinglePassManager(outfiles, controls, FakeGrid(400, 300), FakeTmpfileMgr(tmp_path))
    assert set(mgr.approxOK) == {"a", "b"}
    assert mgr.overviewLevels["a"] == [4, 8]
    assert mgr.oviewAggtype["a"] == "NEAREST"
    assert isinstance(mgr.directPyramidsSupported["a"], np.bool_)
    assert mgr.omit[("b", SinglePassManager.HISTOGRAM)] is False
    assert mgr.singlePassRequested[("b", SinglePassManager.STATISTICS)] is None
    assert mgr.doSinglePassPyramids("a") and mgr.doSinglePassStatistics("b")
    # An explicit True with a driver that fails the probe falls back quietly.
    mgr.singlePassRequested[("a", SinglePassManager.PYRAMIDS)] = True
    mgr.directPyramidsSupported["a"] = np.False_
    assert not mgr.doSinglePassPyramids("a")


# ---------------------------------------------------------------------------------------
# Overview content


@pytest.mark.parametrize("drivername", DRIVERS)
def test_single_pass_overviews_centre_sampled(tmp_path, drivername):
    rng = np.random.default_rng(1)
    base = rng.integers(0, 30000, size=(600, 520), dtype=np.int16)
    path, mgr, timings = write_output(tmp_path, base, block=(100, 100), overviewMinDim=20,
                                      drivername=drivername)
    assert mgr.overviewLevels["img"] == [4, 8, 16]
    assert mgr.doSinglePassPyramids("img")
    ds = gdal.Open(path)
    band = ds.GetRasterBand(1)
    for k, f in enumerate([4, 8, 16]):
        ov = band.GetOverview(k).ReadAsArray()
        expected = base[f // 2::f, f // 2::f]
        rows, cols = expected.shape
        np.testing.assert_array_equal(ov[:rows, :cols], expected)
        # Overview pixels whose centre falls past the edge sample the last base pixel.
        if ov.shape[1] > cols:
            np.testing.assert_array_equal(ov[:rows, cols], base[f // 2::f, -1])
        if ov.shape[0] > rows:
            np.testing.assert_array_equal(ov[rows, :cols], base[-1, f // 2::f])
    assert "pyramids" in timings.names


def test_post_pass_overviews_nearest(tmp_path):
    rng = np.random.default_rng(2)
    base = rng.integers(0, 255, size=(512, 512), dtype=np.uint8)
    path, mgr, _ = write_output(tmp_path, base, overviewMinDim=10, overviewLevels=[4, 8],
                                singlePassPyramids=False)
    assert not mgr.doSinglePassPyramids("img")
    ds = gdal.Open(path)
    band = ds.GetRasterBand(1)
    for k, f in enumerate([4, 8]):
        np.testing.assert_array_equal(band.GetOverview(k).ReadAsArray(), base[::f, ::f])


def test_omitted_and_small_images_get_no_overviews(tmp_path):
    base = np.ones((500, 500), dtype=np.uint8)
    path, _, _ = write_output(tmp_path, base, fname="small.tif")
    assert overview_count(path) == 0
    path, _, _ = write_output(tmp_path, np.ones((700, 700), np.uint8), fname="omit.tif",
                              omitPyramids=True, singlePassPyramids=False)
    assert overview_count(path) == 0


def test_addPyramid_progress_and_cancel(tmp_path):
    ds = gdal.GetDriverByName("MEM").Create("", 700, 700, 2, gdal.GDT_Byte)
    progress = RecordingProgress()
    calcstats.addPyramid(ds, progress)
    assert progress.calls[0] == ("label", "Computing Pyramid Layers...")
    assert progress.calls[1] == ("progress", 0)
    assert progress.calls[-1] == ("progress", 100)
    assert ds.GetRasterBand(1).GetOverviewCount() == 1
    with pytest.raises(rioserrors.ProcessCancelledError):
        calcstats.addPyramid(ds, RecordingProgress(cancel=True))


def test_progressFunc_offsets():
    progress = RecordingProgress()
    userdata = calcstats.ProgressUserData(progress, 2)
    assert calcstats.progressFunc(0.5, "", userdata)
    calcstats.progressFunc(1.0, "", userdata)
    calcstats.progressFunc(0.5, "", userdata)
    assert [v for _, v in progress.calls] == [25, 50, 75]


# ---------------------------------------------------------------------------------------
# Basic statistics and float histograms


@pytest.mark.parametrize("drivername", DRIVERS)
@pytest.mark.parametrize("singlePass", [None, False])
def test_float_stats_and_histogram(tmp_path, drivername, singlePass):
    rng = np.random.default_rng(3)
    arr = (rng.random((2, 150, 130)) * 150).astype(np.float32)
    arr[:, :20, :30] = 0
    arr[1, 5:9, 40:50] = 1.5
    path, _, timings = write_output(tmp_path, arr, drivername=drivername,
                                    singlePassBasicStats=singlePass)
    for b in range(2):
        md = band_metadata(path, b + 1)
        nonnull = arr[b][arr[b] != 0]
        assert_stats_match(md, nonnull)
        assert_hist_matches_numpy(md, nonnull)
        assert md["STATISTICS_HISTOBINFUNCTION"] == "linear"
        assert md["STATISTICS_HISTONUMBINS"] == "256"
        assert md["STATISTICS_HISTOMIN"] == repr(float(nonnull.min()))
        assert md["STATISTICS_HISTOMAX"] == repr(float(nonnull.max()))
        assert md["STATISTICS_EXCLUDEDVALUES"] == "0.0"
        assert md["STATISTICS_SKIPFACTORX"] == "1"
        assert md["STATISTICS_SKIPFACTORY"] == "1"
        histMin = float(nonnull.min())
        step = (float(nonnull.max()) - histMin) / 256
        median, mode = median_mode_truth(hist_from(md), histMin, step)
        assert md["STATISTICS_MEDIAN"] == repr(median)
        assert md["STATISTICS_MODE"] == repr(mode)
    assert {"pyramids", "basicstats", "histogram"} <= set(timings.names)


def test_approx_stats_flag(tmp_path):
    arr = np.arange(1, 301, dtype=np.float32).reshape(15, 20)
    path, mgr, _ = write_output(tmp_path, arr, approxStats=True)
    assert not mgr.doSinglePassStatistics("img")
    md = band_metadata(path)
    assert md["STATISTICS_APPROXIMATE"] == "YES"
    assert "STATISTICS_SKIPFACTORX" not in md


def test_no_null_means_no_excluded_values(tmp_path):
    arr = np.arange(100, dtype=np.float64).reshape(10, 10)
    path, _, _ = write_output(tmp_path, arr, statsIgnore=None)
    md = band_metadata(path)
    assert "STATISTICS_EXCLUDEDVALUES" not in md
    assert_stats_match(md, arr.ravel())
    assert_hist_matches_numpy(md, arr.ravel())


def test_excluded_value_is_float_repr(tmp_path):
    arr = np.arange(100, dtype=np.int16).reshape(10, 10)
    path, _, _ = write_output(tmp_path, arr, statsIgnore=52)
    md = band_metadata(path)
    assert md["STATISTICS_EXCLUDEDVALUES"] == "52.0"
    assert_stats_match(md, arr[arr != 52])


def test_float_constant_image_has_one_bin(tmp_path):
    arr = np.full((10, 10), 1.5, dtype=np.float32)
    path, _, _ = write_output(tmp_path, arr)
    md = band_metadata(path)
    assert md["STATISTICS_HISTONUMBINS"] == "1"
    assert md["STATISTICS_HISTOMIN"] == "1.5"
    assert md["STATISTICS_HISTOMAX"] == "1.5"
    assert md["STATISTICS_HISTOBINVALUES"] == "100|"


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint8])
@pytest.mark.parametrize("singlePass", [None, False])
def test_all_null_writes_no_stats(tmp_path, dtype, singlePass):
    arr = np.zeros((2, 40, 40), dtype=dtype)
    path, _, _ = write_output(tmp_path, arr, singlePassBasicStats=singlePass,
                              singlePassHistogram=singlePass)
    for b in (1, 2):
        assert stats_keys(band_metadata(path, b)) == set()


def test_omit_basic_stats_still_gives_histogram(tmp_path):
    rng = np.random.default_rng(4)
    arr = (rng.random((50, 60)) * 10).astype(np.float32) + 1
    path, _, _ = write_output(tmp_path, arr, omitBasicStats=True)
    md = band_metadata(path)
    assert "STATISTICS_MEAN" not in md
    assert_hist_matches_numpy(md, arr.ravel())


def test_omit_everything(tmp_path):
    arr = np.arange(1, 101, dtype=np.int16).reshape(10, 10)
    path, mgr, _ = write_output(tmp_path, arr, omitBasicStats=True, omitHistogram=True,
                                omitPyramids=True)
    assert not mgr.doSinglePassStatistics("img") and not mgr.doSinglePassHistogram("img")
    assert stats_keys(band_metadata(path)) == set()


# ---------------------------------------------------------------------------------------
# Integer histograms: single-pass against post-pass


def _both_paths(tmp_path, arr, **options):
    sp, mgr, _ = write_output(tmp_path, arr, fname="sp.tif", **options)
    assert mgr.doSinglePassHistogram("img") and mgr.doSinglePassStatistics("img")
    pp, mgr2, _ = write_output(tmp_path, arr, fname="pp.tif", singlePassBasicStats=False,
                               singlePassHistogram=False, **options)
    assert not mgr2.doSinglePassHistogram("img")
    return band_metadata(sp), band_metadata(pp)


HIST_KEYS = ["STATISTICS_HISTOBINVALUES", "STATISTICS_HISTOMIN", "STATISTICS_HISTOMAX",
             "STATISTICS_HISTONUMBINS", "STATISTICS_HISTOBINFUNCTION", "STATISTICS_MEDIAN",
             "STATISTICS_MODE", "STATISTICS_MINIMUM", "STATISTICS_MAXIMUM",
             "STATISTICS_EXCLUDEDVALUES"]


def _assert_same(spMd, ppMd):
    for key in HIST_KEYS:
        assert spMd.get(key) == ppMd.get(key), key
    for key in ("STATISTICS_MEAN", "STATISTICS_STDDEV"):
        assert float(spMd[key]) == pytest.approx(float(ppMd[key]), rel=1e-9)


@pytest.mark.parametrize("dtype,low,high", [(np.int16, -3000, 997), (np.uint16, 5, 1000),
                                            (np.int32, -70000, 70000), (np.uint32, 10, 4000)])
def test_integer_linear_single_pass_equals_post_pass(tmp_path, dtype, low, high):
    rng = np.random.default_rng(5)
    arr = rng.integers(low, high + 1, size=(130, 150)).astype(dtype)
    arr[0, 0], arr[1, 1] = low, high
    arr[3:5, 3:5] = 0
    spMd, ppMd = _both_paths(tmp_path, arr)
    _assert_same(spMd, ppMd)
    nonnull = arr[arr != 0]
    assert_stats_match(spMd, nonnull)
    assert_hist_matches_numpy(spMd, nonnull)
    assert spMd["STATISTICS_HISTOBINFUNCTION"] == "linear"
    assert spMd["STATISTICS_HISTOMIN"] == repr(int(nonnull.min()))
    assert spMd["STATISTICS_HISTOMAX"] == repr(int(nonnull.max()))


def test_linear_rebinning_edge_value(tmp_path):
    # min 0 .. max 1000: GDAL puts value 3 into bin 0 (3 < 1000/256); so must single-pass.
    arr = np.array([[0, 3, 1000, 4, 500]], dtype=np.int16)
    spMd, ppMd = _both_paths(tmp_path, arr, statsIgnore=None)
    _assert_same(spMd, ppMd)
    assert hist_from(spMd)[0] == 2


DIRECT_DTYPES = ([np.int8] if hasattr(gdal, "GDT_Int8") else []) + [
    np.int16, np.int32, np.int64, np.uint16, np.uint32, np.uint64]


@pytest.mark.parametrize("dtype", DIRECT_DTYPES)
def test_integer_direct_single_pass_equals_post_pass(tmp_path, dtype):
    rng = np.random.default_rng(6)
    low = -40 if np.dtype(dtype).kind == "i" else 3
    arr = rng.integers(low, low + 100, size=(90, 70)).astype(dtype)
    spMd, ppMd = _both_paths(tmp_path, arr)
    _assert_same(spMd, ppMd)
    nonnull = arr[arr != 0]
    assert spMd["STATISTICS_HISTOBINFUNCTION"] == "direct"
    counts = hist_from(spMd)
    lo = int(nonnull.min())
    np.testing.assert_array_equal(counts, np.bincount(nonnull.astype(np.int64) - lo))
    assert_hist_matches_numpy(spMd, nonnull)


def test_negative_null_removed_single_pass(tmp_path):
    arr = np.array([[-6, -5, -5, -4, 10], [-5, 3, -6, 2, 2]], dtype=np.int16)
    spMd, ppMd = _both_paths(tmp_path, arr, statsIgnore=-5)
    _assert_same(spMd, ppMd)
    nonnull = arr[arr != -5]
    assert spMd["STATISTICS_HISTOMIN"] == "-6"
    assert hist_from(spMd).sum() == nonnull.size
    counts = hist_from(spMd)
    assert counts[0] == 2 and counts[1] == 0 and counts[2] == 1
    assert_hist_matches_numpy(spMd, nonnull)


def test_all_negative_data(tmp_path):
    arr = np.array([[-5, -4, -3, -3]], dtype=np.int32)
    spMd, ppMd = _both_paths(tmp_path, arr)
    _assert_same(spMd, ppMd)
    assert spMd["STATISTICS_HISTOMIN"] == "-5"
    assert spMd["STATISTICS_HISTOMAX"] == "-3"
    assert spMd["STATISTICS_HISTOBINVALUES"] == "1|1|2|"


def test_thematic_uint8_direct_from_zero(tmp_path):
    arr = np.array([[3, 4, 4, 10], [5, 10, 10, 7]], dtype=np.uint8)
    spMd, ppMd = _both_paths(tmp_path, arr, thematic=True, statsIgnore=None)
    _assert_same(spMd, ppMd)
    assert spMd["LAYER_TYPE"] == "thematic"
    assert spMd["STATISTICS_HISTOMIN"] == "0"
    assert spMd["STATISTICS_HISTOMAX"] == "10"
    assert spMd["STATISTICS_HISTONUMBINS"] == "11"
    assert spMd["STATISTICS_HISTOBINFUNCTION"] == "direct"
    np.testing.assert_array_equal(hist_from(spMd), np.bincount(arr.ravel(), minlength=11))
    assert spMd["STATISTICS_MEDIAN"] == "5"  # first bin with cumulative count >= 8/2
    assert spMd["STATISTICS_MODE"] == "10"


def test_thematic_hfa_metadata(tmp_path):
    arr = np.array([[0, 1, 2, 10], [5, 10, 10, 7]], dtype=np.uint8)
    path, _, _ = write_output(tmp_path, arr, drivername="HFA", thematic=True, statsIgnore=None)
    md = band_metadata(path)
    assert md["STATISTICS_HISTOBINFUNCTION"] == "direct"
    assert float(md["STATISTICS_HISTOMIN"]) == 0
    assert int(md["STATISTICS_HISTONUMBINS"]) == 11
    np.testing.assert_array_equal(hist_from(md), np.bincount(arr.ravel(), minlength=11))


def test_wide_integer_range_falls_back_to_gdal(tmp_path):
    rng = np.random.default_rng(7)
    arr = rng.integers(1, 100_000_000, size=(60, 50)).astype(np.int32)
    spMd, ppMd = _both_paths(tmp_path, arr)
    _assert_same(spMd, ppMd)
    assert_hist_matches_numpy(spMd, arr.ravel())


def test_integer_stats_multiband_single_pass(tmp_path):
    rng = np.random.default_rng(8)
    arr = rng.integers(0, 50, size=(3, 100, 90)).astype(np.int16)
    path, _, timings = write_output(tmp_path, arr, block=(32, 32))
    for b in range(3):
        md = band_metadata(path, b + 1)
        nonnull = arr[b][arr[b] != 0]
        assert_stats_match(md, nonnull)
        assert_hist_matches_numpy(md, nonnull)
    nblocks = 4 * 3
    assert timings.names.count("basicstats") == nblocks + 1
    assert timings.names.count("histogram") == nblocks + 1


def test_later_block_of_other_dtype(tmp_path):
    arr = np.arange(1, 201, dtype=np.int16).reshape(10, 20)
    controls = FakeControls()
    path = tmp_path / "mixed.tif"
    mgr = SinglePassManager([("img", None, str(path))], controls, FakeGrid(10, 20),
                            FakeTmpfileMgr(tmp_path))
    ds = _create(path, arr[np.newaxis], controls)
    first, second = arr[np.newaxis, :, :10], arr[np.newaxis, :, 10:].astype(np.float64)
    mgr.initFor(ds, "img", None, first)
    for blk, left in ((first, 0), (second, 10)):
        ds.WriteArray(blk, left, 0)
        calcstats.handleSinglePassActions(ds, blk, mgr, "img", None, left, 0, None)
    calcstats.finishOutputStats(ds, "img", None, mgr, controls, None)
    ds = None
    assert_hist_matches_numpy(band_metadata(str(path)), arr.ravel())


# ---------------------------------------------------------------------------------------
# SinglePassActionsError cases


def _manager(tmp_path, **options):
    return SinglePassManager([("img", None, "x")], FakeControls(**options), FakeGrid(100, 100),
                             FakeTmpfileMgr(tmp_path))


def test_pyramids_true_with_average_raises_even_if_omitted(tmp_path):
    mgr = _manager(tmp_path, singlePassPyramids=True, overviewAggType="AVERAGE",
                   omitPyramids=True)
    with pytest.raises(rioserrors.SinglePassActionsError):
        mgr.doSinglePassPyramids("img")
    auto = _manager(tmp_path, overviewAggType="AVERAGE")
    assert not auto.doSinglePassPyramids("img")


def test_histogram_decision_needs_first_block(tmp_path):
    mgr = _manager(tmp_path)
    with pytest.raises(rioserrors.SinglePassActionsError):
        mgr.doSinglePassHistogram("img")


def test_histogram_true_with_float_raises(tmp_path):
    controls = FakeControls(singlePassHistogram=True)
    mgr = SinglePassManager([("img", None, "x")], controls, FakeGrid(10, 10),
                            FakeTmpfileMgr(tmp_path))
    arr = np.zeros((1, 10, 10), dtype=np.float32)
    ds = _create(tmp_path / "f.tif", arr, controls)
    with pytest.raises(rioserrors.SinglePassActionsError):
        mgr.initFor(ds, "img", None, arr)


def test_approx_or_float_disables_single_pass_histogram(tmp_path):
    mgr = _manager(tmp_path, approxStats=True, singlePassHistogram=True)
    mgr.arrDtype["img"] = np.dtype(np.int16)
    assert not mgr.doSinglePassHistogram("img")
    mgr = _manager(tmp_path)
    mgr.arrDtype["img"] = np.dtype(np.float64)
    assert not mgr.doSinglePassHistogram("img")


def test_linearHistFromDirect_too_many_bins():
    with pytest.raises(rioserrors.SinglePassActionsError):
        calcstats.linearHistFromDirect(256, 1.0, np.ones(100, dtype=np.int64))


# ---------------------------------------------------------------------------------------
# Helper classes and functions


def test_linearHistFromDirect_matches_numpy():
    rng = np.random.default_rng(9)
    counts = rng.integers(0, 5, size=1001)
    values = np.repeat(np.arange(1001), counts)
    truth, _ = np.histogram(values, bins=256, range=(0, 1000))
    np.testing.assert_array_equal(calcstats.linearHistFromDirect(256, 1000 / 256, counts), truth)


def test_accumulator_blocks_equal_whole():
    rng = np.random.default_rng(10)
    arr = rng.integers(-300, 300, size=(100, 80)).astype(np.int16)
    whole = SinglePassAccumulator(True, True, np.int16, 7.0, False)
    whole.doStatsAccum(arr)
    whole.doHistAccum(arr)
    pieces = SinglePassAccumulator(True, True, np.int16, 7.0, False)
    for part in (arr[:33], arr[33:70, :40], arr[33:70, 40:], arr[70:]):
        pieces.doStatsAccum(part)
        pieces.doHistAccum(part)
    nonnull = arr[arr != 7].astype(np.float64)
    minval, maxval, mean, std = pieces.finalStats()
    assert (minval, maxval) == (nonnull.min(), nonnull.max())
    assert mean == pytest.approx(nonnull.mean(), rel=1e-12)
    assert std == pytest.approx(nonnull.std(), rel=1e-12)
    assert whole.finalStats()[2] == pytest.approx(mean, rel=1e-12)
    wmin, wmax, wcounts = whole.fullHist()
    pmin, pmax, pcounts = pieces.fullHist()
    assert (wmin, wmax) == (pmin, pmax) == (-300, 299)
    np.testing.assert_array_equal(wcounts, pcounts)
    assert pcounts[7 + 300] == 0 and pcounts.sum() == nonnull.size


def test_accumulator_empty_and_nan_null():
    acc = SinglePassAccumulator(True, True, np.float32, float("nan"), False)
    acc.doStatsAccum(np.full((4, 4), np.nan, dtype=np.float32))
    assert acc.finalStats() == (None, None, None, None)
    assert acc.fullHist() == (None, None, None)
    acc.doStatsAccum(np.array([[1.0, np.nan, 3.0]], dtype=np.float32))
    assert acc.finalStats()[2] == 2.0


def test_accumulator_uint8_padded_and_updateHist():
    acc = SinglePassAccumulator(False, True, np.uint8, None, False)
    acc.doHistAccum(np.array([[5, 6, 6]], dtype=np.uint8))
    minval, maxval, counts = acc.fullHist()
    assert (minval, maxval) == (0, 6)
    np.testing.assert_array_equal(counts, [0, 0, 0, 0, 0, 1, 2])
    signed = SinglePassAccumulator(False, True, np.int16, None, False)
    signed.updateHist([0, 2, 0, 1], False)   # values -2 (x2) and -4 (x1)
    signed.updateHist([3, 0, 1], True)       # values 0 (x3) and 2 (x1)
    minval, maxval, counts = signed.fullHist()
    assert (minval, maxval) == (-4, 2)
    np.testing.assert_array_equal(counts, [1, 0, 2, 0, 3, 0, 1])


def test_static_count_helpers():
    add = SinglePassAccumulator.addTwoHistograms
    np.testing.assert_array_equal(add(np.array([1, 2]), np.array([1, 1, 5])), [2, 3, 5])
    remove = SinglePassAccumulator.removeNullFromCounts
    np.testing.assert_array_equal(remove(np.array([1, 2, 3]), 1), [1, 0, 3])
    np.testing.assert_array_equal(remove(np.array([1, 0, 0, 3]), 3), [1])
    np.testing.assert_array_equal(remove(np.array([0, 0, 3]), 2), [])
    np.testing.assert_array_equal(remove(np.array([1, 2]), 5), [1, 2])
    np.testing.assert_array_equal(remove(np.array([1, 2]), None), [1, 2])


def _mem_band(gdaltype, thematic=False):
    ds = gdal.GetDriverByName("MEM").Create("", 2, 2, 1, gdaltype)
    band = ds.GetRasterBand(1)
    if thematic:
        band.SetMetadataItem("LAYER_TYPE", "thematic")
    return ds, band


def test_histogram_params_rules():
    _, byte = _mem_band(gdal.GDT_Byte)
    p = HistogramParams(byte, np.uint8(3), np.uint8(200))
    assert (p.min, p.max, p.nbins, p.calcMin, p.calcMax, p.step, p.binFunction) == \
        (0, 200, 201, -0.5, 200.5, 1.0, "direct")
    _, them = _mem_band(gdal.GDT_Int16, thematic=True)
    with pytest.raises(ValueError):
        HistogramParams(them, -1, 5)
    _, i16 = _mem_band(gdal.GDT_Int16)
    p = HistogramParams(i16, -128.0, 127.0)
    assert (p.min, p.max, p.nbins, p.binFunction, p.calcMin) == (-128, 127, 256, "direct", -128.5)
    p = HistogramParams(i16, 0, 1000)
    assert (p.nbins, p.binFunction, p.calcMin, p.calcMax, p.step) == \
        (256, "linear", 0, 1000, 1000 / 256)
    _, f32 = _mem_band(gdal.GDT_Float32)
    p = HistogramParams(f32, np.float32(1.5), np.float32(1.5))
    assert (p.min, p.max, p.calcMax, p.nbins, p.step) == (1.5, 1.5, 2.0, 1, 0.5)
    assert repr(p.min) == "1.5"
    _, cplx = _mem_band(gdal.GDT_CFloat32)
    assert HistogramParams(cplx, 0, 1).binFunction is None
    assert gdal.GDT_UInt32 in calcstats.gdalLargeIntTypes
    assert gdal.GDT_Float64 in calcstats.gdalFloatTypes


def test_writeHistogram_to_rat_for_thematic_band_with_rat():
    ds, band = _mem_band(gdal.GDT_Int16, thematic=True)

    class BandWithRat:
        def __init__(self, real):
            self.real = real
            self.rat = gdal.RasterAttributeTable()
            self.rat.CreateColumn("Name", gdal.GFT_String, gdal.GFU_Name)

        def GetDefaultRAT(self):
            return self.rat

        def SetDefaultRAT(self, rat):
            self.rat = rat

        def __getattr__(self, attr):
            return getattr(self.real, attr)

    wrapped = BandWithRat(band)
    params = HistogramParams(band, 0, 3)
    calcstats.writeHistogram(ds, wrapped, np.array([4, 0, 9, 1]), params)
    col, created = calcstats.findOrCreateColumn(wrapped.rat, gdal.GFU_PixelCount, "X",
                                                gdal.GFT_Real)
    assert (col, created) == (1, False)
    assert wrapped.rat.GetNameOfCol(1) == "Histogram"
    np.testing.assert_array_equal(wrapped.rat.ReadAsArray(1), [4, 0, 9, 1])
    md = band.GetMetadata()
    assert "STATISTICS_HISTOBINVALUES" not in md
    assert md["STATISTICS_HISTOBINFUNCTION"] == "direct"
    assert md["STATISTICS_MODE"] == "2" and md["STATISTICS_MEDIAN"] == "2"


def test_complex_output_does_not_crash(tmp_path):
    arr = (np.arange(100).reshape(10, 10) + 1j).astype(np.complex64)
    path, _, _ = write_output(tmp_path, arr, statsIgnore=None)
    md = band_metadata(path)
    assert "STATISTICS_HISTOBINVALUES" not in md


# ---------------------------------------------------------------------------------------
# Legacy whole-file functions


def _plain_file(tmp_path, arr, nodata=None):
    ds = gdal.GetDriverByName("GTiff").Create(str(tmp_path / "legacy.tif"), arr.shape[1],
                                              arr.shape[0], 1, gdal.GDT_Int16)
    ds.GetRasterBand(1).WriteArray(arr)
    if nodata is not None:
        ds.GetRasterBand(1).SetNoDataValue(nodata)
    return ds


def test_legacy_calcStats_without_nodata(tmp_path):
    arr = np.arange(300 * 300, dtype=np.int16).reshape(300, 300) % 500
    ds = _plain_file(tmp_path, arr)
    calcstats.calcStats(ds, levels=[2, 4], minoverviewdim=64)
    band = ds.GetRasterBand(1)
    assert band.GetNoDataValue() is None
    assert band.GetOverviewCount() == 2
    md = band.GetMetadata()
    assert "STATISTICS_EXCLUDEDVALUES" not in md
    assert_stats_match(md, arr.ravel())
    assert_hist_matches_numpy(md, arr.ravel())


def test_legacy_calcStats_with_nodata(tmp_path):
    arr = np.arange(200, dtype=np.int16).reshape(10, 20)
    ds = _plain_file(tmp_path, arr)
    calcstats.calcStats(ds, progress=RecordingProgress(), ignore=0)
    md = ds.GetRasterBand(1).GetMetadata()
    assert ds.GetRasterBand(1).GetNoDataValue() == 0
    assert md["STATISTICS_EXCLUDEDVALUES"] == "0.0"
    assert_stats_match(md, arr[arr != 0])
    ds2 = _plain_file(tmp_path, arr, nodata=5)
    calcstats.addStatistics(ds2, None)
    assert_stats_match(ds2.GetRasterBand(1).GetMetadata(), arr[arr != 5])


def test_computeStatsGDAL_all_null_and_restores_exception_state():
    ds, band = _mem_band(gdal.GDT_Float32)
    band.SetNoDataValue(0)
    gdal.DontUseExceptions()
    try:
        assert calcstats.computeStatsGDAL(band, False) == (None, None, None, None)
        assert not gdal.GetUseExceptions()
    finally:
        gdal.UseExceptions()
    assert calcstats.addBasicStatsGDAL(ds, False) == [(None, None)]
    assert stats_keys(band.GetMetadata()) == set()
