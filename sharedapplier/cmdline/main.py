"""The ``sharedapplier`` console script: demo, calc, bench, cleanup, jobscript, computeworker,
calcstats, printstats."""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import calc as calccmd
from . import computeworker, jobscript, stats

PROG = "sharedapplier"
BENCH_HELP = ("run the benchmark suite (perf/bench.py of a source checkout); every argument "
              "after 'bench' goes to it, so 'sharedapplier bench --help' shows its options")


def _shmDir():
    from ..engine import slabpool
    return slabpool.SHM_DIR


# ---------------------------------------------------------------------------------------
# Subcommands


def cmdDemo(args) -> int:
    from .demo import runDemo
    if args.size < 16:
        print(f"{PROG} demo: error: --size must be at least 16", file=sys.stderr)
        return 2
    if args.workers is not None and args.workers < 1:
        print(f"{PROG} demo: error: --workers must be at least 1", file=sys.stderr)
        return 2
    return runDemo(outdir=args.outdir, size=args.size, workers=args.workers)


def _segmentSize(name):
    try:
        return os.stat(os.path.join(_shmDir(), name)).st_size
    except OSError:
        return 0


def cmdCleanup(args) -> int:
    """Remove what dead runs left: their segments, run directories, unfinished outputs."""
    from .. import runrecord
    from ..blockwriter import deleteExisting
    from ..engine import slabpool
    segments = slabpool.staleSegments()
    records = runrecord.staleRecords()
    if not segments and not records:
        print("nothing to clean: no sharedapplier run that died left anything here")
        return 0
    if args.dry_run:
        _listLeftovers(segments, records)
        return 0
    for path, leftovers in records.items():
        for what in runrecord.removeLeftovers(path, leftovers, deleteExisting):
            print(f"removed {what} ({leftovers.describe()})")
    sizes = {name: _segmentSize(name) for name in segments}
    removed = slabpool.removeStaleSegments(out=sys.stdout)
    freed = sum(sizes.get(name, 0) for name in removed)
    print(f"removed {len(removed)} stale segment(s), {freed / 2**20:.1f} MiB freed; "
          f"{len(records)} dead run(s) cleaned up")
    return 0


def _listLeftovers(segments, records) -> None:
    from ..engine import slabpool
    for leftovers in records.values():
        for output in leftovers.outputs:
            print(f"would remove unfinished output {output} ({leftovers.describe()})")
        for folder in leftovers.folders:
            print(f"would remove folder {folder} ({leftovers.describe()})")
    sizes = {name: _segmentSize(name) for name in segments}
    for name in segments:
        print(f"would remove {slabpool.SHM_DIR}/{name} ({sizes[name] / 2**20:.1f} MiB)")
    print(f"{len(segments)} stale segment(s), {sum(sizes.values()) / 2**20:.1f} MiB, and "
          f"{len(records)} dead run(s); run without --dry-run to remove them")


def cmdCalc(calcArgs) -> int:
    return calccmd.main(calcArgs, prog=f"{PROG} calc")


def cmdCalcstats(args, parser) -> int:
    return stats.runCalcstats(args, f"{PROG} calcstats", parser)


def cmdPrintstats(args, parser) -> int:
    return stats.runPrintstats(args, f"{PROG} printstats", parser)


def benchScript() -> Path:
    """Where perf/bench.py is when the package runs from a source checkout."""
    return Path(__file__).resolve().parents[2] / "perf" / "bench.py"


def cmdBench(benchArgs, parser) -> int:
    script = benchScript()
    if not script.is_file():
        if any(a in ("-h", "--help") for a in benchArgs):
            parser.print_help()
            print(f"\n(The benchmark script {script} is not present here.)")
            return 0
        print(f"{PROG} bench: error: the benchmark script {script} is not here; it ships "
              "with the source repository, not the installed package. Run 'make bench' "
              "in a checkout of the repository instead.", file=sys.stderr)
        return 2
    spec = importlib.util.spec_from_file_location("sharedapplier_perf_bench", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    sys.path.insert(0, str(script.parent))
    savedArgv = sys.argv
    sys.argv = [f"{PROG} bench", *benchArgs]  # so its usage lines name this command
    try:
        try:
            spec.loader.exec_module(module)
        except ImportError as e:
            print(f"{PROG} bench: error: {script} needs a module that is not installed "
                  f"({e}); install the test extra: pip install -e '.[test]'", file=sys.stderr)
            return 2
        result = module.main(list(benchArgs))
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = savedArgv
        sys.modules.pop(spec.name, None)
        if sys.path and sys.path[0] == str(script.parent):
            sys.path.pop(0)
    return result if isinstance(result, int) else 0


# ---------------------------------------------------------------------------------------
# Parser


def versionText() -> str:
    """What ``sharedapplier --version`` prints."""
    from .. import RIOS_VERSION, __version__
    return f"{PROG} {__version__} (follows the behaviour of RIOS {RIOS_VERSION})"



@dataclass(frozen=True)
class Subcommand:
    """One subcommand of the console script, as ``--help`` lists it."""

    name: str
    help: str
    description: str
    addArguments: Callable[[argparse.ArgumentParser], None]
    parserOptions: dict = field(default_factory=dict)


DEMO_DESCRIPTION = (
    "Generate a synthetic multi-band scene, compute NDVI and its 3x3 median block by block, "
    "once with CW_PROCESSES (one compute process per usable CPU) and once with CW_NONE, "
    "print both timing reports and check that the two outputs are identical.")
CLEANUP_DESCRIPTION = (
    "Remove what sharedapplier runs whose process no longer exists (killed with SIGKILL, "
    "say) left behind: shared-memory segments (/dev/shm/sa_<pid>_...), folders of temporary "
    "files, remote run directories (with the channel's key file and the workers' logs) and "
    "unfinished outputs, as each run's record (in $SHAREDAPPLIER_RUN_RECORDS, else "
    "~/.local/state/sharedapplier/runs) lists them. What live runs and other hosts' runs "
    "made is never touched.")


def _addDemoArguments(demo) -> None:
    demo.add_argument("--outdir", default="demo-output",
                      help="folder for the scene and outputs (default: ./demo-output)")
    demo.add_argument("--size", type=int, default=3000,
                      help="rows and columns of the square scene (default: 3000)")
    demo.add_argument("--workers", type=int, default=None,
                      help="compute worker processes for the CW_PROCESSES run (default: the "
                           "CPUs this process may use)")


def _addCleanupArguments(cleanup) -> None:
    cleanup.add_argument("--dry-run", action="store_true",
                         help="only list what would be removed")


def _addBenchArguments(bench) -> None:
    bench.add_argument("args", nargs="*", metavar="ARG", help="arguments for perf/bench.py")


def subcommands() -> list[Subcommand]:
    """Every subcommand, in the order ``--help`` lists them."""
    return [
        Subcommand("demo", "make a synthetic scene and process it with CW_PROCESSES and "
                   "CW_NONE", DEMO_DESCRIPTION, _addDemoArguments),
        Subcommand("cleanup", "remove what runs that died left behind", CLEANUP_DESCRIPTION,
                   _addCleanupArguments),
        Subcommand("calc", "compute a numpy expression over rasters, block by block (like "
                   "gdal_calc.py)", calccmd.DESCRIPTION, calccmd.addCalcArguments,
                   {"epilog": calccmd.epilog(),
                    "formatter_class": argparse.RawDescriptionHelpFormatter}),
        Subcommand("jobscript", "print the job script a batch kind would submit, without "
                   "submitting", jobscript.DESCRIPTION, jobscript.addArguments),
        Subcommand("computeworker", "run one remote compute worker (started by the batch "
                   "launchers)", computeworker.DESCRIPTION, computeworker.addArguments),
        Subcommand("calcstats", "compute and store pyramids, statistics and histograms (as "
                   "rioscalcstats)", stats.CALCSTATS_DESCRIPTION, stats.addCalcstatsArguments),
        Subcommand("printstats", "print stored statistics (as riosprintstats)",
                   stats.PRINTSTATS_DESCRIPTION, stats.addPrintstatsArguments),
        Subcommand("bench", BENCH_HELP, BENCH_HELP, _addBenchArguments, {"add_help": False}),
    ]


def buildParser():
    """The console script's parser, and the subcommands' own parsers by name."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="sharedapplier: RIOS-compatible raster block processing with a "
                    "shared-memory multi-process engine. Tools and a demonstration.")
    parser.add_argument("--version", action="version", version=versionText(),
                        help="print the version of sharedapplier and of the RIOS release "
                             "whose behaviour it follows, then exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parsers = {}
    for command in subcommands():
        parsers[command.name] = sub.add_parser(command.name, help=command.help,
                                               description=command.description,
                                               **command.parserOptions)
        command.addArguments(parsers[command.name])
    return parser, parsers


def main(argv=None) -> int:
    """Run the ``sharedapplier`` command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, subparsers = buildParser()
    if argv and argv[0] == "bench":
        # everything after 'bench' belongs to perf/bench.py, options included
        return cmdBench(argv[1:], subparsers["bench"])
    if argv and argv[0] == "calc":
        # its own parser, so that every error is one line naming 'sharedapplier calc'
        return cmdCalc(argv[1:])
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    if args.command is None:
        parser.print_help()
        return 1
    if args.command == "demo":
        return cmdDemo(args)
    if args.command == "cleanup":
        return cmdCleanup(args)
    if args.command == "jobscript":
        return jobscript.run(args, f"{PROG} jobscript")
    if args.command == "computeworker":
        computeworker.exitNow(computeworker.run(args))
    if args.command == "calcstats":
        return cmdCalcstats(args, subparsers["calcstats"])
    if args.command == "printstats":
        return cmdPrintstats(args, subparsers["printstats"])
    parser.print_help()
    return 1


if __name__ == "__main__":
    sys.exit(main())
