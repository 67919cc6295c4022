"""RIOS's ``imagereader`` module: the read stage's names (:mod:`.blockreader`) and RIOS 1.x's
``ImageReader`` and ``ImageIterator`` (:mod:`.legacyreader`), where RIOS scripts import them.

The package itself imports :mod:`.blockreader`; only user code imports this module, so the
1.x reader, which builds on the applier, adds no import cycle.
"""
from .blockreader import (  # noqa: F401
    DEFAULTFOOTPRINT,
    DEFAULTLOGGINGSTREAM,
    DEFAULTOVERLAP,
    DEFAULTWINDOWXSIZE,
    DEFAULTWINDOWYSIZE,
    READ_CACHE_HEADROOM,
    READ_CACHE_MIN_BYTES,
    READ_CACHE_UNKNOWN_BYTES,
    BlockReader,
    InputSpec,
    ReadWorkerMgr,
    blockShape,
    inputGrid,
    openForWorkingGrid,
    prepareInputs,
    prepareInputSpec,
    readBlockAllFiles,
    readBlockOneFile,
    readCacheBytes,
    readIntoArray,
    reprojectionRequired,
    reprojResolution,
    selectedBands,
    selectedNulls,
    specialProjFixes,
)
from .legacyreader import ImageIterator, ImageReader  # noqa: F401
