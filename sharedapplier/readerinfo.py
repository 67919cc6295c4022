"""``ReaderInfo``: the ``info`` argument of a user function, describing the current block.

It is rebuilt for every block, in whichever thread or process calls the user function,
from the working grid, the block definition and the input arrays actually passed.
"""
import math

import numpy
from osgeo import gdal

from . import rioserrors
from .imageio import Coord, GdalErrorsAs, wld2pix
from .inputspec import selectedBands, selectedNulls


class ReaderInfo:
    """Where the current block lies in the working grid, and what its arrays are."""

    def __init__(self, workingGrid, windowxsize, windowysize, overlap, loggingstream):
        self.workingGrid = workingGrid
        self.windowxsize = windowxsize
        self.windowysize = windowysize
        self.overlap = overlap
        self.loggingstream = loggingstream
        self.ysize, self.xsize = workingGrid.getDimensions()
        self.xtotalblocks = int(math.ceil(self.xsize / windowxsize))
        self.ytotalblocks = int(math.ceil(self.ysize / windowysize))
        self.blockwidth = self.blockheight = None
        self.blocktl = self.blockbr = None
        self.xblock = self.yblock = None
        self.blocklookup = {}
        self.filenameLookup = {}
        self.nullvalLookup = {}

    # --- set-up (internal) ---------------------------------------------------------
    def setBlockSize(self, blockwidth, blockheight):
        self.blockwidth = blockwidth
        self.blockheight = blockheight

    def setBlockBounds(self, blocktl, blockbr):
        self.blocktl = blocktl
        self.blockbr = blockbr

    def setBlockCount(self, xblock, yblock):
        self.xblock = xblock
        self.yblock = yblock

    def setBlockDataset(self, block, dataset, filename):
        raise NotImplementedError("GDAL datasets are not passed to user functions; "
                                  "use info.getFilenameFor(array) instead")

    # --- queries -------------------------------------------------------------------
    def getWindowSize(self):
        return (self.windowxsize, self.windowysize)

    def getOverlapSize(self):
        return self.overlap

    def getTotalSize(self):
        return (self.xsize, self.ysize)

    def getTransform(self):
        return self.workingGrid.makeGeoTransform()

    def getProjection(self):
        return self.workingGrid.projection

    def getTotalBlocks(self):
        return (self.xtotalblocks, self.ytotalblocks)

    def getBlockSize(self):
        return (self.blockwidth, self.blockheight)

    def getBlockCount(self):
        return (self.xblock, self.yblock)

    def getPixelSize(self):
        return (self.workingGrid.xRes, self.workingGrid.yRes)

    def isFirstBlock(self):
        return self.xblock == 0 and self.yblock == 0

    def isLastBlock(self):
        return self.xblock == self.xtotalblocks - 1 and self.yblock == self.ytotalblocks - 1

    def getPercent(self):
        done = self.yblock * self.xtotalblocks + self.xblock
        return int(done / (self.xtotalblocks * self.ytotalblocks) * 100)

    def getBlockCoordArrays(self):
        """World coordinates of the pixel centres of the block, margin included."""
        xres, yres = self.getPixelSize()
        m = self.overlap
        nrows = self.blockheight + 2 * m
        ncols = self.blockwidth + 2 * m
        rows, cols = numpy.mgrid[0:nrows, 0:ncols]
        x = self.blocktl.x - m * xres + xres / 2.0 + cols * xres
        y = self.blocktl.y + m * yres - yres / 2.0 - rows * yres
        return (x, y)

    def getPixRowColBlock(self, x, y):
        """(row, col) in the block array (margin included) of the pixel holding (x, y)."""
        pix = wld2pix(self.getTransform(), x, y)
        row = int(pix.y - (self.yblock * self.windowysize - self.overlap))
        col = int(pix.x - (self.xblock * self.windowxsize - self.overlap))
        if (row < 0 or row > self.windowysize + 2 * self.overlap or col < 0
                or col > self.windowxsize + 2 * self.overlap):
            return (None, None)
        return (row, col)

    def getPixColRow(self, x, y):
        return (self.xblock * self.windowxsize + x, self.yblock * self.windowysize + y)

    def getFilenameFor(self, array):
        """The input filename whose block is this very array object."""
        return self.filenameLookup[id(array)]

    def getNoDataValueFor(self, array, band=1):
        """The null of the ``band``-th selected band of this input, or None."""
        nulls = self.nullvalLookup[id(array)]
        value = nulls[band - 1]
        if value is None:
            return None
        return numpy.array(value, dtype=array.dtype)

    # --- RIOS 1.x ------------------------------------------------------------------
    def getGDALDatasetFor(self, array):
        """Deprecated: a read-only GDAL dataset of the input file whose block is this very
        array (the file itself, not the warped VRT it may be read through).

        Each info object opens its own, so it is safe in any thread or process; RIOS 2
        removed this because it shared its readers' datasets.
        """
        rioserrors.deprecatedNameWarning(
            "ReaderInfo.getGDALDatasetFor", "open info.getFilenameFor(array) with GDAL")
        return self._gdalDatasetOf(self.getFilenameFor(array))

    def getGDALBandFor(self, array, band):
        """Deprecated: band ``band`` (1-based, of the file) of :meth:`getGDALDatasetFor`."""
        rioserrors.deprecatedNameWarning(
            "ReaderInfo.getGDALBandFor", "open info.getFilenameFor(array) with GDAL")
        return self._gdalDatasetOf(self.getFilenameFor(array)).GetRasterBand(band)

    def _gdalDatasetOf(self, filename):
        datasets = self.__dict__.setdefault("gdalDatasets", {})
        if filename not in datasets:
            with GdalErrorsAs(rioserrors.FileOpenError, f"Unable to open '{filename}'"):
                datasets[filename] = gdal.Open(filename)
        return datasets[filename]


# The fields that describe the current block (the rest describe the whole grid).
_BLOCK_FIELDS = frozenset({"blockwidth", "blockheight", "blocktl", "blockbr", "xblock",
                           "yblock", "blocklookup", "filenameLookup", "nullvalLookup"})


class ReaderInfoFactory:
    """Makes the per-block info objects of one run; grid-wide values are computed once.

    A made object fills its block fields the first time one is read: most user functions
    never look at ``info``, and building the fields for every block would cost as much as a
    quarter of GDAL's time to read and write a small block.
    """

    def __init__(self, workinggrid, windowxsize, windowysize, overlap, loggingstream):
        template = ReaderInfo(workinggrid, windowxsize, windowysize, overlap, loggingstream)
        self.gridState = {k: v for k, v in template.__dict__.items()
                          if k not in _BLOCK_FIELDS}
        self.geotransform = workinggrid.makeGeoTransform()

    def make(self, blockDefn, filenames: dict, nullvalues: dict, inputs: dict) -> ReaderInfo:
        """Info for one block: ``filenames``/``nullvalues``/``inputs`` keyed by (name, seqNum)."""
        info = _LazyReaderInfo.__new__(_LazyReaderInfo)
        state = info.__dict__
        state.update(self.gridState)
        state["_pendingBlock"] = (self, blockDefn, filenames, nullvalues, inputs)
        return info

    def blockFields(self, blockDefn, filenames, nullvalues, inputs, windowxsize,
                    windowysize) -> dict:
        """The block fields of one info object."""
        gt = self.geotransform
        left, top = blockDefn.left, blockDefn.top
        right, bottom = left + blockDefn.ncols, top + blockDefn.nrows
        return {
            "blocklookup": {},
            "filenameLookup": {id(a): filenames[k] for k, a in inputs.items()},
            "nullvalLookup": {id(a): nullvalues[k] for k, a in inputs.items()
                              if k in nullvalues},
            "blockwidth": blockDefn.ncols,
            "blockheight": blockDefn.nrows,
            "blocktl": Coord(gt[0] + left * gt[1] + top * gt[2],
                             gt[3] + left * gt[4] + top * gt[5]),
            "blockbr": Coord(gt[0] + right * gt[1] + bottom * gt[2],
                             gt[3] + right * gt[4] + bottom * gt[5]),
            "xblock": int(round(left / windowxsize)),
            "yblock": int(round(top / windowysize)),
        }


class _LazyReaderInfo(ReaderInfo):
    """A ReaderInfo made by the factory: its block fields are filled on first use."""

    def __getattr__(self, name):
        state = self.__dict__
        if name not in _BLOCK_FIELDS or "_pendingBlock" not in state:
            raise AttributeError(f"'ReaderInfo' object has no attribute '{name}'")
        factory, *block = state.pop("_pendingBlock")
        for key, value in factory.blockFields(*block, self.windowxsize,
                                              self.windowysize).items():
            state.setdefault(key, value)
        return state[name]


def makeReaderInfo(workinggrid, blockDefn, controls, infiles, inputs, allInfo):
    """Build the info object for one block (RIOS's signature; nulls from the metadata)."""
    factory = ReaderInfoFactory(workinggrid, controls.windowxsize, controls.windowysize,
                                controls.overlap, controls.loggingstream)
    filenames = {(name, seqNum): filename for name, seqNum, filename in infiles}
    nullvalues = {}
    for name, seqNum, _ in infiles:
        info = allInfo[(name, seqNum)]
        if not info.isVector:
            bands = selectedBands(controls, name, info)
            nullvalues[(name, seqNum)] = selectedNulls(controls, name, info, bands)
    return factory.make(blockDefn, filenames, nullvalues, inputs)
