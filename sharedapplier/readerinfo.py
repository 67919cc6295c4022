"""``ReaderInfo``: the ``info`` argument of a user function, describing the current block.

It is rebuilt for every block, in whichever thread or process calls the user function,
from the working grid, the block definition and the input arrays actually passed.
"""
import math

import numpy
from osgeo import gdal

from .imageio import Coord, wld2pix


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


def _blockCorner(workinggrid, col, row):
    x, y = gdal.ApplyGeoTransform(workinggrid.makeGeoTransform(), col, row)
    return Coord(x, y)


def makeReaderInfo(workinggrid, blockDefn, controls, infiles, inputs, allInfo,
                   nullvalues=None):
    """Build the info object for one block.

    ``nullvalues`` maps (name, seqNum) to the per-selected-band null list (as prepared by
    the reader); without it the nulls are taken from ``allInfo`` and the controls.
    """
    info = ReaderInfo(workinggrid, controls.windowxsize, controls.windowysize,
                      controls.overlap, controls.loggingstream)
    info.setBlockSize(blockDefn.ncols, blockDefn.nrows)
    info.setBlockBounds(
        _blockCorner(workinggrid, blockDefn.left, blockDefn.top),
        _blockCorner(workinggrid, blockDefn.left + blockDefn.ncols,
                     blockDefn.top + blockDefn.nrows))
    info.setBlockCount(int(round(blockDefn.left / controls.windowxsize)),
                       int(round(blockDefn.top / controls.windowysize)))
    for name, seqNum, filename in infiles:
        array = inputs[(name, seqNum)]
        info.filenameLookup[id(array)] = filename
        if nullvalues is not None:
            if (name, seqNum) in nullvalues:
                info.nullvalLookup[id(array)] = nullvalues[(name, seqNum)]
        elif not getattr(allInfo[(name, seqNum)], "isVector", False):
            info.nullvalLookup[id(array)] = _nullsFromControls(
                controls, name, allInfo[(name, seqNum)])
    return info


def _nullsFromControls(controls, name, imginfo):
    bands = controls.getOptionForImagename("layerselection", name) or \
        list(range(1, imginfo.rasterCount + 1))
    override = controls.getOptionForImagename("inputnodata", name)
    if override is None:
        return [imginfo.nodataval[b - 1] for b in bands]
    if numpy.isscalar(override):
        return [override] * len(bands)
    return list(override)
