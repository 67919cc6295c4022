"""RIOS 1.x's block writer, ``imagewriter.ImageWriter``, on the applier's writing path.

``ImageWriter(filename, info=info, firstblock=block)`` creates an output on the grid of a
:class:`~sharedapplier.readerinfo.ReaderInfo` (from ``imagereader.ImageReader``) or of an
explicit size, geotransform and projection; :meth:`ImageWriter.write` then writes the blocks
in order and :meth:`ImageWriter.close` finishes the file. Creation, writing, statistics,
pyramids and colour tables are those of :class:`~sharedapplier.blockwriter.OutputFile`,
which ``apply`` writes with, with nothing done single-pass (blocks may come in any order).
"""
from __future__ import annotations

import tempfile

import numpy
from osgeo import gdal

from . import calcstats, const, rioserrors
from .blockwriter import OutputFile, deleteIfExisting, doubleCheckCreationOptions
from .controls import ApplierControls
from .imageio import GDALTypeToNumpyType
from .pixelgrid import PixelGridDefn
from .structures import ApplierBlockDefn, TempfileManager, Timers


class ImageWriter:
    """Writes one output image block by block (RIOS 1.x).

    The grid comes from ``info`` (its working grid, window size and overlap), else from
    ``xsize``, ``ysize``, ``transform`` and ``projection`` with ``windowxsize``,
    ``windowysize`` (default 256) and ``overlap`` (default 0). The band count and type come
    from ``firstblock``, which is written as block 0, else from ``nbands`` and
    ``gdaldatatype`` (a GDAL type code). The file is created at once, with the driver's
    default creation options when ``creationoptions`` is None.
    """

    def __init__(self, filename, drivername=None, creationoptions=None, nbands=None,
                 gdaldatatype=None, firstblock=None, info=None, xsize=None, ysize=None,
                 transform=None, projection=None, xtotalblocks=None, ytotalblocks=None,
                 windowxsize=None, windowysize=None, overlap=None):
        rioserrors.deprecatedNameWarning("imagewriter.ImageWriter",
                                         "write a user function and call applier.apply")
        self.filename = filename
        grid, windowxsize, windowysize, overlap = _geometry(
            info, xsize, ysize, transform, projection, windowxsize, windowysize, overlap)
        self.overlap = overlap
        self.windowxsize, self.windowysize = windowxsize, windowysize
        self.ysize, self.xsize = grid.getDimensions()
        self.xtotalblocks = xtotalblocks or -(-self.xsize // windowxsize)
        self.ytotalblocks = ytotalblocks or -(-self.ysize // windowysize)
        self.blocknum = 0
        template = _templateBlock(filename, firstblock, nbands, gdaldatatype)
        self.controls = _writerControls(drivername, creationoptions, windowxsize, windowysize)
        self.outfile = OutputFile(filename, None, filename, self.controls, grid,
                                  _noSinglePass(filename, self.controls, grid), Timers())
        self.outfile.create(template)
        if firstblock is not None:
            self.write(firstblock)

    def getGDALDataset(self) -> gdal.Dataset:
        """The output's open GDAL dataset (None once closed)."""
        return self.outfile.ds

    def getCurrentBlock(self) -> int:
        """The number of the block :meth:`write` writes next."""
        return self.blocknum

    def reset(self) -> None:
        """Make :meth:`write` start again at block 0."""
        self.blocknum = 0

    def write(self, block: numpy.ndarray) -> None:
        """Write ``block`` (bands, rows, cols, overlap margin included) as the next block,
        row by row from the top left."""
        xblock, yblock = self.blocknum % self.xtotalblocks, self.blocknum // self.xtotalblocks
        if yblock >= self.ytotalblocks:
            raise rioserrors.OutsideImageBoundsError(
                f"'{self.filename}' has {self.xtotalblocks * self.ytotalblocks} blocks, all "
                "written already; call reset() to write them again, or writeAt()")
        self.writeAt(block, xblock * self.windowxsize, yblock * self.windowysize)
        self.blocknum += 1

    def writeAt(self, block: numpy.ndarray, xoffset: int, yoffset: int) -> None:
        """Write ``block`` (bands, rows, cols, overlap margin included) with its top left
        pixel, margin excluded, at (xoffset, yoffset) of the image."""
        block = numpy.asarray(block)
        if block.ndim != 3:
            raise rioserrors.ArrayShapeError(
                f"Block for '{self.filename}' has shape {block.shape}; it must be 3-D (bands, "
                "rows, cols): use arr[numpy.newaxis] for a single band")
        m = self.overlap
        if m > 0:
            block = block[:, m:block.shape[1] - m, m:block.shape[2] - m]
        _, nrows, ncols = block.shape
        if xoffset < 0 or yoffset < 0 or xoffset + ncols > self.xsize or \
                yoffset + nrows > self.ysize:
            raise rioserrors.OutsideImageBoundsError(
                f"A {ncols}x{nrows} block at ({xoffset}, {yoffset}) does not fit in "
                f"'{self.filename}' ({self.xsize}x{self.ysize} pixels)")
        self.outfile.write(block, ApplierBlockDefn(yoffset, xoffset, nrows, ncols))

    def setThematic(self) -> None:
        """Mark every band thematic (LAYER_TYPE=thematic)."""
        self.controls.setThematic(True)
        for i in range(self.outfile.ds.RasterCount):
            self.outfile.ds.GetRasterBand(i + 1).SetMetadataItem("LAYER_TYPE", "thematic")

    def setLayerNames(self, names: list[str]) -> None:
        """Name the bands (their descriptions), in order."""
        for i, name in enumerate(names[:self.outfile.ds.RasterCount]):
            self.outfile.ds.GetRasterBand(i + 1).SetDescription(name)

    def addAutoColorTable(self, autoColorTableType: str = "rainbow") -> None:
        """Give a thematic output a colour table of this type ("rainbow", "gray" or
        "random") when it is closed with statistics (the table runs up to the maximum)."""
        self.controls.setAutoColorTableType(autoColorTableType)

    deleteIfExisting = staticmethod(deleteIfExisting)
    doubleCheckCreationOptions = staticmethod(doubleCheckCreationOptions)

    def close(self, calcStats=False, statsIgnore=None, progress=None, omitPyramids=False,
              omitBasicStats=False, omitHistogram=False,
              overviewLevels=const.DEFAULT_OVERVIEWLEVELS,
              overviewMinDim=const.DEFAULT_MINOVERVIEWDIM, overviewAggType=None,
              autoColorTableType=None, approx_ok=False) -> None:
        """Finish and close the file.

        With ``calcStats`` the bands get ``statsIgnore`` as no-data (when given), then
        pyramids, basic statistics and histograms, each unless omitted, as ``apply``
        makes them; ``autoColorTableType`` adds a colour table to a thematic output.
        """
        if self.outfile.ds is None:
            return
        controls = self.controls
        if calcStats:
            calcstats.setNullValue(self.outfile.ds, statsIgnore)
        controls.setOmitPyramids(not calcStats or omitPyramids)
        controls.setOmitBasicStats(not calcStats or omitBasicStats)
        controls.setOmitHistogram(not calcStats or omitHistogram)
        controls.setOverviewLevels(overviewLevels)
        controls.setOverviewMinDim(overviewMinDim)
        controls.setOverviewAggregationType(overviewAggType)
        controls.setProgress(progress)
        if autoColorTableType is not None:
            controls.setAutoColorTableType(autoColorTableType)
        self.outfile.singlePassMgr.approxOK[self.filename] = bool(approx_ok)
        self.outfile.close()


def _geometry(info, xsize, ysize, transform, projection, windowxsize, windowysize, overlap):
    """(grid, windowxsize, windowysize, overlap) of a writer, from ``info`` or the sizes."""
    if info is not None:
        return (info.workingGrid, windowxsize or info.windowxsize,
                windowysize or info.windowysize, info.overlap if overlap is None else overlap)
    if None in (xsize, ysize, transform, projection):
        raise rioserrors.ParameterError(
            "ImageWriter needs info=, or all of xsize, ysize, transform and projection")
    grid = PixelGridDefn(geotransform=transform, nrows=ysize, ncols=xsize,
                         projection=projection)
    return (grid, windowxsize or const.DEFAULTWINDOWXSIZE,
            windowysize or const.DEFAULTWINDOWYSIZE, overlap or 0)


def _templateBlock(filename, firstblock, nbands, gdaldatatype) -> numpy.ndarray:
    """A one-pixel array with the output's band count and dtype, to create the file."""
    if firstblock is not None:
        nbands, dtype = firstblock.shape[0], firstblock.dtype
    elif nbands is None or gdaldatatype is None:
        raise rioserrors.ParameterError(
            f"ImageWriter('{filename}') needs firstblock=, or both nbands and gdaldatatype")
    else:
        dtype = GDALTypeToNumpyType(gdaldatatype)
    return numpy.zeros((nbands, 1, 1), dtype=dtype)


def _writerControls(drivername, creationoptions, windowxsize, windowysize) -> ApplierControls:
    """Controls for the output: no no-data set until close, nothing single-pass."""
    controls = ApplierControls()
    controls.setOutputDriverName(drivername or const.DEFAULTDRIVERNAME)
    controls.setCreationOptions(creationoptions)
    controls.setWindowSize(windowxsize, windowysize)
    controls.setStatsIgnore(None)
    controls.setSinglePassPyramids(False)
    controls.setSinglePassBasicStats(False)
    controls.setSinglePassHistogram(False)
    return controls


def _noSinglePass(filename, controls, grid) -> calcstats.SinglePassManager:
    """The single-pass manager of the output, which does everything at close: blocks may
    come in any order and more than once."""
    with TempfileManager(tempfile.gettempdir()) as tmpfileMgr:
        return calcstats.SinglePassManager([(filename, None, filename)], controls, grid,
                                           tmpfileMgr)
