"""``ApplierControls``: every option of a run, global or per image (RIOS names and defaults).

Setters only store; :meth:`ApplierControls.checkAgainstFiles` validates them against the
files at the start of :func:`sharedapplier.applier.apply`.
"""
import logging
import sys
from typing import Any

import numpy

from . import const, rioserrors
from .structures import (
    CW_AWSBATCH,
    CW_PBS,
    CW_PROCESSES,
    CW_SLURM,
    CW_SUBPROC,
    CW_THREADS,
    ConcurrencyStyle,
)

logger = logging.getLogger(__name__)

# RIOS 1.x job manager names (setJobManagerType) -> the compute-worker kind doing that work
OLD_JOB_MANAGER_KINDS = {
    "multiprocessing": CW_PROCESSES,
    "subproc": CW_SUBPROC,
    "pbs": CW_PBS,
    "slurm": CW_SLURM,
    "awsbatch": CW_AWSBATCH,
}


def concurrencyForOldJobManager(numThreads: int, jobManagerType: str | None) -> ConcurrencyStyle:
    """The ConcurrencyStyle doing what RIOS 1.x's ``numThreads`` and job manager did.

    One thread computes in the main thread (CW_NONE); more compute in that many workers of
    the job manager's kind, or in threads when no job manager is named.
    """
    if numThreads is None or numThreads <= 1:
        return ConcurrencyStyle()
    if jobManagerType is None:
        kind = CW_THREADS
    else:
        kind = OLD_JOB_MANAGER_KINDS.get(str(jobManagerType).lower())
        if str(jobManagerType).lower() == "mpi":
            raise rioserrors.JobManagerUnavailableError(
                "setJobManagerType('mpi'): sharedapplier has no MPI job manager; use "
                "'multiprocessing' on one node, or 'slurm' or 'pbs' across nodes")
        if kind is None:
            raise rioserrors.ParameterError(
                f"setJobManagerType({jobManagerType!r}): there is no such job manager here; "
                f"use one of {', '.join(OLD_JOB_MANAGER_KINDS)}, or setConcurrencyStyle")
    try:
        return ConcurrencyStyle(numComputeWorkers=numThreads, computeWorkerKind=kind)
    except rioserrors.ConcurrencyStyleError as e:
        raise rioserrors.ConcurrencyStyleError(
            f"setNumThreads({numThreads}) with job manager {jobManagerType!r}: {e}") from e

# option name -> (default, can be set per image)
_OPTIONS: dict[str, Any] = {
    "drivername": lambda: const.DEFAULTDRIVERNAME,
    "creationoptions": None,
    "overlap": lambda: const.DEFAULTOVERLAP,
    "windowxsize": lambda: const.DEFAULTWINDOWXSIZE,
    "windowysize": lambda: const.DEFAULTWINDOWYSIZE,
    "footprint": lambda: const.DEFAULTFOOTPRINT,
    "filesforextent": None,
    "referenceImage": None,
    "referencePixgrid": None,
    "progress": None,
    "statsIgnore": 0,
    "inputnodata": None,
    "calcStats": True,
    "omitPyramids": False,
    "omitBasicStats": False,
    "omitHistogram": False,
    "overviewLevels": lambda: const.DEFAULT_OVERVIEWLEVELS,
    "overviewMinDim": lambda: const.DEFAULT_MINOVERVIEWDIM,
    "overviewAggType": None,
    "singlePassPyramids": None,
    "singlePassBasicStats": None,
    "singlePassHistogram": None,
    "thematic": False,
    "layernames": None,
    "tempdir": ".",
    "resampleMethod": lambda: const.DEFAULT_RESAMPLEMETHOD,
    "concurrency": lambda: ConcurrencyStyle(),
    "autoColorTableType": lambda: const.DEFAULT_AUTOCOLORTABLETYPE,
    "allowOverviewsGdalwarp": False,
    "approxStats": False,
    "layerselection": None,
    "jobName": None,
    "resumable": False,
    "callBeforeClose": None,
    "burnvalue": 1,
    "burnattribute": None,
    "vectornull": 0,
    "filtersql": None,
    "alltouched": False,
    "vectordatatype": numpy.uint8,
    "vectorlayer": 0,
}


class ApplierControls:
    """All the options of one :func:`apply` run.

    A value set with ``imagename=`` (or ``vectorname=``) applies only to that symbolic
    name of infiles/outfiles and overrides the global value.
    """

    def __init__(self):
        for option, default in _OPTIONS.items():
            setattr(self, option, default() if callable(default) else default)
        self.loggingstream = sys.stdout
        self.optionsByImage: dict[str, dict[str, Any]] = {}
        # the RIOS 1.x concurrency settings, kept for the deprecated setters below
        self.numThreads = 1
        self.jobManagerType = None

    # --- generic per-image storage -------------------------------------------------
    def setOptionForImagename(self, option: str, imagename: str | None, value: Any) -> None:
        """Set ``option`` globally (``imagename`` None) or for one symbolic name."""
        if imagename is None:
            setattr(self, option, value)
        else:
            self.optionsByImage.setdefault(option, {})[imagename] = value

    def getOptionForImagename(self, option: str, imagename: str | None) -> Any:
        """The value of ``option`` for ``imagename``: its own if set, else the global one."""
        perImage = self.optionsByImage.get(option, {})
        if imagename in perImage:
            return perImage[imagename]
        return getattr(self, option)

    # --- global-only setters -------------------------------------------------------
    def setOverlap(self, overlap: int) -> None:
        self.overlap = overlap

    def setWindowXsize(self, windowxsize: int) -> None:
        self.windowxsize = windowxsize

    def setWindowYsize(self, windowysize: int) -> None:
        self.windowysize = windowysize

    def setWindowSize(self, windowxsize: int, windowysize: int) -> None:
        self.windowxsize = windowxsize
        self.windowysize = windowysize

    def setFootprintType(self, footprint: int) -> None:
        self.footprint = footprint

    def setFilesForExtent(self, filesforextent: list[str]) -> None:
        self.filesforextent = filesforextent

    def setReferenceImage(self, referenceImage: str) -> None:
        self.referenceImage = referenceImage

    def setReferencePixgrid(self, referencePixgrid) -> None:
        self.referencePixgrid = referencePixgrid

    def setProgress(self, progress) -> None:
        self.progress = progress

    def setTempdir(self, tempdir: str) -> None:
        self.tempdir = tempdir

    def setConcurrencyStyle(self, concurrencyStyle: ConcurrencyStyle) -> None:
        self.concurrency = concurrencyStyle

    def setJobName(self, jobName: str) -> None:
        self.jobName = jobName

    def setResumable(self, resumable: bool) -> None:
        """Keep a journal beside each output so that running the same script again, after
        the run was killed or hit a time limit, goes on where it stopped (see
        :mod:`sharedapplier.journal`). Off by default: RIOS has nothing like it."""
        self.resumable = bool(resumable)

    def setAllowOverviewsGdalwarp(self, allowOverviewsGdalwarp: bool) -> None:
        self.allowOverviewsGdalwarp = allowOverviewsGdalwarp

    # --- RIOS 1.x concurrency (deprecated; RIOS 2.0.9 still accepts them) -------------
    def setNumThreads(self, numThreads: int) -> None:
        """Deprecated: ``n > 1`` computes with ``n`` workers of the kind set by
        :meth:`setJobManagerType` (threads when none is set); 1 computes in the main thread.
        Use :meth:`setConcurrencyStyle` instead."""
        rioserrors.deprecatedNameWarning(
            "ApplierControls.setNumThreads",
            "use setConcurrencyStyle(ConcurrencyStyle(numComputeWorkers=n, "
            "computeWorkerKind=...))")
        self.numThreads = numThreads
        self._emulateOldJobManager()

    def setJobManagerType(self, jobMgrType: str) -> None:
        """Deprecated: the kind of the :meth:`setNumThreads` workers, by its RIOS 1.x job
        manager name ("multiprocessing", "subproc", "pbs", "slurm" or "awsbatch").
        Use :meth:`setConcurrencyStyle` instead."""
        rioserrors.deprecatedNameWarning(
            "ApplierControls.setJobManagerType",
            "use setConcurrencyStyle(ConcurrencyStyle(computeWorkerKind=CW_...))")
        self.jobManagerType = jobMgrType
        self._emulateOldJobManager()

    def emulateOldJobManager(self) -> None:
        """Deprecated: set the concurrency style from ``numThreads`` and ``jobManagerType``
        (the two setters above already do). Use :meth:`setConcurrencyStyle` instead."""
        rioserrors.deprecatedNameWarning(
            "ApplierControls.emulateOldJobManager", "use setConcurrencyStyle")
        self._emulateOldJobManager()

    def setLoggingStream(self, loggingstream) -> None:
        """Deprecated: the stream stored as ``info.loggingstream`` (nothing writes to it)."""
        rioserrors.deprecatedNameWarning(
            "ApplierControls.setLoggingStream",
            "write messages to a stream of your own choosing instead")
        self.loggingstream = loggingstream

    def _emulateOldJobManager(self) -> None:
        self.concurrency = concurrencyForOldJobManager(self.numThreads, self.jobManagerType)

    # --- per-image setters ---------------------------------------------------------
    def setOutputDriverName(self, drivername: str, imagename: str | None = None) -> None:
        self.setOptionForImagename("drivername", imagename, drivername)

    def setCreationOptions(self, creationoptions: list[str], imagename: str | None = None) -> None:
        self.setOptionForImagename("creationoptions", imagename, creationoptions)

    def setStatsIgnore(self, statsIgnore, imagename: str | None = None) -> None:
        self.setOptionForImagename("statsIgnore", imagename, statsIgnore)

    def setInputNoDataValue(self, nodataValue, imagename: str | None = None) -> None:
        self.setOptionForImagename("inputnodata", imagename, nodataValue)

    def setCalcStats(self, calcStats: bool, imagename: str | None = None) -> None:
        """Obsolete switch: sets the three omit options to ``not calcStats``."""
        for option in ("omitPyramids", "omitBasicStats", "omitHistogram"):
            self.setOptionForImagename(option, imagename, not calcStats)

    def setOmitPyramids(self, omitPyramids: bool, imagename: str | None = None) -> None:
        self.setOptionForImagename("omitPyramids", imagename, omitPyramids)

    def setOmitBasicStats(self, omitBasicStats: bool, imagename: str | None = None) -> None:
        self.setOptionForImagename("omitBasicStats", imagename, omitBasicStats)

    def setOmitHistogram(self, omitHistogram: bool, imagename: str | None = None) -> None:
        self.setOptionForImagename("omitHistogram", imagename, omitHistogram)

    def setOverviewLevels(self, overviewLevels: list[int], imagename: str | None = None) -> None:
        self.setOptionForImagename("overviewLevels", imagename, overviewLevels)

    def setOverviewMinDim(self, overviewMinDim: int, imagename: str | None = None) -> None:
        self.setOptionForImagename("overviewMinDim", imagename, overviewMinDim)

    def setOverviewAggregationType(self, overviewAggType: str, imagename: str | None = None) -> None:
        self.setOptionForImagename("overviewAggType", imagename, overviewAggType)

    def setSinglePassPyramids(self, singlePassPyramids, imagename: str | None = None) -> None:
        self.setOptionForImagename("singlePassPyramids", imagename, singlePassPyramids)

    def setSinglePassBasicStats(self, singlePassBasicStats, imagename: str | None = None) -> None:
        self.setOptionForImagename("singlePassBasicStats", imagename, singlePassBasicStats)

    def setSinglePassHistogram(self, singlePassHistogram, imagename: str | None = None) -> None:
        self.setOptionForImagename("singlePassHistogram", imagename, singlePassHistogram)

    def setThematic(self, thematicFlag: bool, imagename: str | None = None) -> None:
        self.setOptionForImagename("thematic", imagename, thematicFlag)

    def setLayerNames(self, layerNames: list[str], imagename: str | None = None) -> None:
        self.setOptionForImagename("layernames", imagename, layerNames)

    def setResampleMethod(self, resampleMethod: str, imagename: str | None = None) -> None:
        self.setOptionForImagename("resampleMethod", imagename, resampleMethod)

    def setAutoColorTableType(self, autoColorTableType: str, imagename: str | None = None) -> None:
        self.setOptionForImagename("autoColorTableType", imagename, autoColorTableType)

    def setApproxStats(self, approxStats: bool, imagename: str | None = None) -> None:
        self.setOptionForImagename("approxStats", imagename, approxStats)

    def selectInputImageLayers(self, layerselection: list[int], imagename: str | None = None) -> None:
        self.setOptionForImagename("layerselection", imagename, layerselection)

    def setCallBeforeClose(self, func, args=(), imagename: str | None = None) -> None:
        self.setOptionForImagename("callBeforeClose", imagename, (func, args))

    def setBurnValue(self, burnvalue, vectorname: str | None = None) -> None:
        self.setOptionForImagename("burnvalue", vectorname, burnvalue)

    def setBurnAttribute(self, burnattribute: str, vectorname: str | None = None) -> None:
        self.setOptionForImagename("burnattribute", vectorname, burnattribute)

    def setVectorNull(self, vectornull, vectorname: str | None = None) -> None:
        self.setOptionForImagename("vectornull", vectorname, vectornull)

    def setFilterSQL(self, filtersql: str, vectorname: str | None = None) -> None:
        self.setOptionForImagename("filtersql", vectorname, filtersql)

    def setAlltouched(self, alltouched: bool, vectorname: str | None = None) -> None:
        self.setOptionForImagename("alltouched", vectorname, alltouched)

    def setVectorDatatype(self, vectordatatype, vectorname: str | None = None) -> None:
        self.setOptionForImagename("vectordatatype", vectorname, vectordatatype)

    def setVectorlayer(self, vectorlayer, vectorname: str | None = None) -> None:
        self.setOptionForImagename("vectorlayer", vectorname, vectorlayer)

    # --- validation ------------------------------------------------------------------
    def checkAgainstFiles(self, infiles, outfiles) -> None:
        """Validate the options against the files of a run; raise ``ValueError`` if wrong."""
        names = set(vars(infiles)) | set(vars(outfiles))
        for option, perImage in self.optionsByImage.items():
            for imagename in perImage:
                if imagename not in names:
                    raise ValueError(
                        f"Option '{option}' was set for image '{imagename}', which is not a "
                        f"name in infiles or outfiles (names: {sorted(names)})")
        for name in vars(outfiles):
            approx = self.getOptionForImagename("approxStats", name)
            if approx and self.getOptionForImagename("thematic", name):
                logger.warning(f"Warning: approximate statistics for thematic output "
                               f"'{name}' may give a wrong histogram")
            if approx and self.getOptionForImagename("omitPyramids", name):
                raise ValueError(
                    f"Output '{name}': approxStats needs pyramid layers; do not combine "
                    "setApproxStats(True) with setOmitPyramids(True)")
        if self.footprint not in (const.INTERSECTION, const.UNION, const.BOUNDS_FROM_REFERENCE):
            raise ValueError(
                f"Footprint type {self.footprint!r} is not INTERSECTION, UNION or "
                "BOUNDS_FROM_REFERENCE")
        if len(infiles) == 0:
            if self.footprint != const.BOUNDS_FROM_REFERENCE:
                raise ValueError("With no input files the footprint must be "
                                 "BOUNDS_FROM_REFERENCE (setFootprintType)")
            if self.referenceImage is None and self.referencePixgrid is None:
                raise ValueError("With no input files a reference image or pixel grid is "
                                 "needed (setReferenceImage or setReferencePixgrid)")
