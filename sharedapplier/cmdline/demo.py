"""``sharedapplier demo``: make a synthetic scene, then process it with and without workers.

The scene is a four-band (blue, green, red, near-infrared) uint16 GeoTIFF of reflectance x
10000: rectangular crop parcels of differing vigour on a smooth moisture gradient, a river,
and sensor noise. Each block computes NDVI and a 3x3 median of it (a speckle-removing smoothing) (so the run uses a one-pixel
overlap). The same job runs once with CW_PROCESSES on every usable CPU (with a progress bar)
and once with CW_NONE; the two outputs must be identical pixel for pixel. Each timing report
ends with a line saying what limited the run, and the CW_PROCESSES run's timeline is drawn
to ``timeline.png`` next to the outputs (when matplotlib is installed).
"""
from __future__ import annotations

import os
import sys
import time

import numpy
from osgeo import gdal, osr

from .. import applier, rioserrors
from ..cpus import usableCpuCount
from ..cuiprogress import ProgressBar

SCENE_NAME = "scene.tif"
PIXEL_SIZE = 10.0
ORIGIN = (500000.0, 7000000.0)
EPSG = 32755
BAND_NAMES = ("blue", "green", "red", "nir")


# ---------------------------------------------------------------------------------------
# The synthetic scene


def _cuts(rng, size, meanWidth):
    """Sorted parcel-boundary positions along one axis, roughly ``meanWidth`` apart."""
    n = max(1, size // meanWidth)
    widths = rng.uniform(0.5, 1.5, n) * meanWidth
    return numpy.cumsum(widths).astype(numpy.int64)


def _vegetation(rows, cols, size, rowCuts, colCuts, vigour):
    """Vegetation fraction (0..1) of rows ``rows`` of the scene, all columns."""
    r = rows[:, None].astype(numpy.float32)
    c = cols[None, :].astype(numpy.float32)
    parcel = (numpy.searchsorted(rowCuts, rows)[:, None] * (len(colCuts) + 1)
              + numpy.searchsorted(colCuts, cols)[None, :])
    veg = vigour[parcel]
    # smooth soil-moisture gradient across the scene
    scale = numpy.float32(2 * numpy.pi / size)
    moisture = (0.12 * numpy.sin(r * scale * 1.3 + 0.4) * numpy.cos(c * scale * 0.9)
                + 0.08 * numpy.sin((r + c) * scale * 2.7))
    veg = numpy.clip(veg + moisture, 0.0, 1.0)
    # a meandering river, about 2% of the scene wide
    centre = size * (0.5 + 0.15 * numpy.sin(r * scale * 1.7))
    river = numpy.abs(c - centre) < size * 0.01
    return veg.astype(numpy.float32), river


def _reflectance(veg, river, rng):
    """Four uint16 bands (reflectance x 10000) from vegetation fraction and water mask."""
    shape = veg.shape
    bands = []
    # (soil value, vegetation change, water value) per band
    for soil, change, water in ((0.07, -0.03, 0.05), (0.09, 0.00, 0.04),
                                (0.11, -0.07, 0.03), (0.20, 0.32, 0.02)):
        value = soil + change * veg
        value = numpy.where(river, water, value)
        value = value + rng.normal(0.0, 0.004, shape).astype(numpy.float32)
        bands.append(numpy.clip(value * 10000, 1, 65535).astype(numpy.uint16))
    return bands


def makeScene(filename, size, seed=20240611, report=print):
    """Write the synthetic ``size`` x ``size`` four-band scene to ``filename`` (GTiff)."""
    rng = numpy.random.default_rng(seed)
    rowCuts = _cuts(rng, size, 120)
    colCuts = _cuts(rng, size, 160)
    nParcels = (len(rowCuts) + 1) * (len(colCuts) + 1)
    vigour = rng.choice([0.05, 0.2, 0.45, 0.7, 0.9], nParcels).astype(numpy.float32)
    vigour += rng.uniform(-0.05, 0.05, nParcels).astype(numpy.float32)

    driver = gdal.GetDriverByName("GTiff")
    ds = driver.Create(filename, size, size, len(BAND_NAMES), gdal.GDT_UInt16,
                       ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "INTERLEAVE=PIXEL"])
    ds.SetGeoTransform((ORIGIN[0], PIXEL_SIZE, 0.0, ORIGIN[1], 0.0, -PIXEL_SIZE))
    sr = osr.SpatialReference()
    sr.ImportFromEPSG(EPSG)
    ds.SetProjection(sr.ExportToWkt())
    for i, name in enumerate(BAND_NAMES):
        ds.GetRasterBand(i + 1).SetDescription(name)
    cols = numpy.arange(size)
    chunk = 512
    for top in range(0, size, chunk):
        rows = numpy.arange(top, min(size, top + chunk))
        veg, river = _vegetation(rows, cols, size, rowCuts, colCuts, vigour)
        for i, band in enumerate(_reflectance(veg, river, rng)):
            ds.GetRasterBand(i + 1).WriteArray(band, 0, top)
    ds.FlushCache()
    ds = None
    report(f"  wrote {filename} ({size} x {size}, {len(BAND_NAMES)} bands uint16, "
           f"{size * size * len(BAND_NAMES) * 2 / 2**20:.0f} MiB)")


# ---------------------------------------------------------------------------------------
# The per-block user function (module level, so worker processes import it by name)


def _median3x3(a):
    """3x3 moving median (speckle-removing smoothing); the block edge repeats its neighbour.

    The ring of pixels on the block edge is the overlap margin, which the engine strips, so
    the edge padding never reaches the output except on the image border.
    """
    padded = numpy.pad(a, 1, mode="edge")
    rows, cols = a.shape
    window = numpy.stack([padded[dr:dr + rows, dc:dc + cols]
                          for dr in range(3) for dc in range(3)])
    return numpy.median(window, axis=0).astype(a.dtype)


def ndviAndSmooth(info, inputs, outputs):
    """Layer 1: NDVI from the red and NIR bands; layer 2: its 3x3 median."""
    red = inputs.scene[2].astype(numpy.float32)
    nir = inputs.scene[3].astype(numpy.float32)
    total = nir + red
    ndvi = numpy.zeros_like(total)
    numpy.divide(nir - red, total, out=ndvi, where=total > 0)
    outputs.ndvi = numpy.stack([ndvi, _median3x3(ndvi)])


# ---------------------------------------------------------------------------------------
# Running it


def runOnce(scene, output, style, label, report=print, progress=None):
    """Process ``scene`` into ``output`` with ``style``; return (seconds, ApplierReturn)."""
    infiles = applier.FilenameAssociations()
    infiles.scene = scene
    outfiles = applier.FilenameAssociations()
    outfiles.ndvi = output
    controls = applier.ApplierControls()
    controls.setOverlap(1)
    controls.setOutputDriverName("GTiff")
    controls.setCreationOptions(["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256",
                                 "INTERLEAVE=BAND"])
    controls.setStatsIgnore(None)
    controls.setLayerNames(["ndvi", "ndvi_3x3_median"])
    controls.setConcurrencyStyle(style)
    controls.setProgress(progress)
    report(f"  running {label} ...")
    start = time.perf_counter()
    rtn = applier.apply(ndviAndSmooth, infiles, outfiles, controls=controls)
    seconds = time.perf_counter() - start
    report(f"  {label} finished in {seconds:.1f} s -> {output}")
    return seconds, rtn


def _readAll(filename):
    ds = gdal.Open(filename)
    try:
        return ds.ReadAsArray()
    finally:
        ds = None


def speedLine(workers, tProc, tNone) -> str:
    """One line comparing the two runs' wall times."""
    text = f"Speed: CW_PROCESSES x{workers} took {tProc:.2f} s, CW_NONE took {tNone:.2f} s: "
    ratio = tNone / max(tProc, 1e-9)
    if ratio >= 1:
        return text + f"CW_PROCESSES was {ratio:.2f}x faster"
    return text + (f"CW_PROCESSES was {1 / max(ratio, 1e-9):.2f}x slower (starting the workers and handing "
                   "blocks over cost more than the per-block work here; see docs/concurrency.rst)")


def drawDemoTimeline(timings, filename, workers, report=print):
    """Draw the CW_PROCESSES run's timeline; a one-line note instead without matplotlib."""
    try:
        timings.drawTimeline(filename, title=f"sharedapplier demo: CW_PROCESSES x{workers}")
    except rioserrors.UnavailableError as e:
        report(f"  timeline picture skipped: {e}")
        return
    report(f"  timeline picture: {filename}")


def runDemo(outdir="demo-output", size=3000, workers=None, out=None) -> int:
    """The whole demo; returns a process exit code (0 when both outputs are identical)."""
    out = sys.stdout if out is None else out

    def report(text=""):
        print(text, file=out, flush=True)

    if workers is None:
        workers = usableCpuCount()
    os.makedirs(outdir, exist_ok=True)
    scene = os.path.join(outdir, SCENE_NAME)
    outProcesses = os.path.join(outdir, "ndvi_processes.tif")
    outNone = os.path.join(outdir, "ndvi_none.tif")
    nBlocks = -(-size // applier.DEFAULTWINDOWXSIZE) * -(-size // applier.DEFAULTWINDOWYSIZE)

    report(f"[1/4] Generating a synthetic {size} x {size} scene in {outdir}")
    start = time.perf_counter()
    makeScene(scene, size, report=report)
    report(f"  done in {time.perf_counter() - start:.1f} s; the job is {nBlocks} blocks of "
           f"{applier.DEFAULTWINDOWXSIZE} x {applier.DEFAULTWINDOWYSIZE} (NDVI + 3x3 median, "
           "overlap 1)")

    report(f"[2/4] CW_PROCESSES with {workers} compute worker process"
           f"{'es' if workers != 1 else ''}")
    style = applier.ConcurrencyStyle(computeWorkerKind=applier.CW_PROCESSES,
                                     numComputeWorkers=workers)
    tProc, rtnProc = runOnce(scene, outProcesses, style, "CW_PROCESSES", report,
                             progress=ProgressBar(stream=out))
    report(rtnProc.timings.formatReport())
    drawDemoTimeline(rtnProc.timings, os.path.join(outdir, "timeline.png"), workers, report)
    report()

    report("[3/4] CW_NONE (everything in this one thread), for comparison")
    tNone, rtnNone = runOnce(scene, outNone, applier.ConcurrencyStyle(), "CW_NONE", report)
    report(rtnNone.timings.formatReport())
    report()

    report("[4/4] Comparing the two outputs")
    a, b = _readAll(outProcesses), _readAll(outNone)
    identical = a.shape == b.shape and bool(numpy.array_equal(a, b, equal_nan=True))
    report(speedLine(workers, tProc, tNone))
    if identical:
        report("Outputs identical: yes (every pixel of both layers matches)")
        return 0
    report("Outputs identical: NO - the two runs produced different pixels")
    return 1
