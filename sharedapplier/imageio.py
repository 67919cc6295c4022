"""Legacy pixel/world coordinate helpers (RIOS's ``imageio``), and the footprint constants."""
from osgeo import gdal

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
