"""Read and write raster attribute table (RAT) columns, and small colour tables.

Functions named ``...FromBand``/``...ToBand`` take an open GDAL band; the others take a
filename (or an open ``gdal.Dataset``) and a band number, and close any file they opened.
"""
import os
import warnings

import numpy
from osgeo import gdal

from sharedapplier import rioserrors
from sharedapplier.const import DEFAULT_AUTOCOLORTABLETYPE  # noqa: F401 - part of the API

MAX_RECOMMENDED_COLOR_TABLE = 256

COLOR_USAGES = (gdal.GFU_Red, gdal.GFU_Green, gdal.GFU_Blue, gdal.GFU_Alpha)
VALID_COLUMN_TYPES = (gdal.GFT_Integer, gdal.GFT_Real, gdal.GFT_String)
_TYPE_NAMES = {gdal.GFT_Integer: "GFT_Integer", gdal.GFT_Real: "GFT_Real",
               gdal.GFT_String: "GFT_String"}
_INT32_MIN, _INT32_MAX = -2 ** 31, 2 ** 31 - 1
_NP_STRINGS = getattr(numpy, "strings", numpy.char)
_GDAL_RAT_OFFSET_BUG = int(gdal.VersionInfo("VERSION_NUM")) < 3080000


# ---------------------------------------------------------------------------------------
# Opening files and bands (helpers shared with colortable and ratapplier)
# ---------------------------------------------------------------------------------------

def openDataset(imgFile, update=False):
    """Open a raster with GDAL; raise FileOpenError naming the file if that fails."""
    mode = gdal.GA_Update if update else gdal.GA_ReadOnly
    name = os.fspath(imgFile)
    try:
        ds = gdal.Open(name, mode)
    except RuntimeError as exc:
        raise rioserrors.FileOpenError(f"cannot open {name!r}: {exc}") from exc
    if ds is None:
        raise rioserrors.FileOpenError(f"cannot open {name!r}: {gdal.GetLastErrorMsg()}")
    return ds


def getBand(ds, bandNumber):
    """The band ``bandNumber`` (1-based) of ``ds``, or GDALLayerNumberError."""
    count = ds.RasterCount
    if not 1 <= int(bandNumber) <= count:
        raise rioserrors.GDALLayerNumberError(
            f"band {bandNumber} requested from {ds.GetDescription()!r}, "
            f"which has {count} band(s)")
    return ds.GetRasterBand(int(bandNumber))


def withBand(imgFile, bandNumber, update, func):
    """Call ``func(band)`` on a band of a file or dataset; close the file if we opened it."""
    if isinstance(imgFile, gdal.Dataset):
        return func(getBand(imgFile, bandNumber))
    ds = openDataset(imgFile, update)
    try:
        return func(getBand(ds, bandNumber))
    finally:
        ds.FlushCache()
        del ds


def bandFileName(gdalBand):
    """The file name of the dataset a band belongs to (for messages)."""
    try:
        return gdalBand.GetDataset().GetDescription()
    except (AttributeError, RuntimeError):
        return "<unknown file>"


# ---------------------------------------------------------------------------------------
# Column lookup and value conversion
# ---------------------------------------------------------------------------------------

def ratColumnNames(rat):
    """The names of all columns of a RAT (empty list for None)."""
    if rat is None:
        return []
    return [rat.GetNameOfCol(i) for i in range(rat.GetColumnCount())]


def findColumn(rat, colName):
    """Index of the column called ``colName``, or -1."""
    names = ratColumnNames(rat)
    return names.index(colName) if colName in names else -1


def missingColumnError(colName, filename, rat):
    """An AttributeTableColumnError naming the column, the file and the existing columns."""
    existing = ratColumnNames(rat)
    return rioserrors.AttributeTableColumnError(
        f"column {colName!r} not found in the raster attribute table of {filename!r}; "
        f"existing columns: {existing}")


def isColorColFromUsage(usage):
    """True if a column usage is one of the Red, Green, Blue or Alpha usages."""
    return usage in COLOR_USAGES


def toStringDtype(values):
    """Decode a fixed-width bytes array (UTF-8) into numpy's StringDType."""
    if not hasattr(numpy, "dtypes") or not hasattr(numpy.dtypes, "StringDType"):
        return values
    decoded = _NP_STRINGS.decode(values, "utf-8", errors="replace")
    return decoded.astype(numpy.dtypes.StringDType())


def _offsetIoIsBroken(rat, start):
    """True where GDAL's generic in-memory RAT mis-handles a start row other than 0.

    Before GDAL 3.8 the base ``ValuesIO`` indexes the caller's buffer by absolute row,
    so reads return garbage and writes read past the buffer. Driver tables (HFA, KEA)
    have their own ``ValuesIO`` and report that they write through to the file.
    """
    return start > 0 and _GDAL_RAT_OFFSET_BUG and not rat.ChangesAreWrittenToFile()


def readRatRows(rat, colIdx, start, length):
    """Rows ``start:start+length`` of a RAT column, as GDAL returns them."""
    if _offsetIoIsBroken(rat, start):
        return rat.ReadAsArray(colIdx, 0, start + length)[start:]
    return rat.ReadAsArray(colIdx, start, length)


def writeRatRows(rat, values, colIdx, start=0):
    """Write ``values`` into a RAT column from row ``start`` on."""
    if _offsetIoIsBroken(rat, start):
        values = numpy.concatenate([rat.ReadAsArray(colIdx, 0, start), values])
        start = 0
    rat.WriteArray(values, colIdx, start)


def readRatValues(rat, colIdx, start=0, length=None, useStringDType=False):
    """Read rows of a RAT column, scaling real colour columns to 0..255 integers."""
    if length is None:
        length = rat.GetRowCount() - start
    values = readRatRows(rat, colIdx, start, length)
    coltype = rat.GetTypeOfCol(colIdx)
    if coltype == gdal.GFT_Real and isColorColFromUsage(rat.GetUsageOfCol(colIdx)):
        values = numpy.round(values * 255).astype(numpy.int32)
    elif coltype == gdal.GFT_String and useStringDType:
        values = toStringDtype(values)
    return values


def _isStringDtype(dtype):
    return dtype.kind in ("U", "T")


def _encodeStrings(arr):
    """Turn unicode or StringDType arrays into UTF-8 fixed-width bytes."""
    if _isStringDtype(arr.dtype):
        return _NP_STRINGS.encode(arr, "utf-8")
    if arr.dtype.kind == "O":
        items = [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in arr]
        return numpy.array(items, dtype=bytes) if items else numpy.array([], dtype="S1")
    return arr


def _checkedInts(arr, colName):
    if arr.size and (arr.min() < _INT32_MIN or arr.max() > _INT32_MAX):
        raise rioserrors.AttributeTableTypeError(
            f"values for integer column {colName!r} do not fit in 32 bits "
            f"(range {arr.min()}..{arr.max()}); write them to a real column instead")
    return arr


def _numericValues(arr, coltype, usage, colName):
    """Values for an integer or real column (ints into real colour columns become 0..1)."""
    if arr.dtype.kind == "O":
        arr = numpy.asarray(arr.tolist())
    if arr.dtype.kind not in "iuf":
        typename = _TYPE_NAMES.get(coltype, str(coltype))
        raise rioserrors.AttributeTableTypeError(
            f"cannot write values of dtype {arr.dtype} to the {typename} column {colName!r}")
    if coltype == gdal.GFT_Real:
        if isColorColFromUsage(usage) and arr.dtype.kind in "iu":
            return arr.astype(numpy.float64) / 255.0
        return arr.astype(numpy.float64)
    if arr.dtype.kind in "iu":
        return _checkedInts(arr, colName)
    return arr


def prepareValuesForRat(sequence, coltype, usage, colName=""):
    """Convert a sequence into an array GDAL can write to a column of the given type/usage."""
    arr = numpy.asarray(sequence)
    if arr.ndim != 1:
        raise rioserrors.ArrayShapeError(
            f"values for column {colName!r} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind == "b":
        arr = arr.astype(numpy.int32)
    if coltype == gdal.GFT_String:
        return _encodeStrings(arr)
    return _numericValues(arr, coltype, usage, colName)

# ---------------------------------------------------------------------------------------
# Column reading
# ---------------------------------------------------------------------------------------

def readColumnFromBand(gdalBand, colName, useStringDType=False):
    """Read a whole RAT column of a band as a numpy array."""
    rat = gdalBand.GetDefaultRAT()
    idx = findColumn(rat, colName)
    if idx < 0:
        raise missingColumnError(colName, bandFileName(gdalBand), rat)
    return readRatValues(rat, idx, useStringDType=useStringDType)


def readColumn(imgFile, colName, bandNumber=1, useStringDType=False):
    """Read a whole RAT column from a file (or open dataset)."""
    return withBand(imgFile, bandNumber, False,
                     lambda band: readColumnFromBand(band, colName, useStringDType))


def getColumnNamesFromBand(gdalBand):
    """The names of the RAT columns of a band (empty when it has no RAT)."""
    return ratColumnNames(gdalBand.GetDefaultRAT())


def getColumnNames(imgFile, bandNumber=1):
    """The names of the RAT columns of a band of a file (or open dataset)."""
    return withBand(imgFile, bandNumber, False, getColumnNamesFromBand)


def getUsageOfColumnFromBand(gdalBand, colName):
    """The GDAL usage code (GFU_*) of a RAT column."""
    rat = gdalBand.GetDefaultRAT()
    idx = findColumn(rat, colName)
    if idx < 0:
        raise missingColumnError(colName, bandFileName(gdalBand), rat)
    return rat.GetUsageOfCol(idx)


def getUsageOfColumn(imgFile, colName, bandNumber=1):
    """The GDAL usage code of a RAT column of a file (or open dataset)."""
    return withBand(imgFile, bandNumber, False,
                     lambda band: getUsageOfColumnFromBand(band, colName))


# ---------------------------------------------------------------------------------------
# Column writing
# ---------------------------------------------------------------------------------------

def inferColumnType(sequence):
    """The GDAL column type (GFT_*) suited to a sequence, judged by its first element."""
    if len(sequence) == 0:
        return _inferFromDtype(getattr(sequence, "dtype", None))
    first = sequence[0]
    if isinstance(first, numpy.bool_):
        return None
    if isinstance(first, (int, numpy.integer)):
        return gdal.GFT_Integer
    if isinstance(first, (float, numpy.floating)):
        return gdal.GFT_Real
    if isinstance(first, (str, bytes)):
        return gdal.GFT_String
    return None


def _inferFromDtype(dtype):
    if dtype is None:
        return None
    kinds = {"i": gdal.GFT_Integer, "u": gdal.GFT_Integer, "f": gdal.GFT_Real,
             "U": gdal.GFT_String, "S": gdal.GFT_String, "T": gdal.GFT_String}
    return kinds.get(dtype.kind)


def checkedColumnType(colName, sequence, colType):
    """The column type to use (inferred if None); AttributeTableTypeError if unusable."""
    if colType is None:
        colType = inferColumnType(sequence)
        if colType is None:
            first = type(sequence[0]).__name__ if len(sequence) else "an empty sequence"
            raise rioserrors.AttributeTableTypeError(
                f"cannot infer a column type for {colName!r} from {first}; "
                "pass colType=gdal.GFT_Integer, GFT_Real or GFT_String")
    if colType not in VALID_COLUMN_TYPES:
        raise rioserrors.AttributeTableTypeError(
            f"invalid column type {colType!r} for {colName!r}; "
            "use gdal.GFT_Integer, GFT_Real or GFT_String")
    return colType


def _blankValues(colType, count):
    if colType == gdal.GFT_String:
        return numpy.full(count, b"", dtype="S1")
    if colType == gdal.GFT_Real:
        return numpy.zeros(count, dtype=numpy.float64)
    return numpy.zeros(count, dtype=numpy.int32)


def _fillRows(rat, colIdx, start, stop):
    """Write blanks to rows start..stop-1 of a driver (write-through) table.

    HFA allocates space for new rows without writing it, and later fails to read rows
    that were never written; in-memory tables start out zeroed and need no fill.
    """
    if stop > start and rat.ChangesAreWrittenToFile():
        writeRatRows(rat, _blankValues(rat.GetTypeOfCol(colIdx), stop - start), colIdx, start)


def createColumn(rat, colName, colType, colUsage):
    """Append a column (blank in every existing row) and return its index."""
    rat.CreateColumn(colName, colType, colUsage)
    idx = rat.GetColumnCount() - 1
    _fillRows(rat, idx, 0, rat.GetRowCount())
    return idx


def findOrCreateNamedColumn(rat, colName, colType, colUsage):
    """Index of ``colName`` in ``rat``, creating the column if it is missing."""
    idx = findColumn(rat, colName)
    return idx if idx >= 0 else createColumn(rat, colName, colType, colUsage)


def setRatRowCount(rat, count):
    """Set a RAT's row count; rows added to a driver table are written as blanks."""
    old = rat.GetRowCount()
    if count == old:
        return
    rat.SetRowCount(count)
    for idx in range(rat.GetColumnCount()):
        _fillRows(rat, idx, old, count)


def ratForUpdate(gdalBand):
    """The band's RAT, copied when it lives in memory only, or a new empty table.

    A copy is needed because putting a table back on the band frees the band's own one.
    """
    rat = gdalBand.GetDefaultRAT()
    if rat is None:
        return gdal.RasterAttributeTable()
    return rat if rat.ChangesAreWrittenToFile() else rat.Clone()


def setRatOnBand(gdalBand, rat):
    """Put an in-memory RAT back on its band (quietly, as not all drivers support it)."""
    if rat.ChangesAreWrittenToFile():
        return
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        gdalBand.SetDefaultRAT(rat)
    except RuntimeError:
        pass
    finally:
        gdal.PopErrorHandler()


def _rowCountForBand(gdalBand, colName, nvalues):
    if gdalBand.DataType != gdal.GDT_Byte:
        return nvalues
    if nvalues > 256:
        raise rioserrors.ArrayShapeError(
            f"column {colName!r} has {nvalues} values, but the raster attribute table of "
            f"the Byte band of {bandFileName(gdalBand)!r} has exactly 256 rows")
    return 256


def writeColumnToBand(gdalBand, colName, sequence, colType=None, colUsage=gdal.GFU_Generic):
    """Write a sequence into a RAT column of a band, creating the column if needed.

    The row count of the RAT is set to the sequence length (always 256 for Byte bands).
    """
    if isinstance(sequence, numpy.ndarray) and sequence.ndim != 1:
        raise rioserrors.ArrayShapeError(
            f"values for column {colName!r} must be 1-D, got shape {sequence.shape}")
    colType = checkedColumnType(colName, sequence, colType)
    rat = ratForUpdate(gdalBand)
    idx = findOrCreateNamedColumn(rat, colName, colType, colUsage)
    values = prepareValuesForRat(sequence, rat.GetTypeOfCol(idx), rat.GetUsageOfCol(idx),
                                    colName)
    setRatRowCount(rat, _rowCountForBand(gdalBand, colName, len(values)))
    rat.WriteArray(values, idx)
    setRatOnBand(gdalBand, rat)


def writeColumn(imgFile, colName, sequence, colType=None, bandNumber=1,
                colUsage=gdal.GFU_Generic):
    """Write a sequence into a RAT column of a file (opened for update) or dataset."""
    withBand(imgFile, bandNumber, True,
              lambda band: writeColumnToBand(band, colName, sequence, colType, colUsage))


# ---------------------------------------------------------------------------------------
# Colour tables (GDAL colour-table API)
# ---------------------------------------------------------------------------------------

def _colorTableArray(gdalBand):
    ct = gdalBand.GetColorTable()
    if ct is None:
        raise rioserrors.AttributeTableColumnError(
            f"band {gdalBand.GetBand()} of {bandFileName(gdalBand)!r} has no colour table")
    count = ct.GetCount()
    table = numpy.zeros((count, 5), dtype=numpy.int32)
    table[:, 0] = numpy.arange(count)
    for i in range(count):
        table[i, 1:] = ct.GetColorEntry(i)[:4]
    return table


def getColorTable(imgFile, bandNumber=1):
    """The colour table of a band as an int array of rows (value, R, G, B, alpha)."""
    return withBand(imgFile, bandNumber, False, _colorTableArray)


def _splitColorTable(colorTblArray):
    """(values, colours) from a 5-column (value, R, G, B, A) or legacy 4-column table."""
    arr = numpy.asarray(colorTblArray)
    if arr.ndim != 2 or arr.shape[1] not in (4, 5) or arr.shape[0] == 0:
        raise rioserrors.ArrayShapeError(
            "a colour table must be a non-empty 2-D array with 5 columns (value, R, G, B, "
            f"alpha) or 4 columns (R, G, B, alpha); got shape {arr.shape}")
    if arr.shape[1] == 4:
        return numpy.arange(arr.shape[0]), arr
    return arr[:, 0], arr[:, 1:]


def _checkColorValues(values, colours):
    if not numpy.all(numpy.equal(numpy.mod(values, 1), 0)) or values.min() < 0:
        raise rioserrors.ParameterError(
            "colour table values must be non-negative integers; got "
            f"{values.min()}..{values.max()}")
    if colours.min() < 0 or colours.max() > 255:
        raise rioserrors.ParameterError(
            f"colour components must lie in 0..255; got {colours.min()}..{colours.max()}")


def _fullColorTable(colorTblArray, isByte):
    """A dense (N, 4) table indexed by pixel value; gaps are (0, 0, 0, 0)."""
    values, colours = _splitColorTable(colorTblArray)
    _checkColorValues(values, colours)
    values = values.astype(numpy.int64)
    size = int(values.max()) + 1
    if isByte:
        size = max(size, 256)
    full = numpy.zeros((size, 4), dtype=numpy.int32)
    order = numpy.argsort(values, kind="stable")
    full[values[order]] = colours[order]
    return full


def _setColorTableOnBand(gdalBand, colorTblArray):
    full = _fullColorTable(colorTblArray, gdalBand.DataType == gdal.GDT_Byte)
    if len(full) > MAX_RECOMMENDED_COLOR_TABLE:
        warnings.warn(
            f"a colour table of {len(full)} entries is large for GDAL's colour-table API; "
            "use sharedapplier.colortable.setTable, which stores colours in the RAT",
            DeprecationWarning, stacklevel=5)
    ct = gdal.ColorTable()
    for i, entry in enumerate(full.tolist()):
        ct.SetColorEntry(i, tuple(entry))
    gdalBand.SetColorTable(ct)


def setColorTable(imgfile, colorTblArray, layernum=1):
    """Set a band's colour table from rows (value, R, G, B, alpha) or legacy (R, G, B, A)."""
    withBand(imgfile, layernum, True,
              lambda band: _setColorTableOnBand(band, colorTblArray))


# ---------------------------------------------------------------------------------------
# Generated colour tables
# ---------------------------------------------------------------------------------------

def _ramp(start, stop, num):
    """An evenly spaced inclusive ramp, truncated to integers."""
    return numpy.linspace(start, stop, num).astype(numpy.int64)


def genColorTable_rainbow(numEntries):
    """A (numEntries, 4) uint32 table blending red to green to blue."""
    table = numpy.zeros((numEntries, 4), dtype=numpy.uint32)
    half = numEntries // 2
    rest = numEntries - half
    table[:half, 0] = _ramp(255, 0, half)
    table[:half, 1] = _ramp(0, 255, half)
    table[half:, 1] = _ramp(255, 0, rest)
    table[half:, 2] = _ramp(0, 255, rest)
    table[:, 3] = 255
    return table


def genColorTable_gray(numEntries):
    """A (numEntries, 4) uint8 table from black to white."""
    table = numpy.zeros((numEntries, 4), dtype=numpy.uint8)
    table[:, :3] = _ramp(0, 255, numEntries)[:, numpy.newaxis]
    table[:, 3] = 255
    return table


def genColorTable_random(numEntries):
    """A (numEntries, 4) uint8 table of random colours (alpha 255)."""
    table = numpy.zeros((numEntries, 4), dtype=numpy.uint8)
    table[:, :3] = numpy.random.default_rng().integers(0, 256, size=(numEntries, 3))
    table[:, 3] = 255
    return table


_GENERATORS = {"rainbow": genColorTable_rainbow, "gray": genColorTable_gray,
               "random": genColorTable_random}


def genColorTable(numEntries, colortype):
    """A (numEntries, 4) colour table of type 'rainbow', 'gray' or 'random'."""
    if colortype not in _GENERATORS:
        raise rioserrors.ColorTableGenerationError(
            f"unknown colour table type {colortype!r}; valid types: {sorted(_GENERATORS)}")
    return _GENERATORS[colortype](numEntries)
