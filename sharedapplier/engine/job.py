"""What every worker needs to know about a run, and the compute stage for one block.

A :class:`ComputeJob` is built once in the main process and shipped once to each worker
process (with cloudpickle, so the user function may be a lambda or a closure); it carries no
pixels and no GDAL handles.
"""
from __future__ import annotations

import functools
import itertools
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy

from .. import blockreader, blockwriter
from ..readerinfo import ReaderInfoFactory
from ..structures import ApplierBlockDefn, BlockAssociations
from .slabpool import Field


@dataclass
class ComputeJob:
    """The user function and the geometry of a run, without any pixel data."""

    userFunction: Callable
    infiles: Any
    outfiles: Any
    otherArgs: Any
    workinggrid: Any
    blockList: Sequence[ApplierBlockDefn]
    specs: list
    windowxsize: int
    windowysize: int
    overlap: int
    concurrency: Any
    loggingstream: Any = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_codeFiles"] = codeFilesOf(self.userFunction)
        state["loggingstream"] = None
        state["_infoFactory"] = None
        blocks = self.blockList
        state["blockList"] = blocks.rows if isinstance(blocks, PackedBlocks) else \
            packBlocks(blocks)
        return state

    def __setstate__(self, state):
        state["blockList"] = PackedBlocks(state["blockList"])
        restoreCodeFiles(state["userFunction"], state.pop("_codeFiles", {}))
        self.__dict__.update(state)

    def __post_init__(self):
        self._infoFactory = None
        self._outputEntries = tuple(self.outfiles)

    def _makeInfo(self, blockDefn, inputArrays):
        """The info object for a block; the factory is built once per process."""
        if self._infoFactory is None:
            self._infoFactory = ReaderInfoFactory(self.workinggrid, self.windowxsize,
                                                  self.windowysize, self.overlap,
                                                  self.loggingstream)
            self._filenames = {spec.key: spec.filename for spec in self.specs}
            self._nullvalues = {spec.key: spec.nullvalues for spec in self.specs
                                if not spec.isVector}
        return self._infoFactory.make(blockDefn, self._filenames, self._nullvalues,
                                      inputArrays)

    def readCacheBytes(self) -> int:
        """The GDAL block cache a worker that reads this job's blocks needs."""
        return blockreader.readCacheBytes(self.specs, self.workinggrid.getDimensions()[1],
                                          self.windowxsize, self.windowysize, self.overlap)

    def inputFields(self) -> tuple:
        m = self.overlap
        return tuple(Field(spec.key, spec.dtype.str, len(spec.bands), self.windowysize + 2 * m,
                           self.windowxsize + 2 * m) for spec in self.specs)

    def outputFields(self, layouts: dict) -> tuple:
        return tuple(Field(key, layout.dtype.str, layout.nbands, self.windowysize,
                           self.windowxsize) for key, layout in layouts.items())

    @staticmethod
    def summaryFields(summaries: dict) -> tuple:
        """One field of raw bytes per output whose blocks are summarised for the writer."""
        return tuple(Field(key, "|u1", 1, 1, plan.nbytes) for key, plan in summaries.items())

    def inputShapes(self, blockDefn) -> dict:
        m = self.overlap
        return {spec.key: (len(spec.bands), blockDefn.nrows + 2 * m, blockDefn.ncols + 2 * m)
                for spec in self.specs}

    def outputShapes(self, blockDefn, layouts) -> dict:
        return {key: (layout.nbands, blockDefn.nrows, blockDefn.ncols)
                for key, layout in layouts.items()}

    def computeBlock(self, blockDefn, inputArrays: dict, otherArgs, timings, layouts=None):
        """Call the user function on one block; return its checked outputs, margin removed."""
        inputs = BlockAssociations(self.infiles)
        for key, arr in inputArrays.items():
            inputs[key] = arr
        info = self._makeInfo(blockDefn, inputArrays)
        outputs = BlockAssociations()
        start = time.time()
        if otherArgs is None:
            self.userFunction(info, inputs, outputs)
        else:
            self.userFunction(info, inputs, outputs, otherArgs)
        timings.addInterval("userfunction", start, time.time())
        return blockwriter.prepareOutputArrays(outputs, self._outputEntries, blockDefn,
                                               self.overlap, layouts)


def packBlocks(blocks: list[ApplierBlockDefn]) -> numpy.ndarray:
    """The blocks as one (n, 4) array of (top, left, nrows, ncols).

    A job crosses to every worker before it can start; as a list of objects a big raster's
    blocks (10^4 and more) would take longer to pickle and unpickle than the rest of it.
    """
    values = itertools.chain.from_iterable((b.top, b.left, b.nrows, b.ncols) for b in blocks)
    return numpy.fromiter(values, dtype=numpy.int64, count=4 * len(blocks)).reshape(-1, 4)


class PackedBlocks(Sequence):
    """A job's blocks in a worker, from :func:`packBlocks`' rows: 32 bytes each, each
    ApplierBlockDefn made when asked for.

    A list of block objects would take about 250 bytes per block in every worker, which a
    big raster's run would notice.
    """

    def __init__(self, rows: numpy.ndarray):
        self.rows = rows
        self._last = (None, None)   # a worker asks for the block it works on several times

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [ApplierBlockDefn(*row) for row in self.rows[index].tolist()]
        lastIndex, block = self._last
        if index != lastIndex:
            block = ApplierBlockDefn(*self.rows[index].tolist())
            self._last = (index, block)
        return block

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __reduce__(self):
        return (PackedBlocks, (self.rows,))


# cloudpickle ships functions defined in a script by value and names their code
# "<dynamic-code>", so a worker's traceback would not say where the user's code is. The
# real file of each code object travels with the job and is put back on arrival.
DYNAMIC_CODE = "<dynamic-code>"


def _functionsOf(obj) -> list[types.FunctionType]:
    """The user function and the functions it reaches in its own module or closures."""
    found, todo = {}, [obj]
    while todo:
        item = todo.pop()
        if isinstance(item, functools.partial):
            item = item.func
        item = getattr(item, "__func__", item)
        if not isinstance(item, types.FunctionType) or id(item) in found:
            continue
        found[id(item)] = item
        cells = _closureContents(item)
        siblings = [value for value in item.__globals__.values()
                    if isinstance(value, types.FunctionType)
                    and value.__module__ == item.__module__]
        todo += cells + siblings
    return list(found.values())


def _closureContents(function) -> list:
    contents = []
    for cell in function.__closure__ or ():
        try:
            contents.append(cell.cell_contents)
        except ValueError:  # a cell not filled yet
            pass
    return contents


def _codeObjects(code: types.CodeType):
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codeObjects(const)


def codeFilesOf(userFunction) -> dict:
    """{(qualified name, first line): file} of every code object the user function reaches."""
    return {(code.co_qualname, code.co_firstlineno): code.co_filename
            for function in _functionsOf(userFunction)
            for code in _codeObjects(function.__code__)
            if code.co_filename != DYNAMIC_CODE}


def _withFiles(code: types.CodeType, files: dict) -> types.CodeType:
    consts = tuple(_withFiles(c, files) if isinstance(c, types.CodeType) else c
                   for c in code.co_consts)
    filename = files.get((code.co_qualname, code.co_firstlineno), code.co_filename)
    return code.replace(co_filename=filename, co_consts=consts)


def restoreCodeFiles(userFunction, files: dict) -> None:
    """Give the functions that arrived as "<dynamic-code>" their real file names back."""
    if not files:
        return
    for function in _functionsOf(userFunction):
        if function.__code__.co_filename == DYNAMIC_CODE:
            function.__code__ = _withFiles(function.__code__, files)
