"""Pixel grids: extent, resolution and projection, and how grids combine (RIOS names).

A grid's bounds are outer pixel edges (GDAL convention) and both resolutions are
positive. Grids that are not aligned with the reference are reprojected onto it before
being intersected or unioned, which is how the applier builds its working grid.
"""
import re
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

import numpy

from . import rioserrors
from .const import BOUNDS_FROM_REFERENCE, INTERSECTION, UNION
from .fileinfo import (
    ImageInfo,
    preventGdal3axisSwap,
    spatialRefFromEpsg,
    spatialRefFromWkt,
    transformPoints,
)

_NUM_EDGE_POINTS = 101
_ALIGN_TOLERANCE = 0.001
_TOWGS84_CLAUSE = re.compile(r"TOWGS84\[[^\]]*\]")
_ZERO_TOWGS84 = "TOWGS84[0,0,0,0,0,0,0]"


class PixelGridDefn:
    """The extent, pixel size and projection of a raster grid."""

    def __init__(self, geotransform=None, nrows=None, ncols=None, projection=None,
                 xMin=None, xMax=None, yMin=None, yMax=None, xRes=None, yRes=None):
        self.projection = projection
        self.xMin, self.xMax, self.yMin, self.yMax = xMin, xMax, yMin, yMax
        self.xRes, self.yRes = xRes, yRes
        if geotransform is not None and nrows is not None and ncols is not None:
            self.xMin = geotransform[0]
            self.xRes = geotransform[1]
            self.yMax = geotransform[3]
            self.yRes = abs(geotransform[5])
            self.xMax = self.xMin + ncols * self.xRes
            self.yMin = self.yMax - nrows * self.yRes

    def __str__(self):
        return (f"xMin:{self.xMin},xMax:{self.xMax},yMin:{self.yMin},yMax:{self.yMax},"
                f"xRes:{self.xRes},yRes:{self.yRes}")

    def makeGeoTransform(self):
        """The GDAL geotransform of this (north-up) grid."""
        return (self.xMin, self.xRes, 0.0, self.yMax, 0.0, -self.yRes)

    def getDimensions(self):
        """(nrows, ncols) of the grid, as ints."""
        nrows = self.getNumPix(self.yMax, self.yMin, self.yRes)
        ncols = self.getNumPix(self.xMax, self.xMin, self.xRes)
        return (nrows, ncols)

    # ---- comparisons ------------------------------------------------------------------

    def equalPixSize(self, other):
        """True when both resolutions are exactly equal (no tolerance)."""
        return self.xRes == other.xRes and self.yRes == other.yRes

    def equalProjection(self, other):
        """True when OSR considers the two projections the same (None counts as empty)."""
        return _sameProjection(self.projection or "", other.projection or "")

    def isComparable(self, other):
        """Same pixel size and same projection."""
        return self.equalPixSize(other) and self.equalProjection(other)

    def alignedWith(self, other):
        """Comparable, and this grid's xMin/yMax fall on the other grid's pixel edges."""
        if not self.isComparable(other):
            return False
        npix = max(*self.getDimensions(), *other.getDimensions(), 1)
        tolerance = _ALIGN_TOLERANCE * min(self.xRes, self.yRes) / npix
        x_snapped = self.snapToGrid(self.xMin, other.xMin, other.xRes)
        y_snapped = self.snapToGrid(self.yMax, other.yMax, other.yRes)
        return abs(x_snapped - self.xMin) < tolerance and abs(y_snapped - self.yMax) < tolerance

    def surrounds(self, other):
        """True when all four of other's bounds lie within (or on) this grid's bounds."""
        return (self.xMin <= other.xMin and other.xMax <= self.xMax
                and self.yMin <= other.yMin and other.yMax <= self.yMax)

    def equivalentProjection(self, otherspatialref, pixtolerance):
        """True when moving this grid's corners and centre into ``otherspatialref``
        shifts none of them by more than ``pixtolerance`` pixels.

        ``otherspatialref`` is an osr.SpatialReference (not modified) or a WKT string.
        """
        if isinstance(otherspatialref, str):
            other_sr = spatialRefFromWkt(otherspatialref)
        else:
            other_sr = otherspatialref.Clone()
            preventGdal3axisSwap(other_sr)
        points = self._cornersAndCentre()
        moved = transformPoints(points, spatialRefFromWkt(self.projection), other_sr)
        shift = numpy.abs(moved - points)
        return bool(numpy.all(shift[:, 0] <= pixtolerance * self.xRes)
                    and numpy.all(shift[:, 1] <= pixtolerance * self.yRes))

    def _cornersAndCentre(self):
        xMid = (self.xMin + self.xMax) / 2
        yMid = (self.yMin + self.yMax) / 2
        return numpy.array([(self.xMin, self.yMax), (self.xMax, self.yMax),
                            (self.xMax, self.yMin), (self.xMin, self.yMin),
                            (xMid, yMid)], dtype=numpy.float64)

    # ---- combination ------------------------------------------------------------------

    def intersection(self, other):
        """The overlap of two comparable grids (None if not comparable).

        Raises IntersectionError when they have no area in common.
        """
        if not self.isComparable(other):
            return None
        xMin, xMax = max(self.xMin, other.xMin), min(self.xMax, other.xMax)
        yMin, yMax = max(self.yMin, other.yMin), min(self.yMax, other.yMax)
        if xMin >= xMax or yMin >= yMax:
            raise rioserrors.IntersectionError(
                f"The inputs have no area in common: grid ({self}) does not overlap "
                f"grid ({other})")
        return self._withBounds(xMin, xMax, yMin, yMax)

    def union(self, other):
        """The smallest grid covering two comparable grids (None if not comparable)."""
        if not self.isComparable(other):
            return None
        return self._withBounds(min(self.xMin, other.xMin), max(self.xMax, other.xMax),
                                 min(self.yMin, other.yMin), max(self.yMax, other.yMax))

    def _withBounds(self, xMin, xMax, yMin, yMax):
        """A grid with new bounds and this grid's resolution and projection."""
        return PixelGridDefn(projection=self.projection, xMin=xMin, xMax=xMax, yMin=yMin,
                             yMax=yMax, xRes=self.xRes, yRes=self.yRes)

    def reproject(self, targetGrid, snap=True):
        """This grid's bounding box in targetGrid's projection, at targetGrid's resolution.

        The box is found from 101 points along each edge; with ``snap`` each bound is
        moved to the nearest pixel edge of targetGrid.
        """
        xs, ys = self._edgePointsIn(targetGrid.projection)
        xMin, xMax, yMin, yMax = xs.min(), xs.max(), ys.min(), ys.max()
        if snap:
            xMin = self.snapToGrid(xMin, targetGrid.xMin, targetGrid.xRes)
            xMax = self.snapToGrid(xMax, targetGrid.xMin, targetGrid.xRes)
            yMin = self.snapToGrid(yMin, targetGrid.yMin, targetGrid.yRes)
            yMax = self.snapToGrid(yMax, targetGrid.yMin, targetGrid.yRes)
        return PixelGridDefn(projection=targetGrid.projection, xMin=float(xMin),
                             xMax=float(xMax), yMin=float(yMin), yMax=float(yMax),
                             xRes=targetGrid.xRes, yRes=targetGrid.yRes)

    def _edgePointsIn(self, target_projection):
        """x and y arrays of the densified outline, transformed (failed points dropped)."""
        n = _NUM_EDGE_POINTS
        outline = numpy.vstack([
            self.densifyInterval(self.xMin, self.yMax, self.xMax, self.yMax, n),
            self.densifyInterval(self.xMax, self.yMax, self.xMax, self.yMin, n),
            self.densifyInterval(self.xMax, self.yMin, self.xMin, self.yMin, n),
            self.densifyInterval(self.xMin, self.yMin, self.xMin, self.yMax, n)])
        pts = _toProjection(outline, self.projection, target_projection)
        pts = pts[numpy.all(numpy.isfinite(pts), axis=1)]
        if len(pts) == 0:
            raise rioserrors.IntersectionError(
                f"The inputs have no area in common: no part of grid ({self}) can be "
                "transformed into the target projection")
        return pts[:, 0], pts[:, 1]

    # ---- static helpers ---------------------------------------------------------------

    @staticmethod
    def densifyInterval(x1, y1, x2, y2, n):
        """n evenly spaced points from (x1, y1) to (x2, y2), both ends included: (n, 2)."""
        return numpy.column_stack((numpy.linspace(x1, x2, n), numpy.linspace(y1, y2, n)))

    @staticmethod
    def roundAway(x):
        """Round half away from zero, using the exact binary value of ``x``; a float."""
        if not numpy.isfinite(x):
            return float(x)
        return float(Decimal(float(x)).to_integral_value(rounding=ROUND_HALF_UP))

    @staticmethod
    def getNumPix(gridMax, gridMin, gridRes):
        """Number of whole pixels of size gridRes between gridMin and gridMax, an int."""
        return int(PixelGridDefn.roundAway((gridMax - gridMin) / gridRes))

    @staticmethod
    def snapToGrid(val, valOnGrid, res):
        """The value nearest ``val`` that is a whole number of ``res`` from valOnGrid."""
        return valOnGrid + PixelGridDefn.roundAway((val - valOnGrid) / res) * res


@lru_cache(maxsize=256)
def _sameProjection(wkt1, wkt2):
    """OSR IsSame on two WKT strings; empty strings equal only each other."""
    if not wkt1 or not wkt2:
        return wkt1 == wkt2
    if wkt1 == wkt2:
        return True
    try:
        sr1, sr2 = spatialRefFromWkt(wkt1), spatialRefFromWkt(wkt2)
    except rioserrors.ParameterError:
        return False
    return bool(sr1.IsSame(sr2))


def _toProjection(points, src_wkt, dst_wkt):
    """Transform points between two WKT projections (identity when they are the same).

    Two empty projections are taken to be the same unknown projection.
    """
    if _sameProjection(src_wkt or "", dst_wkt or ""):
        return numpy.array(points, dtype=numpy.float64)
    if not src_wkt or not dst_wkt:
        raise rioserrors.ParameterError(
            "Cannot reproject a pixel grid between a grid that has no projection and one "
            "that has; give every input a projection, or use inputs on one grid")
    return transformPoints(points, spatialRefFromWkt(src_wkt), spatialRefFromWkt(dst_wkt))


# ----------------------------------------------------------------------------------------
# Module functions
# ----------------------------------------------------------------------------------------

def findCommonRegion(gridList, refGrid, combine=INTERSECTION):
    """The working grid: the grids (put onto refGrid where not aligned) combined.

    BOUNDS_FROM_REFERENCE gives refGrid itself; INTERSECTION first drops grids that
    surround all others; any other value gives the first grid. None for an empty list.
    """
    if combine == BOUNDS_FROM_REFERENCE:
        return refGrid
    grids = removeSurrounding(gridList) if combine == INTERSECTION else list(gridList)
    grids = [_ontoReference(grid, refGrid) for grid in grids]
    if not grids:
        return None
    result = grids[0]
    if combine in (INTERSECTION, UNION):
        for grid in grids[1:]:
            result = result.intersection(grid) if combine == INTERSECTION else result.union(grid)
    return result


def _ontoReference(grid, refGrid):
    """The grid itself when aligned with refGrid, else its reprojection onto refGrid."""
    if refGrid.alignedWith(grid):
        return grid
    return grid.reproject(refGrid)


def removeSurrounding(gridList):
    """Drop grids that surround all the others (compared in lat/long), keeping at least one.

    Returns the surviving original grid objects in their original order. When some grid
    has no usable projection nothing can be compared and the list is returned unchanged.
    """
    grids = list(gridList)
    latlong = _latlongCopies(grids)
    if latlong is None:
        return grids
    keep = list(range(len(grids)))
    dropped = True
    while dropped:
        dropped = False
        for i in list(keep):
            others = [j for j in keep if j != i]
            if others and all(latlong[i].surrounds(latlong[j]) for j in others):
                keep.remove(i)
                dropped = True
    return [grids[i] for i in keep]


def _latlongCopies(grids):
    """Each grid reprojected (unsnapped) onto a global 1-degree lat/long grid, or None."""
    target = _globalLatlongGrid()
    try:
        return [grid.reproject(target, snap=False) for grid in grids]
    except rioserrors.RiosError:
        return None


def _globalLatlongGrid():
    """A global EPSG:4326 grid of 1-degree pixels (longitude first)."""
    return PixelGridDefn(projection=_latlongWkt(), xMin=-180.0, xMax=180.0, yMin=-90.0, yMax=90.0,
                         xRes=1.0, yRes=1.0)


@lru_cache(maxsize=1)
def _latlongWkt():
    """WKT of EPSG:4326 (built with ImportFromEPSG)."""
    return spatialRefFromEpsg(4326).ExportToWkt()


def pixelGridFromFile(filename):
    """The grid of a raster file: its geotransform, size and projection as GDAL gives them."""
    info = ImageInfo(filename, omitPerBand=True)
    return PixelGridDefn(geotransform=info.transform, nrows=info.nrows, ncols=info.ncols,
                         projection=info.projection)


def fixProjectionWkt(wkt):
    """Repair GDA94 WKT as written by Imagine files, so it compares equal to real GDA94.

    When the WKT mentions GDA94, any TOWGS84 clause is set to zeros (GDA94 coincides with
    WGS84 at that accuracy) and the datum name 'GDA94-ICSM' becomes 'GDA94'.
    """
    if not wkt or "GDA94" not in wkt:
        return wkt
    wkt = wkt.replace("GDA94-ICSM", "GDA94")
    return _TOWGS84_CLAUSE.sub(_ZERO_TOWGS84, wkt)


__all__ = [
    "PixelGridDefn", "findCommonRegion", "removeSurrounding", "pixelGridFromFile",
    "fixProjectionWkt",
]
