"""Runs that survive: how long the engine takes to stop, or to carry on, after a fault.

Three kinds of figure, each the median of ``--runs`` tries, with CW_PROCESSES workers that sleep
``--sleep-ms`` a block (1024 blocks of 256 x 256 uint16, into the default output: GTiff,
DEFLATE, statistics, pyramids):

* **SIGTERM to exit**: a resumable run in a program of its own gets SIGTERM half way; the
  time until that program has exited, journal written (goal of issue #18: 5 s). Also with a
  user function that is asleep for ``--long-block-s`` on a block when the signal comes.
* **A block that kills every worker**: each worker that takes block (2, 2) SIGKILLs itself;
  the time from the first death to the error that names the block (goal: 20 s).
* **One worker killed**: the same run with and without one worker SIGKILLed on a block,
  and the difference: what a death costs (replacement, the block read again).

Run: ``make bench-faults`` (or ``.venv/bin/python perf/faults.py --help``). The goals are
printed next to the figures, never asserted.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import makeRaster, picklableByValue  # noqa: E402

from sharedapplier import applier, journal, rioserrors  # noqa: E402
from sharedapplier.structures import CW_PROCESSES, ConcurrencyStyle  # noqa: E402

BLOCK = 256
SIZE = 8192
DEADLY_BLOCK = (2, 2)
STOP_GOAL_S = 5.0
DEADLY_GOAL_S = 20.0

PROGRAM = textwrap.dedent("""
    import os, pathlib, sys, time
    from sharedapplier import applier
    from sharedapplier.structures import ConcurrencyStyle, CW_PROCESSES
    SLEEP, LONG, LONG_BLOCK = float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    def slow(info, inputs, outputs):
        x, y = info.getBlockCount()
        if y * info.xtotalblocks + x == LONG_BLOCK:
            pathlib.Path(sys.argv[2] + ".long").touch()
            time.sleep(LONG)
        time.sleep(SLEEP)
        outputs.o = inputs.a
    if __name__ == "__main__":
        i = applier.FilenameAssociations(); i.a = sys.argv[1]
        o = applier.FilenameAssociations(); o.o = sys.argv[2]
        c = applier.ApplierControls(); c.setWindowSize(256, 256); c.setResumable(True)
        c.setTempdir(os.path.dirname(sys.argv[2]))
        c.setConcurrencyStyle(ConcurrencyStyle(computeWorkerKind=CW_PROCESSES,
                                               numComputeWorkers=int(sys.argv[6])))
        applier.apply(slow, i, o, controls=c)
""")


@dataclass(frozen=True)
class StopFigure:
    """One SIGTERM try: seconds from the signal to the program's exit, and what it left."""

    seconds: float
    blocksInJournal: int
    exitStatus: int


def journalBlocks(outfile: str) -> int:
    """Blocks the output's journal names (0 while there is none)."""
    entry = journal.loadEntry(journal.journalPath(outfile))
    return 0 if entry is None else entry.blocksDone


def stopOnce(folder: str, infile: str, args, longBlock: int | None) -> StopFigure:
    """Start the program, SIGTERM it once half the blocks are in its journal (or once its
    long block has begun), and time its exit."""
    outfile = os.path.join(folder, "stopped.tif")
    for leftover in (outfile, journal.journalPath(outfile), outfile + ".long"):
        if os.path.exists(leftover):
            os.remove(leftover)
    program = os.path.join(folder, "job.py")
    Path(program).write_text(PROGRAM)
    nblocks = (args.size // BLOCK) ** 2
    env = dict(os.environ, **{journal.JOURNAL_SECONDS_ENV: "0"})
    command = [sys.executable, program, infile, outfile, str(args.sleep_ms / 1000),
               str(args.long_block_s), str(-1 if longBlock is None else longBlock),
               str(args.workers)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    if longBlock is None:
        def due():
            return journalBlocks(outfile) >= nblocks // 2
    else:
        def due():
            return os.path.exists(outfile + ".long")
    try:
        deadline = time.monotonic() + 300
        while not due():
            if proc.poll() is not None:
                raise RuntimeError(f"the run ended before the signal: {proc.stderr.read()}")
            if time.monotonic() > deadline:
                raise RuntimeError("the run did not get far enough for the signal in 300 s")
            time.sleep(0.005)
        if longBlock is not None:
            time.sleep(0.2)  # well inside the long block
        start = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
        return StopFigure(time.perf_counter() - start, journalBlocks(outfile), proc.returncode)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


class KillOnBlock:
    """A user function whose worker SIGKILLs itself on ``block``: every time (``times``
    None) or the first ``times`` times (a marker file per death, seen by every worker)."""

    def __init__(self, folder: str, block, times: int | None, sleepSeconds: float):
        self.folder, self.block, self.times = folder, block, times
        self.sleepSeconds = sleepSeconds

    def deaths(self) -> list[str]:
        return sorted(n for n in os.listdir(self.folder) if n.startswith("death"))

    def __call__(self, info, inputs, outputs):
        if info.getBlockCount() == self.block:
            count = len(self.deaths())
            if self.times is None or count < self.times:
                open(os.path.join(self.folder, f"death{count}"), "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(self.sleepSeconds)
        outputs.o = inputs.a


def markerFolder(folder: str) -> str:
    return tempfile.mkdtemp(prefix="deaths_", dir=folder)


def controlsFor(args, folder: str):
    c = applier.ApplierControls()
    c.setWindowSize(BLOCK, BLOCK)
    c.setTempdir(folder)
    c.setConcurrencyStyle(ConcurrencyStyle(computeWorkerKind=CW_PROCESSES,
                                           numComputeWorkers=args.workers))
    return c


def applyOnce(function, infile: str, outfile: str, controls) -> float:
    infiles, outfiles = applier.FilenameAssociations(), applier.FilenameAssociations()
    infiles.a, outfiles.o = infile, outfile
    start = time.perf_counter()
    applier.apply(function, infiles, outfiles, controls=controls)
    return time.perf_counter() - start


def deadlyBlockOnce(folder: str, infile: str, args) -> float:
    """Seconds from the first death on the deadly block to the error naming it."""
    markers = markerFolder(folder)
    function = KillOnBlock(markers, DEADLY_BLOCK, None, args.sleep_ms / 1000)
    try:
        applyOnce(function, infile, os.path.join(folder, "deadly.tif"),
                  controlsFor(args, folder))
    except rioserrors.WorkerExceptionError as e:
        ended = time.time()
        if "compute workers" not in str(e).splitlines()[0]:
            raise
    else:
        raise RuntimeError("the deadly block did not stop the run")
    return ended - os.stat(os.path.join(markers, function.deaths()[0])).st_mtime


def deathCostOnce(folder: str, infile: str, args) -> tuple[float, float]:
    """(seconds of a run with no death, seconds of the same run with one worker killed)."""
    outfile = os.path.join(folder, "survived.tif")
    calm = KillOnBlock(markerFolder(folder), DEADLY_BLOCK, 0, args.sleep_ms / 1000)
    killed = KillOnBlock(markerFolder(folder), DEADLY_BLOCK, 1, args.sleep_ms / 1000)
    return (applyOnce(calm, infile, outfile, controlsFor(args, folder)),
            applyOnce(killed, infile, outfile, controlsFor(args, folder)))


@contextlib.contextmanager
def warningsHidden():
    """The sharedapplier logger at ERROR for a while: a dead worker's warning is expected."""
    logger = logging.getLogger("sharedapplier")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=8, help="compute workers (default 8)")
    parser.add_argument("--sleep-ms", type=float, default=32.0,
                        help="what each worker sleeps per block (default 32)")
    parser.add_argument("--long-block-s", type=float, default=30.0,
                        help="how long the long block's user function sleeps (default 30)")
    parser.add_argument("--runs", type=int, default=3, help="tries per figure (default 3)")
    parser.add_argument("--size", type=int, default=SIZE,
                        help=f"input width and height, a multiple of {BLOCK} (default {SIZE})")
    parser.add_argument("--tmpdir", default=None, help="folder for the rasters")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sa_faults_", dir=args.tmpdir) as folder, \
            picklableByValue(__name__):
        infile = makeRaster(os.path.join(folder, "in.tif"), args.size, seed=1)
        nblocks = (args.size // BLOCK) ** 2
        figures = {
            "stop": [stopOnce(folder, infile, args, None) for _ in range(args.runs)],
            "stopInLongBlock": [stopOnce(folder, infile, args, nblocks // 2)
                                for _ in range(args.runs)],
        }
        with warningsHidden():  # one per death, expected here
            figures["deadly"] = [deadlyBlockOnce(folder, infile, args)
                                 for _ in range(args.runs)]
            figures["deathCost"] = [deathCostOnce(folder, infile, args)
                                    for _ in range(args.runs)]
    printFigures(figures, args, nblocks)
    return figures


def printFigures(figures: dict, args, nblocks: int) -> None:
    print(f"\nFaults, {args.size} x {args.size} uint16 ({nblocks} blocks of {BLOCK}), "
          f"CW_PROCESSES {args.workers}, workers sleeping {args.sleep_ms:g} ms a block; "
          f"median of {args.runs}")
    for key, what in (("stop", "SIGTERM half way to exit"),
                      ("stopInLongBlock", f"SIGTERM in a {args.long_block_s:g} s block to exit")):
        tries = figures[key]
        seconds = statistics.median(t.seconds for t in tries)
        kept = statistics.median(t.blocksInJournal for t in tries)
        status = sorted({t.exitStatus for t in tries})
        print(f"  {what:38} {seconds:6.2f} s  goal <= {STOP_GOAL_S:g} s   "
              f"(journal names {kept:.0f} of {nblocks} blocks; exit status {status})")
    deadly = statistics.median(figures["deadly"])
    print(f"  {'a block that kills every worker':38} {deadly:6.2f} s  goal <= "
          f"{DEADLY_GOAL_S:g} s   (first death to the error)")
    calm = statistics.median(c for c, _ in figures["deathCost"])
    killed = statistics.median(k for _, k in figures["deathCost"])
    print(f"  {'one worker killed':38} {killed:6.2f} s  against {calm:.2f} s with none: "
          f"{killed - calm:+.2f} s for the death")


if __name__ == "__main__":
    main()
