"""How much GDAL block cache reading blocks in order needs, checked against a simulated
LRU cache (GDAL's) reading the same blocks."""
from collections import OrderedDict

import numpy as np
import pytest

from sharedapplier.imagereader import (
    READ_CACHE_HEADROOM,
    READ_CACHE_MIN_BYTES,
    READ_CACHE_UNKNOWN_BYTES,
    InputSpec,
    readCacheBytes,
)


def spec(ncols, nrows, block, pixelBytes, xoff=0, yoff=0, warped=False):
    return InputSpec("a", None, "a.tif", "a.tif", [1], np.dtype("uint16"), [0], [None],
                     xoff, yoff, ncols, nrows, fileBlockSize=block, filePixelBytes=pixelBytes,
                     warped=warped)


def grid_of(s):
    """(cols, rows) of a working grid that starts where the file or the grid does."""
    return s.ncols + min(s.xoff, 0), s.nrows + min(s.yoff, 0)


def file_blocks_of_window(s, top, left, nrows, ncols, overlap):
    bx, by = s.fileBlockSize
    x0, x1 = max(0, left - overlap - s.xoff), min(s.ncols, left + ncols + overlap - s.xoff)
    y0, y1 = max(0, top - overlap - s.yoff), min(s.nrows, top + nrows + overlap - s.yoff)
    if x0 >= x1 or y0 >= y1:
        return []
    return [(j, i) for j in range(y0 // by, (y1 - 1) // by + 1)
            for i in range(x0 // bx, (x1 - 1) // bx + 1)]


def lru_reads(s, window, overlap, capacity, stride=1, first=0):
    """(file blocks read, distinct file blocks) for a reader whose LRU cache holds
    ``capacity`` bytes, taking every ``stride``-th block in row order from ``first``."""
    gridncols, gridnrows = grid_of(s)
    bx, by = s.fileBlockSize
    blockbytes = bx * by * s.filePixelBytes
    blocks = [(top, left) for top in range(0, gridnrows, window)
              for left in range(0, gridncols, window)]
    cache, reads, seen = OrderedDict(), 0, set()
    for top, left in blocks[first::stride]:
        nrows, ncols = min(window, gridnrows - top), min(window, gridncols - left)
        for fb in file_blocks_of_window(s, top, left, nrows, ncols, overlap):
            seen.add(fb)
            if fb in cache:
                cache.move_to_end(fb)
                continue
            reads += 1
            cache[fb] = True
            while len(cache) * blockbytes > capacity:
                cache.popitem(last=False)
    return reads, len(seen)


def without_headroom(nbytes):
    return nbytes * READ_CACHE_HEADROOM // (READ_CACHE_HEADROOM + 1)


SHARED = [
    # one-row strips and a margin: every block of a row reads the same strips
    dict(ncols=20000, nrows=900, block=(20000, 1), pixelBytes=8, window=256, overlap=3),
    # tiles larger than the blocks, the file shifted against the grid, with a margin
    dict(ncols=4000, nrows=1200, block=(512, 512), pixelBytes=6, window=256, overlap=2,
         xoff=-37, yoff=-300),
    # tiles as large as the blocks, but a margin reaches into the neighbours' tiles
    dict(ncols=8000, nrows=1300, block=(256, 256), pixelBytes=16, window=256, overlap=1),
    # blocks of 200 rows on tiles of 256: windows straddle rows of tiles
    dict(ncols=12000, nrows=1000, block=(256, 256), pixelBytes=8, window=200, overlap=0),
]


@pytest.mark.parametrize("geometry", SHARED)
def test_read_cache_lets_lru_read_every_file_block_once(geometry):
    geometry = dict(geometry)
    window, overlap = geometry.pop("window"), geometry.pop("overlap")
    s = spec(**geometry)
    got = readCacheBytes([s], grid_of(s)[0], window, window, overlap)
    assert READ_CACHE_MIN_BYTES < got
    kept = without_headroom(got)
    for stride, first in ((1, 0), (2, 0), (2, 1)):     # one reader, or one of two
        reads, distinct = lru_reads(s, window, overlap, kept, stride, first)
        assert reads == distinct
    reads, distinct = lru_reads(s, window, overlap, kept // 2)
    assert reads > distinct         # and half as much would read blocks again


def test_read_cache_holds_one_blocks_tiles_when_tiles_align_with_the_blocks():
    s = spec(ncols=30000, nrows=1000, block=(256, 256), pixelBytes=16)
    one_window = 4 * 256 * 256 * 16        # 512x512 blocks: four tiles each
    got = readCacheBytes([s], 30000, 512, 512, 0)
    assert got == max(READ_CACHE_MIN_BYTES, one_window + one_window // READ_CACHE_HEADROOM)
    assert lru_reads(s, 512, 0, one_window) == lru_reads(s, 512, 0, 10**12)
    row_of_tiles = 30000 // 256 * 2 * 256 * 256 * 16
    assert got < row_of_tiles // 10


def test_read_cache_sums_inputs_with_a_floor_and_a_default_for_the_unknown():
    striped = spec(ncols=20000, nrows=900, block=(20000, 1), pixelBytes=8)
    one = readCacheBytes([striped], 20000, 256, 256, 0)
    assert readCacheBytes([striped, striped], 20000, 256, 256, 0) == 2 * one
    small = spec(ncols=300, nrows=200, block=(256, 256), pixelBytes=2)
    assert readCacheBytes([small], 300, 256, 256, 0) == READ_CACHE_MIN_BYTES
    warped = spec(300, 200, (256, 256), 2, warped=True)
    assert readCacheBytes([small, warped], 300, 256, 256, 0) == READ_CACHE_UNKNOWN_BYTES
    unrecorded = InputSpec("b", None, "b.tif", "b.tif", [1], np.dtype("uint8"), [0], [None],
                           0, 0, 300, 200)
    assert readCacheBytes([small, unrecorded], 300, 256, 256, 0) == READ_CACHE_UNKNOWN_BYTES
