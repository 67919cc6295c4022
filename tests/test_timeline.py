"""Timeline picture, bottleneck diagnosis and the blocks-per-second progress bar."""
import io
import struct
import sys

import numpy as np
import pytest
from conftest import write_raster

from sharedapplier import applier, rioserrors, timeline
from sharedapplier.cuiprogress import LogProgressBar, ProgressBar
from sharedapplier.engine.writer import ApplierProgress
from sharedapplier.structures import CW_PROCESSES, ConcurrencyStyle, Timers

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SIZE, WINDOW = 160, 32
NBLOCKS = (SIZE // WINDOW) ** 2


class FakeTTY(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self):
        return True


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def timers_from(workers):
    """Timers merged from per-worker Timers: {worker: {name: [(start, end), ...]}}."""
    total = Timers("main")
    for worker, names in workers.items():
        part = Timers(worker)
        for name, pairs in names.items():
            for start, end in pairs:
                part.addInterval(name, start, end)
        total.merge(part)
    return total


def chunks(start, end, n=10):
    """``n`` back-to-back intervals covering [start, end]."""
    edges = np.linspace(start, end, n + 1)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))


def double(info, inputs, outputs):
    outputs.out = inputs.img * 2


# ---------------------------------------------------------------------------------------
# A real run: CW_PROCESSES x2 with one read worker, the bar on a fake terminal


def run_apply(tmp_path, style, progress):
    image = np.arange(SIZE * SIZE, dtype=np.uint16).reshape(1, SIZE, SIZE) % 1000
    infiles = applier.FilenameAssociations()
    infiles.img = write_raster(tmp_path / "img.tif", image)
    outfiles = applier.FilenameAssociations()
    outfiles.out = str(tmp_path / "out.tif")
    controls = applier.ApplierControls()
    controls.setWindowSize(WINDOW, WINDOW)
    controls.setConcurrencyStyle(style)
    controls.setProgress(progress)
    return applier.apply(double, infiles, outfiles, controls=controls)


@pytest.fixture(scope="module")
def pipelined(tmp_path_factory):
    """(ApplierReturn, terminal text, directory) of one CW_PROCESSES run with read workers."""
    tmp_path = tmp_path_factory.mktemp("pipelined")
    stream = FakeTTY()
    style = ConcurrencyStyle(computeWorkerKind=CW_PROCESSES, numComputeWorkers=2,
                             numReadWorkers=1, computeWorkersRead=False)
    rtn = run_apply(tmp_path, style, ProgressBar(stream=stream))
    return rtn, stream.getvalue(), tmp_path


def test_real_run_rows_have_every_worker(pipelined):
    rtn = pipelined[0]
    rows = timeline.timelineRows(rtn.timings)
    assert [r.label for r in rows] == ["read 0", "compute 0", "compute 1", "writer (main)"]
    assert "read" in rows[0].bars and "write" in rows[-1].bars
    # per block: the user function, the copy into the slot, the summary for the writer
    assert sum(len(r.bars.get("compute", [])) for r in rows[1:3]) == 3 * NBLOCKS
    wall = rtn.timings.getDurationsForName("walltime")[0]
    for row in rows:
        for bars in row.bars.values():
            assert all(-1e-6 <= start and start + length <= wall + 1e-6
                       for start, length in bars)


def test_real_run_draws_png(pipelined):
    rtn, _, tmp_path = pipelined
    path = tmp_path / "timeline.png"
    assert rtn.timings.drawTimeline(str(path), title="test run") == str(path)
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 400 and height > 150 and len(data) > 5000


def test_real_run_report_ends_with_diagnosis(pipelined):
    report = pipelined[0].timings.formatReport()
    lines = report.split("\n")
    assert lines[-2] == "" and lines[-1].startswith("Limited by ")
    assert lines[-1] == pipelined[0].timings.bottleneck()


def test_real_run_progress_bar_ends_at_100(pipelined):
    text = pipelined[1]
    assert "\r[" in text and "blocks/s" in text
    final = text.rstrip("\n").split("\r")[-1]
    assert final.startswith("[" + "#" * 30 + "]  100%")
    assert f"{NBLOCKS}/{NBLOCKS} blocks" in final
    assert text.endswith("\n") and text.count("\n") == 1


def test_real_run_progress_log_lines_off_terminal(tmp_path):
    stream = io.StringIO()
    rtn = run_apply(tmp_path, ConcurrencyStyle(), ProgressBar(stream=stream))
    assert rtn.timings.getDurationsForName("userfunction")
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and 2 <= len(lines) <= 12
    assert lines[0].startswith("  0%  0/25 blocks")
    assert lines[-1].startswith("100%  25/25 blocks")


# ---------------------------------------------------------------------------------------
# Rows and drawing, synthetic


def test_rows_order_labels_and_offsets():
    timers = timers_from({
        "main": {"walltime": [(10, 20)], "writing": [(18, 19)], "startcomputeworkers": [(10, 11)]},
        "compute 10": {"userfunction": [(12, 13)], "copy_output": [(13, 13.5)]},
        "compute 2": {"wait_input": [(11, 12)], "userfunction": [(12, 14)]},
        "read 1": {"reading": [(11, 12)]},
        "read 0": {"reading": [(11, 11.5)], "wait_free_slot": [(11.5, 15)]},
        "ghost": {"somethingelse": [(11, 12)]},
    })
    rows = timeline.timelineRows(timers)
    assert [r.label for r in rows] == ["read 0", "read 1", "compute 2", "compute 10",
                                       "writer (main)"]
    assert rows[3].bars == {"compute": [(2, 1), (3, 0.5)]}
    assert rows[0].bars == {"read": [(1, 0.5)], "wait": [(1.5, 3.5)]}
    assert rows[-1].bars == {"write": [(8, 1)], "start": [(0, 1)]}


def test_draw_without_matplotlib_raises_unavailable(monkeypatch, tmp_path):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.patches",
                 "matplotlib.backends", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    timers = timers_from({"main": {"walltime": [(0, 1)], "writing": [(0, 1)]}})
    path = tmp_path / "t.png"
    with pytest.raises(rioserrors.UnavailableError, match="pip install matplotlib"):
        timers.drawTimeline(str(path))
    assert not path.exists()


# ---------------------------------------------------------------------------------------
# Diagnosis, synthetic


def pipeline(read=1.0, compute=1.0, write=1.0, readsInCompute=0.0, start=0.0):
    """A 10 s run: one read worker, two compute workers, the main thread writing."""
    return timers_from({
        "main": {"walltime": [(0, 10)], "startcomputeworkers": [(0, start)] if start else [],
                 "writing": chunks(10 - write, 10)},
        "read 0": {"reading": chunks(0, read), "wait_free_slot": [(read, 10)]},
        "compute 0": {"reading": chunks(0, readsInCompute) if readsInCompute else [],
                      "userfunction": chunks(readsInCompute, readsInCompute + compute)},
        "compute 1": {"userfunction": chunks(0, compute), "wait_input": [(compute, 10)]},
    })


def test_compute_bound():
    d = timeline.diagnose(pipeline(read=2, compute=9, write=1), cpus=8)
    assert d.limit == "computing"
    assert d.busy["computing"] == pytest.approx(0.9)
    assert d.busy["reading"] == pytest.approx(0.2)
    line = d.line()
    assert line.startswith("Limited by computing")
    assert "numComputeWorkers" in line and "numReadWorkers" not in line
    assert "already computing" not in line


def test_compute_bound_on_every_cpu_says_so():
    """One action that can help here: not more workers when every CPU computes."""
    line = timeline.bottleneck(pipeline(read=2, compute=9, write=1), cpus=2)
    assert "all 2 usable CPUs are already computing" in line and "faster user function" in line
    assert "try more compute workers" not in line


def test_compute_bound_with_cpus_to_spare_says_how_many():
    line = timeline.bottleneck(pipeline(read=2, compute=9, write=1), cpus=8)
    assert "try more compute workers (numComputeWorkers): 2 of the 8 usable CPUs" in line


def test_read_bound():
    d = timeline.diagnose(pipeline(read=9, compute=3, write=1), cpus=8)
    assert d.limit == "reading"
    assert "numReadWorkers" in d.line() and "computeWorkersRead=True" in d.line()
    assert d.line().startswith("Limited by reading")


def test_read_bound_when_compute_workers_read():
    d = timeline.diagnose(timers_from({
        "main": {"walltime": [(0, 10)], "writing": chunks(9, 10)},
        "compute 0": {"reading": chunks(0, 6), "userfunction": chunks(6, 9)},
        "compute 1": {"reading": chunks(0, 6), "userfunction": chunks(6, 9)},
    }), cpus=8)
    assert d.limit == "reading"
    assert "numComputeWorkers" in d.advice and "read their own blocks" in d.advice


def test_write_bound():
    d = timeline.diagnose(pipeline(read=1, compute=2, write=8), cpus=8)
    assert d.limit == "writing"
    line = d.line()
    assert line.startswith("Limited by writing")
    assert "fewer workers will not hurt" in line and "driver" in line
    assert "more compute workers" not in line


def test_shared_lanes_saturate_together():
    """Compute workers reading 45% and computing 45%: saturated, so computing, not waiting."""
    d = timeline.diagnose(timers_from({
        "main": {"walltime": [(0, 10)], "writing": chunks(7, 10)},
        "compute 0": {"reading": chunks(0, 4.5), "userfunction": chunks(4.5, 9.1)},
        "compute 1": {"reading": chunks(0, 4.5), "userfunction": chunks(4.5, 9.1)},
    }), cpus=8)
    assert d.limit == "computing"


def test_sequential_main_thread():
    main = {"walltime": [(0, 10)], "reading": chunks(0, 2), "userfunction": chunks(2, 8),
            "writing": chunks(8, 10)}
    assert timeline.diagnose(timers_from({"main": main}), cpus=8).limit == "computing"
    main["reading"] = chunks(0, 7)
    main["userfunction"] = chunks(7, 8)
    d = timeline.diagnose(timers_from({"main": main}), cpus=8)
    assert d.limit == "reading" and "numReadWorkers" in d.advice


def test_waiting_for_worker_start():
    d = timeline.diagnose(pipeline(read=1, compute=1, write=1, start=5), cpus=8)
    assert d.limit == "starting workers"
    assert d.line().startswith("Limited by starting workers")
    assert "starting the compute workers took 50%" in d.advice
    assert "fewer compute workers" in d.advice


def test_waiting_for_slots():
    d = timeline.diagnose(pipeline(read=3, compute=3, write=2), cpus=8)
    assert d.limit == "waiting" and "memoryBudget" in d.advice
    assert d.busy["waiting"] >= timeline.WAIT_LIMIT


def test_no_role_busy_and_nobody_waiting_is_untimed_work():
    """Never 'Limited by waiting (... waiting 0%)'."""
    d = timeline.diagnose(timers_from({
        "main": {"walltime": [(0, 10)], "reading": chunks(0, 1), "userfunction": chunks(1, 2),
                 "writing": chunks(2, 3)},
    }), cpus=8)
    assert d.limit == "untimed work" and d.busy["waiting"] == 0
    assert "setWindowSize" in d.advice


def test_overlaps_counted_once_and_clipped():
    timers = timers_from({
        "main": {"walltime": [(0, 10)], "writing": [(0, 4), (2, 6), (8, 12)]},
    })
    d = timeline.diagnose(timers, cpus=8)
    assert d.busy["writing"] == pytest.approx(0.8)
    assert d.limit == "writing"


def test_nothing_recorded():
    d = timeline.diagnose(Timers(), cpus=8)
    assert d.limit == "unknown" and "not known" in d.line()


# ---------------------------------------------------------------------------------------
# Progress bar


def bar_on(stream, **kwargs):
    bar = ProgressBar(stream=stream, **kwargs)
    bar.clock = FakeClock()
    return bar


def feed(bar, done, total, seconds=None):
    """What ApplierProgress does for one block, at ``seconds`` after the first call."""
    if seconds is not None:
        bar.clock.now = 100.0 + seconds
    bar.setBlocks(done, total)
    bar.setProgress(int(round(100 * done / total)))


def test_bar_on_terminal_shows_rate_and_eta():
    stream = FakeTTY()
    bar = bar_on(stream)
    feed(bar, 0, 270, 0.0)
    assert stream.getvalue() == "\r[" + "-" * 30 + "]    0%  0/270 blocks  -- blocks/s  ETA -:--"
    feed(bar, 123, 270, 3.22)
    line = stream.getvalue().split("\r")[-1]
    assert line.rstrip() == ("[" + "#" * 13 + "-" * 17 + "]   46%  123/270 blocks  "
                             "38.2 blocks/s  ETA 0:04")
    assert "\n" not in stream.getvalue()
    feed(bar, 270, 270, 7.5)
    last = stream.getvalue().split("\r")[-1]
    assert last.startswith("[" + "#" * 30 + "]  100%  270/270 blocks  36.0 blocks/s  in 0:08")
    assert stream.getvalue().endswith("\n") and stream.getvalue().count("\n") == 1
    feed(bar, 270, 270, 8.0)  # a repeated 100% draws nothing more
    assert stream.getvalue().count("\r") == 3


def test_bar_on_terminal_throttles_redraws():
    stream = FakeTTY()
    bar = bar_on(stream, redrawSeconds=0.1)
    feed(bar, 0, 1000, 0.0)
    feed(bar, 1, 1000, 0.01)  # same percentage, too soon: not drawn
    assert stream.getvalue().count("\r") == 1
    feed(bar, 2, 1000, 0.2)
    assert stream.getvalue().count("\r") == 2


def test_bar_off_terminal_writes_plain_lines():
    stream = io.StringIO()
    bar = bar_on(stream)
    for done in range(101):
        feed(bar, done, 100, done * 0.01)
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and len(lines) == 11
    assert lines[0] == "  0%  0/100 blocks  -- blocks/s  ETA -:--"
    assert lines[5] == " 50%  50/100 blocks  100.0 blocks/s  ETA 0:00"
    assert lines[-1] == "100%  100/100 blocks  100.0 blocks/s  in 0:01"


def test_bar_off_terminal_logs_every_few_seconds():
    stream = io.StringIO()
    bar = bar_on(stream, logSeconds=5.0)
    feed(bar, 0, 1000, 0.0)
    feed(bar, 10, 1000, 2.0)
    assert len(stream.getvalue().splitlines()) == 1
    feed(bar, 20, 1000, 6.0)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].startswith("  2%  20/1000 blocks  3.3 blocks/s  ETA 4:54")


def test_bar_rios_protocol():
    stream = FakeTTY()
    bar = bar_on(stream)
    assert bar.totalsteps == 100 and bar.wasCancelled() is False
    bar.setTotalSteps(200)
    bar.setProgress(50)  # percent-only mode, as from calcstats' pyramids
    assert "]   25%  ETA -:--" in stream.getvalue()
    bar.displayWarning("careful")
    assert stream.getvalue().endswith("\nWarning: careful\n")
    bar.setLabelText("Computing Pyramid Layers...")
    assert stream.getvalue().endswith("Warning: careful\nComputing Pyramid Layers...\n")
    bar.displayError("bad")
    bar.displayInfo("note")
    bar.displayException("Traceback ...\n")
    assert stream.getvalue().endswith("Error: bad\nInfo: note\nTraceback ...\n")
    bar.reset()
    assert stream.getvalue().endswith("Traceback ...\n")


def test_bar_default_stream_is_current_stdout(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stream)
    bar = ProgressBar()
    bar.setProgress(0)
    assert stream.getvalue().startswith("  0%")


class Recorder:
    def __init__(self, blocks):
        self.calls = []
        if blocks:
            self.setBlocks = lambda done, total: self.calls.append(("blocks", done, total))

    def setProgress(self, value):
        self.calls.append(("percent", value))


def test_applier_progress_calls_set_blocks_first():
    controls = applier.ApplierControls()
    controls.setProgress(Recorder(blocks=True))
    progress = ApplierProgress(controls, 3)
    for i in range(4):
        progress.update(i)
    progress.update(3)
    assert controls.progress.calls == [
        ("blocks", 0, 3), ("percent", 0), ("blocks", 1, 3), ("percent", 33),
        ("blocks", 2, 3), ("percent", 67), ("blocks", 3, 3), ("percent", 100),
        ("blocks", 3, 3)]


def test_applier_progress_rios_objects_unchanged(monkeypatch):
    controls = applier.ApplierControls()
    controls.setProgress(Recorder(blocks=False))
    progress = ApplierProgress(controls, 2)
    for i in range(3):
        progress.update(i)
    assert controls.progress.calls == [("percent", 0), ("percent", 50), ("percent", 100)]
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stream)
    controls.setProgress(LogProgressBar())
    ApplierProgress(controls, 2).update(1)
    assert stream.getvalue() == "50%\n"


def test_the_report_says_its_totals_add_up_every_worker():
    report = pipeline(read=2, compute=9, write=1).formatReport()
    assert "Totals add up the time of all 4 workers" in report
    single = timers_from({"main": {"walltime": [(0, 10)], "writing": chunks(0, 9)}})
    assert "Totals add up" not in single.formatReport()
