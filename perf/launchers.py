"""Launcher start-up and run time: the same job on every backend and on CW_PROCESSES.

For each backend it prints the time from calling ``apply`` to the first block computed (the
first ``userfunction`` interval of any worker) and the whole run, median of ``REPEAT``
runs. A small-blocks case prints what each block costs over the channel (loopback): one
CW_SUBPROC worker, blocks of 64 x 64, against CW_NONE; the goal is at most 1 ms a block. The batch test beds (one-node Slurm, the PBS test double, the moto AWS Batch harness)
are started and stopped by the fixtures the tests use. Run: ``make bench-launchers``.
"""
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from batchfixtures import aws_batch, pbs_double, slurm_cluster, torque_qsub  # noqa: E402,F401
from conftest import write_raster  # noqa: E402
from test_launchers import backendStyle, files  # noqa: E402

from sharedapplier import applier  # noqa: E402
from sharedapplier.structures import CW_PROCESSES, CW_SUBPROC, ConcurrencyStyle  # noqa: E402

BACKENDS = ["processes", "subproc", "slurm", "torque", "pbs_double", "awsbatch"]
RESULTS = {}
REPEAT = 3
SIZE = 2048


def ndvi(info, inputs, outputs):
    a = inputs.a.astype(np.float32)
    outputs.out = ((a[0] - a[1]) / (a[0] + a[1] + 1))[np.newaxis]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    d = tmp_path_factory.mktemp("launcher_bench")
    rng = np.random.default_rng(3)
    return write_raster(d / "a.tif", rng.integers(1, 3000, (2, SIZE, SIZE)).astype(np.int16))


def controlsFor(kind, extra, tmp_path):
    c = applier.ApplierControls()
    c.setOutputDriverName("GTiff")
    c.setTempdir(str(tmp_path))
    c.setConcurrencyStyle(ConcurrencyStyle(
        computeWorkerKind=kind, numComputeWorkers=2, computeWorkersRead=True,
        computeWorkerExtraParams=extra, computeBarrierTimeout=120))
    return c


def firstBlockSeconds(timings, started):
    starts = [pairs[0][0] for worker, names in timings.intervalsByWorker.items()
              for name, pairs in names.items() if name == "userfunction" and pairs]
    return min(starts) - started


@pytest.mark.parametrize("name", BACKENDS)
def test_measure(name, request, scene, tmp_path):
    if name == "processes":
        kind, extra = CW_PROCESSES, None
    else:
        kind, extra = backendStyle(request, name, tmp_path)
    firsts, totals = [], []
    for _ in range(REPEAT):
        started = time.time()
        result = applier.apply(ndvi, files(a=scene), files(out=tmp_path / "o.tif"),
                               controls=controlsFor(kind, extra, tmp_path))
        totals.append(time.time() - started)
        firsts.append(firstBlockSeconds(result.timings, started))
    RESULTS[name] = (statistics.median(firsts), statistics.median(totals))


SMALL_WINDOW = 64
SMALL_SIDES = (512, 2048)   # 64 and 1024 blocks
SMALL_STYLES = {
    "CW_NONE": None,
    "CW_SUBPROC, main reads": dict(computeWorkersRead=False, numReadWorkers=1),
    "CW_SUBPROC, worker reads": dict(computeWorkersRead=True),
}
SMALL_RESULTS = {}


def addOne(info, inputs, outputs):
    outputs.out = inputs.a[:1] + 1


@pytest.fixture(scope="module")
def smallScenes(tmp_path_factory):
    d = tmp_path_factory.mktemp("small_blocks")
    rng = np.random.default_rng(4)
    return {side: write_raster(d / f"s{side}.tif",
                               rng.integers(1, 3000, (2, side, side)).astype(np.int16))
            for side in SMALL_SIDES}


def smallControls(style, tmp_path):
    c = applier.ApplierControls()
    c.setOutputDriverName("GTiff")
    c.setCreationOptions(["TILED=YES", f"BLOCKXSIZE={SMALL_WINDOW}",
                          f"BLOCKYSIZE={SMALL_WINDOW}"])
    c.setWindowSize(SMALL_WINDOW, SMALL_WINDOW)
    c.setCalcStats(False)
    c.setTempdir(str(tmp_path))
    if style is not None:
        c.setConcurrencyStyle(ConcurrencyStyle(
            computeWorkerKind=CW_SUBPROC, numComputeWorkers=1, computeBarrierTimeout=120,
            **style))
    return c


@pytest.mark.parametrize("styleName", list(SMALL_STYLES))
def test_small_blocks(styleName, smallScenes, tmp_path):
    """Median wall time at each size; the difference cancels the start-up."""
    walls = {}
    for side, path in smallScenes.items():
        runs = []
        for _ in range(REPEAT):
            started = time.perf_counter()
            applier.apply(addOne, files(a=path), files(out=tmp_path / "o.tif"),
                          controls=smallControls(SMALL_STYLES[styleName], tmp_path))
            runs.append(time.perf_counter() - started)
        walls[side] = statistics.median(runs)
    SMALL_RESULTS[styleName] = walls


def perBlockMs(walls):
    small, large = SMALL_SIDES
    nblocks = {side: (side // SMALL_WINDOW) ** 2 for side in SMALL_SIDES}
    return 1000 * (walls[large] - walls[small]) / (nblocks[large] - nblocks[small])


def test_report():
    blocks = (SIZE // 256) ** 2
    print(f"\n{SIZE}x{SIZE} Int16 x2 bands, NDVI, {blocks} blocks of 256x256, 2 workers "
          f"reading their own inputs; median of {REPEAT} runs")
    print(f"{'backend':<12}{'first block (s)':>17}{'total (s)':>12}")
    for name, (first, total) in RESULTS.items():
        print(f"{name:<12}{first:>17.2f}{total:>12.2f}")
    if SMALL_RESULTS:
        print(f"\nsmall blocks: {SMALL_WINDOW}x{SMALL_WINDOW} Int16, one worker, "
              f"{SMALL_SIDES[0]}^2 and {SMALL_SIDES[1]}^2 rasters; median of {REPEAT} runs")
        print(f"{'style':<28}{'ms/block':>10}{'beyond CW_NONE':>16}")
        baseline = perBlockMs(SMALL_RESULTS["CW_NONE"]) if "CW_NONE" in SMALL_RESULTS else None
        for name, walls in SMALL_RESULTS.items():
            ms = perBlockMs(walls)
            beyond = "" if baseline is None else f"{ms - baseline:.3f}"
            print(f"{name:<28}{ms:>10.3f}{beyond:>16}   (goal <= 1 ms beyond)")
    out = HERE / "results" / "launchers.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"launchers": RESULTS, "smallBlocks": SMALL_RESULTS}, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-s", "-p", "no:cacheprovider",
                          "-o", "testpaths=perf", "-W", "ignore"] + sys.argv[1:]))
