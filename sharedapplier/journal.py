"""Resumable runs: what has been written of each output, so that a later run can go on.

With ``controls.setResumable(True)`` every output gets a journal beside it
(``<output>.sa-journal``): a fingerprint of the run (inputs, pixel grid, blocks, outputs
and their options, the user function's code), how many blocks, in block order, are in the
file, and the single-pass accumulators (statistics, histogram counts) as they stood then.
The journals are brought up to date together when a row of blocks is complete and
JOURNAL_SECONDS have passed since they last were, and when the run is interrupted (SIGTERM,
a batch time limit, Ctrl-C, an error) between two blocks: each time after every file
(pixels, overviews, the file's own directory) has been closed and opened again, the one
way GDAL puts a GTiff or HFA on disk as a file it can read back.

Each journal keeps the commit before its latest as well: a run killed while it was bringing
the journals up to date leaves some naming the new row and some the one before, and the
later run goes on from the last row that every journal names.

Running the same script again goes on from the last row the journals name: it opens the
outputs for update, restores the accumulators and computes only the blocks after it, so the
finished outputs are the image an uninterrupted run writes. If any part of the fingerprint
differs, or a journal is missing, the run says so and starts again; it never mixes two
different runs. A run that ends well removes its journals.
"""
from __future__ import annotations

import hashlib
import logging
import os
import pickle
import time
from dataclasses import dataclass, replace

JOURNAL_SUFFIX = ".sa-journal"
# How often, at most, the journals are brought up to date as rows complete: each time costs
# a close and an open of every output. $SHAREDAPPLIER_JOURNAL_SECONDS overrides it.
JOURNAL_SECONDS = 5.0
JOURNAL_SECONDS_ENV = "SHAREDAPPLIER_JOURNAL_SECONDS"

logger = logging.getLogger(__name__)


def journalPath(filename: str) -> str:
    return filename + JOURNAL_SUFFIX


def _digest(*parts) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _codeOf(function) -> tuple | None:
    code = getattr(function, "__code__", None)
    return None if code is None else (_codeParts(code), function.__qualname__)


def _codeParts(code) -> tuple:
    """What a code object does, the same in every process: nested code (comprehensions,
    inner functions) by its own parts, never by its repr, which holds an address."""
    consts = tuple(_codeParts(c) if hasattr(c, "co_code") else repr(c)
                   for c in code.co_consts)
    return (code.co_code, consts, code.co_names)


def _functionCode(function) -> tuple:
    """The user function's code; for a callable object (``calc``'s), its class's
    ``__call__`` and its attributes."""
    code = _codeOf(function)
    if code is not None:
        return code
    return (type(function).__qualname__, _codeOf(type(function).__call__),
            repr(sorted(getattr(function, "__dict__", {}).items())))


def _fileState(filename: str) -> tuple:
    try:
        st = os.stat(filename)
    except OSError:
        return (filename, None)
    return (os.path.realpath(filename), st.st_size, st.st_mtime_ns)


def runFingerprint(userFunction, infiles, outfiles, workinggrid, controls) -> dict:
    """What a run is, part by part (name -> digest): a journal of another run is not used."""
    options = ("drivername", "creationoptions", "calcStats", "omitPyramids",
               "omitBasicStats", "omitHistogram", "overviewLevels", "overviewMinDim",
               "overviewAggType", "statsIgnore", "thematic", "approxStats",
               "singlePassPyramids", "singlePassBasicStats", "singlePassHistogram")
    outputs = [(name, seqNum, os.path.realpath(filename),
                [repr(controls.getOptionForImagename(o, name)) for o in options])
               for name, seqNum, filename in outfiles]
    return {
        "inputs": _digest([(name, seqNum, _fileState(f)) for name, seqNum, f in infiles]),
        "pixel grid": _digest(workinggrid.makeGeoTransform(), workinggrid.getDimensions(),
                              workinggrid.projection),
        "blocks": _digest(controls.windowxsize, controls.windowysize, controls.overlap),
        "outputs": _digest(outputs),
        "user function": _digest(_functionCode(userFunction)),
    }


@dataclass
class JournalEntry:
    """What one output's journal holds."""

    fingerprint: dict
    blocksDone: int
    nbands: int
    dtype: str
    accumulators: list | None
    previous: JournalEntry | None = None

    def commits(self) -> dict:
        """blocksDone -> entry, for this commit and the one before it."""
        older = {} if self.previous is None else {self.previous.blocksDone: self.previous}
        return {**older, self.blocksDone: self}


@dataclass(frozen=True)
class Resumption:
    """Where a resumed run starts: the blocks already written, each output's entry."""

    blocksDone: int
    entries: dict


def findResumption(outfiles, fingerprint: dict) -> Resumption | None:
    """The run to go on from, if every output has a journal of this very run; otherwise
    None, saying why when there were journals."""
    entries, missing = {}, []
    for name, seqNum, filename in outfiles:
        entry = loadEntry(journalPath(filename))
        if entry is None or not os.path.exists(filename):
            missing.append(filename)
        else:
            entries[(name, seqNum)] = entry
    if not entries:
        return None
    if missing:
        return _startAgain(f"no journal of output(s) {', '.join(missing)}")
    common = set.intersection(*(set(entry.commits()) for entry in entries.values()))
    if not common:
        return _startAgain("its outputs' journals name different blocks")
    blocksDone = max(common)
    chosen = {key: entry.commits()[blocksDone] for key, entry in entries.items()}
    for entry in chosen.values():
        differs = [part for part, digest in fingerprint.items()
                   if entry.fingerprint.get(part) != digest]
        if differs:
            return _startAgain(f"its {', '.join(differs)} differ from this run's")
    return Resumption(blocksDone, chosen)


def _startAgain(why: str) -> None:
    logger.warning(f"sharedapplier: an earlier run of these outputs cannot be resumed ({why}); "
                   "starting again")
    return None


def loadEntry(path: str) -> JournalEntry | None:
    """The journal entry kept at ``path``, or None when there is none to read."""
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ValueError):
        return None
    return entry if isinstance(entry, JournalEntry) else None


class Journal:
    """The journals of one resumable run's outputs (see the module docstring)."""

    def __init__(self, fingerprint: dict, nblocks: int):
        self.fingerprint = fingerprint
        self.nblocks = nblocks
        self.interval = float(os.environ.get(JOURNAL_SECONDS_ENV, JOURNAL_SECONDS))
        self.lastCommit = None

    def rowDone(self, files, blocksDone: int) -> None:
        """A row of blocks is complete: commit, if the last commit is old enough."""
        now = time.monotonic()
        if self.lastCommit is None or now - self.lastCommit >= self.interval:
            self.commit(files, blocksDone)
            self.lastCommit = now

    def commit(self, files, blocksDone: int) -> None:
        """Every file is put on disk, then its journal names ``blocksDone`` blocks. The last
        block is never committed: a resumed run always has blocks to write, and closes the
        outputs itself."""
        if blocksDone >= self.nblocks:
            return
        for outfile in files:
            outfile.flushToFile()
        for outfile in files:
            nbands, dtype, accumulators = outfile.journalState()
            self._write(outfile.filename, JournalEntry(self.fingerprint, blocksDone, nbands,
                                                       dtype, accumulators))

    @staticmethod
    def _write(filename: str, entry: JournalEntry) -> None:
        path = journalPath(filename)
        earlier = loadEntry(path)
        if earlier is not None and earlier.fingerprint == entry.fingerprint:
            entry.previous = replace(earlier, previous=None)
        partial = path + ".tmp"
        with open(partial, "wb") as f:
            pickle.dump(entry, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(partial, path)

    @staticmethod
    def remove(filenames) -> None:
        """The run has ended well (or starts again): its journals go."""
        for filename in filenames:
            for path in (journalPath(filename), journalPath(filename) + ".tmp"):
                if os.path.exists(path):
                    os.remove(path)
