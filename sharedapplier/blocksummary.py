"""What the worker that computed a block works out of it for the writer.

Single-pass statistics, histograms and pyramids need every pixel of every block, and the
writer is one thread: done there they cap a run at a few hundred blocks a second however
many cores compute. So each compute worker summarises the blocks it computes, and the
writer only merges the summaries, in block order, and hands arrays to GDAL::

    worker:  outputs of block b ──> SummaryPlan.summarise ──> the slot's summary record
    writer:  record of block b ──> applySummary: overview pieces to GDAL, statistics and
                                   counts merged into the file's SinglePassAccumulators

A summary record per output holds, per band, the block's :class:`~.calcstats.BlockStatistics`,
its histogram counts over its own value range, and the pixels of each overview level that
fall in the block. Merged in block order the results are identical to the last bit to a
run that accumulates every block in the writer. What does not fit the record (a block whose
values span more than the record's counts, an overview piece larger than expected) is
marked ``WRITER``, and the writer works it out from the block's pixels as before.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cached_property

import numpy

from . import calcstats

# Widest value range a block's histogram counts may cover in its record (64 KiB a band):
# most images' blocks span less (reflectances to 10000, 8-bit data), and a block whose
# valid values span more is counted by the writer. Room for every 16-bit value would
# quadruple the summary slab, and the time to allocate it, for the rare block that needs it.
MAX_RECORD_COUNTS = 1 << 14


class Part(enum.IntEnum):
    """What a record says about one part (a band's statistics or counts, the pyramids)."""

    EMPTY = 0   # no valid pixel: nothing to merge
    DONE = 1    # worked out: merge it
    WRITER = 2  # did not fit the record: the writer works it out from the pixels


@dataclass(frozen=True)
class OverviewLevel:
    """One overview level of an output: its factor, its size, and the largest piece of it
    that one block can hold."""

    factor: int
    xsize: int
    ysize: int
    maxRows: int
    maxCols: int


@dataclass(frozen=True)
class SummaryPlan:
    """What to work out of every block of one output file, fixed when the file is made."""

    key: tuple
    nbands: int
    dtype: str
    statistics: bool
    histogram: bool
    nullval: float | None
    countsLength: int
    levels: tuple[OverviewLevel, ...]
    width: int
    height: int
    maxPixels: int

    @cached_property
    def recordDtype(self) -> numpy.dtype:
        n, dtype = self.nbands, numpy.dtype(self.dtype)
        fields = []
        if self.statistics:
            fields += [("statsPart", "<i8", (n,)), ("count", "<i8", (n,)),
                       ("minval", dtype, (n,)), ("maxval", dtype, (n,)),
                       ("mean", "<f8", (n,)), ("sqDevSum", "<f8", (n,))]
        if self.histogram:
            fields += [("countsPart", "<i8", (n,)), ("low", "<i8", (n,)),
                       ("high", "<i8", (n,)), ("counts", self.countsDtype, (n, self.countsLength))]
        if self.levels:
            fields += [("pyramidsPart", "<i8"), ("pieces", "<i8", (len(self.levels), 4))]
            fields += [(f"level{k}", dtype, (n, level.maxRows * level.maxCols))
                       for k, level in enumerate(self.levels)]
        return numpy.dtype(fields, align=True)

    @property
    def countsDtype(self) -> str:
        """Counts of one block: 4 bytes each unless a block can hold 2**31 pixels."""
        return "<i4" if self.maxPixels < 2**31 else "<i8"

    @property
    def nbytes(self) -> int:
        return self.recordDtype.itemsize

    def record(self, buffer: numpy.ndarray) -> numpy.ndarray:
        """The record over ``buffer`` (``nbytes`` of shared memory), one element long."""
        return buffer.reshape(-1)[:self.nbytes].view(self.recordDtype)

    def summarise(self, arr: numpy.ndarray, left: int, top: int, rec: numpy.ndarray) -> None:
        """Fill ``rec`` from one block of the output: ``arr`` is (bands, rows, cols) in the
        file's dtype, its top left pixel at (``left``, ``top``)."""
        if self.statistics or self.histogram:
            for band in range(self.nbands):
                vals = calcstats.validValues(arr[band], self.nullval)
                if self.statistics:
                    self._summariseStatistics(vals, band, rec)
                if self.histogram:
                    self._summariseCounts(vals, band, rec)
        if self.levels:
            self._summarisePyramids(arr, left, top, rec)

    def _summariseStatistics(self, vals, band, rec):
        stats = calcstats.blockStatistics(vals)
        if stats is None:
            rec["statsPart"][0, band] = Part.EMPTY
            return
        rec["statsPart"][0, band] = Part.DONE
        for name in ("count", "minval", "maxval", "mean", "sqDevSum"):
            rec[name][0, band] = getattr(stats, name)

    def _summariseCounts(self, vals, band, rec):
        if vals.size == 0:
            rec["countsPart"][0, band] = Part.EMPTY
            return
        low, high = vals.min(), vals.max()
        rec["low"][0, band], rec["high"][0, band] = int(low), int(high)
        if int(high) - int(low) >= self.countsLength:
            rec["countsPart"][0, band] = Part.WRITER
            return
        counts = calcstats.blockCounts(vals, low)
        rec["counts"][0, band, :len(counts)] = counts
        rec["countsPart"][0, band] = Part.DONE

    def _summarisePyramids(self, arr, left, top, rec):
        nrows, ncols = arr.shape[-2:]
        for k, level in enumerate(self.levels):
            col0, cols = calcstats.overviewSampleIndices(left, ncols, level.factor,
                                                         self.width, level.xsize)
            row0, rows = calcstats.overviewSampleIndices(top, nrows, level.factor,
                                                         self.height, level.ysize)
            if len(rows) > level.maxRows or len(cols) > level.maxCols:
                rec["pyramidsPart"][0] = Part.WRITER
                return
            rec["pieces"][0, k] = (col0, row0, len(rows), len(cols))
            size = len(rows) * len(cols)
            if size:
                piece = rec[f"level{k}"][0, :, :size].reshape(self.nbands, len(rows), len(cols))
                piece[...] = arr[:, rows[:, None], cols]
        rec["pyramidsPart"][0] = Part.DONE


def countsLengthFor(dtype, maxRows: int, maxCols: int) -> int:
    """How many counts a block's record keeps per band: every value of an 8-bit type;
    otherwise enough for most blocks' ranges without outgrowing small blocks' pixels."""
    dtype = numpy.dtype(dtype)
    if dtype.itemsize == 1:
        return 256
    return int(min(MAX_RECORD_COUNTS, max(4096, 4 * maxRows * maxCols)))


def overviewLevels(ds, factors, maxRows: int, maxCols: int) -> tuple[OverviewLevel, ...]:
    """The overview levels of ``ds`` (already made), with room for a block's piece of each."""
    band = ds.GetRasterBand(1)
    levels = []
    for k, factor in enumerate(factors):
        ov = band.GetOverview(k)
        levels.append(OverviewLevel(factor, ov.XSize, ov.YSize, maxRows // factor + 3,
                                    maxCols // factor + 3))
    return tuple(levels)


def applySummary(summary: SummaryPlan, rec: numpy.ndarray, arr: numpy.ndarray, left: int,
                 top: int, overviews, accumulators, timings) -> None:
    """Merge one block's record into its file: overview pieces written to ``overviews``
    (per band, per level), statistics and counts into ``accumulators`` (per band).
    ``arr`` is the block itself (top left pixel at ``left``, ``top``), for what the record
    could not hold."""
    if summary.levels:
        with timings.interval("pyramids"):
            if rec["pyramidsPart"][0] == Part.WRITER:
                _writeSamples(summary, arr, left, top, overviews)
            else:
                _writePieces(summary, rec, overviews)
    if summary.statistics:
        with timings.interval("basicstats"):
            _mergeStatistics(summary, rec, accumulators)
    if summary.histogram:
        with timings.interval("histogram"):
            _mergeCounts(summary, rec, arr, accumulators)


def _writeSamples(summary, arr, left, top, overviews):
    nrows, ncols = arr.shape[-2:]
    for band in range(summary.nbands):
        for k, level in enumerate(summary.levels):
            col0, cols = calcstats.overviewSampleIndices(left, ncols, level.factor,
                                                         summary.width, level.xsize)
            row0, rows = calcstats.overviewSampleIndices(top, nrows, level.factor,
                                                         summary.height, level.ysize)
            if len(rows) and len(cols):
                overviews[band][k].WriteArray(arr[band][numpy.ix_(rows, cols)], int(col0),
                                              int(row0))


def _writePieces(summary, rec, overviews):
    """Band by band, level by level: the order GDAL's cache sees decides where each
    overview tile lands in the file, so it is the order of writeBlockPyramids."""
    pieces = rec["pieces"][0].tolist()
    for band in range(summary.nbands):
        for k, (col0, row0, nrows, ncols) in enumerate(pieces):
            size = nrows * ncols
            if size:
                piece = rec[f"level{k}"][0, band, :size].reshape(nrows, ncols)
                overviews[band][k].WriteArray(piece, col0, row0)


def _mergeStatistics(summary, rec, accumulators):
    parts = rec["statsPart"][0].tolist()
    for band, accumulator in enumerate(accumulators):
        if parts[band] == Part.DONE:
            accumulator.addBlockStatistics(calcstats.BlockStatistics(
                int(rec["count"][0, band]), rec["minval"][0, band], rec["maxval"][0, band],
                float(rec["mean"][0, band]), float(rec["sqDevSum"][0, band])))


def _mergeCounts(summary, rec, arr, accumulators):
    parts = rec["countsPart"][0].tolist()
    lows, highs = rec["low"][0].tolist(), rec["high"][0].tolist()
    for band, accumulator in enumerate(accumulators):
        if parts[band] == Part.DONE:
            counts = rec["counts"][0, band, :highs[band] - lows[band] + 1]
            accumulator.addBlockCounts(lows[band], highs[band], counts)
        elif parts[band] == Part.WRITER:
            accumulator.doHistAccum(arr[band])
