"""RIOS 1.x's iterator-style reader, ``imagereader.ImageReader``, on the applier's reading path.

``ImageReader(imageContainer)`` reads a set of images block by block on one working grid,
as :func:`~sharedapplier.applier.apply` does, but hands the blocks to the caller instead of
to a user function::

    reader = ImageReader({"a": "a.img", "b": "b.img"}, windowxsize=512)
    for info, blocks in reader:
        ndvi = blocks["a"] ...

``blocks`` has the shape of the container: one array for a single filename, a list for a
list, a dict (values a list where the dict's are) for a dict, and a
:class:`~sharedapplier.structures.BlockAssociations` for a
:class:`~sharedapplier.structures.FilenameAssociations`. Every array is (bands, rows, cols)
with the overlap margin, and ``info`` is the :class:`~sharedapplier.readerinfo.ReaderInfo`
that ``apply`` gives a user function. The working grid, the resampling onto a reference and
the reading itself are the applier's own (:func:`~sharedapplier.applier.makeWorkingGrid`,
:func:`~sharedapplier.blockreader.prepareInputs`, :class:`~sharedapplier.blockreader.BlockReader`).
"""
from __future__ import annotations

import tempfile

import numpy
from osgeo import gdal

from . import applier, rioserrors
from .blockreader import (
    BlockReader,
    prepareInputs,
    readIntoArray,
    reprojectionRequired,
    selectedBands,
    selectedNulls,
)
from .calcstats import _gdalExceptions as gdalExceptions
from .const import (
    DEFAULTFOOTPRINT,
    DEFAULTLOGGINGSTREAM,
    DEFAULTOVERLAP,
    DEFAULTWINDOWXSIZE,
    DEFAULTWINDOWYSIZE,
)
from .controls import ApplierControls
from .imageio import GDALTypeToNumpyType
from .pixelgrid import PixelGridDefn
from .readerinfo import ReaderInfoFactory
from .structures import BlockAssociations, FilenameAssociations, TempfileManager

# what shape the blocks of a container take
_SINGLE, _LIST, _DICT, _ASSOC = "single", "list", "dict", "assoc"


def _entriesOf(imageContainer) -> tuple[str, list]:
    """(shape, [(name, seqNum, filename), ...]) of a container of filenames."""
    if isinstance(imageContainer, str):
        return _SINGLE, [("image", None, imageContainer)]
    if isinstance(imageContainer, FilenameAssociations):
        return _ASSOC, list(imageContainer)
    if isinstance(imageContainer, (list, tuple)):
        return _LIST, [(f"image{i}", None, f) for i, f in enumerate(imageContainer)]
    if isinstance(imageContainer, dict):
        entries = []
        for key, value in imageContainer.items():
            if isinstance(value, (list, tuple)):
                entries += [(key, i, f) for i, f in enumerate(value)]
            else:
                entries.append((key, None, value))
        return _DICT, entries
    raise rioserrors.ParameterError(
        f"ImageReader needs a filename, a list or dict of filenames or a "
        f"FilenameAssociations, not {type(imageContainer).__name__}")


class ImageReader:
    """Reads the images of ``imageContainer`` block by block on one working grid (RIOS 1.x).

    Iterate over it for ``(info, blocks)`` of every block in order, or call
    :meth:`readBlock`. The inputs must be on one pixel grid unless :meth:`allowResample`
    was called. ``layerselection`` picks bands (1-based): one list for every image, or a
    list (one entry per image) or dict (per key) matching the container. ``statscache``
    is accepted and unused.
    """

    def __init__(self, imageContainer, footprint=DEFAULTFOOTPRINT,
                 windowxsize=DEFAULTWINDOWXSIZE, windowysize=DEFAULTWINDOWYSIZE,
                 overlap=DEFAULTOVERLAP, statscache=None, loggingstream=DEFAULTLOGGINGSTREAM,
                 layerselection=None):
        rioserrors.deprecatedNameWarning("imagereader.ImageReader",
                                         "write a user function and call applier.apply")
        self.imageContainer = imageContainer
        self.shape, self.entries = _entriesOf(imageContainer)
        if not self.entries:
            raise rioserrors.ParameterError("ImageReader was given no images to read")
        controls = ApplierControls()
        controls.setFootprintType(footprint)
        controls.setWindowSize(windowxsize, windowysize)
        controls.setOverlap(overlap)
        controls.loggingstream = loggingstream
        self.controls = controls
        self._selectLayers(layerselection)
        self.resampleAllowed = False
        self.tempdir = None
        self._prepared = None

    def _selectLayers(self, layerselection):
        if layerselection is None:
            return
        names = list(dict.fromkeys(name for name, _, _ in self.entries))
        if isinstance(layerselection, dict):
            perName = layerselection
        elif all(isinstance(b, (int, numpy.integer)) for b in layerselection):
            perName = dict.fromkeys(names, list(layerselection))
        elif len(layerselection) == len(names):
            perName = dict(zip(names, layerselection, strict=True))
        else:
            raise rioserrors.ParameterError(
                f"layerselection has {len(layerselection)} entries for {len(names)} images: "
                "give one list of bands for all, or one entry per image")
        for name, bands in perName.items():
            if bands is not None:
                self.controls.selectInputImageLayers(list(bands), imagename=name)

    def allowResample(self, resamplemethod="near", refpath=None, refgeotrans=None,
                      refproj=None, refNCols=None, refNRows=None, refPixgrid=None,
                      tempdir=".", useVRT=False, allowOverviewsGdalwarp=False):
        """Resample inputs that are not on the reference's pixel grid onto it.

        The reference is ``refPixgrid``, else the file ``refpath``, else the grid of
        ``refgeotrans``, ``refproj``, ``refNCols`` and ``refNRows``, else the first image.
        Resampling is always through a warped VRT in ``tempdir`` (``useVRT`` is ignored).
        """
        controls = self.controls
        controls.setResampleMethod(resamplemethod)
        controls.setAllowOverviewsGdalwarp(allowOverviewsGdalwarp)
        if refPixgrid is None and refpath is None and refgeotrans is not None:
            if None in (refproj, refNCols, refNRows):
                raise rioserrors.ParameterError(
                    "allowResample(refgeotrans=...) also needs refproj, refNCols and refNRows")
            refPixgrid = PixelGridDefn(geotransform=refgeotrans, nrows=refNRows,
                                       ncols=refNCols, projection=refproj)
        controls.setReferencePixgrid(refPixgrid)
        controls.setReferenceImage(refpath)
        self.tempdir = tempdir
        self.resampleAllowed = True
        self.close()

    def prepare(self, workingGrid: PixelGridDefn | None = None) -> None:
        """Work out the working grid (or take ``workingGrid``) and how to read each input.

        Called by the first read; call it to fix the grid yourself. Without
        :meth:`allowResample`, inputs off the grid raise ``ResampleNeededError``.
        """
        self.close()
        controls = self.controls
        with gdalExceptions():
            allInfo = applier.readAllImgInfo(self.entries)
            if workingGrid is None:
                if self.resampleAllowed and controls.referencePixgrid is None and \
                        controls.referenceImage is None:
                    controls.setReferenceImage(self.entries[0][2])
                workingGrid = applier.makeWorkingGrid(self.entries, allInfo, controls)
            elif not self.resampleAllowed:
                self._checkOnGrid(allInfo, workingGrid)
            tmpfileMgr = TempfileManager(self.tempdir or tempfile.gettempdir())
            try:
                specs = prepareInputs(self.entries, allInfo, workingGrid, controls, tmpfileMgr)
            except BaseException:
                tmpfileMgr.cleanup()
                raise
        nullvalues = {}
        for name, seqNum, _ in self.entries:
            info = allInfo[(name, seqNum)]
            if not info.isVector:
                nullvalues[(name, seqNum)] = selectedNulls(
                    controls, name, info, selectedBands(controls, name, info))
        self._prepared = _Prepared(
            workingGrid, applier.makeBlockList(workingGrid, controls),
            BlockReader(specs, controls.overlap), tmpfileMgr,
            ReaderInfoFactory(workingGrid, controls.windowxsize, controls.windowysize,
                              controls.overlap, controls.loggingstream),
            {(name, seqNum): filename for name, seqNum, filename in self.entries}, nullvalues)

    def _checkOnGrid(self, allInfo, workingGrid):
        for name, seqNum, filename in self.entries:
            info = allInfo[(name, seqNum)]
            if not info.isVector and reprojectionRequired(info, workingGrid):
                raise rioserrors.ResampleNeededError(
                    f"'{filename}' is not on the pixel grid given to prepare(); call "
                    "allowResample() first to resample it onto that grid")

    @property
    def workingGrid(self) -> PixelGridDefn:
        """The pixel grid every block is read on."""
        return self._ready().workingGrid

    def _ready(self) -> _Prepared:
        if self._prepared is None:
            self.prepare()
        return self._prepared

    def __len__(self) -> int:
        return len(self._ready().blockList)

    def __iter__(self) -> ImageIterator:
        return ImageIterator(self)

    def __getitem__(self, nblock: int):
        return self.readBlock(nblock)

    def readBlock(self, nblock: int):
        """``(info, blocks)`` of block ``nblock`` (row by row, from 0)."""
        prepared = self._ready()
        if not 0 <= nblock < len(prepared.blockList):
            raise rioserrors.OutsideImageBoundsError(
                f"Block {nblock} does not exist: this reader has blocks 0 to "
                f"{len(prepared.blockList) - 1}")
        blockDefn = prepared.blockList[nblock]
        with gdalExceptions():
            arrays = prepared.reader.readBlock(blockDefn)
        info = prepared.infoFactory.make(blockDefn, prepared.filenames, prepared.nullvalues,
                                         arrays)
        return info, self._shaped(arrays)

    def _shaped(self, arrays: dict):
        """The arrays of a block, in the shape of the container."""
        if self.shape == _SINGLE:
            return next(iter(arrays.values()))
        if self.shape == _LIST:
            return [arrays[(name, seqNum)] for name, seqNum, _ in self.entries]
        if self.shape == _ASSOC:
            blocks = BlockAssociations(self.imageContainer)
            for key, arr in arrays.items():
                blocks[key] = arr
            return blocks
        blocks = {}
        for name, seqNum, _ in self.entries:
            arr = arrays[(name, seqNum)]
            if seqNum is None:
                blocks[name] = arr
            else:
                blocks.setdefault(name, []).append(arr)
        return blocks

    @staticmethod
    def readBlockWithMargin(ds: gdal.Dataset, xoff: int, yoff: int, xsize: int, ysize: int,
                            datatype, margin: int = 0, nullvalList=None) -> numpy.ndarray:
        """All bands of the ``xsize`` x ``ysize`` window of ``ds`` at (xoff, yoff), with
        ``margin`` pixels more on every side; pixels outside the file get the band's
        value in ``nullvalList`` (0 where it is None). ``datatype`` is a GDAL type code or a
        numpy type."""
        if isinstance(datatype, (int, numpy.integer)) and not isinstance(datatype, bool):
            datatype = GDALTypeToNumpyType(int(datatype))
        bands = list(range(1, ds.RasterCount + 1))
        nulls = list(nullvalList) if nullvalList is not None else [None] * len(bands)
        target = numpy.empty((len(bands), ysize + 2 * margin, xsize + 2 * margin),
                             dtype=datatype)
        return readIntoArray(target, ds, bands, xoff - margin, yoff - margin,
                             [0 if v is None else v for v in nulls])

    def close(self) -> None:
        """Close the files and remove the warped VRTs; a later read prepares again."""
        prepared, self._prepared = self._prepared, None
        if prepared is not None:
            prepared.reader.close()
            prepared.tmpfileMgr.cleanup()


class _Prepared:
    """What :meth:`ImageReader.prepare` worked out."""

    def __init__(self, workingGrid, blockList, reader, tmpfileMgr, infoFactory, filenames,
                 nullvalues):
        self.workingGrid = workingGrid
        self.blockList = blockList
        self.reader = reader
        self.tmpfileMgr = tmpfileMgr
        self.infoFactory = infoFactory
        self.filenames = filenames
        self.nullvalues = nullvalues


class ImageIterator:
    """Iterates over an :class:`ImageReader`'s blocks in order, giving ``(info, blocks)``."""

    def __init__(self, reader: ImageReader):
        self.reader = reader
        self.nblock = 0

    def __iter__(self) -> ImageIterator:
        return self

    def __next__(self):
        if self.nblock >= len(self.reader):
            raise StopIteration
        self.nblock += 1
        return self.reader.readBlock(self.nblock - 1)

    next = __next__
