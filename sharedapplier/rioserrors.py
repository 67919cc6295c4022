"""The exception classes of sharedapplier, under RIOS's names.

Every error we raise on purpose derives from :class:`RiosError`, so a caller can catch
them all at once; the message names the file, option or output involved and the fix.
"""
import inspect
import logging
import warnings

logger = logging.getLogger(__name__)


class RiosError(Exception):
    """Base class of every sharedapplier error."""


class FileOpenError(RiosError):
    """A file could not be opened (missing, unreadable, or not a raster/vector)."""


class ImageOpenError(FileOpenError):
    """An output image could not be created or written."""


class ImageReadError(RiosError):
    """GDAL could not read a block of an input (a truncated or damaged file)."""


class ImageWriteError(ImageOpenError):
    """GDAL could not finish writing an output (a full disk, a file size limit)."""


class ParameterError(RiosError):
    """A parameter has an invalid value."""


class ConcurrencyStyleError(ParameterError, ValueError):
    """A ConcurrencyStyle was given a value or a combination that cannot run (also a
    ``ValueError``, which RIOS raises for these)."""


class ChannelParameterError(ParameterError, ValueError):
    """NetworkDataChannel was given neither a server's objects nor a client's address (also a
    ``ValueError``, which RIOS raises for it)."""


class GDALLayerNumberError(RiosError):
    """A layer (band) number is out of range."""


class ResampleNeededError(RiosError):
    """Inputs are not on one pixel grid and no reference was given."""


class OutsideImageBoundsError(RiosError):
    """A request lies outside the image."""


class GdalWarpError(RiosError):
    """Building a warped VRT failed."""


class ThematicError(RiosError):
    """A thematic-layer operation failed."""


class ProcessCancelledError(RiosError):
    """The progress object reported a cancellation."""


class KeysMismatch(RiosError):
    """Two collections do not have the same keys."""


class MismatchedListLengthsError(RiosError):
    """Two lists that must have equal length do not."""


class AttributeTableColumnError(RiosError):
    """A raster attribute table column is missing or invalid."""


class AttributeTableTypeError(RiosError):
    """A raster attribute table column type is invalid or cannot be inferred."""


class ArrayShapeError(RiosError):
    """An array does not have the shape required."""


class TypeConversionError(RiosError):
    """A data type cannot be converted."""


class VectorAttributeError(RiosError):
    """A vector attribute is missing or invalid."""


class VectorGeometryTypeError(RiosError):
    """A vector geometry type is not supported."""


class VectorProjectionError(RiosError):
    """A vector's projection is missing or unusable."""


class VectorRasterizationError(RiosError):
    """Rasterising a vector layer failed."""


class VectorLayerError(RiosError):
    """A vector layer cannot be found or opened."""


class WrongControlsObject(RiosError):
    """A controls object of the wrong class was given."""


class RatBlockLengthError(RiosError):
    """Columns written in one ratapplier block have different lengths."""


class RatMismatchError(RiosError):
    """Input raster attribute tables have different row counts."""


class IntersectionError(RiosError):
    """Inputs have no area in common."""


class JobMgrError(RiosError):
    """A batch-job manager failed to submit or track a job."""


class ColorTableGenerationError(RiosError):
    """A colour table could not be generated."""


class PermissionError(RiosError):  # noqa: A001 - RIOS's name, part of the interface
    """A file or directory could not be written."""


class TimeoutError(RiosError):  # noqa: A001 - RIOS's name, part of the interface
    """A wait ran past its timeout; the message names the option to raise."""


class UnavailableError(RiosError):
    """A feature needs a package or program that is not available."""


class JobManagerUnavailableError(UnavailableError, ParameterError, ImportError):
    """A RIOS 1.x job manager that sharedapplier does not provide (``"mpi"``); also an
    ``ImportError``, which is what RIOS raises for it where mpi4py is missing."""


class WorkerExceptionError(RiosError):
    """An exception was raised in a worker; the message carries its traceback."""


class SinglePassActionsError(RiosError):
    """A single-pass statistics, histogram or pyramid request cannot be honoured."""


class ECSError(RiosError):
    """An AWS ECS operation failed."""


class DtypeChangeWarning(RuntimeWarning):
    """A later block of an output had another dtype than its first and was converted."""


class SharedMemoryError(RiosError):
    """Shared memory for the engine's slabs cannot be had (e.g. /dev/shm too small)."""


deprecationAlreadyWarned = set()


def deprecationWarning(msg, stacklevel=2):
    """Log a deprecation warning (seen on stderr by default), once per call site.

    The call site is the frame ``stacklevel`` levels above this function.
    """
    frame = inspect.currentframe()
    for _ in range(stacklevel):
        frame = frame.f_back if frame is not None else None
    if frame is None:
        location = ("sys", 1)
    else:
        location = (frame.f_code.co_filename, frame.f_lineno)
    if location in deprecationAlreadyWarned:
        return
    deprecationAlreadyWarned.add(location)
    logger.warning(f"{location[0]} (line {location[1]}):\n    WARNING: {msg}")


deprecatedNamesWarned = set()


def deprecatedNameWarning(name: str, advice: str, stacklevel: int = 2) -> None:
    """Warn that the RIOS 1.x name ``name`` was used, once per process for each name.

    The warning is logged at the caller's line as :func:`deprecationWarning` logs it, and
    is also issued as a Python ``DeprecationWarning``, which warning filters and test runners
    see. ``stacklevel`` counts as in :func:`deprecationWarning`: 2 is the line that called
    the function that called this one.
    """
    if name in deprecatedNamesWarned:
        return
    deprecatedNamesWarned.add(name)
    msg = f"{name} is deprecated: {advice}"
    deprecationWarning(msg, stacklevel=stacklevel + 1)
    warnings.warn(msg, DeprecationWarning, stacklevel=stacklevel + 1)


class NotProvidedError(UnavailableError, NotImplementedError):
    """A RIOS engine internal that sharedapplier does not provide (also a
    ``NotImplementedError``); the message says what to use instead."""


def notProvided(rioName: str, instead: str):
    """A stand-in for the RIOS engine internal ``rioName`` (a class or a function): the name
    can be imported, and calling or instantiating it raises :class:`NotProvidedError`
    saying to use ``instead``. docs/migrating.rst lists these names and why."""
    def standIn(*args, **kwargs):
        raise NotProvidedError(
            f"{rioName} is a RIOS engine internal that sharedapplier does not provide: "
            f"{instead} (see 'Names left out on purpose' in docs/migrating.rst)")
    standIn.__name__ = standIn.__qualname__ = rioName.rsplit(".", 1)[-1]
    standIn.__doc__ = f"Not provided (RIOS engine internal); {instead}."
    return standIn


class OutputMissingError(RiosError, KeyError):
    """The user function did not set one of the outputs (also a ``KeyError``, as in RIOS)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""
