"""``apply()``: run a user function over every block of aligned rasters (RIOS's API).

``apply`` gathers the inputs' metadata, builds the working grid and the block list, then
hands the blocks to the engine (:mod:`sharedapplier.engine`) in the concurrency style the
controls ask for. Every name a RIOS script reaches through ``rios.applier`` is here.
"""
from __future__ import annotations

import logging
import os
import queue  # noqa: F401 - RIOS exposes these modules on applier
import signal  # noqa: F401
import sys  # noqa: F401

import numpy  # noqa: F401
from osgeo import gdal

from . import calcstats, journal, platforms, rioserrors  # noqa: F401
from .blockreader import (  # noqa: F401
    ReadWorkerMgr,
    inputGrid,
    prepareInputs,
    readBlockAllFiles,
    specialProjFixes,
)
from .blockwriter import (  # noqa: F401
    OutputWriter,
    checkOutputWritable,
    closeOutfiles,
    writeBlock,
)
from .calcstats import (  # noqa: F401
    DEFAULT_MINOVERVIEWDIM,
    DEFAULT_OVERVIEWAGGREGRATIONTYPE,
    DEFAULT_OVERVIEWLEVELS,
    SinglePassManager,
)
from .computemanager import getComputeWorkerManager  # noqa: F401 - RIOS's names here
from .const import (  # noqa: F401
    BOUNDS_FROM_REFERENCE,
    DEFAULT_AUTOCOLORTABLETYPE,
    DEFAULT_RESAMPLEMETHOD,
    DEFAULTCREATIONOPTIONS,
    DEFAULTDRIVERNAME,
    DEFAULTFOOTPRINT,
    DEFAULTLOGGINGSTREAM,
    DEFAULTOVERLAP,
    DEFAULTWINDOWXSIZE,
    DEFAULTWINDOWYSIZE,
    INTERSECTION,
    UNION,
    dfltDriverOptions,
)
from .controls import ApplierControls
from .engine.job import ComputeJob
from .engine.runner import runBlocks
from .engine.writer import ApplierProgress  # noqa: F401
from .fileinfo import ImageInfo, VectorFileInfo
from .pixelgrid import PixelGridDefn, findCommonRegion, pixelGridFromFile
from .readerinfo import makeReaderInfo  # noqa: F401
from .runrecord import RunRecord
from .structures import (  # noqa: F401
    CW_AWSBATCH,
    CW_ECS,
    CW_NONE,
    CW_PBS,
    CW_PROCESSES,
    CW_SLURM,
    CW_SUBPROC,
    CW_THREADS,
    ApplierBlockDefn,
    ApplierReturn,
    BlockAssociations,
    BlockBuffer,
    ConcurrencyStyle,
    FilenameAssociations,
    OtherInputs,
    RasterizationMgr,
    TempfileManager,
    Timers,
    WorkerErrorRecord,
)

logger = logging.getLogger(__name__)

_FOOTPRINT_NAMES = {INTERSECTION: "INTERSECTION", UNION: "UNION",
                    BOUNDS_FROM_REFERENCE: "BOUNDS_FROM_REFERENCE"}


def apply(userFunction, infiles, outfiles, otherArgs=None, controls=None) -> ApplierReturn:
    """Call ``userFunction(info, inputs, outputs[, otherArgs])`` on every block.

    Inputs are read onto one working grid (reprojected or resampled when needed), outputs
    are created on that grid and finished with statistics, histograms and pyramids.
    Returns an :class:`ApplierReturn` with the timings and the otherArgs copies.
    """
    hadExceptions = gdal.GetUseExceptions()
    gdal.UseExceptions()
    try:
        return _apply(userFunction, infiles, outfiles, otherArgs, controls)
    finally:
        if not hadExceptions:
            gdal.DontUseExceptions()


def _apply(userFunction, infiles, outfiles, otherArgs, controls):
    if controls is None:
        controls = ApplierControls()
    controls.checkAgainstFiles(infiles, outfiles)
    platforms.checkStyleRuns(controls.concurrency)
    for _, _, filename in outfiles:
        checkOutputWritable(filename)
    allInfo = readAllImgInfo(infiles)
    workinggrid = makeWorkingGrid(infiles, allInfo, controls)
    blockList = makeBlockList(workinggrid, controls)
    timings = Timers(worker="main")
    rtn = ApplierReturn()
    record = RunRecord()  # what a killed run would leave, for 'sharedapplier cleanup'
    try:
        with TempfileManager(controls.tempdir) as tmpfileMgr:
            record.noteFolder(tmpfileMgr.tempsubdir)
            with timings.interval("walltime"):
                singlePassMgr = _runJob(userFunction, infiles, outfiles, otherArgs, controls,
                                        workinggrid, blockList, allInfo, tmpfileMgr, timings,
                                        record, rtn)
    finally:
        record.end()
    rtn.timings = timings
    rtn.workinggrid = workinggrid
    rtn.singlePassMgr = singlePassMgr
    return rtn


def _runJob(userFunction, infiles, outfiles, otherArgs, controls, workinggrid, blockList,
            allInfo, tmpfileMgr, timings, record, rtn):
    """Prepare the inputs and outputs, run every block, close the outputs (or discard
    them after a failure); the single-pass manager."""
    specs = prepareInputs(infiles, allInfo, workinggrid, controls, tmpfileMgr)
    singlePassMgr = SinglePassManager(outfiles, controls, workinggrid, tmpfileMgr)
    journal, resumption = _journalFor(userFunction, infiles, outfiles, workinggrid, controls,
                                      len(blockList))
    rtn.resumedFrom = 0 if resumption is None else resumption.blocksDone
    writer = OutputWriter(outfiles, controls, workinggrid, singlePassMgr, timings, record,
                          journal, resumption)
    job = ComputeJob(userFunction, infiles, outfiles, otherArgs, workinggrid,
                     blockList[rtn.resumedFrom:], specs, controls.windowxsize,
                     controls.windowysize, controls.overlap, controls.concurrency,
                     controls.loggingstream)
    try:
        rtn.otherArgsList = runBlocks(job, writer, controls, timings, record)
        writer.close()
    except BaseException as failure:
        writer.discard(failure)
        raise
    return singlePassMgr


def _journalFor(userFunction, infiles, outfiles, workinggrid, controls, nblocks):
    """(journal, resumption) of a resumable run, (None, None) otherwise: the resumption
    when an earlier run of these very outputs stopped part way."""
    if not controls.resumable:
        return None, None
    fingerprint = journal.runFingerprint(userFunction, infiles, outfiles, workinggrid,
                                         controls)
    resumption = journal.findResumption(outfiles, fingerprint)
    if resumption is None:
        journal.Journal.remove(filename for _, _, filename in outfiles)
    else:
        logger.warning(f"sharedapplier: resuming: {resumption.blocksDone} of {nblocks} blocks "
                       "were written by an earlier run of these outputs")
    return journal.Journal(fingerprint, nblocks), resumption


def _openInput(name, filename):
    """Metadata of one input: a raster if GDAL can open it, else a vector."""
    if "://" not in filename and not filename.startswith("/vsi") and \
            not os.path.exists(filename):
        raise rioserrors.FileOpenError(
            f"Unable to open '{filename}' (input '{name}'): the file does not exist")
    try:
        return ImageInfo(filename)
    except (rioserrors.FileOpenError, RuntimeError) as rasterError:
        try:
            return VectorFileInfo(filename)
        except (rioserrors.RiosError, RuntimeError):
            raise rioserrors.FileOpenError(
                f"Unable to open '{filename}' (input '{name}'): GDAL reads it neither as a "
                f"raster nor as a vector ({rasterError})") from rasterError


def readAllImgInfo(infiles) -> dict:
    """Metadata of every input, keyed by (symbolicName, seqNum), in infiles order."""
    return {(name, seqNum): _openInput(name, filename) for name, seqNum, filename in infiles}


def _referenceGrid(infiles, allInfo, controls):
    if controls.referencePixgrid is not None:
        return controls.referencePixgrid
    ref = controls.referenceImage
    if ref is None:
        return None
    match = None
    for name, seqNum, filename in infiles:
        if ref in (name, filename) and not allInfo[(name, seqNum)].isVector:
            match = allInfo[(name, seqNum)]
    if match is not None:
        return PixelGridDefn(geotransform=match.transform, nrows=match.nrows, ncols=match.ncols,
                             projection=match.projection)
    if not os.path.exists(ref):
        raise rioserrors.FileOpenError(
            f"Reference image '{ref}' is neither an input name nor an existing file")
    return pixelGridFromFile(ref)


def checkAllMatch(pixgridList, refPixGrid, filenames=None):
    """Raise ResampleNeededError unless every grid is on the reference's pixel grid."""
    for i, grid in enumerate(pixgridList):
        if not (grid.isComparable(refPixGrid) and refPixGrid.alignedWith(grid)):
            which = f" ('{filenames[i]}')" if filenames else ""
            raise rioserrors.ResampleNeededError(
                f"Input {i}{which} is not on the same pixel grid as the first input (pixel "
                "size, projection or alignment differ); supply a reference image or pixel "
                "grid with setReferenceImage or setReferencePixgrid to resample onto it")


def makeWorkingGrid(infiles, allInfo, controls) -> PixelGridDefn:
    """The pixel grid every block is read and written on."""
    rasters = [(filename, allInfo[(name, seqNum)]) for name, seqNum, filename in infiles
               if not allInfo[(name, seqNum)].isVector]
    candidates = [inputGrid(info) for _, info in rasters]
    ref = _referenceGrid(infiles, allInfo, controls)
    if ref is None:
        if not candidates:
            raise rioserrors.ParameterError(
                "There are no raster inputs to define a pixel grid; supply one with "
                "setReferenceImage or setReferencePixgrid")
        checkAllMatch(candidates, candidates[0], [f for f, _ in rasters])
        ref = candidates[0]
    if controls.footprint == BOUNDS_FROM_REFERENCE:
        return ref
    if controls.filesforextent is not None:
        extentGrids = [pixelGridFromFile(f) for f in controls.filesforextent]
        names = list(controls.filesforextent)
    else:
        extentGrids = candidates
        names = [f for f, _ in rasters]
    if not extentGrids:
        raise rioserrors.ParameterError(
            "Only vector inputs: use setFootprintType(BOUNDS_FROM_REFERENCE) with a reference "
            "image or pixel grid")
    try:
        return findCommonRegion(extentGrids, ref, controls.footprint)
    except rioserrors.IntersectionError as e:
        raise rioserrors.IntersectionError(
            f"The inputs have no area in common ({', '.join(names)}) under the "
            f"{_FOOTPRINT_NAMES[controls.footprint]} footprint; check their extents and "
            "projections, or use setFootprintType(UNION)") from e


def makeBlockList(workinggrid, controls) -> list[ApplierBlockDefn]:
    """Blocks tiling the working grid row by row; edge blocks are truncated."""
    nrows, ncols = workinggrid.getDimensions()
    wx, wy = controls.windowxsize, controls.windowysize
    return [ApplierBlockDefn(top, left, min(wy, nrows - top), min(wx, ncols - left))
            for top in range(0, nrows, wy) for left in range(0, ncols, wx)]


def reportWorkerException(exceptionRecord: WorkerErrorRecord) -> None:
    """Log a worker's error record (where it failed, and its traceback) as an error."""
    logger.error("%s", exceptionRecord)


apply_singleCompute = rioserrors.notProvided(
    "applier.apply_singleCompute", "call applier.apply, which runs every concurrency style")
apply_multipleCompute = rioserrors.notProvided(
    "applier.apply_multipleCompute", "call applier.apply, which runs every concurrency style")
