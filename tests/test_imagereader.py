"""How much GDAL block cache reading blocks in order needs, against a brute-force count."""
import numpy as np
import pytest

from sharedapplier.imagereader import (
    READ_CACHE_HEADROOM,
    READ_CACHE_MIN_BYTES,
    READ_CACHE_UNKNOWN_BYTES,
    InputSpec,
    readCacheBytes,
)


def with_headroom(nbytes):
    return nbytes + nbytes // READ_CACHE_HEADROOM


def spec(ncols, nrows, block, pixelBytes, xoff=0, yoff=0, warped=False):
    return InputSpec("a", None, "a.tif", "a.tif", [1], np.dtype("uint16"), [0], [None],
                     xoff, yoff, ncols, nrows, fileBlockSize=block, filePixelBytes=pixelBytes,
                     warped=warped)


def touched_bytes_per_block_row(s, gridncols, gridnrows, window, overlap):
    """The largest number of bytes of distinct file blocks that one row of blocks reads."""
    bx, by = s.fileBlockSize
    worst = 0
    for top in range(0, gridnrows, window):
        blocks = set()
        for left in range(0, gridncols, window):
            nrows, ncols = min(window, gridnrows - top), min(window, gridncols - left)
            x0 = max(0, left - overlap - s.xoff)
            x1 = min(s.ncols, left + ncols + overlap - s.xoff)
            y0 = max(0, top - overlap - s.yoff)
            y1 = min(s.nrows, top + nrows + overlap - s.yoff)
            if x0 < x1 and y0 < y1:
                blocks.update((bxi, byi) for bxi in range(x0 // bx, (x1 - 1) // bx + 1)
                              for byi in range(y0 // by, (y1 - 1) // by + 1))
        worst = max(worst, len(blocks) * bx * by * s.filePixelBytes)
    return worst


@pytest.mark.parametrize("geometry", [
    # tiles as large as the blocks, aligned: one row of tiles, 4 float32 bands a pixel
    dict(ncols=10000, nrows=1000, block=(256, 256), pixelBytes=16, window=256, overlap=0,
         shared=False),
    # one-row strips and a margin: the rows under a block and its margins (the margins'
    # strips are read again by the next row of blocks)
    dict(ncols=20000, nrows=900, block=(20000, 1), pixelBytes=8, window=256, overlap=3,
         shared=True),
    # tiles larger than the blocks, the file shifted against the grid, with a margin
    dict(ncols=4000, nrows=1200, block=(512, 512), pixelBytes=6, window=256, overlap=2,
         xoff=-37, yoff=-300, shared=True),
])
def test_read_cache_holds_the_file_blocks_of_a_row_of_blocks(geometry):
    window, overlap, shared = (geometry.pop(k) for k in ("window", "overlap", "shared"))
    s = spec(**geometry)
    gridncols, gridnrows = s.ncols + min(s.xoff, 0), s.nrows + min(s.yoff, 0)
    truth = touched_bytes_per_block_row(s, gridncols, gridnrows, window, overlap)
    assert truth > READ_CACHE_MIN_BYTES
    got = readCacheBytes([s], gridncols, window, overlap)
    if shared:   # one more row of file blocks, for those the next row of blocks reads too
        bx, by = s.fileBlockSize
        truth += -(-s.ncols // bx) * bx * by * s.filePixelBytes
    assert got == with_headroom(truth)


def test_read_cache_covers_windows_that_straddle_file_blocks():
    # 200-row blocks on 256-row tiles: some windows straddle two rows of tiles
    s = spec(ncols=12000, nrows=3000, block=(256, 256), pixelBytes=4)
    truth = touched_bytes_per_block_row(s, 12000, 3000, 200, 1)
    got = readCacheBytes([s], 12000, 200, 1)
    assert with_headroom(truth) <= got <= 2 * with_headroom(truth)


def test_read_cache_sums_inputs_with_a_floor_and_a_default_for_the_unknown():
    small = spec(ncols=300, nrows=200, block=(256, 256), pixelBytes=2)
    assert readCacheBytes([small], 300, 256, 0) == READ_CACHE_MIN_BYTES
    wide = spec(ncols=10000, nrows=1000, block=(256, 256), pixelBytes=16)
    one = readCacheBytes([wide], 10000, 256, 0)
    assert readCacheBytes([wide, small], 10000, 256, 0) == \
        with_headroom(10240 * 256 * 16 + 512 * 256 * 2)
    assert one == with_headroom(10240 * 256 * 16)
    assert readCacheBytes([wide, wide], 10000, 256, 0) == with_headroom(2 * 10240 * 256 * 16)
    assert readCacheBytes([small, spec(300, 200, (256, 256), 2, warped=True)], 300, 256,
                          0) == READ_CACHE_UNKNOWN_BYTES
    unrecorded = InputSpec("b", None, "b.tif", "b.tif", [1], np.dtype("uint8"), [0], [None],
                           0, 0, 300, 200)
    assert readCacheBytes([small, unrecorded], 300, 256, 0) == READ_CACHE_UNKNOWN_BYTES
