"""RIOS's ``imagewriter`` module: the write stage's names (:mod:`.blockwriter`) and RIOS 1.x's
``ImageWriter`` (:mod:`.legacywriter`), where RIOS scripts import them.

The package itself imports :mod:`.blockwriter`; only user code imports this module.
"""
from . import const
from .blockwriter import (  # noqa: F401
    DEFAULT_AUTOCOLORTABLETYPE,
    DEFAULT_MINOVERVIEWDIM,
    DEFAULT_OVERVIEWAGGREGRATIONTYPE,
    DEFAULT_OVERVIEWLEVELS,
    SIDE_FILE_SUFFIXES,
    OutputFile,
    OutputLayout,
    OutputWriter,
    addAutoColorTable,
    allnotNone,
    anynotNone,
    checkForNanOrInf,
    checkGTiffBlockSize,
    checkOutputWritable,
    closeOutfiles,
    conformToDtype,
    conformToLayouts,
    deleteExisting,
    deleteIfExisting,
    dfltDriverOptions,
    doubleCheckCreationOptions,
    gdalTypeForDtype,
    layoutsFromArrays,
    makeMinMaxList,
    nanWarningFiles,
    openOutfile,
    prepareOutputArrays,
    releaseFrames,
    warnNanOrInf,
    writeBlock,
)
from .legacywriter import ImageWriter  # noqa: F401

DEFAULTDRIVERNAME = const.DEFAULTDRIVERNAME
DEFAULTCREATIONOPTIONS = const.DEFAULTCREATIONOPTIONS


def setDefaultDriver() -> None:
    """Read RIOS_DFLT_DRIVER, RIOS_DFLT_DRIVEROPTIONS and RIOS_DFLT_CREOPT_<driver> again,
    into :mod:`sharedapplier.const` and RIOS's copies of its defaults here."""
    global DEFAULTDRIVERNAME, DEFAULTCREATIONOPTIONS
    const.setDefaultDriver()
    DEFAULTDRIVERNAME = const.DEFAULTDRIVERNAME
    DEFAULTCREATIONOPTIONS = const.DEFAULTCREATIONOPTIONS
