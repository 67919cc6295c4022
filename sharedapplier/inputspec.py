"""How to read one raster input on the working grid, decided once per run.

:func:`prepareInputSpec` picks the file to open (the input itself when it is aligned with
the working grid, otherwise a warped VRT made in the run's temp directory), and the dtype,
band list and fill values of its block arrays, into an :class:`InputSpec`. Both the raster
reader (:mod:`.blockreader`) and rasterised vectors (:mod:`.vectorinput`) build on it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy
from osgeo import gdal, gdal_array

from . import rioserrors
from .pixelgrid import PixelGridDefn, fixProjectionWkt


@dataclass
class InputSpec:
    """How to read one input file (one symbolic name and sequence number)."""

    name: str
    seqNum: int | None
    filename: str
    readfilename: str
    bands: list[int]
    dtype: numpy.dtype
    fillvalues: list
    nullvalues: list
    xoff: int
    yoff: int
    ncols: int
    nrows: int
    isVector: bool = False
    # what GDAL caches when reading the file: its block size (x, y), the bytes a pixel of
    # all its bands takes (0: not recorded), and whether it is a warped VRT (which also
    # caches its sources)
    fileBlockSize: tuple = (0, 0)
    filePixelBytes: int = 0
    warped: bool = False
    key: tuple = field(init=False, repr=False)

    def __post_init__(self):
        self.key = (self.name, self.seqNum)


def _gdalToNumpy(gdaltype):
    return numpy.dtype(gdal_array.GDALTypeCodeToNumericTypeCode(gdaltype))


def _overrideNulls(override, nbands):
    """Per-band null override: a scalar for every band, a list by position, or None."""
    if override is None:
        return None
    if numpy.isscalar(override):
        return [override] * nbands
    override = list(override)
    if len(override) > nbands:
        raise IndexError(f"inputnodata list has {len(override)} values but only {nbands} "
                         "bands are selected")
    return override + [None] * (nbands - len(override))


def selectedBands(controls, name, info) -> list[int]:
    """The 1-based bands of an input that its arrays hold (selectInputImageLayers or all)."""
    return controls.getOptionForImagename("layerselection", name) or \
        list(range(1, info.rasterCount + 1))


def selectedNulls(controls, name, info, bands) -> list:
    """The null of each selected band: the inputnodata override, else the file's own."""
    override = _overrideNulls(controls.getOptionForImagename("inputnodata", name), len(bands))
    return override if override is not None else [info.nodataval[b - 1] for b in bands]


def _isAligned(grid: PixelGridDefn, filegrid: PixelGridDefn) -> bool:
    return grid.isComparable(filegrid) and grid.alignedWith(filegrid)


def _warpNullString(values):
    if all(v is None for v in values):
        return None
    return " ".join(repr(v) for v in values)


def _makeWarpedVrt(filename, info, workinggrid, warpNulls, resampleMethod, allowOverviews,
                   tmpfileMgr):
    """Make a warped VRT of ``filename`` covering the working grid exactly."""
    vrtfile = tmpfileMgr.mktempfile(prefix="rios_", suffix=".vrt")
    nullstr = _warpNullString(warpNulls)
    options = gdal.WarpOptions(
        format="VRT",
        outputBounds=(workinggrid.xMin, workinggrid.yMin, workinggrid.xMax, workinggrid.yMax),
        xRes=workinggrid.xRes, yRes=workinggrid.yRes,
        srcSRS=fixProjectionWkt(info.projection), dstSRS=workinggrid.projection,
        resampleAlg=resampleMethod, srcNodata=nullstr, dstNodata=nullstr,
        overviewLevel="AUTO" if allowOverviews else "NONE")
    try:
        ds = gdal.Warp(vrtfile, filename, options=options)
    except RuntimeError as e:
        raise rioserrors.GdalWarpError(
            f"Cannot resample '{filename}' onto the working grid: {e}") from e
    if ds is None:
        raise rioserrors.GdalWarpError(f"Cannot resample '{filename}' onto the working grid")
    ds = None
    return vrtfile


def inputGrid(info) -> PixelGridDefn:
    """The pixel grid of an input file, with its projection fixed up (GDA94)."""
    return PixelGridDefn(geotransform=info.transform, nrows=info.nrows, ncols=info.ncols,
                         projection=fixProjectionWkt(info.projection))


def prepareInputSpec(name, seqNum, filename, info, workinggrid, controls, tmpfileMgr,
                     sourcefile=None):
    """Decide how to read one raster input: which file, which bands, which nulls.

    ``sourcefile`` is the raster to read when it is not ``filename`` itself (a rasterised
    vector); ``filename`` is still what ``info.getFilenameFor`` reports.
    """
    sourcefile = filename if sourcefile is None else sourcefile
    bands = selectedBands(controls, name, info)
    for b in bands:
        if not 1 <= b <= info.rasterCount:
            raise rioserrors.GDALLayerNumberError(
                f"Input '{name}' ({filename}) has {info.rasterCount} bands; layer {b} was "
                "selected with selectInputImageLayers")
    nullvalues = selectedNulls(controls, name, info, bands)
    readfilename = sourcefile
    if reprojectionRequired(info, workinggrid):
        warpNulls = list(info.nodataval)
        for band, null in zip(bands, nullvalues, strict=True):
            warpNulls[band - 1] = null
        readfilename = _makeWarpedVrt(
            sourcefile, info, workinggrid, warpNulls,
            controls.getOptionForImagename("resampleMethod", name),
            controls.getOptionForImagename("allowOverviewsGdalwarp", name), tmpfileMgr)
    ds = gdal.Open(readfilename)
    try:
        dtype = _gdalToNumpy(ds.GetRasterBand(bands[0]).DataType)
        gt = ds.GetGeoTransform()
        xoff = int(round((gt[0] - workinggrid.xMin) / workinggrid.xRes))
        yoff = int(round((workinggrid.yMax - gt[3]) / workinggrid.yRes))
        ncols, nrows = ds.RasterXSize, ds.RasterYSize
        fileBlockSize = tuple(ds.GetRasterBand(1).GetBlockSize())
        pixelBytes = sum(gdal.GetDataTypeSize(ds.GetRasterBand(i).DataType) // 8
                         for i in range(1, ds.RasterCount + 1))
    finally:
        ds = None
    fillvalues = [0 if v is None else v for v in nullvalues]
    return InputSpec(name, seqNum, filename, readfilename, list(bands), dtype, fillvalues,
                     nullvalues, xoff, yoff, ncols, nrows, fileBlockSize=fileBlockSize,
                     filePixelBytes=pixelBytes, warped=readfilename != sourcefile)


def reprojectionRequired(info, workinggrid: PixelGridDefn) -> bool:
    """Whether an input (its ``ImageInfo``) must be resampled to be read on the working
    grid: its pixel size, projection or alignment differ."""
    return not _isAligned(workinggrid, inputGrid(info))
