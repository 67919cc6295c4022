"""Launcher start-up and run time: the same job on every backend and on CW_PROCESSES.

For each backend it prints the time from calling ``apply`` to the first block computed (the
first ``userfunction`` interval of any worker) and the whole run, median of ``--repeat``
runs. The batch test beds (one-node Slurm, the PBS test double, the moto AWS Batch harness)
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
from sharedapplier.structures import CW_PROCESSES, ConcurrencyStyle  # noqa: E402

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


def test_report():
    blocks = (SIZE // 256) ** 2
    print(f"\n{SIZE}x{SIZE} Int16 x2 bands, NDVI, {blocks} blocks of 256x256, 2 workers "
          f"reading their own inputs; median of {REPEAT} runs")
    print(f"{'backend':<12}{'first block (s)':>17}{'total (s)':>12}")
    for name, (first, total) in RESULTS.items():
        print(f"{name:<12}{first:>17.2f}{total:>12.2f}")
    out = HERE / "results" / "launchers.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(RESULTS, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-s", "-p", "no:cacheprovider",
                          "-o", "testpaths=perf", "-W", "ignore"] + sys.argv[1:]))
