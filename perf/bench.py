"""Benchmark of the sharedapplier engine against a plain GDAL loop.

Run with ``.venv/bin/python perf/bench.py`` (or ``make bench``); ``--help`` lists the options.
perf/README.md explains every figure. In short, for each workload and concurrency style it
measures the median wall time of ``applier.apply`` over several runs, the peak memory of the
whole process tree (unique set size of every process plus this run's shared-memory segments,
sampled in a separate warm-up run so that sampling does not slow the timed runs)
and the ratios to a plain GDAL read/compute/write loop (the "floor") and to CW_NONE. It then
counts the bytes that cross the compute workers' pipes per block at two block sizes, and
compares the peak memory of a copy on a raster 4 times larger. Results go to a table on
stdout and to JSON (default perf/results/bench.json). Targets are informational: the exit
status is 0 whatever they say.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import math
import os
import pickle
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from multiprocessing import connection as mpconnection

import numpy
from osgeo import gdal, gdal_array, osr
from scipy import ndimage

from sharedapplier import applier

try:
    from sharedapplier.cpus import usableCpuCount
except ImportError:  # pragma: no cover - older trees
    def usableCpuCount():
        return len(os.sched_getaffinity(0))

MIB = 2**20
SHM_DIR = "/dev/shm"
SHM_PREFIX = "sa_"
SAMPLE_SECONDS = 0.02
GEOTRANSFORM = (500000.0, 10.0, 0.0, 7000000.0, 0.0, -10.0)
EPSG = 32755
CREATION_OPTIONS = ["TILED=YES"]
DEFAULT_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "bench.json")

# Per-block work of the GIL-holding workload: passes of a pure-Python loop over this many
# values of the block (CW_NONE takes about 1.7 s for the 484 blocks on the 2-core
# development box).
GIL_VALUES = 4096
GIL_PASSES = 23


# --------------------------------------------------------------------------------------------
# Workloads: one compute function shared by the applier run and the plain GDAL floor.
# Each takes a dict of 2-D input arrays (one band) and returns one 2-D output array.
# --------------------------------------------------------------------------------------------
def computeCopy(a):
    return a["a"]


def computeNdvi(a):
    red = a["a"].astype(numpy.float32)
    nir = a["b"].astype(numpy.float32)
    return (nir - red) / (nir + red + 1e-6)


def computeFilters(a):
    x = a["a"].astype(numpy.float32)
    x = ndimage.uniform_filter(x, size=5)
    x = ndimage.gaussian_filter(x, sigma=1.5)
    return ndimage.median_filter(x, size=3)


def computeGilLoop(a):
    values = a["a"].ravel()[:GIL_VALUES].tolist()
    acc = 0
    for _ in range(GIL_PASSES):
        for v in values:
            acc = (acc * 31 + v) % 65521
    return a["a"] // 2 + numpy.uint16(acc % 256)


def computeLight(a):
    return a["a"].astype(numpy.float32) * 0.5 + 1.0


@dataclass
class Workload:
    name: str
    description: str
    compute: object
    inputs: tuple          # input names, each a uint16 raster
    size: int              # raster rows = cols
    quickSize: int
    window: int = 256
    runs: int = 3          # timed runs per figure (the median is reported)


WORKLOADS = [
    # Copy is the shortest and the most exposed to the page cache's moods: 5 runs.
    Workload("copy", "I/O bound: outputs.o = inputs.a (uint16)", computeCopy, ("a",), 24576, 512,
             runs=5),
    Workload("ndvi", "NDVI of two uint16 inputs to float32", computeNdvi, ("a", "b"), 16384, 512),
    Workload("filters", "uniform+gaussian+median(3) on float32 (GIL released)", computeFilters,
             ("a",), 5632, 512),
    Workload("gilloop", f"pure-Python loop, {GIL_PASSES} passes over {GIL_VALUES} values/block"
             " (holds the GIL)", computeGilLoop, ("a",), 5632, 512),
    Workload("smallblocks", "64x64 blocks, light compute (a*0.5+1 to float32)", computeLight,
             ("a",), 8192, 512, window=64),
]
WORKLOAD_NAMES = [w.name for w in WORKLOADS]


def makeUserFunction(compute, names):
    """The applier user function for a workload: same compute as the floor, on band 0."""
    def userFunction(info, inputs, outputs):
        outputs.o = compute({n: getattr(inputs, n)[0] for n in names})[numpy.newaxis]
    return userFunction


# --------------------------------------------------------------------------------------------
# Concurrency styles
# --------------------------------------------------------------------------------------------
@dataclass
class Style:
    key: str
    label: str
    make: object = None              # () -> ConcurrencyStyle; None = the floor
    reuse: str | None = None         # key of the style whose measurement is shown instead


def makeStyles(ncpu):
    CS = applier.ConcurrencyStyle
    styles = [
        Style("floor", "floor (plain GDAL loop)"),
        Style("none", "CW_NONE", lambda: CS()),
        Style("read2", "CW_NONE + 2 read workers", lambda: CS(numReadWorkers=2)),
        Style("threads2", "CW_THREADS 2 + 1 reader", lambda: CS(
            computeWorkerKind=applier.CW_THREADS, numComputeWorkers=2, numReadWorkers=1)),
        Style("proc1", "CW_PROCESSES 1", lambda: CS(
            computeWorkerKind=applier.CW_PROCESSES, numComputeWorkers=1)),
        Style("proc2", "CW_PROCESSES 2", lambda: CS(
            computeWorkerKind=applier.CW_PROCESSES, numComputeWorkers=2)),
    ]
    allStyle = Style("procall", f"CW_PROCESSES all ({ncpu})", lambda: CS(
        computeWorkerKind=applier.CW_PROCESSES, numComputeWorkers=ncpu))
    if ncpu <= 2:
        allStyle.reuse = f"proc{ncpu}"
    styles.append(allStyle)
    return styles


STYLE_KEYS = ["floor", "none", "read2", "threads2", "proc1", "proc2", "procall"]


# --------------------------------------------------------------------------------------------
# Memory of the process tree
# --------------------------------------------------------------------------------------------
def _childPids(pid):
    kids = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                kids.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return kids


def treePids(root):
    """``root`` and all its descendants (read from /proc/<pid>/task/<tid>/children)."""
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(_childPids(pid))
    return pids


def ussBytes(pid):
    """Unique set size (Private_Clean + Private_Dirty + Private_Hugetlb) of one process."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            data = f.read()
    except OSError:
        return 0
    total = 0
    for line in data.split(b"\n"):
        if line.startswith(b"Private_"):
            total += int(line.split()[1])
    return total * 1024


def shmBytes(pids):
    """Total size of the engine's segments in /dev/shm owned by any of ``pids``."""
    prefixes = tuple(f"{SHM_PREFIX}{pid}_" for pid in pids)
    total = 0
    try:
        with os.scandir(SHM_DIR) as it:
            for entry in it:
                if entry.name.startswith(prefixes):
                    with contextlib.suppress(OSError):
                        total += entry.stat().st_size
    except OSError:
        pass
    return total


def treeMemory(root=None):
    pids = treePids(os.getpid() if root is None else root)
    return sum(ussBytes(p) for p in pids) + shmBytes(pids)


class PeakMemory:
    """Samples the tree's memory every SAMPLE_SECONDS in a background thread; keeps the peak."""

    def __init__(self, interval=SAMPLE_SECONDS):
        self.interval = interval
        self.peak = 0
        self.baseline = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = None

    def _sample(self):
        self.peak = max(self.peak, treeMemory())
        self.samples += 1

    def _loop(self):
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self):
        self.baseline = treeMemory()
        self.peak = self.baseline
        self._thread = threading.Thread(target=self._loop, name="bench-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()


# --------------------------------------------------------------------------------------------
# Bytes through the workers' pipes (counted on the main process's side, both directions)
# --------------------------------------------------------------------------------------------
class PipeCounter:
    """Wraps Connection._send_bytes/_recv_bytes in this process to count message bytes."""

    def __init__(self):
        self.byKind = {}

    def _record(self, payload):
        try:
            obj = pickle.loads(payload)
            kind = obj[0] if isinstance(obj, tuple) and obj and isinstance(obj[0], str) else "?"
        except Exception:
            kind = "?"
        n = len(payload) + (4 if len(payload) <= 0x7fffffff else 12)  # + length header
        count, total = self.byKind.get(kind, (0, 0))
        self.byKind[kind] = (count + 1, total + n)

    @contextlib.contextmanager
    def active(self):
        conn = mpconnection.Connection
        origSend, origRecv = conn._send_bytes, conn._recv_bytes
        counter = self

        def sendBytes(self, buf):
            counter._record(bytes(buf))
            return origSend(self, buf)

        def recvBytes(self, maxsize=None):
            result = origRecv(self, maxsize)
            counter._record(result.getvalue())
            return result

        conn._send_bytes, conn._recv_bytes = sendBytes, recvBytes
        try:
            yield self
        finally:
            conn._send_bytes, conn._recv_bytes = origSend, origRecv

    @property
    def totalBytes(self):
        return sum(total for _, total in self.byKind.values())


# --------------------------------------------------------------------------------------------
# Data and runs
# --------------------------------------------------------------------------------------------
def outputOptions(window):
    """Tiled, uncompressed; tiles no larger than the block (RIOS wants blocks = k x tiles)."""
    tile = min(window, 256)
    return CREATION_OPTIONS + [f"BLOCKXSIZE={tile}", f"BLOCKYSIZE={tile}"]


def makeRaster(path, size, seed):
    """An uncompressed tiled uint16 GeoTIFF of random values."""
    ds = gdal.GetDriverByName("GTiff").Create(path, size, size, 1, gdal.GDT_UInt16,
                                               CREATION_OPTIONS)
    ds.SetGeoTransform(GEOTRANSFORM)
    sr = osr.SpatialReference()
    sr.ImportFromEPSG(EPSG)
    ds.SetProjection(sr.ExportToWkt())
    band = ds.GetRasterBand(1)
    rng = numpy.random.default_rng(seed)
    step = 512
    for top in range(0, size, step):
        rows = min(step, size - top)
        band.WriteArray(rng.integers(100, 10000, size=(rows, size), dtype=numpy.uint16), 0, top)
    ds.FlushCache()
    ds = None
    return path


class Inputs:
    """Creates input rasters on demand (one per name and size) in the temp folder."""

    def __init__(self, folder):
        self.folder = folder
        self.files = {}

    def get(self, name, size):
        key = (name, size)
        if key not in self.files:
            path = os.path.join(self.folder, f"in_{name}_{size}.tif")
            self.files[key] = makeRaster(path, size, seed=len(self.files) + 1)
        return self.files[key]


def _remove(path):
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
    with contextlib.suppress(FileNotFoundError):
        os.remove(path + ".aux.xml")


def runFloor(compute, infiles, outpath, window):
    """The same blocks with no framework: ReadAsArray, compute, WriteArray."""
    dsets = {n: gdal.Open(p) for n, p in infiles.items()}
    bands = {n: ds.GetRasterBand(1) for n, ds in dsets.items()}
    ref = next(iter(dsets.values()))
    cols, rows = ref.RasterXSize, ref.RasterYSize
    out = outband = None
    for top in range(0, rows, window):
        nr = min(window, rows - top)
        for left in range(0, cols, window):
            nc = min(window, cols - left)
            arr = compute({n: b.ReadAsArray(left, top, nc, nr) for n, b in bands.items()})
            if out is None:
                gtype = gdal_array.NumericTypeCodeToGDALTypeCode(arr.dtype)
                out = gdal.GetDriverByName("GTiff").Create(outpath, cols, rows, 1, gtype,
                                                            outputOptions(window))
                out.SetGeoTransform(ref.GetGeoTransform())
                out.SetProjection(ref.GetProjection())
                outband = out.GetRasterBand(1)
            outband.WriteArray(arr, left, top)
    outband = None
    out = None
    bands = dsets = None


def runApplier(compute, infiles, outpath, window, style):
    """applier.apply with the bench's controls: GTiff, no statistics or pyramids."""
    controls = applier.ApplierControls()
    controls.setOutputDriverName("GTiff")
    controls.setCreationOptions(outputOptions(window))
    controls.setWindowSize(window, window)
    controls.setOmitPyramids(True)
    controls.setOmitBasicStats(True)
    controls.setOmitHistogram(True)
    controls.setConcurrencyStyle(style)
    fi = applier.FilenameAssociations()
    for n, p in infiles.items():
        setattr(fi, n, p)
    fo = applier.FilenameAssociations()
    fo.o = outpath
    applier.apply(makeUserFunction(compute, tuple(infiles)), fi, fo, controls=controls)


def _trimHeap():
    """Hand freed heap back to the OS so every run starts from a comparable baseline."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


# Memory touched before each timed run besides the size of its output (GDAL caches, slabs).
WARM_MARGIN_BYTES = 256 * MIB


def _warmPages(nbytes):
    """Touch and free ``nbytes`` of memory, so the run's new pages come from warm ones.

    On a virtual machine the hypervisor may take back guest pages soon after they are freed
    (free page reporting); the first touch of such a page costs a trip to the host. A run
    that writes a 1 GiB output soon after the last run deleted its own then takes either
    half or twice the kernel time, by luck (seen: copy's floor at 0.66 s or 1.44 s with the
    same code). Touching the memory first gives every run, of every style, warm pages.
    """
    if nbytes > 0:
        scratch = numpy.ones(nbytes, dtype=numpy.uint8)
        del scratch


def timeOnce(workload, concurrency, infiles, outpath, window, warmBytes=0):
    """Seconds of one run, with nothing else running; ``concurrency`` None = the floor.

    ``warmBytes`` of memory are touched first (:func:`_warmPages`), outside the timing.
    """
    _remove(outpath)
    _warmPages(warmBytes)
    _trimHeap()
    start = time.perf_counter()
    if concurrency is None:
        runFloor(workload.compute, infiles, outpath, window)
    else:
        runApplier(workload.compute, infiles, outpath, window, concurrency)
    return time.perf_counter() - start


def measureOnce(workload, concurrency, infiles, outpath, window):
    """(seconds, peak bytes, baseline bytes) of one run sampled for memory.

    Sampling reads every process's smaps_rollup, which takes about 10 ms of this process's
    time per sample, so these seconds are not comparable with :func:`timeOnce`'s.
    """
    with PeakMemory() as mem:
        seconds = timeOnce(workload, concurrency, infiles, outpath, window)
    return seconds, mem.peak, mem.baseline


@dataclass
class Row:
    workload: str
    style: str
    label: str
    times: list = field(default_factory=list)
    peaks: list = field(default_factory=list)
    baselines: list = field(default_factory=list)
    reusedFrom: str | None = None
    error: str | None = None
    ratioFloor: float | None = None
    ratioNone: float | None = None

    @property
    def median(self):
        return statistics.median(self.times) if self.times else None

    @property
    def peakMiB(self):
        return max(self.peaks) / MIB if self.peaks else None

    @property
    def deltaMiB(self):
        """Largest rise of a run's peak over the tree's memory just before that run."""
        if not self.peaks:
            return None
        return max(p - b for p, b in zip(self.peaks, self.baselines, strict=True)) / MIB

    def asDict(self):
        return {"workload": self.workload, "style": self.style, "label": self.label,
                "times_s": self.times, "median_s": self.median,
                "ratio_vs_floor": self.ratioFloor, "ratio_vs_cw_none": self.ratioNone,
                "peak_mib": self.peakMiB, "peak_rise_mib": self.deltaMiB,
                "peaks_mib": [p / MIB for p in self.peaks],
                "baselines_mib": [b / MIB for b in self.baselines],
                "reused_from": self.reusedFrom, "error": self.error}


def benchWorkload(workload, styles, inputs, folder, size, runs, log):
    infiles = {n: inputs.get(n, size) for n in workload.inputs}
    outpath = os.path.join(folder, f"out_{workload.name}.tif")
    rows = {s.key: Row(workload.name, s.key, s.label) for s in styles}
    measured = [s for s in styles if s.reuse is None]
    warmBytes = None
    for rep in range(runs + 1):      # a first, warm-up run samples memory; then timed runs
        for style in measured:
            row = rows[style.key]
            if row.error is not None:
                continue
            try:
                concurrency = None if style.make is None else style.make()
            except ValueError as e:        # e.g. CW_THREADS 2 on a 1-CPU machine
                row.error = str(e)
                log(f"  {workload.name:11s} {style.label:27s} skipped: {e}")
                continue
            if rep == 0:
                seconds, peak, base = measureOnce(workload, concurrency, infiles, outpath,
                                                  workload.window)
                row.peaks.append(peak)
                row.baselines.append(base)
                log(f"  {workload.name:11s} {style.label:27s} memory run: {seconds:6.2f} s  "
                    f"peak {peak / MIB:7.1f} MiB")
                continue
            if warmBytes is None:     # the output's size, known from the memory run
                warmBytes = os.path.getsize(outpath) + WARM_MARGIN_BYTES
            seconds = timeOnce(workload, concurrency, infiles, outpath, workload.window,
                               warmBytes)
            row.times.append(seconds)
            log(f"  {workload.name:11s} {style.label:27s} run {rep}/{runs}: {seconds:6.2f} s")
    for style in styles:
        if style.reuse is not None and style.reuse in rows:
            src, row = rows[style.reuse], rows[style.key]
            row.times, row.peaks, row.baselines = src.times, src.peaks, src.baselines
            row.reusedFrom = style.reuse
    floor = rows["floor"].median if "floor" in rows else None
    none = rows["none"].median if "none" in rows else None
    for row in rows.values():
        if row.median is not None:
            row.ratioFloor = row.median / floor if floor else None
            row.ratioNone = row.median / none if none else None
    _remove(outpath)
    return [rows[s.key] for s in styles]


def _procStyle(n=2):
    return Style(f"proc{n}", f"CW_PROCESSES {n}", lambda: applier.ConcurrencyStyle(
        computeWorkerKind=applier.CW_PROCESSES, numComputeWorkers=n))


def _countPipes(inputs, folder, size, window):
    infiles = {"a": inputs.get("a", size)}
    outpath = os.path.join(folder, "out_pipes.tif")
    counter = PipeCounter()
    _remove(outpath)
    with counter.active():
        runApplier(WORKLOADS[0].compute, infiles, outpath, window, _procStyle(2).make())
    _remove(outpath)
    nblocks = math.ceil(size / window) ** 2
    return {"raster": size, "blocks": nblocks, "total_bytes": counter.totalBytes,
            "bytes_per_block": counter.totalBytes / nblocks,
            "messages": {k: {"count": c, "bytes": b} for k, (c, b) in counter.byKind.items()}}


def pipeBytes(inputs, folder, plan, log):
    """Copy with CW_PROCESSES 2, counting the bytes of every message through the pipes.

    ``plan`` maps a block size to two raster sizes. The per-block figure is the marginal
    one, (bytes of the larger run - bytes of the smaller) / (blocks difference), so what is
    sent once per run or per worker (layouts, otherArgs, timer names) drops out.
    """
    results = []
    for window, (small, large) in plan.items():
        a = _countPipes(inputs, folder, small, window)
        b = _countPipes(inputs, folder, large, window)
        marginal = (b["total_bytes"] - a["total_bytes"]) / (b["blocks"] - a["blocks"])
        result = {"window": window, "runs": [a, b],
                  "pixel_bytes_per_block": window * window * 2 * 2,   # uint16 in + out
                  "bytes_per_block": marginal,
                  "fixed_bytes": a["total_bytes"] - marginal * a["blocks"]}
        results.append(result)
        log(f"  pipes: block {window}: {a['blocks']} blocks {a['total_bytes']} bytes, "
            f"{b['blocks']} blocks {b['total_bytes']} bytes: {marginal:.1f} bytes/block")
    first, last = results[0], results[-1]
    ratio = last["bytes_per_block"] / max(first["bytes_per_block"], 1e-9)
    tiny = all(r["bytes_per_block"] < 0.01 * r["pixel_bytes_per_block"] for r in results)
    return {"blocksizes": results, "ratio_large_vs_small": ratio,
            "constant": 0.8 <= ratio <= 1.25 and tiny, "far_below_pixels": tiny}


def formatPipes(pipes):
    lines = ["Bytes through the compute workers' pipes per block (copy, CW_PROCESSES 2; counted "
             "in the main process, both directions; marginal cost of a block, from two raster "
             "sizes):"]
    for r in pipes["blocksizes"]:
        a, b = r["runs"]
        lines.append(
            f"  block {r['window']:3d}x{r['window']:<3d}: {r['bytes_per_block']:6.1f} bytes/block"
            f" (the timer intervals each worker returns in 'finished'; no message is sent per"
            f" block); fixed {r['fixed_bytes']:.0f} bytes per run; "
            f"{a['blocks']} blocks: {a['bytes_per_block']:.1f}, {b['blocks']} blocks: "
            f"{b['bytes_per_block']:.1f} bytes/block in all; block pixels in+out "
            f"{r['pixel_bytes_per_block']} bytes")
    first, last = pipes["blocksizes"][0], pipes["blocksizes"][-1]
    pixels = (last["window"] / first["window"]) ** 2
    lines.append(f"  bytes per block {'ARE' if pipes['constant'] else 'are NOT'} constant in "
                 f"block size: ratio {pipes['ratio_large_vs_small']:.2f} for {pixels:.0f}x the "
                 "pixels per block; "
                 + ("no pixel data crosses the pipes" if pipes["far_below_pixels"] else
                    "pixel-sized messages cross the pipes"))
    return "\n".join(lines)


# Runs per raster size in the memory check, interleaved; the median peak of each is compared.
MEMORY_RUNS = 3


def memoryCheck(inputs, folder, size, log, runs=MEMORY_RUNS):
    """Peak memory of copy with CW_PROCESSES 2 on a raster and on one 4 times larger.

    One run's peak moves by tens of MiB with what the main process's heap holds from
    earlier runs, so each size is run ``runs`` times, alternately, and the medians compared.
    """
    copy = WORKLOADS[0]
    style = _procStyle(2)
    sizes = (("base", size), ("4x", 2 * size))
    samples = {label: [] for label, _ in sizes}
    for _ in range(runs):
        for label, n in sizes:
            infiles = {"a": inputs.get("a", n)}
            outpath = os.path.join(folder, f"out_mem_{label}.tif")
            seconds, peak, base = measureOnce(copy, style.make(), infiles, outpath,
                                              copy.window)
            _remove(outpath)
            samples[label].append((peak, base, seconds))
            log(f"  memory: copy CW_PROCESSES 2 on {n}x{n}: {seconds:.2f} s, "
                f"peak {peak / MIB:.1f} MiB, rise {(peak - base) / MIB:.1f} MiB")
    out = {}
    for label, n in sizes:
        peak, base, seconds = sorted(samples[label])[len(samples[label]) // 2]
        out[label] = {"raster": n, "seconds": seconds, "peak_mib": peak / MIB,
                      "baseline_mib": base / MIB, "rise_mib": (peak - base) / MIB,
                      "peaks_mib": [p / MIB for p, _, _ in samples[label]]}
    b, f = out["base"]["peak_mib"], out["4x"]["peak_mib"]
    out["ratio"] = f / b
    out["same"] = f <= max(1.10 * b, b + 20)
    return out


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------
def _fmt(value, width, decimals):
    return f"{'-':>{width}s}" if value is None else f"{value:{width}.{decimals}f}"


def formatTable(rows):
    head = (f"{'workload':11s} {'style':27s} {'median s':>8s} {'x floor':>7s} "
            f"{'x CW_NONE':>9s} {'peak MiB':>8s} {'rise MiB':>8s}  note")
    lines = [head, "-" * (len(head) + 24)]
    last = None
    for r in rows:
        if last is not None and r.workload != last:
            lines.append("")
        last = r.workload
        note = ""
        if r.reusedFrom:
            note = f"= {r.reusedFrom} run (all usable CPUs = {r.reusedFrom[4:]})"
        elif r.error:
            note = "skipped: " + r.error[:60]
        elif len(r.times) > 1:
            note = f"{len(r.times)} runs, {min(r.times):.2f}..{max(r.times):.2f} s"
        lines.append(f"{r.workload:11s} {r.label:27s} {_fmt(r.median, 8, 2)} "
                     f"{_fmt(r.ratioFloor, 7, 2)} {_fmt(r.ratioNone, 9, 2)} "
                     f"{_fmt(r.peakMiB, 8, 0)} {_fmt(r.deltaMiB, 8, 0)}  {note}")
    return "\n".join(lines)


def _find(rows, workload, style):
    for r in rows:
        if r.workload == workload and r.style == style:
            return r
    return None


def evaluateTargets(rows, pipes, memory):
    targets = []

    def ratio(workload, style, against, limit, text):
        r = _find(rows, workload, style)
        value = None if r is None else (r.ratioFloor if against == "floor" else r.ratioNone)
        if value is not None:          # only when both figures were measured
            targets.append({"target": text, "value": value, "limit": limit,
                            "pass": value <= limit})

    ratio("gilloop", "proc2", "none", 0.55, "gilloop CW_PROCESSES 2 <= 0.55 x CW_NONE")
    ratio("copy", "none", "floor", 1.15, "copy CW_NONE (default) <= 1.15 x floor")
    ratio("copy", "proc2", "floor", 1.15, "copy CW_PROCESSES 2 <= 1.15 x floor")
    ratio("filters", "proc2", "none", 0.60, "filters CW_PROCESSES 2 <= 0.6 x CW_NONE")
    if pipes is not None:
        targets.append({"target": "pipe bytes per block constant in block size",
                        "value": pipes["ratio_large_vs_small"],
                        "limit": "0.8..1.25", "pass": pipes["constant"]})
    if memory is not None:
        targets.append({"target": "peak memory same for a 4x raster (<= max(1.10x, +20 MiB))",
                        "value": memory["ratio"], "limit": 1.10, "pass": memory["same"]})
    return targets


def formatTargets(targets):
    lines = []
    for t in targets:
        value = "-" if t["value"] is None else f"{t['value']:.2f}"
        lines.append(f"  [{'PASS' if t['pass'] else 'MISS'}] {t['target']}: {value}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------
def parseArgs(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="one run each on tiny rasters (a smoke test, not a measurement)")
    p.add_argument("--json", default=DEFAULT_JSON, help="where to write the JSON results")
    p.add_argument("--workloads", default=",".join(WORKLOAD_NAMES),
                   help="comma-separated subset of: " + ", ".join(WORKLOAD_NAMES))
    p.add_argument("--styles", default=",".join(STYLE_KEYS),
                   help="comma-separated subset of: " + ", ".join(STYLE_KEYS))
    p.add_argument("--runs", type=int, default=None,
                   help="timed runs per figure (default 5 for copy, 3 for the others)")
    p.add_argument("--no-extras", action="store_true",
                   help="skip the pipe-bytes and 4x-memory checks")
    p.add_argument("--tmpdir", default=None, help="folder for the temporary rasters")
    p.add_argument("--gdal-cachemax", type=int, default=64,
                   help="GDAL block cache per process in MiB (default 64; 0 = GDAL's default)")
    args = p.parse_args(argv)
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    bad = [w for w in args.workloads if w not in WORKLOAD_NAMES]
    if bad:
        p.error(f"unknown workload(s) {bad}: choose from {WORKLOAD_NAMES}")
    args.styles = [s.strip() for s in args.styles.split(",") if s.strip()]
    bad = [s for s in args.styles if s not in STYLE_KEYS]
    if bad:
        p.error(f"unknown style(s) {bad}: choose from {STYLE_KEYS}")
    if args.runs is None and args.quick:
        args.runs = 1
    return args


@contextlib.contextmanager
def _gdalCache(mib):
    """Cap GDAL's block cache in this process (the floor, CW_NONE, the writer) and in
    processes that read GDAL_CACHEMAX (remote workers); compute processes size their own."""
    if not mib:
        yield
        return
    saved = os.environ.get("GDAL_CACHEMAX")
    savedMax = gdal.GetCacheMax()
    os.environ["GDAL_CACHEMAX"] = str(mib)
    gdal.SetCacheMax(mib * MIB)
    try:
        yield
    finally:
        gdal.SetCacheMax(savedMax)
        if saved is None:
            os.environ.pop("GDAL_CACHEMAX", None)
        else:
            os.environ["GDAL_CACHEMAX"] = saved


@contextlib.contextmanager
def picklableByValue(moduleName: str):
    """When module ``moduleName`` was imported (not run as a script), ship its functions and
    classes to workers by value: the workers cannot import a benchmark by its name."""
    import cloudpickle
    module = sys.modules.get(moduleName)
    registered = False
    if moduleName != "__main__" and module is not None:
        with contextlib.suppress(Exception):
            cloudpickle.register_pickle_by_value(module)
            registered = True
    try:
        yield
    finally:
        if registered:
            with contextlib.suppress(Exception):
                cloudpickle.unregister_pickle_by_value(module)


def main(argv=None):
    args = parseArgs(argv)
    gdal.UseExceptions()
    ncpu = usableCpuCount()
    styles = [s for s in makeStyles(ncpu) if s.key in args.styles]
    for s in styles:
        if s.reuse is not None and s.reuse not in args.styles:
            s.reuse = None          # its source is not measured: measure it instead
    workloads = [w for w in WORKLOADS if w.name in args.workloads]

    def log(msg):
        print(msg, flush=True)

    started = time.perf_counter()
    folder = tempfile.mkdtemp(prefix="sa-bench-", dir=args.tmpdir)
    rows, pipes, memory = [], None, None
    runsText = "per workload" if args.runs is None else args.runs
    log(f"sharedapplier bench: {ncpu} usable CPUs, {runsText} timed run(s) per figure, "
        f"GDAL {gdal.__version__}, temp folder {folder}")
    try:
        with _gdalCache(args.gdal_cachemax), picklableByValue(__name__):
            inputs = Inputs(folder)
            for w in workloads:
                size = w.quickSize if args.quick else w.size
                t0 = time.perf_counter()
                for n in w.inputs:
                    inputs.get(n, size)
                log(f"{w.name}: {w.description}; {size}x{size} raster, {w.window}x{w.window}"
                    f" blocks (inputs ready in {time.perf_counter() - t0:.1f} s)")
                runs = w.runs if args.runs is None else args.runs
                rows.extend(benchWorkload(w, styles, inputs, folder, size, runs, log))
            if not args.no_extras:
                base = 512 if args.quick else 2048
                plan = {128: (base, 2 * base), 512: (2 * base, 4 * base)}
                log(f"pipe bytes: copy, CW_PROCESSES 2, blocks and rasters {plan}")
                pipes = pipeBytes(inputs, folder, plan, log)
                # large enough that the writer's GDAL cache (--gdal-cachemax) is full in
                # both runs, so that the comparison shows the engine's own memory
                memSize = 512 if args.quick else 12288
                log(f"memory check: copy, CW_PROCESSES 2, {memSize}^2 and {2 * memSize}^2")
                memory = memoryCheck(inputs, folder, memSize, log)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    elapsed = time.perf_counter() - started

    targets = evaluateTargets(rows, pipes, memory)
    print()
    print("Median wall time per workload and style. peak: largest tree memory seen (USS of "
          "every process in the tree + its /dev/shm segments); rise: peak minus the tree's "
          "memory just before the run")
    print(formatTable(rows))
    if pipes is not None:
        print()
        print(formatPipes(pipes))
    if memory is not None:
        print()
        b, f = memory["base"], memory["4x"]
        print(f"Peak memory, copy CW_PROCESSES 2: {b['raster']}^2 raster {b['peak_mib']:.1f} MiB "
              f"(rise {b['rise_mib']:.1f}), {f['raster']}^2 raster (4x the pixels) "
              f"{f['peak_mib']:.1f} MiB (rise {f['rise_mib']:.1f}): ratio {memory['ratio']:.2f}, "
              + ("about the same" if memory["same"] else "NOT the same"))
    print()
    print("Targets (informational):")
    print(formatTargets(targets))
    print(f"\nTotal bench time {elapsed:.0f} s")

    result = {
        "machine": {"usable_cpus": ncpu, "cpu_count": os.cpu_count(),
                    "python": platform.python_version(), "gdal": gdal.__version__,
                    "numpy": numpy.__version__, "platform": platform.platform()},
        "config": {"quick": args.quick, "workloads": args.workloads,
                   "runs": {w.name: w.runs if args.runs is None else args.runs
                            for w in workloads},
                   "styles": args.styles, "gdal_cachemax_mib": args.gdal_cachemax,
                   "sample_seconds": SAMPLE_SECONDS,
                   "sizes": {w.name: (w.quickSize if args.quick else w.size) for w in workloads},
                   "windows": {w.name: w.window for w in workloads}},
        "rows": [r.asDict() for r in rows],
        "pipe_bytes": pipes,
        "memory_check": memory,
        "targets": targets,
        "elapsed_s": elapsed,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1)
    print(f"JSON written to {args.json}")
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
