"""Apply a function block by block over the rows of raster attribute tables (RATs).

The user function is called as ``userFunc(info, inputs, outputs[, otherargs])`` once per
block of rows, sequentially. ``inputs.<name>.<column>`` reads that column's rows for the
block; assigning ``outputs.<name>.<column> = array`` writes them after the function returns.
"""
import math

import numpy
from osgeo import gdal

from sharedapplier import rioserrors
from sharedapplier.rat import (
    findColumn,
    findOrCreateNamedColumn,
    getBand,
    inferColumnType,
    missingColumnError,
    openDataset,
    prepareValuesForRat,
    ratColumnNames,
    ratForUpdate,
    readRatValues,
    setRatOnBand,
    setRatRowCount,
    writeRatRows,
)

try:
    import ratzarr
except ImportError:
    ratzarr = None

RCM_EQUALS_INPUT = 0
RCM_FIXED = 1
RCM_INCREMENT = 2
_ROW_COUNT_METHODS = (RCM_EQUALS_INPUT, RCM_FIXED, RCM_INCREMENT)

_ZARR_MIN_CHUNK = 100000
_ZARR_MAX_CHUNK = 999999


class _RatZarrUnavailable(rioserrors.UnavailableError, ValueError):
    """The optional ``ratzarr`` package is needed but not installed."""


# ---------------------------------------------------------------------------------------
# User-facing containers and controls
# ---------------------------------------------------------------------------------------

class RatHandle:
    """Names one layer's RAT in a GDAL raster file."""

    def __init__(self, filename, layernum=1):
        self.filename = filename
        self.layernum = layernum

    def __hash__(self):
        return hash((self.filename, self.layernum))

    def __repr__(self):
        return f"RatHandle({self.filename!r}, layernum={self.layernum})"


class RatZarrHandle:
    """Names a RAT stored in Zarr (needs the optional ``ratzarr`` package)."""

    def __init__(self, filename):
        if ratzarr is None:
            raise _RatZarrUnavailable(
                f"RatZarrHandle({filename!r}) needs the 'ratzarr' package, which is not "
                "installed")
        self.filename = filename

    def __hash__(self):
        return hash(self.filename)

    def __eq__(self, other):
        return isinstance(other, RatZarrHandle) and other.filename == self.filename

    def __repr__(self):
        return f"RatZarrHandle({self.filename!r})"


class RatAssociations:
    """Attribute bag of RAT handles, one attribute per name."""

    def getRatList(self):
        """The names of the handles."""
        return self.__dict__.keys()


class OtherArguments:
    """Empty attribute bag passed unchanged to every call of the user function."""


class RatApplierControls:
    """Options for :func:`apply`."""

    def __init__(self):
        self.blockLen = 100000
        self.rowCount = None
        self.outputRowCountMethod = RCM_EQUALS_INPUT
        self.outputTotalSize = None
        self.outputIncrementSize = None
        self.progress = None
        self.useStringDType = False

    def setBlockLength(self, blockLen):
        """Set the number of rows per block."""
        if int(blockLen) < 1:
            raise rioserrors.ParameterError(f"blockLen must be at least 1, got {blockLen}")
        self.blockLen = int(blockLen)

    def setRowCount(self, rowCount):
        """Set the number of rows to process (needed when there are no input RATs)."""
        if rowCount is not None and int(rowCount) < 0:
            raise rioserrors.ParameterError(f"rowCount must not be negative, got {rowCount}")
        self.rowCount = None if rowCount is None else int(rowCount)

    def outputRowCountHandling(self, method=RCM_EQUALS_INPUT, totalsize=None,
                               incrementsize=None):
        """Choose how output RATs grow: RCM_EQUALS_INPUT, RCM_FIXED or RCM_INCREMENT."""
        if method not in _ROW_COUNT_METHODS:
            raise rioserrors.ParameterError(
                f"unknown output row count method {method!r}; use RCM_EQUALS_INPUT (0), "
                "RCM_FIXED (1) or RCM_INCREMENT (2)")
        if method == RCM_FIXED and totalsize is None:
            raise rioserrors.ParameterError("RCM_FIXED needs totalsize")
        self.outputRowCountMethod = method
        self.outputTotalSize = totalsize
        self.outputIncrementSize = incrementsize

    def setProgress(self, progress=None):
        """Set a progress object (setTotalSteps/setProgress), or None."""
        self.progress = progress

    def setUseStringDType(self, useStringDType):
        """Read string columns as numpy StringDType (numpy 2 or later only)."""
        self.useStringDType = bool(useStringDType)


class RatApplierState:
    """The ``info`` argument: where the current block lies."""

    def __init__(self, rowCount):
        self.rowCount = rowCount
        self.blockNdx = None
        self.startrow = None
        self.blockLen = None
        self.inputRowNumbers = None

    def setBlock(self, i, requestedBlockLen):
        """Move to block ``i`` of ``requestedBlockLen`` rows (the last may be shorter)."""
        self.blockNdx = i
        self.startrow = i * requestedBlockLen
        self.blockLen = min(requestedBlockLen, self.rowCount - self.startrow)
        self.inputRowNumbers = numpy.arange(self.startrow, self.startrow + self.blockLen)


# ---------------------------------------------------------------------------------------
# Open files
# ---------------------------------------------------------------------------------------

def _stringDtypeAvailable():
    return hasattr(numpy, "dtypes") and hasattr(numpy.dtypes, "StringDType")


class FileHandles:
    """The open band and RAT of one handle, plus its output write position."""

    def __init__(self, handle, ds, rat):
        self.handle = handle
        self.ds = ds
        self.band = getBand(ds, handle.layernum)
        self.rat = rat if rat is not None else ratForUpdate(self.band)
        self.outrow = 0
        self.written = False

    @property
    def name(self):
        return f"layer {self.handle.layernum} of {self.handle.filename!r}"

    def finishOutput(self):
        """Trim the RAT to the rows written and save it on the band if it is in memory."""
        if self.written and self.rat.GetRowCount() > self.outrow:
            setRatRowCount(self.rat, self.outrow)
        setRatOnBand(self.band, self.rat)

    def getRatObj(self):
        """The band's GDAL RasterAttributeTable."""
        return self.rat

    def getRowCount(self):
        """How many rows the RAT has now."""
        return self.rat.GetRowCount()

    def setRowCount(self, rowCount):
        """Give the RAT ``rowCount`` rows."""
        setRatRowCount(self.rat, rowCount)

    def close(self):
        """Drop this handle's GDAL objects (the collection closes the dataset)."""
        self.rat = self.band = self.ds = None


class FileHandlesCollection:
    """Opens every file once (outputs for update first) and shares datasets and RATs."""

    def __init__(self, inRats, outRats):
        self.datasets = {}
        self.by_handle = {}
        self.by_layer = {}
        self.outputs = []
        try:
            self._openAll(inRats, outRats)
        except BaseException:
            self.close()
            raise

    def _openAll(self, inRats, outRats):
        for handle in _handles(outRats):
            self._add(handle, update=True)
            if self.by_handle[handle] not in self.outputs:
                self.outputs.append(self.by_handle[handle])
        for handle in _handles(inRats):
            self._add(handle, update=False)

    def _add(self, handle, update):
        if handle in self.by_handle:
            return
        _checkHandle(handle)
        ds = self.checkExistingDS(handle)
        if ds is None:
            ds = openDataset(handle.filename, update)
            self.datasets[handle.filename] = ds
        key = (handle.filename, handle.layernum)
        shared = self.by_layer.get(key)
        fh = FileHandles(handle, ds, shared.rat if shared is not None else None)
        self.by_layer.setdefault(key, fh)
        self.by_handle[handle] = fh

    def __getitem__(self, handle):
        return self.by_handle[handle]

    def checkExistingDS(self, handle):
        """The dataset already open for ``handle``'s file, or None."""
        return self.datasets.get(handle.filename)

    def checkConsistency(self, inRats):
        """Raise RatMismatchError unless every input RAT has the same row count."""
        sizes = {f"{name} ({self[getattr(inRats, name)].name})":
                 self[getattr(inRats, name)].getRowCount() for name in inRats.getRatList()}
        if len(set(sizes.values())) > 1:
            raise rioserrors.RatMismatchError(f"input RATs have different row counts: {sizes}")
        return sizes

    def getRowCount(self, inRats, controls):
        """The rows of a run: ``controls.rowCount`` if set, else the input RATs' count."""
        sizes = self.checkConsistency(inRats)
        if controls.rowCount is not None:
            if sizes and controls.rowCount > next(iter(sizes.values())):
                raise rioserrors.RatMismatchError(
                    f"controls.rowCount is {controls.rowCount} but the input RATs have only "
                    f"{next(iter(sizes.values()))} rows")
            return controls.rowCount
        if not sizes:
            raise rioserrors.ParameterError(
                "there are no input RATs: set the row count with controls.setRowCount()")
        return next(iter(sizes.values()))

    def finishOutputs(self):
        for fh in self.outputs:
            fh.finishOutput()

    def close(self):
        """Drop every GDAL object, flushing and closing the datasets."""
        for fh in self.by_handle.values():
            fh.close()
        self.by_handle.clear()
        self.by_layer.clear()
        self.outputs = []
        for ds in self.datasets.values():
            ds.FlushCache()
        self.datasets.clear()


def _handles(rats):
    return [getattr(rats, name) for name in rats.getRatList()] if rats is not None else []


def _checkHandle(handle):
    if isinstance(handle, RatZarrHandle):
        raise rioserrors.UnavailableError(
            f"{handle!r}: Zarr RATs are not supported by sharedapplier.ratapplier")
    if not isinstance(handle, RatHandle):
        raise rioserrors.ParameterError(
            f"expected a RatHandle in the RAT associations, got {type(handle).__name__}")


# ---------------------------------------------------------------------------------------
# Per-block column access
# ---------------------------------------------------------------------------------------

class RatBlockAssociation:
    """Columns of one handle for the current block: read lazily (inputs) or queued (outputs)."""

    def __init__(self, state, filehandles, isinput, useStringDType=False):
        self.__dict__.update(_state=state, _fh=filehandles, _isinput=isinput,
                             _useStringDType=useStringDType, _usages={})

    def __getattr__(self, colName):
        if colName.startswith("_"):
            raise AttributeError(colName)
        if not self._isinput:
            raise AttributeError(
                f"output column {colName!r} of {self._fh.name} has not been set in this block")
        values = self._read(colName)
        self.__dict__[colName] = values
        return values

    def _read(self, colName):
        rat = self._fh.rat
        idx = findColumn(rat, colName)
        if idx < 0:
            raise missingColumnError(colName, self._fh.handle.filename, rat)
        state = self._state
        return readRatValues(rat, idx, state.startrow, state.blockLen, self._useStringDType)

    def setUsage(self, colName, usage):
        """Set the GDAL usage (GFU_*) given to ``colName`` if it has to be created."""
        self._usages[colName] = usage

    def getUsage(self, colName):
        """The usage set for ``colName`` (GFU_Generic if none)."""
        return self._usages.get(colName, gdal.GFU_Generic)

    def columnValues(self):
        """The columns read or queued in this block, by name."""
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def clearBlock(self):
        for name in list(self.columnValues()):
            del self.__dict__[name]

    clearCache = clearBlock

    def writeCache(self, rowCount, controls):
        """Write this block's queued output columns at the handle's output row."""
        _writeOutputBlock(self, rowCount, controls)

    def finaliseRowCount(self):
        """Trim an output RAT to the rows written (and keep it on its band)."""
        self._fh.finishOutput()

    def guessNewRowCount(self, nrows, rowCount, controls):
        """The row count the output RAT needs before ``nrows`` more rows are written."""
        return _newRowCount(self._fh, nrows, rowCount, controls)

    @staticmethod
    def checkZarrfileParams(blockLen):
        """The chunk length a Zarr RAT would get for ``blockLen`` (RatBlockLengthError
        when none fits); Zarr RATs themselves are not supported here."""
        return zarrChunkSize(blockLen)


def _blockArrays(assoc):
    """The queued output columns as 1-D arrays of one common length."""
    arrays = {}
    for name, values in assoc.columnValues().items():
        arr = numpy.asarray(values)
        if arr.ndim != 1:
            raise rioserrors.ArrayShapeError(
                f"output column {name!r} of {assoc._fh.name} must be 1-D, got shape {arr.shape}")
        arrays[name] = arr
    lengths = {name: len(arr) for name, arr in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise rioserrors.RatBlockLengthError(
            f"output columns for {assoc._fh.name} have different lengths in block "
            f"{assoc._state.blockNdx}: {lengths}")
    return arrays


class BlockCollection:
    """One :class:`RatBlockAssociation` attribute per handle name."""

    def __init__(self, rats, fhcollection, state, isinput, useStringDType=False):
        for name in (rats.getRatList() if rats is not None else []):
            fh = fhcollection[getattr(rats, name)]
            setattr(self, name, RatBlockAssociation(state, fh, isinput, useStringDType))

    def associations(self):
        return list(self.__dict__.values())

    def clearBlock(self):
        for assoc in self.associations():
            assoc.clearBlock()

    clearCache = clearBlock

    def writeCache(self, rowCount, controls):
        """Write every handle's queued output columns (see RatBlockAssociation)."""
        for assoc in self.associations():
            assoc.writeCache(rowCount, controls)

    def finaliseRowCount(self):
        """Trim every output RAT to the rows written."""
        for assoc in self.associations():
            assoc.finaliseRowCount()


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------

def _growRows(fh, nrows, rowCount, controls):
    """Make room in an output RAT for ``nrows`` more rows at its output position."""
    current = fh.rat.GetRowCount()
    target = _newRowCount(fh, nrows, rowCount, controls)
    if target != current and (controls.outputRowCountMethod == RCM_FIXED or target > current):
        setRatRowCount(fh.rat, target)


def _newRowCount(fh, nrows, rowCount, controls):
    """The row count an output RAT must have to take ``nrows`` more rows."""
    needed = fh.outrow + nrows
    current = fh.rat.GetRowCount()
    method = controls.outputRowCountMethod
    if method == RCM_FIXED:
        total = int(controls.outputTotalSize)
        if needed > total:
            raise rioserrors.RatBlockLengthError(
                f"output {fh.name} is fixed at {total} rows (RCM_FIXED) but block writes "
                f"rows {fh.outrow}..{needed - 1}")
        target = total
    elif method == RCM_INCREMENT:
        step = max(nrows, int(controls.outputIncrementSize or 0))
        target = current + step if needed > current else current
    else:
        target = max(needed, rowCount)
    return target


def _outputColumn(fh, assoc, name, arr):
    idx = findColumn(fh.rat, name)
    if idx >= 0:
        return idx
    colType = inferColumnType(arr)
    if colType is None:
        kind = arr.dtype if arr.size == 0 else type(arr[0]).__name__
        raise rioserrors.AttributeTableTypeError(
            f"cannot infer a column type for new column {name!r} of {fh.name} from {kind}")
    return findOrCreateNamedColumn(fh.rat, name, colType, assoc.getUsage(name))


def _writeOutputBlock(assoc, rowCount, controls):
    arrays = _blockArrays(assoc)
    if not arrays:
        return
    fh = assoc._fh
    nrows = len(next(iter(arrays.values())))
    _growRows(fh, nrows, rowCount, controls)
    for name, arr in arrays.items():
        idx = _outputColumn(fh, assoc, name, arr)
        values = prepareValuesForRat(arr, fh.rat.GetTypeOfCol(idx),
                                        fh.rat.GetUsageOfCol(idx), name)
        if nrows:
            writeRatRows(fh.rat, values, idx, fh.outrow)
    fh.outrow += nrows
    fh.written = True


# ---------------------------------------------------------------------------------------
# apply
# ---------------------------------------------------------------------------------------

class _Progress:
    """Reports percentages to a progress object, only when they change."""

    def __init__(self, progress, numBlocks):
        self.progress = progress
        self.numBlocks = numBlocks
        self.last = 0
        if progress is not None:
            progress.setTotalSteps(100)
            progress.setProgress(0)

    def blockDone(self, i):
        if self.progress is None:
            return
        percent = int(i * 100 / self.numBlocks)
        if percent != self.last:
            self.progress.setProgress(percent)
            self.last = percent

    def finish(self):
        if self.progress is not None:
            self.progress.setProgress(100)


def _runBlocks(userFunc, otherargs, controls, state, inputs, outputs):
    blockLen = controls.blockLen
    numBlocks = math.ceil(state.rowCount / blockLen)
    progress = _Progress(controls.progress, numBlocks)
    extra = () if otherargs is None else (otherargs,)
    for i in range(numBlocks):
        state.setBlock(i, blockLen)
        inputs.clearBlock()
        outputs.clearBlock()
        userFunc(state, inputs, outputs, *extra)
        for assoc in outputs.associations():
            _writeOutputBlock(assoc, state.rowCount, controls)
        progress.blockDone(i)
    progress.finish()


def apply(userFunc, inRats, outRats, otherargs=None, controls=None):
    """Call ``userFunc`` over blocks of RAT rows, reading inputs and writing outputs."""
    if controls is None:
        controls = RatApplierControls()
    if not isinstance(controls, RatApplierControls):
        raise rioserrors.WrongControlsObject(
            f"controls must be a RatApplierControls, got {type(controls).__name__}")
    useStringDType = controls.useStringDType and _stringDtypeAvailable()
    fhcollection = FileHandlesCollection(inRats, outRats)
    try:
        rowCount = fhcollection.getRowCount(inRats or RatAssociations(), controls)
        state = RatApplierState(rowCount)
        inputs = BlockCollection(inRats, fhcollection, state, True, useStringDType)
        outputs = BlockCollection(outRats, fhcollection, state, False)
        _runBlocks(userFunc, otherargs, controls, state, inputs, outputs)
        fhcollection.finishOutputs()
    finally:
        fhcollection.close()


# ---------------------------------------------------------------------------------------
# copyRAT and helpers
# ---------------------------------------------------------------------------------------

def zarrChunkSize(blockLen):
    """A Zarr chunk length dividing ``blockLen``, between 100000 and 999999 if possible."""
    j = math.ceil(blockLen / _ZARR_MAX_CHUNK)
    while blockLen % j != 0 and blockLen / j > _ZARR_MIN_CHUNK:
        j += 1
    if blockLen % j != 0:
        raise rioserrors.RatBlockLengthError(
            f"no Zarr chunk size divides the block length {blockLen}; choose a block length "
            f"with a divisor between {_ZARR_MIN_CHUNK} and {_ZARR_MAX_CHUNK}")
    return blockLen // j


def internalCopyRAT(info, inputs, outputs, otherargs):
    """User function of :func:`copyRAT`: copy the listed columns block by block."""
    for name in otherargs.columns:
        setattr(outputs.outrat, name, getattr(inputs.inrat, name))


def _asHandle(fileOrHandle):
    if isinstance(fileOrHandle, (RatHandle, RatZarrHandle)):
        _checkHandle(fileOrHandle)
        return fileOrHandle
    return RatHandle(fileOrHandle)


def _columnSpecs(handle, omit):
    """(name, type, usage) of each input column not omitted."""
    ds = openDataset(handle.filename, update=False)
    try:
        rat = getBand(ds, handle.layernum).GetDefaultRAT()
        return [(name, rat.GetTypeOfCol(i), rat.GetUsageOfCol(i))
                for i, name in enumerate(ratColumnNames(rat)) if name not in omit]
    finally:
        del ds


def _createOutputColumns(handle, specs):
    """Create the output columns with the input's types and usages before copying."""
    ds = openDataset(handle.filename, update=True)
    try:
        fh = FileHandles(handle, ds, None)
        for name, coltype, usage in specs:
            findOrCreateNamedColumn(fh.rat, name, coltype, usage)
        setRatOnBand(fh.band, fh.rat)
        fh.rat = fh.band = fh.ds = None
        ds.FlushCache()
    finally:
        del ds


def copyRAT(infile, outfile, progress=None, omitColumns=None):
    """Copy the RAT columns (with types and usages) of one file to another."""
    inHandle = _asHandle(infile)
    outHandle = _asHandle(outfile)
    specs = _columnSpecs(inHandle, set(omitColumns or ()))
    _createOutputColumns(outHandle, specs)
    inRats = RatAssociations()
    inRats.inrat = inHandle
    outRats = RatAssociations()
    outRats.outrat = outHandle
    otherargs = OtherArguments()
    otherargs.columns = [name for name, _, _ in specs]
    controls = RatApplierControls()
    controls.setProgress(progress)
    apply(internalCopyRAT, inRats, outRats, otherargs, controls)
