"""sharedapplier: RIOS-compatible raster block processing.

``__version__`` is this package's version; ``RIOS_VERSION`` the RIOS release whose
behaviour it follows. :class:`VersionObj` compares version strings, as ``rios.VersionObj``
does (RIOS's own tests use it to compare GDAL and numpy versions).

Importing the package without GDAL's Python bindings stops at once with a message saying
how to get them (:class:`GdalMissingError`), not with a bare ``No module named 'osgeo'``
from deep inside; the check only looks for the package, it imports nothing of GDAL.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import re
import sys
from importlib import metadata

RIOS_VERSION = "2.0.9"

GDAL_MISSING_TEXT = """\
sharedapplier needs GDAL's Python bindings (the 'osgeo' package), and this Python \
({python}) cannot import them. Either:
  * with pip, pinned to the system's GDAL (Debian/Ubuntu: apt-get install libgdal-dev \
gdal-bin first):
        pip install "gdal[numpy]==$(gdal-config --version)"
  * or with conda, from conda-forge:
        conda env create -f environment.yml     (in a sharedapplier checkout)
        conda install -c conda-forge gdal       (into an environment of your own)"""

# the console scripts, which print the message alone instead of a traceback
CONSOLE_SCRIPTS = ("sharedapplier", "rioscalcstats", "riosprintstats")


class GdalMissingError(ImportError):
    """GDAL's Python bindings are not installed for this Python."""


def _gdalFound() -> bool:
    try:
        return importlib.util.find_spec("osgeo") is not None
    except ImportError:
        return False


if not _gdalFound():
    _text = GDAL_MISSING_TEXT.format(python=sys.executable)
    if os.path.basename(sys.argv[0] if sys.argv else "") in CONSOLE_SCRIPTS:
        print(f"{os.path.basename(sys.argv[0])}: error: {_text}", file=sys.stderr)
        raise SystemExit(1)
    raise GdalMissingError(_text)

try:
    __version__ = metadata.version("sharedapplier")
except metadata.PackageNotFoundError:  # run from a source tree that is not installed
    __version__ = "0.1.0"


@functools.total_ordering
class VersionObj:
    """A version string such as "3.6.2" or "2.0.0rc1", ordered by its numeric fields.

    Each dot-separated field counts by its leading digits ("0rc1" counts as 0); a field
    with none is dropped ("2.x.1" compares as 2.1). ``None`` gives a version with no
    fields, older than any other. A plain string compares as its ``VersionObj``.
    """

    def __init__(self, vstring: str | None):
        self.vstring = vstring
        self.components = self.parse(vstring)

    @staticmethod
    def leadingDigits(s: str) -> str:
        """The digits at the start of ``s`` ("" when it does not start with one)."""
        return re.match(r"\d*", s).group()

    @staticmethod
    def parse(vstring: str | None) -> tuple[int, ...]:
        """The numeric fields of a version string, as a tuple of ints."""
        if vstring is None:
            return ()
        fields = (VersionObj.leadingDigits(f) for f in str(vstring).split("."))
        return tuple(int(digits) for digits in fields if digits)

    @staticmethod
    def _componentsOf(other) -> tuple[int, ...] | None:
        if isinstance(other, VersionObj):
            return other.components
        if isinstance(other, str):
            return VersionObj.parse(other)
        return None

    def __eq__(self, other):
        components = self._componentsOf(other)
        return NotImplemented if components is None else self.components == components

    def __lt__(self, other):
        components = self._componentsOf(other)
        return NotImplemented if components is None else self.components < components

    def __hash__(self):
        return hash(self.components)

    def __repr__(self):
        return f"VersionObj({self.vstring!r})"

    def __str__(self):
        return str(self.vstring)
