"""The read stage: resolve every input onto the working grid, then read one block of it.

Set-up (:func:`prepareInputs`, once per run, in the main process) decides for every input
what file to open — the file itself when it is aligned with the working grid, otherwise a
warped VRT made once in the run's temp directory — and the dtype, band list and fill values
of its block arrays (:mod:`.inputspec`; vectors are rasterised first, :mod:`.vectorinput`).
Reading (:class:`BlockReader`, one per thread or process, since GDAL
handles must not be shared) then fills a caller-supplied array, such as a shared-memory
slot, straight from GDAL with no intermediate copy.
"""
from __future__ import annotations

import math

import numpy
from osgeo import gdal

from . import rioserrors
from .const import (  # noqa: F401 - RIOS's names for the reading defaults
    DEFAULTFOOTPRINT,
    DEFAULTLOGGINGSTREAM,
    DEFAULTOVERLAP,
    DEFAULTWINDOWXSIZE,
    DEFAULTWINDOWYSIZE,
)
from .imageio import GdalErrorsAs, readWindowInto
from .inputspec import (  # noqa: F401 - names that RIOS scripts and callers import from here
    InputSpec,
    inputGrid,
    prepareInputSpec,
    reprojectionRequired,
    selectedBands,
    selectedNulls,
)
from .pixelgrid import PixelGridDefn, fixProjectionWkt
from .structures import ApplierBlockDefn, BlockAssociations, RasterizationMgr
from .vectorinput import prepareVectorSpec

# RIOS's name for the projection fix-up applied to every input grid
specialProjFixes = fixProjectionWkt


def blockShape(spec: InputSpec, blockDefn: ApplierBlockDefn, overlap: int) -> tuple:
    """Shape of this input's array for a block, margin included."""
    return (len(spec.bands), blockDefn.nrows + 2 * overlap, blockDefn.ncols + 2 * overlap)


def prepareInputs(infiles, allInfo, workinggrid, controls, tmpfileMgr) -> list[InputSpec]:
    """Resolve every input of ``infiles`` (in iteration order) for reading."""
    specs = []
    rasterizer = RasterizationMgr()
    for name, seqNum, filename in infiles:
        info = allInfo[(name, seqNum)]
        if info.isVector:
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
