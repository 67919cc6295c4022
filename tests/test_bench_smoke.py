"""Smoke test of perf/bench.py: a quick run of the copy workload in every style."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "perf" / "bench.py"
MODULE = "sharedapplier_perf_bench"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(MODULE, BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE] = module      # so cloudpickle can ship its functions by value
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(MODULE, None)


@pytest.mark.timeout(120)
def test_quick_copy_every_style(bench, tmp_path, no_shm_leak, capsys):
    out = tmp_path / "b.json"
    result = bench.main(["--quick", "--workloads", "copy", "--json", str(out),
                         "--tmpdir", str(tmp_path)])
    data = json.loads(out.read_text())
    assert data["rows"] == json.loads(json.dumps(result["rows"]))

    rows = {r["style"]: r for r in data["rows"] if r["workload"] == "copy"}
    assert set(rows) == set(bench.STYLE_KEYS)
    for key, row in rows.items():
        assert row["error"] is None, (key, row["error"])
        assert row["times_s"] and all(t > 0 for t in row["times_s"]), key
        assert row["median_s"] > 0, key
        assert row["peak_mib"] > 0, key
        assert row["ratio_vs_floor"] > 0 and row["ratio_vs_cw_none"] > 0, key
    assert rows["floor"]["ratio_vs_floor"] == pytest.approx(1.0)
    assert rows["none"]["ratio_vs_cw_none"] == pytest.approx(1.0)

    pipes = data["pipe_bytes"]
    assert [r["window"] for r in pipes["blocksizes"]] == [128, 512]
    assert all(r["bytes_per_block"] > 0 for r in pipes["blocksizes"])
    assert pipes["far_below_pixels"]
    assert data["memory_check"]["base"]["peak_mib"] > 0
    assert data["memory_check"]["4x"]["peak_mib"] > 0
    assert {t["target"] for t in data["targets"]}

    printed = capsys.readouterr().out
    assert "CW_PROCESSES 2" in printed and "Targets" in printed
    assert not list(tmp_path.glob("sa-bench-*")), "temporary rasters were left behind"


SCALING = BENCH.parent / "scaling.py"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("compute", [[], ["--real"]], ids=["sleeping", "real"])
def test_scaling_bench_prints_every_output_and_the_start_up(tmp_path, no_shm_leak, capsys,
                                                            compute):
    spec = importlib.util.spec_from_file_location("sharedapplier_perf_scaling", SCALING)
    scaling = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = scaling
    try:
        spec.loader.exec_module(scaling)
        rows, startup = scaling.main(["--workers", "0,2", "--sleep-ms", "1", "--size", "512",
                                      "--tmpdir", str(tmp_path), *compute])
    finally:
        sys.modules.pop(spec.name, None)
    assert [r.label for r in rows] == [c.label for c in scaling.CASES for _ in (0, 2)]
    for r in rows:
        assert r.workers in (0, 2) and r.wall > 0 and r.mainCpuMs > 0 and 0 < r.efficiency, r
        assert r.otherThreadsMs >= -0.05, r  # two clocks: a rounding step below zero
        assert r.workersMs >= 0, r  # /proc's clock ticks: 4 blocks may not reach one
    assert [w for w, _ in startup] == [0, 2] and all(ms > 0 for _, ms in startup)
    assert "main CPU ms/block" in capsys.readouterr().out


FAULTS = BENCH.parent / "faults.py"


@pytest.mark.timeout(180)
def test_faults_bench_prints_each_figure(tmp_path, no_shm_leak, capsys):
    spec = importlib.util.spec_from_file_location("sharedapplier_perf_faults", FAULTS)
    faults = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = faults
    try:
        spec.loader.exec_module(faults)
        # 16 blocks of 100 ms on 2 workers: the half-way signal comes 0.4 s before the end
        figures = faults.main(["--workers", "2", "--sleep-ms", "100", "--size", "1024",
                               "--runs", "1", "--long-block-s", "5", "--tmpdir",
                               str(tmp_path)])
    finally:
        sys.modules.pop(spec.name, None)
    for stop in figures["stop"] + figures["stopInLongBlock"]:
        assert stop.exitStatus != 0 and stop.seconds > 0 and stop.blocksInJournal > 0, stop
    assert all(s > 0 for s in figures["deadly"])
    assert all(calm > 0 and killed > 0 for calm, killed in figures["deathCost"])
    printed = capsys.readouterr().out
    assert "SIGTERM half way to exit" in printed and "kills every worker" in printed
    assert not list(tmp_path.iterdir()), "the benchmark left files behind"
