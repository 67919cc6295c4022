"""Pixel/world coordinate helpers (RIOS's ``imageio``), the footprint constants, and the
block transfers between GDAL datasets and numpy arrays that every stage of the engine uses.
"""
import errno
import functools
import glob
import os

try:
    import resource
except ImportError:  # Windows: no per-process file size limit to report
    resource = None

import numpy
from osgeo import gdal, gdal_array

from sharedapplier import rioserrors
from sharedapplier.const import BOUNDS_FROM_REFERENCE, INTERSECTION, UNION

__all__ = ["Coord", "wld2pix", "pix2wld", "INTERSECTION", "UNION", "BOUNDS_FROM_REFERENCE",
           "GDALTypeToNumpyType", "NumpyTypeToGDALType"]


class Coord:
    """A pair of coordinates: world x/y, or fractional pixel column/row."""

    def __init__(self, x: float, y: float):
        self.x = x
        self.y = y

    def __repr__(self):
        return f"Coord({self.x}, {self.y})"

    def __eq__(self, other):
        if not isinstance(other, Coord):
            return NotImplemented
        return (self.x, self.y) == (other.x, other.y)

    def __hash__(self):
        return hash((self.x, self.y))


def wld2pix(transform, geox: float, geoy: float) -> Coord:
    """World coordinates to fractional pixel (column, row), by the inverse geotransform."""
    inverse = gdal.InvGeoTransform(tuple(transform))
    if inverse is not None and len(inverse) == 2:  # old bindings return (ok, transform)
        inverse = inverse[1] if inverse[0] else None
    if inverse is None:
        raise ValueError(f"geotransform {tuple(transform)} cannot be inverted "
                         "(its pixel size is zero): give a valid geotransform")
    col, row = gdal.ApplyGeoTransform(inverse, geox, geoy)
    return Coord(col, row)


def pix2wld(transform, x: float, y: float) -> Coord:
    """Pixel (column, row) to world coordinates by the geotransform."""
    geox, geoy = gdal.ApplyGeoTransform(tuple(transform), x, y)
    return Coord(geox, geoy)


@functools.lru_cache(maxsize=64)
def gdalTypeOf(dtype: numpy.dtype) -> int | None:
    """The GDAL data type of a numpy dtype, or None when GDAL has none (bool, object...)."""
    if dtype == numpy.bool_:
        return None
    return gdal_array.NumericTypeCodeToGDALTypeCode(dtype) or None


def NumpyTypeToGDALType(numpytype) -> int:
    """The GDAL type code (``gdal.GDT_*``) for a numpy type, dtype or type name.

    Raises :class:`~sharedapplier.rioserrors.TypeConversionError` when GDAL has no such type.
    """
    try:
        dtype = numpy.dtype(numpytype)
    except TypeError as e:
        raise rioserrors.TypeConversionError(f"{numpytype!r} is not a numpy type") from e
    code = gdalTypeOf(dtype)
    if code is None:
        raise rioserrors.TypeConversionError(
            f"numpy type {dtype} has no GDAL equivalent; convert the array first, e.g. "
            "arr.astype(numpy.uint8)")
    return code


def GDALTypeToNumpyType(gdaltype: int) -> type:
    """The numpy scalar type (e.g. ``numpy.uint8``) for a GDAL type code.

    Raises :class:`~sharedapplier.rioserrors.TypeConversionError` for an unknown code.
    """
    numpytype = gdal_array.GDALTypeCodeToNumericTypeCode(gdaltype)
    if numpytype is None:
        raise rioserrors.TypeConversionError(
            f"GDAL type code {gdaltype!r} has no numpy equivalent (use gdal.GDT_* constants)")
    return numpytype


def readWindowInto(ds: gdal.Dataset, xoff: int, yoff: int, target: numpy.ndarray,
                   bandList: list, filename: str | None = None) -> numpy.ndarray:
    """Read the window of ``ds`` at (xoff, yoff) with ``target``'s shape (bands, rows, cols)
    straight into ``target``, which may be a strided view (a slot, or a window inside it).

    This is the call ``Dataset.ReadAsArray(buf_obj=...)`` makes, without its per-call
    argument handling: blocks are read tens of thousands of times a run. A failure raises
    :class:`~sharedapplier.rioserrors.ImageReadError` naming ``filename`` (by default the
    dataset's description) with GDAL's reason.
    """
    _rasterIO(ds, 0, xoff, yoff, target, bandList, filename)
    return target


def writeWindow(ds: gdal.Dataset, arr: numpy.ndarray, xoff: int, yoff: int):
    """Write ``arr`` (bands, rows, cols), possibly a strided view, to ``ds`` at (xoff, yoff).

    A failure raises :class:`~sharedapplier.rioserrors.ImageWriteError` with GDAL's reason.
    """
    _rasterIO(ds, 1, xoff, yoff, arr, list(range(1, arr.shape[0] + 1)))


def _rasterIO(ds, write, xoff, yoff, arr, bandList, filename=None):
    _, nrows, ncols = arr.shape
    name = ds.GetDescription() if filename is None else filename
    window = f"the window ({xoff}, {yoff}, {ncols}x{nrows}) of '{name}'"
    if write:
        errors = GdalErrorsAs(rioserrors.ImageWriteError, f"GDAL could not write {window}",
                              outputFile=name)
    else:
        errors = GdalErrorsAs(rioserrors.ImageReadError,
                              f"GDAL could not read {window} (the file may be truncated or "
                              "damaged: 'gdalinfo -checksum' reads all of it)")
    with errors:
        status = gdal_array.DatasetIONumPy(ds, write, xoff, yoff, ncols, nrows, arr,
                                           gdalTypeOf(arr.dtype), gdal.GRIORA_NearestNeighbour,
                                           None, None, True, bandList)
        if status != 0:
            raise RuntimeError(f"RasterIO returned status {status}")  # GDAL said nothing


class GdalErrorsAs:
    """A ``with`` block in which GDAL failing raises ``errorClass``, naming ``what`` and
    giving GDAL's own reason, whatever the script's ``gdal.UseExceptions`` setting.

    GDAL's reason is easily lost: with exceptions on, the next GDAL call clears the last
    error, and a failure often comes as several messages of which the last says least
    ("IReadBlock failed" after "ZIPDecode: Decoding error"). So the block pushes an error
    handler of its own (GDAL keeps one stack per thread) that keeps every failure; other
    messages go on to the previous handler when the block ends. GDAL's ``RuntimeError``
    raised in the block, or a last GDAL call that failed, becomes ``errorClass``.

    ``outputFile`` names a file being written: GDAL drivers do not always say why the
    system refused a write, so a full file system or the process's file size limit is
    named when that is what happened.
    """

    def __init__(self, errorClass: type, what: str, outputFile: str | None = None):
        self.errorClass = errorClass
        self.what = what
        self.outputFile = outputFile
        self.failures = []
        self.others = []

    def __enter__(self):
        gdal.ErrorReset()
        gdal.PushErrorHandler(self._keep)
        gdal.SetCurrentErrorHandlerCatchDebug(False)
        return self

    def _keep(self, errClass, errNo, message):
        if errClass >= gdal.CE_Failure:
            self.failures.append(" ".join(message.split()))
        else:
            self.others.append((errClass, errNo, message))

    def __exit__(self, excType, exc, tb):
        lastFailed = gdal.GetLastErrorType() >= gdal.CE_Failure
        lastMessage = gdal.GetLastErrorMsg() if lastFailed else ""
        gdal.PopErrorHandler()
        for errClass, errNo, message in self.others:
            gdal.Error(errClass, errNo, message)
        if type(exc) is RuntimeError or (exc is None and lastFailed):
            reason = "; ".join(dict.fromkeys(self.failures)) or str(exc or lastMessage)
            if self.outputFile is not None:
                refusal = writeRefusal(self.outputFile)
                reason += f" ({refusal})" if refusal else ""
            raise self.errorClass(f"{self.what}: {reason}") from exc
        return False


# A file system with less than this free is taken to be what refused a write.
NEARLY_FULL_BYTES = 2**20


def writeRefusal(filename: str) -> str:
    """Why the system would refuse writes to ``filename`` now, or "" when no reason shows:
    its file system is full, or one of its files has reached the process's size limit."""
    folder = os.path.dirname(os.path.abspath(filename))
    try:
        fs = os.statvfs(folder)
    except (OSError, AttributeError):  # AttributeError: Windows has no statvfs
        return ""
    if fs.f_bavail * fs.f_frsize < NEARLY_FULL_BYTES:
        return f"{os.strerror(errno.ENOSPC)}: the file system of '{folder}' is full"
    if resource is None:
        return ""
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit == resource.RLIM_INFINITY:
        return ""
    sizes = [os.path.getsize(path) for path in glob.glob(glob.escape(filename) + "*")
             if os.path.isfile(path)]
    if sizes and max(sizes) >= limit:
        return (f"{os.strerror(errno.EFBIG)}: this process may write files of at most "
                f"{limit} bytes (ulimit -f)")
    return ""
