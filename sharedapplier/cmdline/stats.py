"""``calcstats`` and ``printstats``: whole-file statistics, as RIOS's two stats scripts.

``sharedapplier calcstats FILE... [-i VALUE] [--approx]`` opens each file for update and
writes the no-data value, pyramids, statistics and histograms
(:func:`sharedapplier.calcstats.calcStats`). The no-data value is ``--ignore`` when given,
otherwise band 1's existing one; a file with neither simply gets no no-data value (RIOS
crashes in that case).

``sharedapplier printstats FILE... [--printfilename]`` prints, for every layer, the mean,
standard deviation, minimum, maximum, median and mode stored in the file's metadata.

``rioscalcstats`` and ``riosprintstats`` are the same commands under RIOS's names. Any
problem with a file is reported as one line, ``<prog>: error: <file>: <reason>``, on
stderr; the other files are still processed and the exit status is 1.
"""
from __future__ import annotations

import argparse
import os
import sys

from osgeo import gdal

STAT_KEYS = (("Mean", "STATISTICS_MEAN"), ("Stddev", "STATISTICS_STDDEV"),
             ("Min", "STATISTICS_MINIMUM"), ("Max", "STATISTICS_MAXIMUM"),
             ("Median", "STATISTICS_MEDIAN"), ("Mode", "STATISTICS_MODE"))
NOT_STORED = "none"


class FileProblem(Exception):
    """A file that cannot be processed; the message is the reason, without the name."""


# ---------------------------------------------------------------------------------------
# Argument parsers (shared by the subcommands and the RIOS-named scripts)


def addCalcstatsArguments(parser):
    parser.add_argument("files", nargs="*", metavar="FILE",
                        help="raster files to update (each is opened for writing)")
    parser.add_argument("-i", "--ignore", type=float, default=None, metavar="VALUE",
                        help="no-data value to set on every band and leave out of the "
                             "statistics (default: band 1's existing no-data value)")
    parser.add_argument("--approx", action="store_true",
                        help="allow GDAL to compute approximate statistics and histograms "
                             "(from overviews or a subsample); faster on big files")
    return parser


def addPrintstatsArguments(parser):
    parser.add_argument("files", nargs="*", metavar="FILE", help="raster files to report on")
    parser.add_argument("--printfilename", action="store_true",
                        help="start each line with 'File:<name>, '")
    return parser


CALCSTATS_DESCRIPTION = ("Compute pyramid layers, statistics and histograms of whole raster "
                         "files and store them in the files (like RIOS's rioscalcstats).")
PRINTSTATS_DESCRIPTION = ("Print the statistics stored in raster files, one line per layer "
                          "(like RIOS's riosprintstats).")


# ---------------------------------------------------------------------------------------
# Opening files with one-line reasons


def _gdalMessage(exc):
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def _checkPath(filename, update):
    """Raise FileProblem for a local path that cannot be used; remote/VSI paths pass."""
    if filename.startswith("/vsi") or "://" in filename:
        return
    if not os.path.exists(filename):
        raise FileProblem("no such file")
    if os.path.isdir(filename):
        raise FileProblem("is a directory, not a raster file")
    if not os.access(filename, os.R_OK):
        raise FileProblem("permission denied (the file is not readable)")
    if update and not os.access(filename, os.W_OK):
        raise FileProblem("the file is read-only; calcstats must write to it (check its "
                          "permissions)")


def openRaster(filename, update):
    """Open ``filename`` with GDAL (for update when asked), or raise FileProblem."""
    _checkPath(filename, update)
    access = gdal.GA_Update if update else gdal.GA_ReadOnly
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        ds = gdal.Open(filename, access)
    except RuntimeError as e:
        message = _gdalMessage(e)
        if "not recognized as a supported file format" in message:
            raise FileProblem("not a raster file GDAL can read") from e
        if update and ("update" in message.lower() or "read-only" in message.lower()
                       or "permission" in message.lower()):
            raise FileProblem(f"cannot be opened for writing ({message})") from e
        raise FileProblem(message) from e
    finally:
        gdal.PopErrorHandler()
    if ds is None:
        raise FileProblem("GDAL could not open it as a raster")
    if ds.RasterCount == 0:
        raise FileProblem("has no raster bands (is it a vector file?)")
    return ds


def _reportProblem(prog, filename, reason):
    print(f"{prog}: error: {filename}: {reason}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# calcstats


def calcstatsFile(filename, ignore=None, approx=False, progress=None):
    """Null value, pyramids, statistics and histograms for one file (FileProblem on error)."""
    from .. import calcstats

    ds = openRaster(filename, update=True)
    try:
        nullValue = ignore if ignore is not None else ds.GetRasterBand(1).GetNoDataValue()
        try:
            calcstats.calcStats(ds, progress=progress, ignore=nullValue, approx_ok=approx)
        except (RuntimeError, ValueError, TypeError, OverflowError) as e:
            raise FileProblem(f"computing statistics failed: {_gdalMessage(e)}") from e
        ds.FlushCache()
    finally:
        ds = None


def _eachFile(args, prog, parser, action) -> int:
    """Run ``action(filename)`` on every file; one error line per bad file, exit 1 if any."""
    if not args.files:
        parser.print_usage(sys.stderr)
        print(f"{prog}: error: give at least one raster file", file=sys.stderr)
        return 1
    hadExceptions = gdal.GetUseExceptions()
    gdal.UseExceptions()
    failed = 0
    try:
        for filename in args.files:
            try:
                action(filename)
            except FileProblem as e:
                _reportProblem(prog, filename, e)
                failed += 1
    finally:
        if not hadExceptions:
            gdal.DontUseExceptions()
    sys.stdout.flush()
    return 1 if failed else 0


def runCalcstats(args, prog, parser) -> int:
    progress = None
    if args.files and sys.stdout.isatty():
        from ..cuiprogress import GDALProgressBar
        progress = GDALProgressBar()
    return _eachFile(args, prog, parser,
                     lambda f: calcstatsFile(f, args.ignore, args.approx, progress))


# ---------------------------------------------------------------------------------------
# printstats


def statsLines(filename, printFilename=False):
    """The printed lines for one file: one per layer (FileProblem on error)."""
    ds = openRaster(filename, update=False)
    lines = []
    try:
        for i in range(ds.RasterCount):
            band = ds.GetRasterBand(i + 1)
            parts = [f"File:{filename}"] if printFilename else []
            parts.append(f"Layer:{i + 1}")
            for label, key in STAT_KEYS:
                value = band.GetMetadataItem(key)
                parts.append(f"{label}:{value if value is not None else NOT_STORED}")
            lines.append(", ".join(parts))
    finally:
        ds = None
    return lines


def runPrintstats(args, prog, parser) -> int:
    def printFile(filename):
        for line in statsLines(filename, args.printfilename):
            print(line)
    return _eachFile(args, prog, parser, printFile)


# ---------------------------------------------------------------------------------------
# RIOS-named console scripts


def rioscalcstatsMain(argv=None) -> int:
    """``rioscalcstats FILE... [-i VALUE] [--approx]``."""
    parser = addCalcstatsArguments(argparse.ArgumentParser(
        prog="rioscalcstats", description=CALCSTATS_DESCRIPTION))
    args = parser.parse_args(argv)
    return runCalcstats(args, parser.prog, parser)


def riosprintstatsMain(argv=None) -> int:
    """``riosprintstats FILE... [--printfilename]``."""
    parser = addPrintstatsArguments(argparse.ArgumentParser(
        prog="riosprintstats", description=PRINTSTATS_DESCRIPTION))
    args = parser.parse_args(argv)
    return runPrintstats(args, parser.prog, parser)
