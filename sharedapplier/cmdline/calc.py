"""``sharedapplier calc``: a numpy expression over rasters, block by block, on our engine.

    sharedapplier calc -i a=red.tif -i b=nir.tif -o ndvi.tif "(b - a) / (b + a)" --workers 8

Each ``-i NAME=FILE`` makes the file's pixels available to the expression as ``NAME``, a
(bands, rows, cols) array; the expression is checked by :mod:`sharedapplier.rastercalc`
(numbers, the input names, arithmetic, comparisons and a list of numpy functions; no other
Python) and computed on every block by :func:`sharedapplier.applier.apply`.

Every problem is reported as one line, ``sharedapplier calc: error: ...``, on stderr: exit
status 2 for a bad option or expression (nothing is written), 1 when the run fails (a
missing or unreadable input, an output that cannot be written, a GDAL error).
"""
from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from dataclasses import dataclass

import numpy
from osgeo import gdal, gdal_array

from .. import const, rastercalc, rioserrors
from ..controls import ApplierControls
from ..cpus import usableCpuCount
from ..structures import CW_PROCESSES, ConcurrencyStyle, FilenameAssociations
from . import stats

PROG = "sharedapplier calc"
OUTPUT_NAME = "output"
FOOTPRINTS = {"intersection": const.INTERSECTION, "union": const.UNION,
              "bounds": const.BOUNDS_FROM_REFERENCE}
RESAMPLE_METHODS = ("near", "bilinear", "cubic", "cubicspline", "lanczos", "average", "rms",
                    "mode", "min", "max", "med", "q1", "q3", "sum")
PREFERRED_DRIVERS = {".tif": "GTiff", ".tiff": "GTiff", ".img": "HFA", ".kea": "KEA"}
TRUE_WORDS = ("YES", "TRUE", "ON", "1")
GTIFF_TILE = 256  # GDAL's default GTiff tile size
GTIFF_TILE_STEP = 16  # GTiff tile sizes must be multiples of this

DESCRIPTION = ("Compute a numpy expression over raster files, block by block, and write the "
               "result as a new raster (like gdal_calc.py), with compute worker processes. "
               "Each -i NAME=FILE gives the expression an input NAME, a (bands, rows, cols) "
               "array; the result may be one band or several.")


class UsageError(Exception):
    """A bad option or option combination (exit status 2)."""


class RunError(Exception):
    """The run could not be done or failed (exit status 1)."""


# ---------------------------------------------------------------------------------------
# The parser


def _wrapped(title, names):
    body = textwrap.fill(", ".join(names), width=88, initial_indent="  ",
                         subsequent_indent="  ")
    return f"{title}\n{body}"


def epilog() -> str:
    """The help text's grammar summary, built from rastercalc's tables."""
    return "\n\n".join([
        "expression grammar:\n"
        "  numbers; the input names; band selection a[0] (first band) or a[-1];\n"
        "  + - * / // % ** & | ^ ~ << >>, comparisons (0 < a < 10 works element-wise),\n"
        "  parentheses, and calls by bare name or as np.NAME / numpy.NAME of the functions\n"
        "  below. Use & | ~ and where(cond, x, y) instead of and/or/not and if/else.\n"
        "  Nothing else of Python is available (no attributes, builtins or imports).",
        _wrapped("element-wise functions:", sorted(rastercalc.FUNCTIONS)),
        _wrapped("reductions across bands (give axis=0, e.g. mean(a, axis=0)):",
                 sorted(rastercalc.REDUCTIONS)),
        _wrapped("constants:", sorted(rastercalc.CONSTANTS)),
        "notes:\n"
        "  Arithmetic never wraps round: where it would be done in an integer type (b - a\n"
        "  on uint16 bands) it is done in Float64, as numpy does on float64 copies of\n"
        "  the inputs; a floating operand keeps numpy's type (float32(b) - a is Float32).\n"
        "  Bitwise operators, comparisons, where, min/max and casts keep integer types.\n"
        "  Quote the expression; one that starts with '-' goes last, after '--'. Without\n"
        "  --type the output has the expression's type (booleans as Byte); with it, values\n"
        "  are rounded and clipped to the type only at the end.\n"
        "  With --nodata, pixels where a used input is no-data (same band, or any band\n"
        "  when band counts differ) or the result is NaN/Inf are written as VALUE.",
        "example:\n"
        "  sharedapplier calc -i a=red.tif -i b=nir.tif -o ndvi.tif \\\n"
        "      \"(b - a) / (b + a)\" --type Float32 --nodata -9999",
    ])


class _OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one stderr line (no usage block), status 2."""

    def error(self, message):
        extras = message.partition("unrecognized arguments: ")[2].split()
        if any(not extra.startswith("-") for extra in extras):
            message += " (quote the expression so that it is a single argument)"
        print(f"{self.prog}: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(2)


def addCalcArguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the calc options to ``parser`` (a subcommand parser or a standalone one)."""
    parser.add_argument("expression", help="the numpy expression (quote it)")
    parser.add_argument("-i", "--input", action="append", default=[], metavar="NAME=FILE",
                        dest="inputs", help="an input raster and its name in the expression "
                        "(repeat for each input)")
    parser.add_argument("-o", "--output", required=True, metavar="FILE",
                        help="the output raster (replaced if it exists)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="compute worker processes; 1 computes in this process "
                             f"(default: the CPUs this process may use, {usableCpuCount()} "
                             "here)")
    parser.add_argument("--type", metavar="TYPE",
                        help="output type, a GDAL or numpy name: Byte, UInt16, Int16, UInt32, "
                             "Int32, Float32, Float64, uint8, float32... (default: the "
                             "expression's type)")
    parser.add_argument("--nodata", metavar="VALUE",
                        help="the output's no-data value, also ignored by its statistics "
                             "(default: none)")
    parser.add_argument("--driver", metavar="NAME",
                        help="GDAL driver of the output (default: from the file extension, "
                             f"else {const.DEFAULTDRIVERNAME})")
    parser.add_argument("--co", action="append", default=[], metavar="KEY=VALUE",
                        dest="creationOptions",
                        help="a creation option, added to the driver's defaults (repeatable)")
    parser.add_argument("--blocksize", type=int, metavar="N",
                        help=f"block width and height in pixels (default: "
                             f"{const.DEFAULTWINDOWXSIZE})")
    parser.add_argument("--windowxsize", type=int, metavar="N", help="block width in pixels")
    parser.add_argument("--windowysize", type=int, metavar="N", help="block height in pixels")
    parser.add_argument("--footprint", choices=sorted(FOOTPRINTS), default=None,
                        help="the output area: where all inputs overlap (intersection, the "
                             "default), any input (union), or the reference's (bounds)")
    parser.add_argument("--reference", metavar="NAME",
                        help="the input name (or a raster file) whose pixel grid the output "
                             "uses; needed when inputs are on different grids")
    parser.add_argument("--resample", choices=RESAMPLE_METHODS, default=None, metavar="METHOD",
                        help="resampling of inputs not on the reference grid: "
                             + ", ".join(RESAMPLE_METHODS) + " (default: near)")
    parser.add_argument("--nostats", action="store_true",
                        help="skip the statistics, histogram and pyramid layers of the output")
    parser.add_argument("--quiet", action="store_true",
                        help="print nothing but errors (no progress, no summary)")
    return parser


def buildParser(prog: str = PROG) -> argparse.ArgumentParser:
    """A standalone calc parser whose errors are single lines."""
    parser = _OneLineErrorParser(prog=prog, description=DESCRIPTION, epilog=epilog(),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    return addCalcArguments(parser)


# ---------------------------------------------------------------------------------------
# Checking the options (nothing is read or written yet)


@dataclass
class Settings:
    """The checked options of one run."""

    inputs: list  # [(name, filename)]
    output: str
    workers: int
    dtype: numpy.dtype | None
    nodataText: str | None
    driver: str
    creationOptions: list
    windowxsize: int
    windowysize: int


def parseInputs(specs: list) -> list:
    """[(name, filename)] from the NAME=FILE arguments (UsageError if one is wrong)."""
    if not specs:
        raise UsageError("give at least one input, e.g. -i a=image.tif")
    pairs, seen = [], set()
    for spec in specs:
        name, sep, filename = spec.partition("=")
        name = name.strip()
        if not sep or not filename:
            raise UsageError(f"-i {spec!r}: give NAME=FILE, e.g. -i a=image.tif")
        problem = rastercalc.inputNameProblem(name)
        if problem:
            raise UsageError(f"-i {spec!r}: {problem}")
        if name in seen:
            raise UsageError(f"-i {spec!r}: the name '{name}' is given twice")
        seen.add(name)
        pairs.append((name, filename))
    return pairs


def _positive(value, option):
    if value is not None and value < 1:
        raise UsageError(f"{option} must be at least 1, not {value}")
    return value


def windowSizes(args) -> tuple:
    """(width, height) of the blocks from --blocksize/--windowxsize/--windowysize."""
    size = _positive(args.blocksize, "--blocksize")
    x = _positive(args.windowxsize, "--windowxsize") or size or const.DEFAULTWINDOWXSIZE
    y = _positive(args.windowysize, "--windowysize") or size or const.DEFAULTWINDOWYSIZE
    return x, y


def chooseDriver(name: str | None, output: str) -> str:
    """The output driver: the named one, else one for the extension, else the default."""
    if name is None:
        name = _driverForExtension(os.path.splitext(output)[1].lower())
    driver = gdal.GetDriverByName(name)
    if driver is None:
        raise UsageError(f"--driver {name}: GDAL has no driver of that name")
    metadata = driver.GetMetadata() or {}
    if metadata.get(gdal.DCAP_RASTER) != "YES" or metadata.get(gdal.DCAP_CREATE) != "YES":
        raise UsageError(f"--driver {name}: that driver cannot create raster files block by "
                         "block (use e.g. GTiff, HFA or KEA)")
    return name


def _driverForExtension(extension):
    if not extension:
        return const.DEFAULTDRIVERNAME
    preferred = PREFERRED_DRIVERS.get(extension)
    if preferred and gdal.GetDriverByName(preferred) is not None:
        return preferred
    for i in range(gdal.GetDriverCount()):
        driver = gdal.GetDriver(i)
        metadata = driver.GetMetadata() or {}
        extensions = (metadata.get(gdal.DMD_EXTENSIONS) or "").lower().split()
        if extension[1:] in extensions and metadata.get(gdal.DCAP_RASTER) == "YES" \
                and metadata.get(gdal.DCAP_CREATE) == "YES":
            return driver.ShortName
    return const.DEFAULTDRIVERNAME


def creationOptions(driver: str, userOptions: list, windowxsize: int, windowysize: int) -> list:
    """The driver's default creation options with the user's KEY=VALUE ones over them.

    For a tiled GTiff whose tile size the user did not give, tiles follow the block size
    when the default 256 would not divide it (the writer needs blocks to be whole tiles).
    """
    options = {}
    for text in [*const.creationOptionsForDriver(driver), *userOptions]:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--co {text!r}: give KEY=VALUE, e.g. --co COMPRESS=LZW")
        options[key.strip().upper()] = value
    if driver == "GTiff":
        if options.get("TILED", "NO").upper() not in TRUE_WORDS:
            options.pop("TILED", None)  # untiled is GDAL's default; the writer reads TILED=*
        else:
            _fitTiles(options, "BLOCKXSIZE", windowxsize)
            _fitTiles(options, "BLOCKYSIZE", windowysize)
    return [f"{key}={value}" for key, value in options.items()]


def _fitTiles(options, key, window):
    if key not in options and window % GTIFF_TILE and window % GTIFF_TILE_STEP == 0:
        options[key] = str(window)


def checkSettings(args) -> Settings:
    """Check every option, and the expression, without opening any raster.

    Raises UsageError naming the wrong option, or ExpressionError for the expression.
    """
    inputs = parseInputs(args.inputs)
    names = [name for name, _ in inputs]
    rastercalc.checkExpression(args.expression, names)  # ExpressionError: refused as typed
    workers = usableCpuCount() if args.workers is None else _positive(args.workers,
                                                                         "--workers")
    try:
        dtype = None if args.type is None else rastercalc.parseDtype(args.type)
    except rioserrors.ParameterError as e:
        raise UsageError(f"--type {args.type}: {e}") from None
    if args.nodata is not None:
        _parseNumber(args.nodata, "--nodata")
    _checkOutput(args.output, inputs)
    _checkReference(args, names)
    driver = chooseDriver(args.driver, args.output)
    windowxsize, windowysize = windowSizes(args)
    options = creationOptions(driver, args.creationOptions, windowxsize, windowysize)
    return Settings(inputs, args.output, workers, dtype, args.nodata, driver, options,
                    windowxsize, windowysize)


def _parseNumber(text, option):
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{option} {text}: not a number") from None


def _checkOutput(output, inputs):
    if os.path.isdir(output):
        raise UsageError(f"-o {output}: is a directory")
    real = os.path.realpath(output)
    for name, filename in inputs:
        if os.path.realpath(filename) == real:
            raise UsageError(f"-o {output}: that is input '{name}'; write to another file")


def _checkReference(args, names):
    if args.reference is not None and args.reference not in names \
            and not os.path.exists(args.reference):
        raise UsageError(f"--reference {args.reference}: neither an input name "
                         f"({', '.join(names)}) nor an existing file")
    if args.footprint == "bounds" and args.reference is None:
        raise UsageError("--footprint bounds needs --reference")


# ---------------------------------------------------------------------------------------
# Inputs, the expression and the output type


@dataclass
class InputRaster:
    """What calc needs to know about one input before the run."""

    name: str
    filename: str
    nbands: int
    dtype: numpy.dtype
    nodata: list


def openInputs(pairs: list) -> list:
    """Band count, type and no-data values of each input; RunError if one cannot be read."""
    hadExceptions = gdal.GetUseExceptions()
    gdal.UseExceptions()
    try:
        return [_describeInput(name, filename) for name, filename in pairs]
    finally:
        if not hadExceptions:
            gdal.DontUseExceptions()


def _describeInput(name, filename):
    try:
        ds = stats.openRaster(filename, update=False)
    except stats.FileProblem as e:
        raise RunError(f"input '{name}': {filename}: {e}") from None
    try:
        band = ds.GetRasterBand(1)
        dtype = gdal_array.GDALTypeCodeToNumericTypeCode(band.DataType)
        if dtype is None:
            raise RunError(f"input '{name}': {filename}: its type "
                           f"{gdal.GetDataTypeName(band.DataType)} has no numpy equivalent")
        nodata = [ds.GetRasterBand(i + 1).GetNoDataValue() for i in range(ds.RasterCount)]
        return InputRaster(name, filename, ds.RasterCount, numpy.dtype(dtype), nodata)
    finally:
        ds = None


def makeCalculator(expression: str, settings: Settings, rasters: list) -> tuple:
    """The checked BlockCalculator, its output dtype and band count, and the no-data value.

    A trial on tiny blocks of the inputs' types finds band, shape and type errors before
    any file is created or worker started.
    """
    names = [r.name for r in rasters]
    calculator = rastercalc.BlockCalculator(
        expression, names, dtype=settings.dtype,
        inputNodata={r.name: r.nodata for r in rasters}, outputName=OUTPUT_NAME)
    try:
        trial = calculator.trial({r.name: (r.nbands, r.dtype) for r in rasters})
    except rioserrors.RiosError as e:
        raise UsageError(f"the expression {expression!r} cannot be computed on these "
                         f"inputs: {e}") from None
    dtype = trial.dtype
    nodata = None
    if settings.nodataText is not None:
        nodata = nodataForType(settings.nodataText, dtype)
    calculator.dtype = dtype.str
    calculator.nodata = nodata
    return calculator, dtype, trial.shape[0], nodata


def nodataForType(text: str, dtype: numpy.dtype) -> int | float:
    """--nodata as a value of the output type (UsageError if the type cannot hold it)."""
    value = _parseNumber(text, "--nodata")
    typeName = gdal.GetDataTypeName(gdal_array.NumericTypeCodeToGDALTypeCode(dtype))
    if dtype.kind in "iu":
        info = numpy.iinfo(dtype)
        if not numpy.isfinite(value) or value != int(value) or \
                not info.min <= int(value) <= info.max:
            raise UsageError(f"--nodata {text}: not a value of the output type {typeName} "
                             f"(integers {info.min} to {info.max}); choose another value or "
                             "--type")
        return int(value)
    if dtype.kind == "f" and numpy.isfinite(value) and abs(value) > numpy.finfo(dtype).max:
        raise UsageError(f"--nodata {text}: too large for the output type {typeName}")
    return value


# ---------------------------------------------------------------------------------------
# Running


def concurrencyFor(workers: int) -> ConcurrencyStyle:
    """CW_NONE for one worker, else that many compute processes reading their own inputs."""
    if workers == 1:
        return ConcurrencyStyle()
    return ConcurrencyStyle(numComputeWorkers=workers, computeWorkerKind=CW_PROCESSES,
                            computeWorkersRead=True)


def buildControls(args, settings: Settings, nodata) -> ApplierControls:
    """ApplierControls for the run from the checked options."""
    controls = ApplierControls()
    controls.setOutputDriverName(settings.driver)
    controls.setCreationOptions(settings.creationOptions)
    controls.setWindowSize(settings.windowxsize, settings.windowysize)
    controls.setStatsIgnore(nodata)
    controls.setCalcStats(not args.nostats)
    controls.setConcurrencyStyle(concurrencyFor(settings.workers))
    if args.footprint is not None:
        controls.setFootprintType(FOOTPRINTS[args.footprint])
    if args.reference is not None:
        controls.setReferenceImage(args.reference)
    if args.resample is not None:
        controls.setResampleMethod(args.resample)
    if not args.quiet:
        # as apply's: a bar with the rate and time left on a terminal, log lines elsewhere
        from ..cuiprogress import ProgressBar
        controls.setProgress(ProgressBar())
    return controls


def execute(calculator, settings: Settings, controls: ApplierControls) -> tuple:
    """Run apply; return (ApplierReturn, seconds); RunError with one line if it fails."""
    from ..applier import apply  # the engine: imported only when a run starts

    infiles = FilenameAssociations()
    for name, filename in settings.inputs:
        setattr(infiles, name, filename)
    outfiles = FilenameAssociations()
    setattr(outfiles, OUTPUT_NAME, settings.output)
    start = time.perf_counter()
    try:
        rtn = apply(calculator, infiles, outfiles, controls=controls)
    except rioserrors.ResampleNeededError:
        raise RunError("the inputs are not on the same pixel grid (pixel size, projection or "
                       "alignment differ): give --reference NAME to resample them onto that "
                       "input's grid (see also --resample)") from None
    except (rioserrors.RiosError, RuntimeError, ValueError, OSError, MemoryError) as e:
        raise RunError(oneLine(e)) from None
    return rtn, time.perf_counter() - start


def oneLine(exc: BaseException) -> str:
    """An exception's message as one line (a worker's traceback becomes its last line)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if any(line.startswith("Traceback") for line in lines):
        return lines[-1]
    return " ".join(lines)


def summary(settings: Settings, rtn, dtype, nbands: int, seconds: float) -> str:
    """The line printed after a successful run."""
    nrows, ncols = rtn.workinggrid.getDimensions()
    typeName = gdal.GetDataTypeName(gdal_array.NumericTypeCodeToGDALTypeCode(dtype))
    workers = "no workers" if settings.workers == 1 else f"{settings.workers} workers"
    return (f"{PROG}: wrote {settings.output} ({settings.driver}, {nbands} band(s) of "
            f"{typeName}, {ncols} x {nrows} pixels) in {seconds:.2f} s with {workers}")


def runCalc(args, prog: str = PROG) -> int:
    """Do one calc run from parsed arguments; returns the exit status."""
    try:
        settings = checkSettings(args)
        rasters = openInputs(settings.inputs)
        calculator, dtype, nbands, nodata = makeCalculator(args.expression, settings, rasters)
        controls = buildControls(args, settings, nodata)
        rtn, seconds = execute(calculator, settings, controls)
    except (UsageError, rioserrors.ParameterError) as e:
        return _fail(prog, e, 2)
    except RunError as e:
        return _fail(prog, e, 1)
    except KeyboardInterrupt:
        return _fail(prog, "interrupted", 130)
    if not args.quiet:
        print(summary(settings, rtn, dtype, nbands, seconds))
    return 0


def _fail(prog, message, status):
    print(f"{prog}: error: {oneLine(message) if isinstance(message, Exception) else message}",
          file=sys.stderr, flush=True)
    return status


def main(argv: list | None = None, prog: str = PROG) -> int:
    """``sharedapplier calc ...`` from an argument list; returns the exit status."""
    parser = buildParser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return runCalc(args, prog)
