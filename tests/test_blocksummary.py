"""Block summaries: what a compute worker works out of each block for the writer.

Merged in block order, a worker's summaries must give the writer exactly what it got by
accumulating every block itself: the same statistics to the last bit, the same histogram
counts, the same overview pixels; and every concurrency style must still write what
CW_NONE writes. Truth for the statistics is numpy over the whole array.
"""
import numpy as np
import pytest
from conftest import assertSameAsGdalSees, whatGdalSees, write_raster
from osgeo import gdal

from sharedapplier import applier, blocksummary, calcstats
from sharedapplier.blocksummary import Part, SummaryPlan
from sharedapplier.structures import (
    CW_PROCESSES,
    CW_SUBPROC,
    CW_THREADS,
    ConcurrencyStyle,
    FilenameAssociations,
    Timers,
)

BLOCK = 32


def blocksOf(arr, block=BLOCK):
    """(left, top, block) of a (bands, rows, cols) array, in row-major block order."""
    nrows, ncols = arr.shape[-2:]
    for top in range(0, nrows, block):
        for left in range(0, ncols, block):
            yield left, top, arr[:, top:top + block, left:left + block]


def planFor(arr, nullval, statistics=True, histogram=True, levels=(), countsLength=None):
    dtype = arr.dtype
    return SummaryPlan(("out", None), arr.shape[0], dtype.str, statistics, histogram, nullval,
                       countsLength or blocksummary.countsLengthFor(dtype, BLOCK, BLOCK),
                       tuple(levels), arr.shape[2], arr.shape[1], BLOCK * BLOCK)


def summarised(plan, left, top, block):
    """The record a worker would leave in the slot for ``block``."""
    buffer = np.zeros(plan.nbytes, dtype=np.uint8)
    rec = plan.record(buffer)
    plan.summarise(block, left, top, rec)
    return rec


def accumulators(plan, arr):
    return [calcstats.SinglePassAccumulator(plan.statistics, plan.histogram, arr.dtype,
                                            plan.nullval, False) for _ in range(arr.shape[0])]


def values(dtype, rng, shape=(2, 100, 90)):
    if np.dtype(dtype).kind == "f":
        arr = (rng.standard_normal(shape) * 1000).astype(dtype)
        arr[0, :40, :40] = np.nan  # some blocks have no valid pixel at all
        return arr
    info = np.iinfo(dtype)
    wide = np.dtype(dtype).itemsize >= 4
    low, high = (info.min, info.max) if wide else (max(info.min, -3000), min(info.max, 3000))
    arr = rng.integers(low, high, shape, dtype=dtype, endpoint=True)
    arr[1, :40, :40] = 7  # the null value below: blocks with none valid
    return arr


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "uint16", "int32", "uint32",
                                   "int64", "float32", "float64"])
def test_merged_summaries_equal_the_writers_own_accumulation(dtype, rng):
    arr = values(dtype, rng)
    nullval = None if arr.dtype.kind == "f" else 7.0
    histogram = arr.dtype.kind != "f"
    plan = planFor(arr, nullval, histogram=histogram)
    direct, merged = accumulators(plan, arr), accumulators(plan, arr)
    for left, top, block in blocksOf(arr):
        for band, accumulator in enumerate(direct):
            accumulator.doStatsAccum(block[band])
            if histogram:
                accumulator.doHistAccum(block[band])
        rec = summarised(plan, left, top, block)
        blocksummary.applySummary(plan, rec, block, left, top, None, merged, Timers())
    for band in range(arr.shape[0]):
        assert merged[band].finalStats() == direct[band].finalStats()
        if histogram:
            mergedHist, directHist = merged[band].fullHist(), direct[band].fullHist()
            assert mergedHist[:2] == directHist[:2]
            np.testing.assert_array_equal(mergedHist[2], directHist[2])
        valid = arr[band][arr[band] != nullval] if nullval is not None else arr[band]
        valid = valid[~np.isnan(valid)] if arr.dtype.kind == "f" else valid
        minval, maxval, mean, stddev = merged[band].finalStats()
        assert (minval, maxval) == (valid.min(), valid.max())
        assert mean == pytest.approx(valid.astype(np.float64).mean(), rel=1e-12)
        assert stddev == pytest.approx(valid.astype(np.float64).std(), rel=1e-9)


def test_blocks_whose_values_outgrow_the_record_are_counted_by_the_writer(rng):
    arr = rng.integers(0, 60000, (1, 64, 64), dtype=np.uint16)
    arr[0, :BLOCK, :BLOCK] = rng.integers(100, 200, (BLOCK, BLOCK))  # a narrow block
    plan = planFor(arr, None, countsLength=256)
    parts = [summarised(plan, left, top, block)["countsPart"][0, 0]
             for left, top, block in blocksOf(arr)]
    assert parts == [Part.DONE, Part.WRITER, Part.WRITER, Part.WRITER]
    merged = accumulators(plan, arr)
    for left, top, block in blocksOf(arr):
        rec = summarised(plan, left, top, block)
        blocksummary.applySummary(plan, rec, block, left, top, None, merged, Timers())
    minval, maxval, counts = merged[0].fullHist()
    np.testing.assert_array_equal(counts, np.bincount(arr.ravel() - arr.min()))
    assert (minval, maxval) == (arr.min(), arr.max())


def emptyWithOverviews(path, arr, factors):
    ds = gdal.GetDriverByName("GTiff").Create(str(path), arr.shape[2], arr.shape[1],
                                              arr.shape[0], gdal.GDT_Int16)
    ds.BuildOverviews("NEAREST", list(factors))
    return ds


def overviewArrays(ds, nlevels):
    return [ds.GetRasterBand(b + 1).GetOverview(k).ReadAsArray()
            for b in range(ds.RasterCount) for k in range(nlevels)]


@pytest.mark.parametrize("roomy", [True, False], ids=["pieces", "too-big-for-the-record"])
def test_overview_pieces_are_the_pixels_writeBlockPyramids_writes(tmp_path, rng, roomy):
    arr = rng.integers(-1000, 1000, (2, 101, 77), dtype=np.int16)
    factors = (2, 4, 8)
    ours = emptyWithOverviews(tmp_path / "ours.tif", arr, factors)
    levels = blocksummary.overviewLevels(ours, factors, BLOCK, BLOCK)
    if not roomy:
        levels = tuple(level.__class__(level.factor, level.xsize, level.ysize, 1, 1)
                       for level in levels)
    plan = planFor(arr, None, statistics=False, histogram=False, levels=levels)
    overviews = [[ours.GetRasterBand(b + 1).GetOverview(k) for k in range(len(factors))]
                 for b in range(2)]
    mgr = type("Mgr", (), {"overviewLevels": {"out": list(factors)}})()
    theirs = emptyWithOverviews(tmp_path / "theirs.tif", arr, factors)
    for left, top, block in blocksOf(arr):
        rec = summarised(plan, left, top, block)
        assert rec["pyramidsPart"][0] == (Part.DONE if roomy else Part.WRITER)
        blocksummary.applySummary(plan, rec, block, left, top, overviews, None, Timers())
        calcstats.writeBlockPyramids(theirs, block, mgr, "out", left, top)
    for mine, truth in zip(overviewArrays(ours, 3), overviewArrays(theirs, 3), strict=True):
        np.testing.assert_array_equal(mine, truth)
    # and the samples are the centre pixels of each factor x factor cell
    first = overviewArrays(ours, 3)[0]
    rows = np.minimum(np.arange(first.shape[0]) * 2 + 1, arr.shape[1] - 1)
    cols = np.minimum(np.arange(first.shape[1]) * 2 + 1, arr.shape[2] - 1)
    np.testing.assert_array_equal(first, arr[0][np.ix_(rows, cols)])


# ---------------------------------------------------------------------------------------
# Whole runs: every style writes what CW_NONE writes


OUTPUTS = {
    "gtiff-deflate": ("GTiff", ["COMPRESS=DEFLATE", "TILED=YES", "BLOCKXSIZE=64",
                                "BLOCKYSIZE=64"]),
    "gtiff-raw": ("GTiff", ["TILED=YES", "BLOCKXSIZE=64", "BLOCKYSIZE=64"]),
    "hfa": ("HFA", None),
}
STYLES = {
    "none": None,
    "threads": dict(computeWorkerKind=CW_THREADS, numComputeWorkers=2, numReadWorkers=1),
    "processes": dict(computeWorkerKind=CW_PROCESSES, numComputeWorkers=2,
                      computeWorkersRead=True),
    "subproc": dict(computeWorkerKind=CW_SUBPROC, numComputeWorkers=2,
                    computeWorkersRead=False, numReadWorkers=1),
}


def rescale(info, inputs, outputs):
    outputs.out = (inputs.a // 3 - 200).astype(np.int16)


def runOnce(tmp_path, infile, output, style, name):
    driver, options = OUTPUTS[output]
    controls = applier.ApplierControls()
    controls.setWindowSize(64, 64)
    controls.setOutputDriverName(driver)
    controls.setStatsIgnore(-200)
    controls.setOverviewMinDim(16)  # levels 4, 8 and 16 of this small grid
    if options is not None:
        controls.setCreationOptions(options)
    if STYLES[style] is not None:
        controls.setConcurrencyStyle(ConcurrencyStyle(**STYLES[style]))
    infiles, outfiles = FilenameAssociations(), FilenameAssociations()
    infiles.a = infile
    outfiles.out = str(tmp_path / f"{name}.{'tif' if driver == 'GTiff' else 'img'}")
    rtn = applier.apply(rescale, infiles, outfiles, controls=controls)
    summarised = len(rtn.timings.getDurationsForName("summarising") or [])
    assert summarised == (0 if style == "none" else 25), "every block was summarised"
    return outfiles.out


@pytest.fixture(scope="module")
def sceneWithNulls(tmp_path_factory):
    rng = np.random.default_rng(17)
    arr = rng.integers(0, 3000, (2, 300, 270), dtype=np.uint16)
    arr[:, :70, :100] = 0  # becomes -200, the null: whole blocks of nulls
    return arr, write_raster(tmp_path_factory.mktemp("scene") / "in.tif", arr)


@pytest.mark.parametrize("output", sorted(OUTPUTS))
def test_every_style_writes_what_cw_none_writes(sceneWithNulls, output, tmp_path,
                                                no_shm_leak):
    arr, infile = sceneWithNulls
    seen = {style: whatGdalSees(runOnce(tmp_path, infile, output, style, style))
            for style in STYLES}
    for style in STYLES:
        assertSameAsGdalSees(seen[style], seen["none"])
    expected = (arr // 3 - 200).astype(np.int16)
    np.testing.assert_array_equal(seen["processes"]["pixels"], expected)
    for b in range(2):
        valid = expected[b][expected[b] != -200].astype(np.float64)
        meta = seen["processes"][f"metadata{b}"]
        assert float(meta["STATISTICS_MINIMUM"]) == valid.min()
        assert float(meta["STATISTICS_MAXIMUM"]) == valid.max()
        assert float(meta["STATISTICS_MEAN"]) == pytest.approx(valid.mean(), rel=1e-9)
        assert float(meta["STATISTICS_STDDEV"]) == pytest.approx(valid.std(), rel=1e-9)
        assert len(seen["processes"][f"overviews{b}"]) > 0
