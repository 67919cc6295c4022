"""The write stage: check what a user function produced, create outputs, write blocks, close.

Two halves, usable apart:

* :func:`prepareOutputArrays` runs where the user function ran (any thread or process): it
  checks every output of one block against the contract (present, 3-D, a GDAL dtype, the
  block's shape, the band count of the first block) and strips the overlap margin.
* :class:`OutputWriter` runs in exactly one thread (GDAL writing is not concurrent): it
  creates each output on its first block, writes blocks, does the single-pass statistics
  and pyramids, and closes the files with the post-pass steps and ``callBeforeClose``.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import numpy
from osgeo import gdal

from . import calcstats, const, rioserrors
from .imageio import gdalTypeOf, writeWindow


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
    """Convert a block to the output's dtype as GDAL would (round and clip floats to ints)."""
    dtype = numpy.dtype(dtype)
    if arr.dtype == dtype:
        return arr
    if dtype.kind in "iu" and arr.dtype.kind in "fc":
        info = numpy.iinfo(dtype)
        arr = numpy.clip(numpy.rint(arr.real), info.min, info.max)
    return arr.astype(dtype)


def conformToLayouts(arrays: dict, layouts: dict) -> dict:
    """Hold a block's outputs to the layout of the first block: same bands, same dtype."""
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


def deleteExisting(filename):
    """Remove an existing output (with its driver, so side files go too)."""
    if not os.path.exists(filename):
        return
    try:
        drv = gdal.IdentifyDriver(filename)
    except RuntimeError:
        drv = None
    if drv is not None:
        try:
            drv.Delete(filename)
            return
        except RuntimeError:
            pass
    os.remove(filename)


def checkOutputWritable(filename):
    """Fail early, before any processing, when an output cannot be written."""
    folder = os.path.dirname(os.path.abspath(filename))
    if not os.path.isdir(folder):
        raise rioserrors.PermissionError(
            f"Cannot write output '{filename}': folder '{folder}' does not exist")
    if not os.access(folder, os.W_OK):
        raise rioserrors.PermissionError(
            f"Cannot write output '{filename}': folder '{folder}' is not writable")
    if os.path.exists(filename) and not os.access(filename, os.W_OK):
        raise rioserrors.PermissionError(
            f"Cannot write output '{filename}': the existing file is read-only")


class OutputFile:
    """One output file: created on its first block, written block by block, then closed."""

    def __init__(self, name, seqNum, filename, controls, workinggrid, singlePassMgr, timings):
        self.name = name
        self.seqNum = seqNum
        self.filename = filename
        self.controls = controls
        self.workinggrid = workinggrid
        self.singlePassMgr = singlePassMgr
        self.timings = timings
        self.ds = None
        self.created = False
        self.sawNonFinite = False
        self.finishedRowsInCache = False
        self.ncols = workinggrid.getDimensions()[1]

    def _option(self, option):
        return self.controls.getOptionForImagename(option, self.name)

    def create(self, arr):
        """Create the file from the first block's band count and dtype."""
        drivername = self._option("drivername")
        options = self._option("creationoptions")
        if options is None:
            options = const.creationOptionsForDriver(drivername)
        driver = gdal.GetDriverByName(drivername)
        if driver is None:
            raise rioserrors.ImageOpenError(
                f"Output '{self.filename}': GDAL has no driver named '{drivername}'")
        deleteExisting(self.filename)
        if drivername == "GTiff":
            checkGTiffBlockSize(options, self.controls.windowxsize, self.controls.windowysize,
                                self.workinggrid.getDimensions()[1], self.filename)
        gdaltype = gdalTypeForDtype(arr.dtype, _label(self.name, self.seqNum))
        nrows, ncols = self.workinggrid.getDimensions()
        try:
            self.ds = driver.Create(self.filename, ncols, nrows, arr.shape[0], gdaltype, options)
        except RuntimeError as e:
            raise rioserrors.ImageOpenError(
                f"Unable to create output file '{self.filename}': {e}") from e
        if self.ds is None:
            raise rioserrors.ImageOpenError(f"Unable to create output file '{self.filename}'")
        self.created = True
        self.ds.SetGeoTransform(self.workinggrid.makeGeoTransform())
        self.ds.SetProjection(self.workinggrid.projection)
        self._setBandMetadata(arr.shape[0])
        self.singlePassMgr.initFor(self.ds, self.name, self.seqNum, arr)

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

    def write(self, arr, blockDefn):
        """Write one block (margin already stripped) and do its single-pass work."""
        if self.ds is None:
            self.create(arr)
        start = time.time()
        if not self.sawNonFinite and arr.dtype.kind in "fc":
            self.sawNonFinite = not numpy.isfinite(arr).all()
        writeWindow(self.ds, arr, blockDefn.left, blockDefn.top)
        if blockDefn.left + blockDefn.ncols >= self.ncols:
            self.finishedRowsInCache = True
        self.timings.addInterval("writing", start, time.time())
        calcstats.handleSinglePassActions(self.ds, arr, self.singlePassMgr, self.name,
                                          self.seqNum, blockDefn.left, blockDefn.top,
                                          self.timings)

    def flushFinishedRows(self):
        """Hand the finished rows of blocks in GDAL's cache to the file now.

        GDAL otherwise keeps written blocks until its cache fills or the file closes, and a
        run whose writer was idle would end waiting for one long flush. A finished row
        completes every tile and strip it touches, and GDAL flushes in block order, so the
        file is the same as when the cache decides.
        """
        if not self.finishedRowsInCache:
            return
        with self.timings.interval("writing"):
            for i in range(self.ds.RasterCount):
                self.ds.GetRasterBand(i + 1).FlushCache()
        self.finishedRowsInCache = False

    def close(self):
        """Flush, finish statistics, call callBeforeClose, close, add auto colours."""
        if self.ds is None:
            return
        with self.timings.interval("writing"):
            self.ds.FlushCache()
        calcstats.finishOutputStats(self.ds, self.name, self.seqNum, self.singlePassMgr,
                                    self.controls, self.timings)
        if self.sawNonFinite:
            print(f"WARNING: Output file {self.filename} contains NaN, Inf or -Inf",
                  file=sys.stderr)
        beforeClose = self._option("callBeforeClose")
        if beforeClose is not None and len(beforeClose) == 2:
            func, args = beforeClose
            with self.timings.interval("beforeclose"):
                func(self.ds, *args)
        self.ds.FlushCache()
        self.ds = None
        colorType = self._option("autoColorTableType")
        if colorType is not None and self._option("thematic"):
            addAutoColorTable(self.filename, colorType)

    def discard(self):
        """Close without finishing and delete the half-written file."""
        self.ds = None
        if self.created:
            try:
                deleteExisting(self.filename)
            except OSError:
                pass


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
                print(f"Warning: cannot add a colour table to '{filename}': {e}",
                      file=sys.stderr)
    finally:
        ds = None


class OutputWriter:
    """All the outputs of a run, written by a single thread."""

    def __init__(self, outfiles, controls, workinggrid, singlePassMgr, timings):
        self.files = {(name, seqNum): OutputFile(name, seqNum, filename, controls,
                                                 workinggrid, singlePassMgr, timings)
                      for name, seqNum, filename in outfiles}

    def writeBlock(self, blockDefn, arrays: dict):
        """Write one block of every output: ``arrays`` maps (name, seqNum) to arrays."""
        for key, arr in arrays.items():
            self.files[key].write(arr, blockDefn)

    def flushFinishedRows(self):
        """Flush the finished rows of blocks of every output (see OutputFile's method)."""
        for outfile in self.files.values():
            outfile.flushFinishedRows()

    def close(self):
        """Close every output, in outfiles order."""
        for outfile in self.files.values():
            outfile.close()

    def discard(self):
        """Drop every output this run created (after a failure)."""
        for outfile in self.files.values():
            outfile.discard()
