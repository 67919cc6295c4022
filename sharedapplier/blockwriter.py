"""The write stage: check what a user function produced, create outputs, write blocks, close.

Two halves, usable apart:

* :func:`prepareOutputArrays` runs where the user function ran (any thread or process): it
  checks every output of one block against the contract (present, 3-D, a GDAL dtype, the
  block's shape, the band count of the first block) and strips the overlap margin.
* :class:`OutputWriter` runs in exactly one thread (GDAL writing is not concurrent): it
  creates each output from its first block's layout, writes blocks, merges the single-pass
  statistics, histograms and pyramids (from the workers' summaries of each block,
  :mod:`.blocksummary`, or working them out itself), and closes the files with the
  post-pass steps and ``callBeforeClose``.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from dataclasses import dataclass

import numpy
from osgeo import gdal

from . import blocksummary, calcstats, const, rioserrors
from .blocksummary import SummaryPlan
from .calcstats import (  # noqa: F401 - RIOS's names here
    DEFAULT_MINOVERVIEWDIM,
    DEFAULT_OVERVIEWAGGREGRATIONTYPE,
    DEFAULT_OVERVIEWLEVELS,
    makeMinMaxList,
)
from .const import (  # noqa: F401 - RIOS's names here
    DEFAULT_AUTOCOLORTABLETYPE,
    dfltDriverOptions,
)
from .cpus import usableCpuCount
from .imageio import GdalErrorsAs, gdalTypeOf, writeWindow
from .journal import Journal, Resumption, journalPath
from .structures import CW_PROCESSES, CW_THREADS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputLayout:
    """Band count and dtype of one output, fixed by its first block."""

    name: str
    seqNum: int | None
    nbands: int
    dtype: numpy.dtype

    @property
    def key(self):
        return (self.name, self.seqNum)


def _label(name, seqNum):
    return name if seqNum is None else f"{name}[{seqNum}]"


def gdalTypeForDtype(dtype, label) -> int:
    """The GDAL type code for a numpy dtype, or a clear error naming the output."""
    code = gdalTypeOf(numpy.dtype(dtype))
    if code is None:
        raise rioserrors.ImageOpenError(
            f"Output '{label}': array type {numpy.dtype(dtype)} has no corresponding GDAL data "
            "type; convert it first, e.g. arr.astype(numpy.uint8)")
    return code


def _userArray(outputs, name, seqNum):
    try:
        value = getattr(outputs, name)
    except AttributeError:
        value = None
    if isinstance(value, list) and seqNum is not None:
        value = value[seqNum] if seqNum < len(value) else None
    if value is None:
        raise rioserrors.OutputMissingError(
            f"The user function did not set output '{_label(name, seqNum)}'; assign "
            f"outputs.{name} a 3-D array (bands, rows, cols)")
    return value


def _checkShape(arr, name, seqNum, expected):
    """Raise a clear error unless ``arr`` is a 3-D array with the block's rows and cols."""
    if isinstance(arr, numpy.ndarray) and arr.ndim == 3 and arr.shape[1:] == expected:
        return
    label = _label(name, seqNum)
    if not isinstance(arr, numpy.ndarray):
        raise rioserrors.ArrayShapeError(
            f"Output '{label}' must be a numpy array, not {type(arr).__name__}")
    if arr.ndim != 3:
        raise rioserrors.ArrayShapeError(
            f"Output '{label}' has shape {arr.shape}; outputs must be 3-D (bands, rows, cols): "
            "use arr[numpy.newaxis] for a single band")
    raise rioserrors.ArrayShapeError(
        f"Output '{label}' has rows/cols {arr.shape[1:]} but this block's inputs have "
        f"{expected} (overlap margin included)")


def conformToDtype(arr: numpy.ndarray, dtype) -> numpy.ndarray:
    """Convert a block to the output's dtype as GDAL does when it writes: the real part of
    complex values, floats rounded, NaN as 0 and values clamped into an integer type."""
    dtype = numpy.dtype(dtype)
    if arr.dtype == dtype:
        return arr
    if dtype.kind != "c" and arr.dtype.kind == "c":
        arr = arr.real
    if dtype.kind in "iu":
        target = numpy.iinfo(dtype)
        if arr.dtype.kind == "f":
            arr = numpy.clip(numpy.nan_to_num(numpy.rint(arr), nan=0.0), target.min,
                             target.max)
        elif arr.dtype.kind in "iub":
            source = numpy.iinfo(arr.dtype) if arr.dtype.kind != "b" else numpy.iinfo("u1")
            arr = numpy.clip(arr, max(target.min, source.min), min(target.max, source.max))
    return arr.astype(dtype)


def conformToLayouts(arrays: dict, layouts: dict) -> dict:
    """Hold a block's outputs to the layout of the first block: same bands, same dtype.

    A block of another dtype is converted as GDAL would, with a
    :class:`~sharedapplier.rioserrors.DtypeChangeWarning` (Python shows it once per output
    and pair of dtypes).
    """
    conformed = {}
    for key, arr in arrays.items():
        layout = layouts[key]
        if arr.shape[0] != layout.nbands:
            raise rioserrors.ArrayShapeError(
                f"Output '{_label(*key)}' has {arr.shape[0]} bands in this block but "
                f"{layout.nbands} in its first block; every block must have the same number "
                "of bands")
        if arr.dtype != layout.dtype:
            gdalTypeForDtype(arr.dtype, _label(*key))
            warnings.warn(rioserrors.DtypeChangeWarning(
                f"Output '{_label(*key)}': a block of dtype {arr.dtype} is converted to "
                f"{layout.dtype}, the dtype of the output's first block (values out of range "
                "are clamped, as GDAL does); give every block the same dtype"), stacklevel=1)
            arr = conformToDtype(arr, layout.dtype)
        conformed[key] = arr
    return conformed


def prepareOutputArrays(outputs, outfiles, blockDefn, overlap, layouts=None) -> dict:
    """Check one block's outputs and strip the margin: {(name, seqNum): array view}.

    ``layouts`` maps (name, seqNum) to the :class:`OutputLayout` fixed by the first block;
    when given, band counts are checked and dtypes converted to it.
    """
    expected = (blockDefn.nrows + 2 * overlap, blockDefn.ncols + 2 * overlap)
    prepared = {}
    for name, seqNum, _ in outfiles:
        arr = _userArray(outputs, name, seqNum)
        _checkShape(arr, name, seqNum, expected)
        if layouts is None:
            gdalTypeForDtype(arr.dtype, _label(name, seqNum))
        if overlap > 0:
            arr = arr[:, overlap:arr.shape[1] - overlap, overlap:arr.shape[2] - overlap]
        prepared[(name, seqNum)] = arr
    return prepared if layouts is None else conformToLayouts(prepared, layouts)


def layoutsFromArrays(arrays: dict) -> dict:
    """The output layouts implied by a first block's prepared arrays."""
    return {key: OutputLayout(key[0], key[1], arr.shape[0], arr.dtype)
            for key, arr in arrays.items()}


# --------------------------------------------------------------------------- creation


def _optionDict(options):
    return dict(opt.split("=", 1) for opt in options if "=" in opt)


def checkGTiffBlockSize(options, windowxsize, windowysize, gridwidth, filename):
    """Refuse a GTiff whose internal blocks do not tile the applier's windows exactly."""
    opts = _optionDict(options)
    tiled = any(opt.split("=", 1)[0] == "TILED" for opt in options)
    bx = int(opts.get("BLOCKXSIZE", 256 if tiled else gridwidth))
    by = int(opts.get("BLOCKYSIZE", 256 if tiled else int(8192 / bx)))
    if windowxsize < bx or windowysize < by or windowxsize % bx or windowysize % by:
        raise rioserrors.ImageOpenError(
            f"RIOS block dimensions ({windowxsize}, {windowysize}) should be multiples of GTiff "
            f"block dimensions ({bx}, {by}) for '{filename}'; change setWindowSize or the "
            "BLOCKXSIZE/BLOCKYSIZE creation options")


# GDAL's side files of a raster: statistics, external overviews and masks.
SIDE_FILE_SUFFIXES = (".aux.xml", ".ovr", ".msk")


def deleteExisting(filename, knownFiles=()):
    """Remove an output and every file of it: what its driver deletes, then whatever is
    left of ``knownFiles`` and of GDAL's side files (the driver of a half-written or
    damaged file may not open it, and so delete nothing but the file itself)."""
    if os.path.exists(filename):
        gdal.PushErrorHandler("CPLQuietErrorHandler")
        try:
            drv = gdal.IdentifyDriver(filename)
            if drv is not None:
                drv.Delete(filename)
        except RuntimeError:
            pass
        finally:
            gdal.PopErrorHandler()
    for path in (filename, *knownFiles, *(filename + s for s in SIDE_FILE_SUFFIXES)):
        if os.path.isfile(path):
            os.remove(path)


# RIOS's name for it
deleteIfExisting = deleteExisting


# GTiff compresses on this many threads of its own, at least and at most (see below).
MIN_COMPRESSION_THREADS, MAX_COMPRESSION_THREADS = 2, 8


def withCompressionThreads(options: list[str], concurrency) -> list[str]:
    """GTiff creation options that compress on threads of GDAL's own (``NUM_THREADS``), so
    that compression is not serial work of the writer, which every worker waits on.

    They are the cores no local compute worker uses, but never fewer than two: compute
    processes run at a lower priority, so compressing takes a core from them only while it
    would otherwise stall them all. The file is the same image; options that say no
    compression, or that set NUM_THREADS already, are left as they are.
    """
    names = {opt.split("=", 1)[0].upper(): opt.split("=", 1)[-1].upper() for opt in options}
    if names.get("COMPRESS", "NONE") == "NONE" or "NUM_THREADS" in names:
        return list(options)
    computing = concurrency.numComputeWorkers \
        if concurrency.computeWorkerKind in (CW_THREADS, CW_PROCESSES) else 0
    threads = min(MAX_COMPRESSION_THREADS,
                  max(MIN_COMPRESSION_THREADS, usableCpuCount() - computing))
    return [*options, f"NUM_THREADS={threads}"]


def threadOptions(options: list[str]) -> list[str]:
    """The NUM_THREADS of GTiff creation options, as open options for writing it again."""
    return [o for o in options if o.upper().startswith("NUM_THREADS=")]


def doubleCheckCreationOptions(drivername: str, creationoptions: list[str], windowxsize: int,
                               windowysize: int, gridwidth: int, filename: str = "") -> list:
    """The creation options, once checked to suit the driver and the block size: a GTiff's
    internal blocks must tile the windows (see :func:`checkGTiffBlockSize`)."""
    if drivername == "GTiff":
        checkGTiffBlockSize(creationoptions, windowxsize, windowysize, gridwidth, filename)
    return creationoptions


def allnotNone(items) -> bool:
    """True when no item is None."""
    return all(item is not None for item in items)


def anynotNone(items) -> bool:
    """True when at least one item is not None."""
    return any(item is not None for item in items)


# Outputs with a NaN, Inf or -Inf written since they were created (warned of at close).
nanWarningFiles: set[str] = set()


def checkForNanOrInf(arr: numpy.ndarray, filename: str) -> None:
    """Note in ``nanWarningFiles`` when a float or complex block of ``filename`` holds a
    NaN or an infinity; once the file is noted its later blocks are not looked at."""
    if filename in nanWarningFiles or arr.dtype.kind not in "fc":
        return
    if not numpy.isfinite(arr).all():
        nanWarningFiles.add(filename)


def warnNanOrInf(filename: str) -> None:
    """Log the warning that ``filename`` holds NaN or infinities, if it was noted, and
    forget it."""
    if filename in nanWarningFiles:
        nanWarningFiles.discard(filename)
        logger.warning(f"WARNING: Output file {filename} contains NaN, Inf or -Inf")


def checkOutputWritable(filename):
    """Fail early, before any processing, when an output cannot be written.

    GDAL's virtual file systems (/vsimem/, /vsis3/...) are left to GDAL to judge.
    """
    if str(filename).startswith("/vsi") or "://" in str(filename):
        return
    folder = os.path.dirname(os.path.abspath(filename))
    if not os.path.isdir(folder):
        raise rioserrors.PermissionError(
            f"Cannot write output '{filename}': folder '{folder}' does not exist; create it "
            f"first (os.makedirs) or name an output in an existing folder")
    if not os.access(folder, os.W_OK):
        raise rioserrors.PermissionError(
            f"Cannot write output '{filename}': folder '{folder}' is not writable; change its "
            "permissions or name an output in a folder you may write to")
    if os.path.exists(filename) and not os.access(filename, os.W_OK):
        raise rioserrors.PermissionError(
            f"Cannot write output '{filename}': the existing file is read-only")


class OutputFile:
    """One output file: created on its first block, written block by block, then closed."""

    def __init__(self, name, seqNum, filename, controls, workinggrid, singlePassMgr, timings,
                 record=None, resumeEntry=None):
        self.name = name
        self.record = record
        self.resumeEntry = resumeEntry
        self.layout = None
        self.openOptions: list[str] = []
        self.seqNum = seqNum
        self.filename = filename
        self.controls = controls
        self.workinggrid = workinggrid
        self.singlePassMgr = singlePassMgr
        self.timings = timings
        self.ds = None
        self.summary: SummaryPlan | None = None
        self.overviews = []
        self.created = False
        self.ncols = workinggrid.getDimensions()[1]

    def _option(self, option):
        return self.controls.getOptionForImagename(option, self.name)

    def create(self, arr):
        """Create the file with the first block's band count and dtype."""
        self.open(OutputLayout(self.name, self.seqNum, arr.shape[0], numpy.dtype(arr.dtype)))

    def open(self, layout: OutputLayout) -> SummaryPlan | None:
        """Create the file with ``layout``'s band count and dtype (or open the one a
        resumed run goes on writing); the summary plan of its blocks (None when no
        single-pass work is wanted)."""
        self.layout = layout
        if self.resumeEntry is not None:
            self._reopen(layout)
        else:
            self._create(layout)
        self.summary = self._summaryPlan(layout)
        return self.summary

    def _creationOptions(self, drivername: str) -> list[str]:
        """This output's creation options, or ``drivername``'s defaults where it names none;
        a GTiff's with NUM_THREADS added (see :func:`withCompressionThreads`). One place,
        so that :meth:`_create` makes the file, and :meth:`_reopen` opens it again (its
        open options being these NUM_THREADS), compressing on the same threads."""
        options = self._option("creationoptions")
        if options is None:
            options = const.creationOptionsForDriver(drivername)
        if drivername == "GTiff":
            options = withCompressionThreads(options, self.controls.concurrency)
        return options

    def compressesWhileWriting(self) -> bool:
        """Whether GDAL compresses this file's blocks, serially, in the thread that writes
        them: HFA's run-length coding (its default). A compressed GTiff compresses on
        GDAL's own threads (NUM_THREADS)."""
        if self._option("drivername") != "HFA":
            return False
        options = {k.upper(): v for k, v in _optionDict(self._creationOptions("HFA")).items()}
        return options.get("COMPRESSED", "NO").upper() in ("YES", "TRUE", "ON", "1")

    def _create(self, layout: OutputLayout) -> None:
        drivername = self._option("drivername")
        options = self._creationOptions(drivername)
        driver = gdal.GetDriverByName(drivername)
        if driver is None:
            raise rioserrors.ImageOpenError(
                f"Output '{self.filename}': GDAL has no driver named '{drivername}'")
        deleteExisting(self.filename, (journalPath(self.filename),))
        nanWarningFiles.discard(self.filename)
        if drivername == "GTiff":
            checkGTiffBlockSize(options, self.controls.windowxsize, self.controls.windowysize,
                                self.workinggrid.getDimensions()[1], self.filename)
            self.openOptions = threadOptions(options)
        gdaltype = gdalTypeForDtype(layout.dtype, _label(self.name, self.seqNum))
        nrows, ncols = self.workinggrid.getDimensions()
        try:
            self.ds = driver.Create(self.filename, ncols, nrows, layout.nbands, gdaltype,
                                    options)
        except RuntimeError as e:
            raise rioserrors.ImageOpenError(
                f"Unable to create output file '{self.filename}': {e}") from e
        if self.ds is None:
            raise rioserrors.ImageOpenError(f"Unable to create output file '{self.filename}'")
        self.created = True
        if self.record is not None and not self.controls.resumable:
            self.record.noteOutput(self.filename)  # a resumable one is kept for its run
        with self._writing():
            self.ds.SetGeoTransform(self.workinggrid.makeGeoTransform())
            self.ds.SetProjection(self.workinggrid.projection)
            self._setBandMetadata(layout.nbands)
            self.singlePassMgr.initFor(self.ds, self.name, self.seqNum,
                                       numpy.empty((layout.nbands, 0, 0), layout.dtype))

    def _reopen(self, layout: OutputLayout) -> None:
        """Open the output an earlier run of this one left, as its journal describes it."""
        entry = self.resumeEntry
        if (layout.nbands, layout.dtype.str) != (entry.nbands, entry.dtype):
            raise rioserrors.ImageOpenError(
                f"Output '{self.filename}' of the run being resumed has {entry.nbands} "
                f"band(s) of {numpy.dtype(entry.dtype)}, but this run's first block has "
                f"{layout.nbands} of {layout.dtype}: delete the output and its journal "
                f"({journalPath(self.filename)}) to start again")
        if self._option("drivername") == "GTiff":
            self.openOptions = threadOptions(self._creationOptions("GTiff"))
        try:
            self.ds = self._openForUpdate()
        except RuntimeError as e:
            raise rioserrors.ImageOpenError(
                f"Unable to open output '{self.filename}' to resume writing it: {e}") from e
        self.created = True
        with self._writing():
            self.singlePassMgr.initFor(self.ds, self.name, self.seqNum,
                                       numpy.empty((layout.nbands, 0, 0), layout.dtype),
                                       overviewsExist=True)
        if entry.accumulators is not None:
            self.singlePassMgr.accumulators[(self.name, self.seqNum)] = entry.accumulators

    def _findOverviews(self, nlevels: int) -> None:
        self.overviews = [[self.ds.GetRasterBand(b + 1).GetOverview(k) for k in range(nlevels)]
                          for b in range(self.ds.RasterCount)]

    def flushToFile(self) -> None:
        """Put everything written so far on disk as a file GDAL can open again: pixels,
        overviews, and the file's directory (a resumable run's journal then names it).

        Closing is the one way: a flushed GTiff or HFA killed before it is closed reads
        back empty (the directory that points at its blocks is written at close).
        """
        with self.timings.interval("writing"), self._writing():
            nlevels = len(self.overviews[0]) if self.overviews else 0
            self.ds = None
            self.ds = self._openForUpdate()
            self._findOverviews(nlevels)

    def _openForUpdate(self):
        """The output opened again for writing, compressing on GDAL's threads as when it
        was created."""
        return gdal.OpenEx(self.filename, gdal.OF_UPDATE | gdal.OF_RASTER,
                           open_options=self.openOptions)

    def journalState(self) -> tuple:
        """(bands, dtype, single-pass accumulators) for this output's journal."""
        return (self.layout.nbands, self.layout.dtype.str,
                self.singlePassMgr.accumulators.get((self.name, self.seqNum)))

    def setAside(self) -> None:
        """Close without finishing, keeping the file for the run that resumes it."""
        gdal.PushErrorHandler("CPLQuietErrorHandler")
        try:
            self.ds = None
        finally:
            gdal.PopErrorHandler()

    def _summaryPlan(self, layout) -> SummaryPlan | None:
        mgr, name = self.singlePassMgr, self.name
        pyramids, statistics, histogram = mgr.blockActions(name)
        factors = mgr.overviewLevels[name] if pyramids else []
        if not (factors or statistics or histogram):
            return None
        maxRows, maxCols = self.controls.windowysize, self.controls.windowxsize
        levels = blocksummary.overviewLevels(self.ds, factors, maxRows, maxCols)
        self._findOverviews(len(levels))
        return blocksummary.SummaryPlan(
            (name, self.seqNum), layout.nbands, layout.dtype.str, statistics, histogram,
            self.ds.GetRasterBand(1).GetNoDataValue(),
            blocksummary.countsLengthFor(layout.dtype, maxRows, maxCols), levels,
            self.ds.RasterXSize, self.ds.RasterYSize, maxRows * maxCols)

    def _writing(self) -> GdalErrorsAs:
        """GDAL failing to write this output (a full disk, a file size limit) raises an
        ImageWriteError naming it and the reason."""
        return GdalErrorsAs(rioserrors.ImageWriteError, f"Cannot write output '{self.filename}'",
                            outputFile=self.filename)

    def _setBandMetadata(self, nbands):
        thematic = self._option("thematic")
        nullval = self._option("statsIgnore")
        layernames = self._option("layernames")
        for i in range(nbands):
            band = self.ds.GetRasterBand(i + 1)
            if thematic:
                band.SetMetadataItem("LAYER_TYPE", "thematic")
            if nullval is not None:
                band.SetNoDataValue(nullval)
            if layernames is not None and i < len(layernames):
                band.SetDescription(layernames[i])

    def write(self, arr, blockDefn, record=None):
        """Write one block (margin already stripped) and do its single-pass work: merge
        ``record``, the block's summary worked out by the worker that computed it, or
        work it out here."""
        if self.ds is None:
            self.create(arr)
        start = time.time()
        checkForNanOrInf(arr, self.filename)
        writeWindow(self.ds, arr, blockDefn.left, blockDefn.top)
        self.timings.addInterval("writing", start, time.time())
        with self._writing():
            if record is None:
                calcstats.handleSinglePassActions(self.ds, arr, self.singlePassMgr, self.name,
                                                  self.seqNum, blockDefn.left, blockDefn.top,
                                                  self.timings)
            else:
                blocksummary.applySummary(
                    self.summary, record, arr, blockDefn.left, blockDefn.top, self.overviews,
                    self.singlePassMgr.accumulators.get((self.name, self.seqNum)),
                    self.timings)
        if blockDefn.left + blockDefn.ncols >= self.ncols:
            self._flushRow()

    def _flushRow(self):
        """Hand a row of blocks, just finished, from GDAL's cache to the file.

        GDAL otherwise keeps written blocks until its cache fills or the file closes: a run
        would end waiting for one long flush, and a compressed output would be compressed
        in large bursts that stall the writer while every worker's slot fills. A finished
        row completes every tile and strip it touches, and nothing of the next row has been
        written yet, so no tile or strip is written twice.
        """
        with self.timings.interval("writing"), self._writing():
            for i in range(self.ds.RasterCount):
                self.ds.GetRasterBand(i + 1).FlushCache()

    def close(self):
        """Flush, finish statistics, call callBeforeClose, close, add auto colours."""
        if self.ds is None:
            return
        with self._writing():
            with self.timings.interval("writing"):
                self.ds.FlushCache()
            calcstats.finishOutputStats(self.ds, self.name, self.seqNum, self.singlePassMgr,
                                        self.controls, self.timings)
        warnNanOrInf(self.filename)
        beforeClose = self._option("callBeforeClose")
        if beforeClose is not None and len(beforeClose) == 2:
            func, args = beforeClose
            with self.timings.interval("beforeclose"):
                func(self.ds, *args)
        with self._writing():
            self.ds.FlushCache()
            self.ds = None  # closing writes what is left: its failure is reported too
        colorType = self._option("autoColorTableType")
        if colorType is not None and self._option("thematic"):
            addAutoColorTable(self.filename, colorType)
        self._noteDone()

    def _noteDone(self):
        if self.record is not None:
            self.record.outputDone(self.filename)

    def discard(self):
        """Close without finishing and delete every file of the half-written output.

        Closing may fail again (the disk is still full): GDAL's complaints are kept quiet,
        the error that caused the discard says what went wrong.
        """
        files = []
        nanWarningFiles.discard(self.filename)
        gdal.PushErrorHandler("CPLQuietErrorHandler")
        try:
            with contextlib.suppress(RuntimeError):
                files = [] if self.ds is None else self.ds.GetFileList() or []
            self.ds = None
        finally:
            gdal.PopErrorHandler()
        if self.created:
            try:
                deleteExisting(self.filename, files)
            except OSError:
                return  # still there: the run's record keeps naming it
        self._noteDone()


def addAutoColorTable(filename, colorType):
    """Give every band of a thematic file a colour table up to its maximum value."""
    from .rat import genColorTable
    ds = gdal.Open(filename, gdal.GA_Update)
    try:
        for i in range(ds.RasterCount):
            band = ds.GetRasterBand(i + 1)
            maxval = band.GetMetadataItem("STATISTICS_MAXIMUM")
            if maxval is None:
                continue
            colours = genColorTable(int(float(maxval)) + 1, colorType)
            table = gdal.ColorTable()
            for value, rgba in enumerate(colours):
                table.SetColorEntry(value, tuple(int(c) for c in rgba))
            try:
                band.SetRasterColorTable(table)
            except RuntimeError as e:
                logger.warning(f"Warning: cannot add a colour table to '{filename}': {e}")
    finally:
        ds = None


def openOutfile(symbName, seqNum, filename, controls, arr, workinggrid, singlePassMgr,
                timings) -> OutputFile:
    """Create one output on the working grid, with the band count and dtype of ``arr``
    (its first block) and the options ``controls`` gives ``symbName``; ``.ds`` is its
    GDAL dataset."""
    outfile = OutputFile(symbName, seqNum, filename, controls, workinggrid, singlePassMgr,
                         timings)
    outfile.create(arr)
    return outfile


def writeBlock(gdalOutObjCache: dict, blockDefn, outfiles, outputs, controls, workinggrid,
               singlePassMgr, timings) -> None:
    """Check and write one block of every output of ``outfiles`` from ``outputs`` (as a
    user function set it), creating each file on its first block. ``gdalOutObjCache``
    maps (name, seqNum) to the open :class:`OutputFile` and is filled as files are made."""
    filenames = {(name, seqNum): filename for name, seqNum, filename in outfiles}
    arrays = prepareOutputArrays(outputs, outfiles, blockDefn, controls.overlap)
    for key, arr in arrays.items():
        if key not in gdalOutObjCache:
            gdalOutObjCache[key] = openOutfile(key[0], key[1], filenames[key], controls, arr,
                                               workinggrid, singlePassMgr, timings)
        gdalOutObjCache[key].write(arr, blockDefn)


def closeOutfiles(gdalOutObjCache: dict, outfiles) -> None:
    """Finish and close every output :func:`writeBlock` made, in ``outfiles`` order."""
    for name, seqNum, _ in outfiles:
        outfile = gdalOutObjCache.pop((name, seqNum), None)
        if outfile is not None:
            outfile.close()


class OutputWriter:
    """All the outputs of a run, written by a single thread."""

    def __init__(self, outfiles, controls, workinggrid, singlePassMgr, timings, record=None,
                 journal: Journal | None = None, resumption: Resumption | None = None):
        """``record`` (a :class:`~.runrecord.RunRecord`) hears of every output made and
        finished, so that one left unfinished by a dead run can be found. ``journal``
        (resumable runs) is brought up to date after each row of blocks; ``resumption``
        says where an earlier run of these outputs stopped."""
        entries = {} if resumption is None else resumption.entries
        self.files = {(name, seqNum): OutputFile(name, seqNum, filename, controls,
                                                 workinggrid, singlePassMgr, timings, record,
                                                 entries.get((name, seqNum)))
                      for name, seqNum, filename in outfiles}
        self.journal = journal
        self.blocksWritten = 0 if resumption is None else resumption.blocksDone
        self.blocksInFlight = 0  # begun and not yet in every file
        self.ncols = workinggrid.getDimensions()[1]

    def openFiles(self, layouts: dict) -> dict:
        """Create every output with its layout (block 0's); the summary plans of those
        whose blocks have single-pass work, by (name, seqNum)."""
        plans = {key: self.files[key].open(layout) for key, layout in layouts.items()}
        return {key: plan for key, plan in plans.items() if plan is not None}

    def writeBlock(self, blockDefn, arrays: dict, records: dict | None = None):
        """Write one block of every output: ``arrays`` maps (name, seqNum) to arrays, and
        ``records`` to the summaries the workers made of them (None: none made)."""
        self.beginBlock()
        for key, arr in arrays.items():
            self.writeFileBlock(key, blockDefn, arr, None if records is None else records[key])
        self.endBlock(blockDefn)

    def beginBlock(self) -> None:
        """A block's writes begin (here, or on the file threads)."""
        self.blocksInFlight += 1

    def endBlock(self, blockDefn) -> None:
        """Every file has the block: count it, and at a row's end bring a resumable run's
        journals up to date (when no block is being written: see the file threads)."""
        self.blocksInFlight -= 1
        self.blocksWritten += 1
        if self.journal is not None and blockDefn.left + blockDefn.ncols >= self.ncols:
            self.journal.rowDone(list(self.files.values()), self.blocksWritten)

    def writeFileBlock(self, key, blockDefn, arr, record=None):
        """Write one block of one output (each output may be written by its own thread)."""
        self.files[key].write(arr, blockDefn, record)

    def wantsFileThreads(self) -> bool:
        """Whether each output is best written by a thread of its own: with two or more
        outputs, or one that GDAL compresses in the thread that writes it (which is then
        not the thread that hands out and merges blocks)."""
        return len(self.files) > 1 or any(f.compressesWhileWriting()
                                          for f in self.files.values())

    def close(self):
        """Close every output, in outfiles order (and a resumable run's journals go)."""
        for outfile in self.files.values():
            outfile.close()
        if self.journal is not None:
            Journal.remove(outfile.filename for outfile in self.files.values())

    def discard(self, failure: BaseException | None = None):
        """Drop every output this run created (after ``failure``); a resumable run's are
        kept, with their journals, for the run that resumes them."""
        if failure is not None:
            releaseFrames(failure)
        if self.journal is not None:
            self._setAside()
            return
        for outfile in self.files.values():
            outfile.discard()

    def _setAside(self):
        """Keep a resumable run's outputs, with journals naming every block written (unless
        the run stopped part way through writing a block: then the last commit stands)."""
        files = [f for f in self.files.values() if f.ds is not None]
        if files and not self.blocksInFlight:
            with contextlib.suppress(Exception):  # the failure that got us here is the news
                self.journal.commit(files, self.blocksWritten)
        for outfile in self.files.values():
            outfile.setAside()

    @property
    def resumable(self) -> bool:
        return self.journal is not None


def releaseFrames(failure: BaseException):
    """Clear the variables of sharedapplier's and GDAL's frames in the tracebacks of
    ``failure`` and of its causes.

    Those frames hold the outputs' datasets, and GDAL 3.6 closes a dataset only when its
    last reference goes: one closed after its files were deleted writes some of them again
    (an .aux.xml). The tracebacks still print; the user's own frames are left as they are.
    """
    ours = (os.path.dirname(__file__), os.path.dirname(gdal.__file__))
    seen = set()
    while failure is not None and id(failure) not in seen:
        seen.add(id(failure))
        tb = failure.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename.startswith(ours):
                with contextlib.suppress(RuntimeError):  # a frame still running
                    tb.tb_frame.clear()
            tb = tb.tb_next
        failure = failure.__cause__ or failure.__context__
