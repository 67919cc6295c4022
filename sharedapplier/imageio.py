"""Pixel/world coordinate helpers (RIOS's ``imageio``), the footprint constants, and the
block transfers between GDAL datasets and numpy arrays that every stage of the engine uses.
"""
import functools

import numpy
from osgeo import gdal, gdal_array

from sharedapplier.const import BOUNDS_FROM_REFERENCE, INTERSECTION, UNION

__all__ = ["Coord", "wld2pix", "pix2wld", "INTERSECTION", "UNION", "BOUNDS_FROM_REFERENCE"]


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


def readWindowInto(ds: gdal.Dataset, xoff: int, yoff: int, target: numpy.ndarray,
                   bandList: list) -> numpy.ndarray:
    """Read the window of ``ds`` at (xoff, yoff) with ``target``'s shape (bands, rows, cols)
    straight into ``target``, which may be a strided view (a slot, or a window inside it).

    This is the call ``Dataset.ReadAsArray(buf_obj=...)`` makes, without its per-call
    argument handling: blocks are read tens of thousands of times a run.
    """
    _rasterIO(ds, 0, xoff, yoff, target, bandList)
    return target


def writeWindow(ds: gdal.Dataset, arr: numpy.ndarray, xoff: int, yoff: int):
    """Write ``arr`` (bands, rows, cols), possibly a strided view, to ``ds`` at (xoff, yoff)."""
    _rasterIO(ds, 1, xoff, yoff, arr, list(range(1, arr.shape[0] + 1)))


def _rasterIO(ds, write, xoff, yoff, arr, bandList):
    _, nrows, ncols = arr.shape
    status = gdal_array.DatasetIONumPy(ds, write, xoff, yoff, ncols, nrows, arr,
                                       gdalTypeOf(arr.dtype), gdal.GRIORA_NearestNeighbour,
                                       None, None, True, bandList)
    if status != 0:
        what = "write" if write else "read"
        raise RuntimeError(f"GDAL could not {what} the window ({xoff}, {yoff}, {ncols}x{nrows})"
                           f" of '{ds.GetDescription()}': {gdal.GetLastErrorMsg()}")
