"""Overviews (pyramids), basic statistics and histograms for output rasters.

Two ways of producing each of them are offered, as in RIOS: "single-pass", accumulated
block by block while the file is written (:class:`SinglePassManager`,
:func:`handleSinglePassActions`), and "post-pass", computed by GDAL once the file is
complete. :func:`finishOutputStats` is the close-time step the writer calls per file.

Deliberate differences from RIOS 2.0.9 (its bugs are not copied):

* ``omitBasicStats=True`` with a GDAL histogram: the min/max needed are computed here.
* Single-pass integer histograms keep one count array over the actual data range, so a
  negative null is removed properly and all-negative data get the right HISTOMIN/HISTOMAX.
* Single-pass re-binning to 256 linear bins uses GDAL's rule (value v in bin
  ``floor((v - min) / step)``, the top value in the last bin), so single-pass and post-pass
  histograms agree.
* Single-pass overviews are correct for any block size: every overview pixel j of level f
  samples base pixel ``min(j*f + f//2, size-1)`` and is written by the block holding it.
* An unknown output driver raises :class:`rioserrors.ImageOpenError` naming it.
* Legacy :func:`addStatistics`/:func:`calcStats` with ``ignore=None`` set no null.
* Complex bands get no histogram (no binning rule applies) instead of a ``TypeError``.
* Single-pass statistics combine per-block means and squared deviations (Chan's
  formula) and skip NaN values, as GDAL does; very wide integer ranges fall back to a GDAL
  histogram instead of allocating huge count arrays.
"""
import contextlib
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy
from osgeo import gdal

from . import rioserrors
from .const import (
    DEFAULT_MINOVERVIEWDIM,
    DEFAULT_OVERVIEWAGGREGRATIONTYPE,
    DEFAULT_OVERVIEWLEVELS,
    creationOptionsForDriver,
)

__all__ = [
    "DEFAULT_OVERVIEWLEVELS", "DEFAULT_MINOVERVIEWDIM", "DEFAULT_OVERVIEWAGGREGRATIONTYPE",
    "gdalLargeIntTypes", "gdalFloatTypes", "numpyUnsignedIntTypes", "numpySignedIntTypes",
    "progressFunc", "ProgressUserData", "addPyramid", "addBasicStatsGDAL",
    "addHistogramsGDAL", "computeStatsGDAL", "writeBasicStats", "writeHistogram",
    "HistogramParams", "linearHistFromDirect", "findOrCreateColumn", "setNullValue",
    "addStatistics", "calcStats", "SinglePassManager", "SinglePassAccumulator",
    "handleSinglePassActions", "writeBlockPyramids", "finishSinglePassStats",
    "finishSinglePassHistogram", "finishOutputStats", "overviewLevelsForSize",
    "directPyramidsSupportedForDriver", "dfltOverviewLvls", "makeMinMaxList",
]

# The default overview levels as RIOS_DFLT_OVERVIEWLEVELS writes them ("4,8,16,...").
dfltOverviewLvls = ",".join(str(level) for level in DEFAULT_OVERVIEWLEVELS)

gdalLargeIntTypes = {gdal.GDT_Int16, gdal.GDT_UInt16, gdal.GDT_Int32, gdal.GDT_UInt32}
for _typeName in ("GDT_Int8", "GDT_Int64", "GDT_UInt64"):
    if hasattr(gdal, _typeName):
        gdalLargeIntTypes.add(getattr(gdal, _typeName))
gdalFloatTypes = {gdal.GDT_Float32, gdal.GDT_Float64}
numpyUnsignedIntTypes = (numpy.uint8, numpy.uint16, numpy.uint32, numpy.uint64)
numpySignedIntTypes = (numpy.int8, numpy.int16, numpy.int32, numpy.int64)

MAX_LINEAR_BINS = 256
# Widest integer range (in values) a single-pass histogram keeps as a dense count array;
# beyond it the histogram is computed by GDAL at close instead.
MAX_DIRECT_HIST_SPAN = 1 << 22
NO_VALID_PIXELS_TEXT = "no valid pixels"
# How single-pass overview levels are made before any block is written.
EMPTY_OVERVIEWS_RESAMPLING = "NONE"


# ---------------------------------------------------------------------------------------
# Small helpers


@contextlib.contextmanager
def _gdalExceptions():
    """Turn GDAL exceptions on for the body, restoring the previous setting."""
    wasOn = gdal.GetUseExceptions()
    gdal.UseExceptions()
    try:
        yield
    finally:
        if not wasOn:
            gdal.DontUseExceptions()


def _interval(timings, name):
    """The timer context for ``name``, or a no-op when there is no timer object."""
    return contextlib.nullcontext() if timings is None else timings.interval(name)


def _pyNumber(value):
    """A numpy or Python number as a plain Python int or float."""
    if isinstance(value, (int, numpy.integer)):
        return int(value)
    return float(value)


class _SilentProgress:
    """A progress object that shows nothing."""

    def setTotalSteps(self, steps):
        pass

    def setProgress(self, value):
        pass

    def reset(self):
        pass

    def setLabelText(self, text):
        pass

    def wasCancelled(self):
        return False

    def displayException(self, trace):
        pass

    def displayWarning(self, text):
        pass

    def displayError(self, text):
        pass

    def displayInfo(self, text):
        pass


def _bandList(ds):
    return [ds.GetRasterBand(i + 1) for i in range(ds.RasterCount)]


def _isThematic(band):
    return band.GetMetadataItem("LAYER_TYPE") == "thematic"


# ---------------------------------------------------------------------------------------
# Overviews


def overviewLevelsForSize(nrows, ncols, levels, minDim):
    """The leading overview levels to build for an image of the given size.

    n = how many levels satisfy ``min(nrows, ncols) // level > minDim``; the first n entries
    of ``levels`` are returned (the list is expected to be ascending).
    """
    smallest = min(nrows, ncols)
    count = sum(1 for lvl in levels if smallest // lvl > minDim)
    return list(levels[:count])


class ProgressUserData:
    """State handed to :func:`progressFunc` by :func:`addPyramid`."""

    def __init__(self, progress=None, nbands=1, curroffset=0.0):
        self.progress = progress
        self.nbands = nbands
        self.curroffset = curroffset


def progressFunc(value, string, userdata):
    """GDAL progress callback: report through ``userdata.progress``; never cancels GDAL."""
    percent = userdata.curroffset + value / userdata.nbands * 100
    userdata.progress.setProgress(int(percent))
    if value == 1.0:
        userdata.curroffset += 100.0 / userdata.nbands
    return 1


def addPyramid(ds, progress, minoverviewdim=DEFAULT_MINOVERVIEWDIM,
               levels=DEFAULT_OVERVIEWLEVELS, aggregationType=None):
    """Build overviews on ``ds`` with GDAL (post-pass), using the truncated level list."""
    if aggregationType is None:
        aggregationType = DEFAULT_OVERVIEWAGGREGRATIONTYPE
    progress.setLabelText("Computing Pyramid Layers...")
    progress.setProgress(0)
    ds.FlushCache()
    useLevels = overviewLevelsForSize(ds.RasterYSize, ds.RasterXSize, levels, minoverviewdim)
    if useLevels:
        userdata = ProgressUserData(progress, ds.RasterCount)
        ds.BuildOverviews(aggregationType, useLevels, progressFunc, userdata)
    if progress.wasCancelled():
        raise rioserrors.ProcessCancelledError("Pyramid building was cancelled")
    progress.setProgress(100)


def _driverOrError(drivername):
    driver = gdal.GetDriverByName(drivername) if drivername else None
    if driver is None:
        raise rioserrors.ImageOpenError(f"GDAL has no raster driver named '{drivername}'")
    return driver


def _probeFilename(driver, tmpfileMgr):
    ext = driver.GetMetadataItem(gdal.DMD_EXTENSION) or ""
    filename = tmpfileMgr.mktempfile(prefix="pyrcheck_", suffix="." + ext if ext else None)
    os.remove(filename)
    return filename


def _writeProbeFile(driver, filename, creationoptions):
    """Create the probe file, add one empty overview, then write base and overview."""
    ds = driver.Create(filename, 64, 64, 1, gdal.GDT_Byte, creationoptions)
    ds.BuildOverviews("NEAREST", [2])
    arr = numpy.full((64, 64), 20, dtype=numpy.uint8)
    band = ds.GetRasterBand(1)
    band.WriteArray(arr)
    band.GetOverview(0).WriteArray(arr[::2, ::2])
    ds.FlushCache()


def _probeReadsBack(filename):
    ds = gdal.Open(filename)
    ovArr = ds.GetRasterBand(1).GetOverview(0).ReadAsArray()
    return bool((ovArr == 20).all())


def _removeProbe(driver, filename):
    try:
        driver.Delete(filename)
    except RuntimeError:
        for path in (filename, filename + ".ovr", filename + ".aux.xml"):
            if os.path.exists(path):
                os.remove(path)


def directPyramidsSupportedForDriver(drivername, creationoptions, tmpfileMgr):
    """Probe whether overview pixels written directly through GDAL survive a reopen.

    A 64x64 Byte file gets one factor-2 overview before any data are written; then the
    constant 20 is written to the base and the sub-sampled overview. Supported iff the
    overview reads back as 20. Any failure counts as unsupported. An unknown driver raises
    :class:`rioserrors.ImageOpenError`.
    """
    driver = _driverOrError(drivername)
    filename = _probeFilename(driver, tmpfileMgr)
    try:
        with _gdalExceptions():
            _writeProbeFile(driver, filename, creationoptions)
            supported = _probeReadsBack(filename)
    except Exception:
        supported = False
    with _gdalExceptions():
        _removeProbe(driver, filename)
    return supported


def _coveredOverviewRange(offset, count, factor, fullSize, ovSize):
    """Overview indices ``[j0, j1)`` whose sample pixel lies in base ``[offset, offset+count)``.

    Overview pixel j samples base pixel ``min(j*factor + factor//2, fullSize-1)``.
    """
    centre = factor // 2
    j0 = max(0, -(-(offset - centre) // factor))
    j1 = min(ovSize, -(-(offset + count - centre) // factor))
    if offset + count >= fullSize:
        j1 = ovSize
    return j0, j1


def overviewSampleIndices(offset, count, factor, fullSize, ovSize):
    """(first overview index, local base indices to sample) for one block axis."""
    j0, j1 = _coveredOverviewRange(offset, count, factor, fullSize, ovSize)
    samples = numpy.arange(j0, j1) * factor + factor // 2
    return j0, numpy.minimum(samples, fullSize - 1) - offset


def writeBlockPyramids(ds, arr, singlePassMgr, name, xOff, yOff):
    """Write the centre-sampled overview pixels that fall in one block, for every band."""
    levels = singlePassMgr.overviewLevels[name]
    nrows, ncols = arr.shape[-2:]
    for bandNdx in range(arr.shape[0]):
        band = ds.GetRasterBand(bandNdx + 1)
        for ovNdx, factor in enumerate(levels):
            ov = band.GetOverview(ovNdx)
            col0, cols = overviewSampleIndices(xOff, ncols, factor, ds.RasterXSize, ov.XSize)
            row0, rows = overviewSampleIndices(yOff, nrows, factor, ds.RasterYSize, ov.YSize)
            if len(cols) > 0 and len(rows) > 0:
                ov.WriteArray(arr[bandNdx][numpy.ix_(rows, cols)], int(col0), int(row0))


# ---------------------------------------------------------------------------------------
# Basic statistics


def computeStatsGDAL(band, approx_ok):
    """GDAL statistics ``(min, max, mean, stddev)``, or four Nones when no pixel is valid."""
    try:
        with _gdalExceptions():
            stats = band.ComputeStatistics(bool(approx_ok))
    except RuntimeError as e:
        if NO_VALID_PIXELS_TEXT not in str(e):
            raise
        _removeValidPercent(band)
        return None, None, None, None
    return tuple(stats)


def _removeValidPercent(band):
    """Drop the STATISTICS_VALID_PERCENT item GDAL leaves behind on an all-null band."""
    if band.GetMetadataItem("STATISTICS_VALID_PERCENT") is not None:
        band.SetMetadataItem("STATISTICS_VALID_PERCENT", None)


def _computeMinMaxGDAL(band, approx_ok):
    """GDAL ``(min, max)`` without writing statistics, or ``(None, None)`` when all null."""
    try:
        with _gdalExceptions():
            return tuple(band.ComputeRasterMinMax(bool(approx_ok)))
    except RuntimeError as e:
        if NO_VALID_PIXELS_TEXT not in str(e):
            raise
        return None, None


def makeMinMaxList(ds, approx_ok=False) -> list:
    """``[(min, max), ...]`` of every band, as GDAL computes them without storing any
    statistics (``(None, None)`` for an all-null band): what a histogram needs."""
    return [_computeMinMaxGDAL(band, approx_ok) for band in _bandList(ds)]


def writeBasicStats(band, minval, maxval, meanval, stddev, approx_ok):
    """Store statistics on ``band``: min/max/mean/stddev, excluded value and skip factors."""
    band.SetStatistics(float(minval), float(maxval), float(meanval), float(stddev))
    nullval = band.GetNoDataValue()
    if nullval is not None:
        band.SetMetadataItem("STATISTICS_EXCLUDEDVALUES", repr(nullval))
    if approx_ok:
        band.SetMetadataItem("STATISTICS_APPROXIMATE", "YES")
    else:
        band.SetMetadataItem("STATISTICS_SKIPFACTORX", "1")
        band.SetMetadataItem("STATISTICS_SKIPFACTORY", "1")


def addBasicStatsGDAL(ds, approx_ok):
    """Compute and store GDAL statistics for every band; return ``[(min, max), ...]``."""
    minMaxList = []
    for band in _bandList(ds):
        minval, maxval, meanval, stddev = computeStatsGDAL(band, approx_ok)
        if minval is not None:
            writeBasicStats(band, minval, maxval, meanval, stddev, approx_ok)
        minMaxList.append((minval, maxval))
    return minMaxList


def setNullValue(ds, nullValue):
    """Set the no-data value of every band; ``None`` leaves the bands unchanged."""
    if nullValue is None:
        return
    for band in _bandList(ds):
        band.SetNoDataValue(nullValue)


# ---------------------------------------------------------------------------------------
# Histograms


class HistogramParams:
    """Histogram binning for a band and data range (RIOS's rules).

    ``min``/``max`` are written as HISTOMIN/HISTOMAX; ``calcMin``/``calcMax`` are the outer
    edges given to GDAL. Complex bands match no rule and keep ``None`` everywhere.
    """

    maxLinearBins = MAX_LINEAR_BINS

    def __init__(self, band, minval, maxval):
        self.min = self.max = self.step = None
        self.calcMin = self.calcMax = self.nbins = self.binFunction = None
        self.thematic = _isThematic(band)
        minval, maxval = _pyNumber(minval), _pyNumber(maxval)
        if self.thematic or band.DataType == gdal.GDT_Byte:
            self._setThematic(minval, maxval)
        elif band.DataType in gdalLargeIntTypes:
            self._setInteger(minval, maxval)
        elif band.DataType in gdalFloatTypes:
            self._setFloat(minval, maxval)

    def _setThematic(self, minval, maxval):
        if minval < 0:
            raise ValueError("Histogram of a thematic or Byte layer cannot include negative "
                             f"values (minimum is {minval})")
        self.min = 0
        self.max = int(math.ceil(maxval))
        self.nbins = self.max + 1
        self._setDirect()

    def _setInteger(self, minval, maxval):
        self.min = int(minval)
        self.max = int(maxval)
        valueRange = int(math.ceil(maxval) - math.floor(minval)) + 1
        if valueRange <= self.maxLinearBins:
            self.nbins = valueRange
            self._setDirect()
        else:
            self.nbins = self.maxLinearBins
            self.calcMin, self.calcMax = self.min, self.max
            self.step = (self.max - self.min) / self.nbins
            self.binFunction = "linear"

    def _setDirect(self):
        self.step = 1.0
        self.calcMin = self.min - 0.5
        self.calcMax = self.max + 0.5
        self.binFunction = "direct"

    def _setFloat(self, minval, maxval):
        self.min, self.max = float(minval), float(maxval)
        self.calcMin, self.calcMax = self.min, self.max
        self.nbins = self.maxLinearBins
        if self.min == self.max:
            self.calcMax = self.max + 0.5
            self.nbins = 1
        self.step = (self.calcMax - self.calcMin) / self.nbins
        self.binFunction = "linear"


def linearHistFromDirect(desiredNbins, step, counts):
    """Re-bin direct counts (index k = value min+k) into ``desiredNbins`` linear bins.

    GDAL's rule is used: count k goes to bin ``floor(k / step)``, clipped to the last bin,
    so the result equals a GDAL (and numpy) histogram over the same range.
    """
    counts = numpy.asarray(counts, dtype=numpy.int64)
    if desiredNbins > len(counts):
        raise rioserrors.SinglePassActionsError(
            f"Cannot re-bin {len(counts)} direct counts into {desiredNbins} bins")
    binOfCount = numpy.minimum(numpy.floor(numpy.arange(len(counts)) / step),
                               desiredNbins - 1).astype(numpy.int64)
    bounds = numpy.searchsorted(binOfCount, numpy.arange(desiredNbins + 1))
    cumulative = numpy.concatenate(([0], numpy.cumsum(counts)))
    return cumulative[bounds[1:]] - cumulative[bounds[:-1]]


def findOrCreateColumn(ratObj, usage, name, dtype):
    """Index of the RAT column with ``usage`` (appending a new one if absent), and created."""
    for col in range(ratObj.GetColumnCount()):
        if ratObj.GetUsageOfCol(col) == usage:
            return col, False
    ratObj.CreateColumn(name, dtype, usage)
    return ratObj.GetColumnCount() - 1, True


def _writeHistToMetadata(band, hist, histParams):
    band.SetMetadataItem("STATISTICS_HISTOBINVALUES",
                         "".join(f"{int(c)}|" for c in hist))
    band.SetMetadataItem("STATISTICS_HISTOMIN", repr(histParams.min))
    band.SetMetadataItem("STATISTICS_HISTOMAX", repr(histParams.max))
    band.SetMetadataItem("STATISTICS_HISTONUMBINS", repr(int(histParams.nbins)))


def _writeHistToRat(band, ratObj, hist, histParams):
    col, _ = findOrCreateColumn(ratObj, gdal.GFU_PixelCount, "Histogram", gdal.GFT_Real)
    ratObj.SetRowCount(int(histParams.nbins))
    ratObj.WriteArray(numpy.asarray(hist, dtype=numpy.float64), col)
    width = (histParams.calcMax - histParams.calcMin) / histParams.nbins
    ratObj.SetLinearBinning(float(histParams.min), width)
    if not ratObj.ChangesAreWrittenToFile():
        band.SetDefaultRAT(ratObj)


def _writeMedianMode(band, hist, histParams):
    total = int(hist.sum())
    if total == 0:
        return
    medianBin = int(numpy.argmax(numpy.cumsum(hist) >= total / 2))
    modeBin = int(numpy.argmax(hist))
    for key, binNdx in (("STATISTICS_MEDIAN", medianBin), ("STATISTICS_MODE", modeBin)):
        value = binNdx * histParams.step + histParams.min
        if band.DataType in gdalFloatTypes:
            text = repr(float(value))
        else:
            text = repr(int(round(value)))
        band.SetMetadataItem(key, text)


def writeHistogram(ds, band, hist, histParams):
    """Store a histogram on ``band`` (RAT column or metadata) plus median and mode."""
    hist = numpy.asarray(hist, dtype=numpy.int64)
    ratObj = None
    if histParams.thematic and ds.GetDriver().ShortName != "HFA":
        ratObj = band.GetDefaultRAT()
    if ratObj is not None:
        _writeHistToRat(band, ratObj, hist, histParams)
    else:
        _writeHistToMetadata(band, hist, histParams)
    band.SetMetadataItem("STATISTICS_HISTOBINFUNCTION", histParams.binFunction)
    _writeMedianMode(band, hist, histParams)


def _gdalHistogram(band, histParams, approx_ok):
    """GDAL histogram counts for ``histParams``, or None when it cannot be used."""
    if histParams.binFunction is None:
        return None
    with _gdalExceptions():
        hist = band.GetHistogram(min=histParams.calcMin, max=histParams.calcMax,
                                 buckets=int(histParams.nbins), include_out_of_range=1,
                                 approx_ok=int(bool(approx_ok)))
    hist = numpy.array(hist, dtype=numpy.int64)
    if (hist < 0).any():
        return None
    return hist


def _usableMin(minval):
    return minval is not None and bool(numpy.isfinite(minval))


def addHistogramsGDAL(ds, minMaxList, approx_ok):
    """Compute and store GDAL histograms for every band, given ``[(min, max), ...]``."""
    for band, (minval, maxval) in zip(_bandList(ds), minMaxList, strict=False):
        if not _usableMin(minval) or not _usableMin(maxval):
            continue
        histParams = HistogramParams(band, minval, maxval)
        hist = _gdalHistogram(band, histParams, approx_ok)
        if hist is not None:
            writeHistogram(ds, band, hist, histParams)


# ---------------------------------------------------------------------------------------
# Legacy whole-file entry points


def addStatistics(ds, progress, ignore=None, approx_ok=False):
    """Set the null (when ``ignore`` is given), then GDAL statistics and histograms."""
    setNullValue(ds, ignore)
    minMaxList = addBasicStatsGDAL(ds, approx_ok)
    addHistogramsGDAL(ds, minMaxList, approx_ok)


def calcStats(ds, progress=None, ignore=None, minoverviewdim=DEFAULT_MINOVERVIEWDIM,
              levels=DEFAULT_OVERVIEWLEVELS, aggregationType=None, approx_ok=False):
    """Null value, pyramids, statistics and histograms for a whole open file."""
    if progress is None:
        progress = _SilentProgress()
    setNullValue(ds, ignore)
    addPyramid(ds, progress, minoverviewdim=minoverviewdim, levels=levels,
               aggregationType=aggregationType)
    addStatistics(ds, progress, ignore=None, approx_ok=approx_ok)


# ---------------------------------------------------------------------------------------
# Single-pass accumulation


class SinglePassAccumulator:
    """Running statistics and integer histogram of one band of one output file.

    Pixels equal to ``nullval`` (NaN-aware) and NaN pixels are skipped. The histogram is one
    dense count array over ``[histMin, histMax]`` (the actual non-null range).
    """

    def __init__(self, includeStats, includeHist, dtype, nullval, thematic):
        self.includeStats = includeStats
        self.includeHist = includeHist
        self.dtype = numpy.dtype(dtype)
        self.nullval = nullval
        self.thematic = thematic
        self.count = 0
        self.mean = 0.0
        self.sqDevSum = 0.0
        self.minval = self.maxval = None
        self.histMin = self.histMax = None
        self.histCounts = None
        self.histOverflow = False
        self._countsLow = None

    def doStatsAccum(self, arr):
        """Add one block (2-D array of one band) to the statistics."""
        stats = blockStatistics(validValues(arr, self.nullval))
        if stats is not None:
            self.addBlockStatistics(stats)

    def addBlockStatistics(self, stats: "BlockStatistics"):
        """Merge one block's statistics (worked out wherever the block was computed): in
        block order, the result is the same to the last bit whoever worked them out."""
        self.minval = stats.minval if self.minval is None else min(self.minval, stats.minval)
        self.maxval = stats.maxval if self.maxval is None else max(self.maxval, stats.maxval)
        total = self.count + stats.count
        delta = stats.mean - self.mean
        self.mean += delta * stats.count / total
        self.sqDevSum += stats.sqDevSum + delta * delta * self.count * stats.count / total
        self.count = total

    def finalStats(self):
        """``(min, max, mean, stddev)`` of the valid pixels seen, or four Nones."""
        if self.count == 0:
            return None, None, None, None
        stddev = math.sqrt(max(self.sqDevSum / self.count, 0.0))
        return self.minval, self.maxval, self.mean, stddev

    def doHistAccum(self, arr):
        """Add one block (2-D integer array of one band) to the histogram counts."""
        vals = validValues(arr, self.nullval)
        if vals.size == 0:
            return
        low, high = vals.min(), vals.max()
        if self._extendRange(int(low), int(high)):
            self._addCounts(blockCounts(vals, low), int(low))

    def addBlockCounts(self, low: int, high: int, counts):
        """Merge one block's counts of the values ``low`` to ``high`` (its valid range)."""
        if self._extendRange(low, high):
            self._addCounts(counts, low)

    def updateHist(self, counts, positive):
        """Add counts indexed by value (``positive``) or by -(value+1) (negative values)."""
        counts = numpy.asarray(counts, dtype=numpy.int64)
        low = 0
        if not positive:
            counts = counts[::-1]
            low = -len(counts)
        nonZero = numpy.flatnonzero(counts)
        if len(nonZero) == 0:
            return
        first, last = int(nonZero[0]), int(nonZero[-1])
        if self._extendRange(low + first, low + last):
            self._addCounts(counts[first:last + 1], low + first)

    def _extendRange(self, low, high):
        """Widen ``[histMin, histMax]``; False once the range is too wide to count densely."""
        self.histMin = low if self.histMin is None else min(self.histMin, low)
        self.histMax = high if self.histMax is None else max(self.histMax, high)
        if self.histMax - self.histMin + 1 > MAX_DIRECT_HIST_SPAN:
            self.histOverflow = True
            self.histCounts = None
        return not self.histOverflow

    def _addCounts(self, counts, low):
        size = self.histMax - self.histMin + 1
        if self.histCounts is None or len(self.histCounts) != size:
            grown = numpy.zeros(size, dtype=numpy.int64)
            if self.histCounts is not None:
                start = self._countsLow - self.histMin
                grown[start:start + len(self.histCounts)] = self.histCounts
            self.histCounts = grown
            self._countsLow = self.histMin
        start = low - self.histMin
        self.histCounts[start:start + len(counts)] += counts

    def fullHist(self):
        """``(min, max, counts)``; counts is None if only GDAL can bin it; all None if empty.

        Thematic and uint8 histograms start at 0.
        """
        if self.histMin is None:
            return None, None, None
        if self.histOverflow:
            return self.histMin, self.histMax, None
        minval, counts = self.histMin, self.histCounts
        if (self.thematic or self.dtype == numpy.uint8) and minval > 0:
            counts = numpy.concatenate((numpy.zeros(minval, dtype=numpy.int64), counts))
            minval = 0
        return minval, self.histMax, counts

    @staticmethod
    def addTwoHistograms(hist1, hist2):
        """Element-wise sum of two count arrays, the shorter one zero-extended."""
        if len(hist1) < len(hist2):
            hist1, hist2 = hist2, hist1
        total = numpy.array(hist1, dtype=numpy.int64)
        total[:len(hist2)] += hist2
        return total

    @staticmethod
    def removeNullFromCounts(counts, nullval):
        """Remove the count of ``nullval`` from value-indexed counts (trailing null trimmed)."""
        length = len(counts)
        if (nullval is None or not numpy.isfinite(nullval) or nullval != int(nullval)
                or not 0 <= nullval < length):
            return counts
        nullNdx = int(nullval)
        if nullNdx < length - 1:
            counts = numpy.array(counts)
            counts[nullNdx] = 0
            return counts
        nonZero = numpy.flatnonzero(counts[:nullNdx])
        return counts[:nonZero[-1] + 1] if len(nonZero) else counts[:0]


@dataclass(frozen=True)
class BlockStatistics:
    """What one block adds to a band's statistics: its valid pixels' count, extremes, mean
    and sum of squared deviations from that mean."""

    count: int
    minval: Any
    maxval: Any
    mean: float
    sqDevSum: float


def validValues(arr, nullval) -> numpy.ndarray:
    """The pixels of ``arr`` that count, flattened: not ``nullval``, not NaN."""
    vals = numpy.asarray(arr).ravel()
    mask = None
    if nullval is not None and not numpy.isnan(nullval):
        mask = vals != nullval
    if vals.dtype.kind in "fc":
        notNan = ~numpy.isnan(vals)
        mask = notNan if mask is None else (mask & notNan)
    return vals if mask is None else vals[mask]


def blockStatistics(vals) -> BlockStatistics | None:
    """The statistics of one block's valid values; None when there are none."""
    if vals.size == 0:
        return None
    asFloat = vals.astype(numpy.float64)
    blockMean = float(asFloat.mean())
    return BlockStatistics(vals.size, vals.min(), vals.max(), blockMean,
                           float(numpy.square(asFloat - blockMean).sum()))


def blockCounts(vals, low) -> numpy.ndarray:
    """How often each value from ``low`` to ``vals.max()`` occurs in ``vals``."""
    return numpy.bincount(_offsetsFrom(vals, low))


def _offsetsFrom(vals, low):
    """``vals - low`` as int64 without overflow (the caller keeps the range small)."""
    if vals.dtype.kind == "u":
        return (vals - low).astype(numpy.int64)
    return vals.astype(numpy.int64) - int(low)


def _optionGetter(controls, name):
    return lambda option: controls.getOptionForImagename(option, name)


class SinglePassManager:
    """Decides, per output name, which of pyramids/stats/histogram are done single-pass.

    Built once per run, before any block is written; the driver overview probe runs once
    per driver. Decisions are keyed by symbolic name (list entries share them).
    """

    PYRAMIDS = 0
    STATISTICS = 1
    HISTOGRAM = 2
    supportedAggtypes = ("NEAREST",)
    histSupportedDtypes = tuple(numpy.dtype(t) for t in
                                numpySignedIntTypes + numpyUnsignedIntTypes)

    def __init__(self, outfiles, controls, workinggrid, tmpfileMgr):
        self.omit = {}
        self.singlePassRequested = {}
        self.approxOK = {}
        self.thematic = {}
        self.overviewLevels = {}
        self.oviewAggtype = {}
        self.directPyramidsSupported = {}
        self.arrDtype = {}
        self.accumulators = {}
        self._blockActions = {}
        probeCache = {}
        for name, _seqNum, _filename in outfiles:
            if name not in self.approxOK:
                self._recordName(name, _optionGetter(controls, name),
                                 workinggrid.getDimensions(), probeCache, tmpfileMgr)

    def _recordName(self, name, option, dims, probeCache, tmpfileMgr):
        kinds = ((self.PYRAMIDS, "Pyramids"), (self.STATISTICS, "BasicStats"),
                 (self.HISTOGRAM, "Histogram"))
        for kind, suffix in kinds:
            self.omit[(name, kind)] = bool(option("omit" + suffix))
            self.singlePassRequested[(name, kind)] = option("singlePass" + suffix)
        self.approxOK[name] = bool(option("approxStats"))
        self.thematic[name] = bool(option("thematic"))
        self.overviewLevels[name] = overviewLevelsForSize(
            dims[0], dims[1], option("overviewLevels"), option("overviewMinDim"))
        aggtype = option("overviewAggType")
        self.oviewAggtype[name] = "NEAREST" if aggtype is None else aggtype
        self.directPyramidsSupported[name] = numpy.bool_(
            self._probe(option, probeCache, tmpfileMgr))

    @classmethod
    def _probe(cls, option, probeCache, tmpfileMgr):
        drivername = option("drivername")
        if drivername not in probeCache:
            creationoptions = option("creationoptions")
            if creationoptions is None:
                creationoptions = creationOptionsForDriver(drivername)
            probeCache[drivername] = cls.checkDriverPyramidSupport(
                drivername, creationoptions, tmpfileMgr)
        return probeCache[drivername]

    @staticmethod
    def checkDriverPyramidSupport(drivername, creationoptions, tmpfileMgr) -> bool:
        """Whether overviews written block by block survive with this driver and these
        creation options (the probe of :func:`directPyramidsSupportedForDriver`)."""
        return directPyramidsSupportedForDriver(drivername, creationoptions, tmpfileMgr)

    def _wanted(self, name, kind):
        """Single-pass requested (True or None) and not omitted."""
        requested = self.singlePassRequested[(name, kind)]
        return requested in (True, None) and not self.omit[(name, kind)]

    def doSinglePassPyramids(self, name):
        """True when overviews of ``name`` are written block by block."""
        aggtype = self.oviewAggtype[name]
        supportedAgg = aggtype in self.supportedAggtypes
        if self.singlePassRequested[(name, self.PYRAMIDS)] is True and not supportedAgg:
            raise rioserrors.SinglePassActionsError(
                f"Single-pass pyramids for '{name}' need aggregation type NEAREST, "
                f"not '{aggtype}'")
        return bool(self._wanted(name, self.PYRAMIDS) and supportedAgg
                    and self.directPyramidsSupported[name])

    def doSinglePassStatistics(self, name):
        """True when basic statistics of ``name`` are accumulated block by block."""
        dtype = self.arrDtype.get(name)
        isComplex = dtype is not None and dtype.kind == "c"
        return (self._wanted(name, self.STATISTICS) and not self.approxOK[name]
                and not isComplex)

    def doSinglePassHistogram(self, name):
        """True when the histogram of ``name`` is accumulated block by block."""
        if name not in self.arrDtype:
            raise rioserrors.SinglePassActionsError(
                f"Single-pass histogram decision for '{name}' needs its first block")
        intDtype = self.arrDtype[name] in self.histSupportedDtypes
        if self.singlePassRequested[(name, self.HISTOGRAM)] is True and not intDtype:
            raise rioserrors.SinglePassActionsError(
                f"Single-pass histogram for '{name}' needs an integer type, "
                f"not {self.arrDtype[name]}")
        return bool(self._wanted(name, self.HISTOGRAM) and intDtype
                    and not self.approxOK[name])

    def initFor(self, ds, name, seqNum, arr, overviewsExist=False):
        """First-block set-up of one output file: dtype, accumulators, empty overviews
        (unless it has them already: a resumed run's)."""
        self.arrDtype[name] = numpy.dtype(arr.dtype)
        self._blockActions.pop(name, None)
        doStats = self.doSinglePassStatistics(name)
        doHist = self.doSinglePassHistogram(name)
        if doStats or doHist:
            nullval = ds.GetRasterBand(1).GetNoDataValue()
            self.accumulators[(name, seqNum)] = [
                SinglePassAccumulator(doStats, doHist, arr.dtype, nullval, self.thematic[name])
                for _ in range(ds.RasterCount)]
        if self.doSinglePassPyramids(name) and self.overviewLevels[name] and \
                not overviewsExist:
            # every overview pixel is written later, block by block: "NONE" only makes the
            # levels (sampling the still empty file would cost 0.1 ms per block of a run)
            ds.BuildOverviews(EMPTY_OVERVIEWS_RESAMPLING, self.overviewLevels[name])

    def blockActions(self, name) -> tuple:
        """(pyramids, statistics, histogram) decisions for the blocks of ``name``.

        They are fixed once its first block has set the dtype, so they are worked out once.
        """
        actions = self._blockActions.get(name)
        if actions is None:
            actions = (self.doSinglePassPyramids(name), self.doSinglePassStatistics(name),
                       self.doSinglePassHistogram(name))
            if name in self.arrDtype:
                self._blockActions[name] = actions
        return actions


def _blockAsFileDtype(ds, arr, dtype, xOff, yOff):
    """The block as stored in the file, when its dtype differs from the first block's."""
    if arr.dtype == dtype:
        return arr
    nrows, ncols = arr.shape[-2:]
    stored = ds.ReadAsArray(xOff, yOff, ncols, nrows)
    return stored.reshape(arr.shape)


def handleSinglePassActions(ds, arr, singlePassMgr, name, seqNum, xOff, yOff, timings):
    """Per-block single-pass work (after the block is written): pyramids, stats, histogram."""
    doPyramids, doStats, doHist = singlePassMgr.blockActions(name)
    if not (doPyramids or doStats or doHist):
        return
    if arr.ndim == 2:
        arr = arr[numpy.newaxis]
    if doPyramids:
        with _interval(timings, "pyramids"):
            writeBlockPyramids(ds, arr, singlePassMgr, name, xOff, yOff)
    if not (doStats or doHist):
        return
    arr = _blockAsFileDtype(ds, arr, singlePassMgr.arrDtype[name], xOff, yOff)
    accumulators = singlePassMgr.accumulators[(name, seqNum)]
    for kind, wanted in (("basicstats", doStats), ("histogram", doHist)):
        if wanted:
            with _interval(timings, kind):
                _accumulateBands(accumulators, arr, kind == "basicstats")


def _accumulateBands(accumulators, arr, stats):
    for accumulator, bandArr in zip(accumulators, arr, strict=True):
        if stats:
            accumulator.doStatsAccum(bandArr)
        else:
            accumulator.doHistAccum(bandArr)


def finishSinglePassStats(ds, singlePassMgr, name, seqNum):
    """Write the accumulated statistics of each band; return ``[(min, max), ...]``."""
    minMaxList = []
    for band, accumulator in zip(_bandList(ds), singlePassMgr.accumulators[(name, seqNum)],
                                 strict=True):
        minval, maxval, meanval, stddev = accumulator.finalStats()
        if minval is not None:
            writeBasicStats(band, minval, maxval, meanval, stddev, False)
        minMaxList.append((minval, maxval))
    return minMaxList


def _singlePassBandHist(band, accumulator):
    """(histogram counts, HistogramParams) for one band, or (None, None) when empty."""
    minval, maxval, counts = accumulator.fullHist()
    if minval is None:
        return None, None
    histParams = HistogramParams(band, minval, maxval)
    if counts is None:
        return _gdalHistogram(band, histParams, False), histParams
    if histParams.binFunction == "linear" and len(counts) > histParams.nbins:
        counts = linearHistFromDirect(histParams.nbins, histParams.step, counts)
    return counts, histParams


def finishSinglePassHistogram(ds, singlePassMgr, name, seqNum):
    """Write the accumulated histogram of each band (nothing for an all-null band)."""
    for band, accumulator in zip(_bandList(ds), singlePassMgr.accumulators[(name, seqNum)],
                                 strict=True):
        hist, histParams = _singlePassBandHist(band, accumulator)
        if hist is not None:
            writeHistogram(ds, band, hist, histParams)


# ---------------------------------------------------------------------------------------
# Close sequence (steps 2-4)


def _finishPyramids(ds, name, singlePassMgr, option):
    if singlePassMgr.doSinglePassPyramids(name) or option("omitPyramids"):
        return
    progress = option("progress") or _SilentProgress()
    addPyramid(ds, progress, minoverviewdim=option("overviewMinDim"),
               levels=option("overviewLevels"), aggregationType=option("overviewAggType"))


def _finishBasicStats(ds, name, seqNum, singlePassMgr, option):
    if singlePassMgr.doSinglePassStatistics(name):
        return finishSinglePassStats(ds, singlePassMgr, name, seqNum)
    if option("omitBasicStats"):
        return None
    return addBasicStatsGDAL(ds, singlePassMgr.approxOK[name])


def _finishHistogram(ds, name, seqNum, singlePassMgr, option, minMaxList):
    if singlePassMgr.doSinglePassHistogram(name):
        finishSinglePassHistogram(ds, singlePassMgr, name, seqNum)
        return
    if option("omitHistogram"):
        return
    approx = singlePassMgr.approxOK[name]
    if minMaxList is None:
        minMaxList = makeMinMaxList(ds, approx)
    addHistogramsGDAL(ds, minMaxList, approx)


def finishOutputStats(ds, name, seqNum, singlePassMgr, controls, timings):
    """Close-time pyramids, basic statistics and histogram of one output file.

    Post-pass pyramids unless done single-pass or omitted (timer ``pyramids``); single-pass
    or GDAL statistics (``basicstats``); single-pass or GDAL histogram using those min/max,
    computed here when basic statistics were omitted (``histogram``).
    """
    option = _optionGetter(controls, name)
    with _interval(timings, "pyramids"):
        _finishPyramids(ds, name, singlePassMgr, option)
    with _interval(timings, "basicstats"):
        minMaxList = _finishBasicStats(ds, name, seqNum, singlePassMgr, option)
    with _interval(timings, "histogram"):
        _finishHistogram(ds, name, seqNum, singlePassMgr, option, minMaxList)
