"""The read stage: resolve every input onto the working grid, then read one block of it.

Set-up (:func:`prepareInputs`, once per run, in the main process) decides for every input
what file to open — the file itself when it is aligned with the working grid, otherwise a
warped VRT made once in the run's temp directory — and the dtype, band list and fill values
of its block arrays. Reading (:class:`BlockReader`, one per thread or process, since GDAL
handles must not be shared) then fills a caller-supplied array, such as a shared-memory
slot, straight from GDAL with no intermediate copy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy
from osgeo import gdal, gdal_array

from . import rioserrors
from .const import (  # noqa: F401 - RIOS's names for the reading defaults
    DEFAULTFOOTPRINT,
    DEFAULTLOGGINGSTREAM,
    DEFAULTOVERLAP,
    DEFAULTWINDOWXSIZE,
    DEFAULTWINDOWYSIZE,
)
from .imageio import GdalErrorsAs, readWindowInto
from .pixelgrid import PixelGridDefn, fixProjectionWkt
from .structures import ApplierBlockDefn, BlockAssociations, RasterizationMgr

# RIOS's name for the projection fix-up applied to every input grid
specialProjFixes = fixProjectionWkt


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


def blockShape(spec: InputSpec, blockDefn: ApplierBlockDefn, overlap: int) -> tuple:
    """Shape of this input's array for a block, margin included."""
    return (len(spec.bands), blockDefn.nrows + 2 * overlap, blockDefn.ncols + 2 * overlap)


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


def prepareInputs(infiles, allInfo, workinggrid, controls, tmpfileMgr) -> list[InputSpec]:
    """Resolve every input of ``infiles`` (in iteration order) for reading."""
    specs = []
    rasterizer = RasterizationMgr()
    for name, seqNum, filename in infiles:
        info = allInfo[(name, seqNum)]
        if getattr(info, "isVector", False):
            from .vectorinput import prepareVectorSpec
            specs.append(prepareVectorSpec(name, seqNum, filename, info, workinggrid,
                                           controls, tmpfileMgr, rasterizer))
        else:
            specs.append(prepareInputSpec(name, seqNum, filename, info, workinggrid,
                                          controls, tmpfileMgr))
    return specs


# The GDAL block cache reading needs (readCacheBytes): never less than the first, the
# second when it is not known, and a quarter more than the file blocks it must keep.
READ_CACHE_MIN_BYTES = 2**20
READ_CACHE_UNKNOWN_BYTES = 64 * 2**20
READ_CACHE_HEADROOM = 4


def readCacheBytes(specs: list[InputSpec], gridncols: int, windowxsize: int,
                   windowysize: int, overlap: int) -> int:
    """The GDAL block cache that reading blocks in order needs: no file block read twice.

    A file block that no other block of ours touches is read once whatever the cache
    (tiles aligned with the blocks). One that several touch must stay cached between
    them: blocks are read row by row, so then the cache must hold the file blocks under
    a whole row of blocks (margins and straddled file blocks included); those the next
    row of blocks shares are then the ones it touched last. Every band of a file counts.
    A larger cache only keeps blocks never read again, each in fresh memory. Warped inputs
    also cache their source files, whose blocks are not known here, and get
    READ_CACHE_UNKNOWN_BYTES, as do inputs whose file blocks were not recorded.
    """
    if any(spec.warped or not spec.filePixelBytes for spec in specs):
        return READ_CACHE_UNKNOWN_BYTES
    need = sum(_fileBlocksKept(spec, gridncols, windowxsize, windowysize, overlap)
               for spec in specs)
    # a quarter more: GDAL also counts bytes of its own against the limit, and an LRU
    # cache the least bit smaller than a row it reads again and again misses every time
    # (a 20000-wide striped input was read 68 times over with exactly a row's worth)
    return max(READ_CACHE_MIN_BYTES, need + need // READ_CACHE_HEADROOM)


def _fileBlocksKept(spec: InputSpec, gridncols: int, windowxsize: int, windowysize: int,
                    overlap: int) -> int:
    """Bytes of one input's file blocks that reading must keep cached at a time."""
    bx, by = spec.fileBlockSize
    cols, sharedAcross = _spanned(windowxsize, overlap, -overlap - spec.xoff, bx)
    rows, sharedDown = _spanned(windowysize, overlap, -overlap - spec.yoff, by)
    if sharedAcross or sharedDown:
        cols = _rowWidth(spec, gridncols, overlap)
    return cols * rows * spec.filePixelBytes


def _spanned(window: int, overlap: int, start: int, blocksize: int) -> tuple:
    """Along one axis: (the most pixels of file blocks one window touches, whether the
    next window touches some of the same file blocks)."""
    length = window + 2 * overlap
    if window % blocksize:      # windows start at different offsets in a file block
        return (-(-(length - 1) // blocksize) + 1) * blocksize, True
    offset = start % blocksize  # the same offset for every window
    touched = -(-(offset + length) // blocksize) * blocksize
    return touched, (offset + length - 1) // blocksize >= (offset + window) // blocksize


def _rowWidth(spec: InputSpec, gridncols: int, overlap: int) -> int:
    """Pixels across of the file blocks that a row of blocks touches."""
    bx = spec.fileBlockSize[0]
    first = max(0, -overlap - spec.xoff)
    last = min(spec.ncols, gridncols + overlap - spec.xoff)
    if last <= first:
        return 0
    return ((last - 1) // bx - first // bx + 1) * bx


def readIntoArray(target: numpy.ndarray, ds: gdal.Dataset, bands: list[int], xoff: int,
                  yoff: int, fillvalues: list, filename: str | None = None,
                  fileSize: tuple | None = None) -> numpy.ndarray:
    """Fill ``target`` (bands, rows, cols) with the window of ``ds`` whose top left pixel
    is (xoff, yoff); the window may reach past the file on any side, or miss it, and its
    pixels outside the file get each band's fill value. ``fileSize`` is (ncols, nrows) of
    ``ds`` when the caller knows it; ``filename`` names the file in errors."""
    ncols, nrows = fileSize if fileSize is not None else (ds.RasterXSize, ds.RasterYSize)
    fx1 = xoff + target.shape[2]
    fy1 = yoff + target.shape[1]
    cx0, cy0 = max(xoff, 0), max(yoff, 0)
    cx1, cy1 = min(fx1, ncols), min(fy1, nrows)
    inside = cx0 < cx1 and cy0 < cy1
    if not inside or (cx0, cy0, cx1, cy1) != (xoff, yoff, fx1, fy1):
        for i, fill in enumerate(fillvalues):
            target[i] = fill
    if inside:
        window = target[:, cy0 - yoff:cy1 - yoff, cx0 - xoff:cx1 - xoff]
        readWindowInto(ds, cx0, cy0, window, bands, filename)
    return target


class BlockReader:
    """Reads blocks of the inputs; owns its GDAL datasets (one reader per thread/process)."""

    def __init__(self, specs: list[InputSpec], overlap: int):
        self.specs = specs
        self.overlap = overlap
        self._datasets = {}

    def _dataset(self, spec):
        ds = self._datasets.get(spec.key)
        if ds is None:
            with GdalErrorsAs(rioserrors.FileOpenError,
                              f"Unable to open '{spec.filename}' for reading"):
                ds = gdal.Open(spec.readfilename)
            self._datasets[spec.key] = ds
        return ds

    def readInto(self, spec: InputSpec, blockDefn: ApplierBlockDefn, target: numpy.ndarray):
        """Fill ``target`` (bands, rows+2m, cols+2m) with this input's block, nulls outside."""
        m = self.overlap
        return readIntoArray(target, self._dataset(spec), spec.bands,
                             blockDefn.left - m - spec.xoff, blockDefn.top - m - spec.yoff,
                             spec.fillvalues, spec.filename, (spec.ncols, spec.nrows))

    def readBlock(self, blockDefn: ApplierBlockDefn) -> dict:
        """Read every input for a block into new arrays: {(name, seqNum): array}."""
        return {spec.key: readBlockOneFile(blockDefn, spec, self) for spec in self.specs}

    def close(self):
        """Close every dataset this reader opened."""
        self._datasets.clear()


def readBlockOneFile(blockDefn: ApplierBlockDefn, spec: InputSpec,
                     reader: BlockReader) -> numpy.ndarray:
    """One input's array for a block (margin included), read by ``reader``."""
    target = numpy.empty(blockShape(spec, blockDefn, reader.overlap), dtype=spec.dtype)
    return reader.readInto(spec, blockDefn, target)


def readBlockAllFiles(infiles, blockDefn: ApplierBlockDefn,
                      reader: BlockReader) -> BlockAssociations:
    """The ``inputs`` of a user function for a block: every input of ``infiles`` read by
    ``reader`` (made from :func:`prepareInputs` of the same infiles)."""
    inputs = BlockAssociations(infiles)
    for key, arr in reader.readBlock(blockDefn).items():
        inputs[key] = arr
    return inputs


def reprojectionRequired(info, workinggrid: PixelGridDefn) -> bool:
    """Whether an input (its ``ImageInfo``) must be resampled to be read on the working
    grid: its pixel size, projection or alignment differ."""
    return not _isAligned(workinggrid, inputGrid(info))


def reprojResolution(grid: PixelGridDefn, projection: str) -> tuple[float, float]:
    """The pixel size (x, y) that ``grid`` has in another projection (WKT): the size that
    keeps as many pixels along the diagonal of its extent there, as GDAL's warper picks."""
    target = PixelGridDefn(projection=projection, xMin=0.0, xMax=1.0, yMin=0.0, yMax=1.0,
                           xRes=1.0, yRes=1.0)
    box = grid.reproject(target, snap=False)
    nrows, ncols = grid.getDimensions()
    res = math.hypot(box.xMax - box.xMin, box.yMax - box.yMin) / math.hypot(ncols, nrows)
    return (res, res)


def openForWorkingGrid(filename: str, info, workinggrid: PixelGridDefn, controls,
                       tmpfileMgr, name: str | None = None) -> gdal.Dataset:
    """A read-only dataset of ``filename`` on the working grid: the file itself when it is
    aligned with the grid, otherwise a warped VRT made in ``tmpfileMgr``'s directory with
    the resampling method, nulls and layer options that ``controls`` gives ``name``."""
    spec = prepareInputSpec(name or filename, None, filename, info, workinggrid, controls,
                            tmpfileMgr)
    with GdalErrorsAs(rioserrors.FileOpenError, f"Unable to open '{filename}' for reading"):
        return gdal.Open(spec.readfilename)


ReadWorkerMgr = rioserrors.notProvided(
    "imagereader.ReadWorkerMgr", "read workers are set with ConcurrencyStyle(numReadWorkers=n)")


def __getattr__(name):
    """RIOS 1.x's ``ImageReader`` and ``ImageIterator``, from :mod:`.legacyreader` (imported
    when first asked for: it builds on the applier, which imports this module)."""
    if name in ("ImageReader", "ImageIterator"):
        from . import legacyreader
        return getattr(legacyreader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
