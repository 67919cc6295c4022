"""Tests of sharedapplier.structures (spec sections 2, 8.1, 8.2) and sharedapplier.cpus."""
import copy
import os
import pickle
import queue
import re
import stat
import threading
import time

import numpy as np
import pytest
from osgeo import gdal, ogr, osr

from sharedapplier import cpus, rioserrors, structures
from sharedapplier.structures import (
    CW_AWSBATCH,
    CW_ECS,
    CW_NONE,
    CW_PBS,
    CW_PROCESSES,
    CW_SLURM,
    CW_SUBPROC,
    CW_THREADS,
    ApplierBlockDefn,
    ApplierReturn,
    BlockAssociations,
    BlockBuffer,
    BlockBufferValue,
    ConcurrencyStyle,
    FilenameAssociations,
    FilenameAssocIterator,
    OtherInputs,
    RasterizationMgr,
    TempfileManager,
    Timers,
    WorkerErrorRecord,
)


def make_fa():
    fa = FilenameAssociations()
    fa.img = "a.tif"
    fa.many = ["b.tif", "c.tif", "d.tif"]
    fa.last = "e.tif"
    return fa


# ---------------------------------------------------------------- FilenameAssociations (2.1)

def test_fa_iteration_order_and_seqnum():
    assert list(make_fa()) == [("img", None, "a.tif"), ("many", 0, "b.tif"),
                               ("many", 1, "c.tif"), ("many", 2, "d.tif"),
                               ("last", None, "e.tif")]


def test_fa_iterator_is_separate_strict_iterator():
    fa = make_fa()
    before = dict(vars(fa))
    it = iter(fa)
    assert isinstance(it, FilenameAssocIterator) and it is not fa
    assert iter(it) is it
    assert next(it) == ("img", None, "a.tif")
    assert len(list(it)) == 4
    with pytest.raises(StopIteration):
        next(it)
    assert vars(fa) == before
    assert list(fa) == list(fa)  # iterating twice gives the same


def test_fa_indexing():
    fa = make_fa()
    assert fa[("many", 1)] == "c.tif"
    assert fa[("many", -1)] == "d.tif"  # plain list indexing
    assert fa[("img", None)] == "a.tif"
    assert fa["img"] == "a.tif"
    assert fa["many"] == ["b.tif", "c.tif", "d.tif"]
    assert fa[("many", None)] == ["b.tif", "c.tif", "d.tif"]


@pytest.mark.parametrize("key", [("nosuch", None), "nosuch", ("img", 0), ("many", 3),
                                 ("many", "x"), 3, ["img", None], ("img",)])
def test_fa_bad_keys_raise_keyerror(key):
    with pytest.raises(KeyError):
        make_fa()[key]


def test_fa_invalid_entry_type():
    fa = make_fa()
    fa.bad = 42
    with pytest.raises(ValueError, match="bad"):
        fa["bad"]
    with pytest.raises(ValueError):
        "bad" in fa  # noqa: B015 - the membership test itself must raise
    # neither iteration nor len() count it
    assert len(fa) == 5
    assert all(name != "bad" for name, _, _ in fa)


def test_fa_contains_and_len():
    fa = make_fa()
    assert "img" in fa and ("many", 2) in fa and ("img", None) in fa
    assert "nosuch" not in fa and ("many", 3) not in fa and ("img", 0) not in fa
    assert len(fa) == 5
    assert len(FilenameAssociations()) == 0


# ---------------------------------------------------------------- BlockAssociations (2.2)

def test_ba_from_fa_prefilled_with_none():
    fa = make_fa()
    fa.notAFile = 12
    ba = BlockAssociations(fa)
    assert ba.img is None and ba.last is None and ba.notAFile is None
    assert ba.many == [None, None, None]
    assert len(ba) == 6
    assert len(BlockAssociations()) == 0 and vars(BlockAssociations()) == {}


def test_ba_set_and_get():
    ba = BlockAssociations(make_fa())
    a, b, c = np.zeros(1), np.ones(1), np.full(1, 2)
    ba[("many", 1)] = a
    ba["img"] = b
    ba[("last", None)] = c
    assert ba.many[1] is a and ba[("many", 1)] is a
    assert ba.img is b and ba["img"] is b and ba[("img", None)] is b
    assert ba.last is c
    # seqNum ignored for a non-list entry, on get and on set
    assert ba[("img", 7)] is b
    ba[("img", 3)] = a
    assert ba.img is a
    # new name with seqNum None is created
    ba[("newname", None)] = c
    assert ba.newname is c
    ba["other"] = a
    assert ba.other is a


def test_ba_errors():
    ba = BlockAssociations(make_fa())
    with pytest.raises(KeyError):
        ba[("many", 3)] = 1
    with pytest.raises(KeyError):
        ba["many"]  # list entry needs a seqNum
    with pytest.raises(KeyError):
        ba[("many", 5)]
    with pytest.raises(KeyError):
        ba["nosuch"]
    with pytest.raises(KeyError):
        ba[5]
    with pytest.raises(KeyError):
        ba[5] = 1
    # Our decision: an unknown name with an integer seqNum is an error, not silently dropped
    with pytest.raises(KeyError):
        ba[("unknown", 0)] = 1
    assert "unknown" not in vars(ba)


# ---------------------------------------------------------------- OtherInputs, BlockDefn

def test_other_inputs_copy_and_pickle():
    oi = OtherInputs()
    oi.total = [1, 2]
    deep = copy.deepcopy(oi)
    deep.total.append(3)
    assert oi.total == [1, 2]
    assert pickle.loads(pickle.dumps(oi)).total == [1, 2]
    assert vars(OtherInputs()) == {}


def test_block_defn():
    b = ApplierBlockDefn(10, 20, 30, 40)
    assert (b.top, b.left, b.nrows, b.ncols) == (10, 20, 30, 40)
    assert repr(b) == "ApplierBlockDefn(10, 20, 30, 40)"
    assert b == ApplierBlockDefn(10, 20, 30, 40) and b != ApplierBlockDefn(10, 20, 40, 30)
    assert hash(b) == hash(ApplierBlockDefn(10, 20, 30, 40))
    assert {b: "x"}[ApplierBlockDefn(10, 20, 30, 40)] == "x"
    blocks = [ApplierBlockDefn(1, 0, 5, 5), ApplierBlockDefn(0, 9, 5, 5),
              ApplierBlockDefn(0, 1, 5, 6), ApplierBlockDefn(0, 1, 5, 5)]
    assert sorted(blocks) == [ApplierBlockDefn(0, 1, 5, 5), ApplierBlockDefn(0, 1, 5, 6),
                              ApplierBlockDefn(0, 9, 5, 5), ApplierBlockDefn(1, 0, 5, 5)]
    assert ApplierBlockDefn(0, 1, 5, 5) <= ApplierBlockDefn(0, 1, 5, 5) < blocks[0]
    assert pickle.loads(pickle.dumps(b)) == b


# ---------------------------------------------------------------- Timers (2.5)

def timers_with(pairs, worker=None):
    t = Timers(worker)
    for name, values in pairs.items():
        for start, end in values:
            t.addInterval(name, start, end)
    return t


def test_timers_interval_records_and_exception_records_nothing():
    t = Timers()
    assert t.worker is None and t.pairs == {} and hasattr(t.lock, "acquire")
    before = time.time()
    with t.interval("reading"):
        pass
    with t.interval("reading"):
        pass
    with pytest.raises(ValueError), t.interval("userfunction"):
        int("not a number")
    assert "userfunction" not in t.pairs
    assert len(t.pairs["reading"]) == 2
    start, end = t.pairs["reading"][0]
    assert before <= start <= end <= time.time()
    assert t.getDurationsForName("nosuch") is None
    assert all(d >= 0 for d in t.getDurationsForName("reading"))


def test_timers_durations_and_summary():
    t = timers_with({"writing": [(0, 1), (10, 12), (20, 23), (30, 34)]})
    assert t.getDurationsForName("writing") == [1, 2, 3, 4]
    s = t.makeSummaryDict()["writing"]
    assert s["tot"] == 10 and s["min"] == 1 and s["max"] == 4
    assert s["lower"] == pytest.approx(1.75) and s["median"] == pytest.approx(2.5)
    assert s["upper"] == pytest.approx(3.25)
    assert s["N"] == 4 and type(s["N"]) is int


def test_timers_merge_copies_and_is_threadsafe():
    a = timers_with({"reading": [(0, 1)]})
    b = timers_with({"reading": [(1, 3)], "writing": [(0, 5)]})
    a.merge(b)
    assert a.getDurationsForName("reading") == [1, 2]
    assert a.getDurationsForName("writing") == [5]
    b.addInterval("writing", 0, 1)  # later changes to b do not leak into a
    assert a.getDurationsForName("writing") == [5]

    total = Timers()
    parts = [timers_with({"userfunction": [(0, 1)] * 50}) for _ in range(4)]
    threads = [threading.Thread(target=total.merge, args=(p,)) for p in parts]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(total.pairs["userfunction"]) == 200


def test_timers_per_worker_intervals_survive_merge():
    main = Timers("main")
    main.addInterval("walltime", 0, 10)
    w1 = timers_with({"userfunction": [(1, 2)], "wait_input": [(0, 1)]}, worker="compute 0")
    w2 = timers_with({"userfunction": [(2, 4)]}, worker="compute 1")
    anon = timers_with({"userfunction": [(5, 6)]})
    for other in (w1, w2, anon):
        main.merge(other)
    assert main.worker == "main"
    assert main.intervalsByWorker == {
        "main": {"walltime": [(0, 10)]},
        "compute 0": {"userfunction": [(1, 2)], "wait_input": [(0, 1)]},
        "compute 1": {"userfunction": [(2, 4)]},
    }
    assert main.getDurationsForName("userfunction") == [1, 2, 1]
    # a second level of merging keeps the worker identities
    top = Timers()
    top.merge(main)
    assert set(top.intervalsByWorker) == {"main", "compute 0", "compute 1"}


REPORT_PAIRS = {
    "walltime": [(0, 12.34)],
    "writing": [(0, 1.0), (0, 2.0)],
    "reading": [(0, 3.0)],
    "wait_input": [(0, 0.5)],
    "copy_output": [(0, 0.25)],
    "pop_computebuffer": [(0, 0.1)],
    "stats+histogram": [(0, 7.0)],
}


# the main thread wrote (writing + stats+histogram) 7 of the 12.34 s: writing limits
REPORT_DIAGNOSIS = (
    "Limited by writing (busy: reading 24%, computing 2%, writing 57%, waiting 4%): "
    "writing is the limit: fewer workers will not hurt; a faster output driver or lighter "
    "compression (setOutputDriverName / setCreationOptions) would help")


def row(name, text):
    """A report line: name padded to 20 characters, 4 spaces, then the right-aligned text."""
    return name + " " * (20 - len(name)) + "    " + text


def test_timers_format_report_level0_exact():
    report = timers_with(REPORT_PAIRS).formatReport()
    expected = "\n".join([
        "Wall clock elapsed time: 12.3 seconds",
        "",
        "Timer" + " " * 22 + "Total (sec)",
        "-" * 32,
        row("reading", "     3.0"),
        row("writing", "     3.0"),
        row("stats+histogram", "     7.0"),
        row("pop_computebuffer", "     0.1"),
        row("copy_output", "     0.2"),
        row("wait_input", "     0.5"),
        "",
        REPORT_DIAGNOSIS,
    ])
    assert report == expected


def test_timers_format_report_level1_exact():
    report = timers_with(REPORT_PAIRS).formatReport(level=1)
    header = "Timer" + " " * 22 + "N,Min,Lower,Median,Upper,Max"
    tail = "\n".join([
        "",
        "",
        header,
        "-" * len(header),
        row("reading", "1,3.0000,3.0000,3.0000,3.0000,3.0000"),
        row("writing", "2,1.0000,1.2500,1.5000,1.7500,2.0000"),
        row("stats+histogram", "1,7.0000,7.0000,7.0000,7.0000,7.0000"),
        row("pop_computebuffer", "1,0.1000,0.1000,0.1000,0.1000,0.1000"),
        row("copy_output", "1,0.2500,0.2500,0.2500,0.2500,0.2500"),
        row("wait_input", "1,0.5000,0.5000,0.5000,0.5000,0.5000"),
    ])
    level0 = timers_with(REPORT_PAIRS).formatReport()
    body = level0[:-len("\n\n" + REPORT_DIAGNOSIS)]
    assert report == body + "\n" + tail + "\n\n" + REPORT_DIAGNOSIS
    assert not report.endswith("\n")


def test_timers_format_report_full_rios_order():
    names = list(structures.RIOS_TIMER_ORDER)
    t = timers_with({n: [(0, 1)] for n in reversed(names)} | {"walltime": [(0, 1)]})
    lines = t.formatReport().split("\n")[4:]
    assert [line.split()[0] for line in lines[:-2]] == names
    assert lines[-2] == "" and lines[-1].startswith("Limited by ")


def test_timers_format_report_without_walltime():
    report = timers_with({"reading": [(0, 1)]}).formatReport()
    assert report.splitlines()[0] == "Wall clock elapsed time: not recorded"
    assert "reading" in report


def test_timers_pickle_drops_and_recreates_lock():
    t = timers_with({"reading": [(0, 1)]}, worker="read 0")
    state = t.__getstate__()
    assert "lock" not in state
    u = pickle.loads(pickle.dumps(t))
    assert u.pairs == {"reading": [(0, 1)]} and u.worker == "read 0"
    assert u.intervalsByWorker == {"read 0": {"reading": [(0, 1)]}}
    with u.interval("writing"):
        pass
    assert "writing" in u.pairs


def test_timers_pickle_keeps_merged_and_unattributed_intervals():
    worker = timers_with({"reading": [(0, 1), (2, 3)]}, worker="compute 0")
    main = Timers(worker="main")
    main.addInterval("writing", 4, 5)
    main.merge(worker)
    anonymous = Timers()
    anonymous.addInterval("reading", 6, 7.5)
    for t in (worker, main, anonymous):
        u = pickle.loads(pickle.dumps(t))
        assert u.pairs == t.pairs and u.intervalsByWorker == t.intervalsByWorker
        assert all(type(p) is tuple for v in u.pairs.values() for p in v)
    assert pickle.loads(pickle.dumps(main)).pairs == {"writing": [(4, 5)],
                                                      "reading": [(0, 1), (2, 3)]}


def test_timers_keep_intervals_compact():
    """A worker times several intervals per block: 16 bytes each, not a tuple of floats."""
    import tracemalloc
    t = Timers(worker="compute 0")
    t.addInterval("reading", 0.0, 0.5)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(10000):
            t.addInterval("reading", float(i), i + 0.5)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert used < 10000 * 24
    assert t.getDurationsForName("reading") == [0.5] * 10001


# ---------------------------------------------------------------- WorkerErrorRecord (2.6)

def raise_and_catch(exc):
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_worker_error_record_str():
    exc = raise_and_catch(ValueError("boom"))
    rec = WorkerErrorRecord(exc, "compute", 3)
    assert rec.exc is exc and rec.workerType == "compute" and rec.workerID == 3
    assert rec.blockDefn is None
    assert rec.formattedTraceback[0].startswith("Traceback")
    text = str(rec)
    lines = text.split("\n")
    assert lines[0] == "Error in compute worker 3"
    assert lines[-1] == "" and lines[-2] == "ValueError: boom"
    assert "raise_and_catch" in text
    assert str(WorkerErrorRecord(exc, "read")).startswith("Error in read worker\n")
    assert str(WorkerErrorRecord(exc, "write")).startswith("Error in write worker\n")


def test_worker_error_record_block_line():
    exc = raise_and_catch(KeyError("x"))
    rec = WorkerErrorRecord(exc, "main", blockDefn=ApplierBlockDefn(0, 256, 256, 100))
    lines = str(rec).split("\n")
    assert lines[:2] == ["Error in main worker",
                         "while processing block ApplierBlockDefn(0, 256, 256, 100)"]


class Unpicklable(Exception):
    def __init__(self, handle):
        super().__init__("bad handle")
        self.handle = handle


class NeedsTwoArgs(Exception):
    def __init__(self, a, b):
        super().__init__(a)
        self.b = b


def test_worker_error_record_pickles_plain_exception():
    rec = WorkerErrorRecord(raise_and_catch(ValueError("boom")), "compute", 1)
    copy_ = pickle.loads(pickle.dumps(rec))
    assert type(copy_.exc) is ValueError and copy_.exc.args == ("boom",)
    assert str(copy_) == str(rec)


@pytest.mark.parametrize("exc", [Unpicklable(threading.Lock()), NeedsTwoArgs("a", "b")])
def test_worker_error_record_pickles_awkward_exception(exc):
    rec = WorkerErrorRecord(raise_and_catch(exc), "compute", 2,
                            blockDefn=ApplierBlockDefn(1, 2, 3, 4))
    copy_ = pickle.loads(pickle.dumps(rec))
    assert isinstance(copy_.exc, RuntimeError)
    assert type(exc).__name__ in str(copy_.exc)
    assert str(copy_) == str(rec)
    assert copy_.blockDefn == ApplierBlockDefn(1, 2, 3, 4)
    assert rec.exc is not None and not isinstance(rec.exc, RuntimeError)  # original kept


# ---------------------------------------------------------------- TempfileManager (2.7)

def test_tempfile_manager(tmp_path):
    mgr = TempfileManager(str(tmp_path))
    sub = mgr.tempsubdir
    assert os.path.dirname(sub) == str(tmp_path)
    assert os.path.basename(sub).startswith("rios_") and os.path.isdir(sub)
    path = mgr.mktempfile(prefix="rios_vecrast_", suffix=".tif")
    assert os.path.dirname(path) == sub and os.path.getsize(path) == 0
    assert os.path.basename(path).startswith("rios_vecrast_") and path.endswith(".tif")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert mgr.tempfileList == [path]
    other = mgr.mktempfile()
    assert other != path and os.path.exists(other)
    # a recorded directory and an unrecorded file make the sub-directory non-empty
    os.remove(other)  # missing recorded paths are ignored
    os.mkdir(path + ".d")
    mgr.tempfileList.append(path + ".d")
    open(os.path.join(path + ".d", "inner"), "w").close()
    open(os.path.join(sub, "stray.aux.xml"), "w").close()
    mgr.cleanup()
    assert not os.path.exists(sub)
    mgr.cleanup()  # safe a second time
    assert os.listdir(tmp_path) == []


def test_tempfile_manager_context_and_threads(tmp_path):
    with TempfileManager(str(tmp_path)) as mgr:
        results = []
        threads = [threading.Thread(target=lambda: results.append(mgr.mktempfile(suffix=".x")))
                   for _ in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert len(set(results)) == 8 and sorted(mgr.tempfileList) == sorted(results)
    assert os.listdir(tmp_path) == []


def test_tempfile_manager_destructor_only_in_owner(tmp_path):
    mgr = TempfileManager(str(tmp_path))
    sub = mgr.tempsubdir
    clone = pickle.loads(pickle.dumps(mgr))
    clone._ownerPid = -1  # as if unpickled in a worker process
    del clone
    assert os.path.isdir(sub)
    del mgr
    assert not os.path.exists(sub)


# ---------------------------------------------------------------- RasterizationMgr (2.8)

TRIANGLE = [(1.0, 2.0), (97.0, 3.0), (4.0, 93.0)]


def write_triangle(path, layer="tri"):
    sr = osr.SpatialReference()
    sr.ImportFromEPSG(32755)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    lyr = ds.CreateLayer(layer, sr, ogr.wkbPolygon)
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for x, y in TRIANGLE + TRIANGLE[:1]:
        ring.AddPoint_2D(x, y)
    poly = ogr.Geometry(ogr.wkbPolygon)
    poly.AddGeometry(ring)
    feat = ogr.Feature(lyr.GetLayerDefn())
    feat.SetGeometry(poly)
    lyr.CreateFeature(feat)
    ds = None
    return str(path)


def expected_triangle_mask(n=10, res=10.0, top=100.0):
    """Pixel centres strictly inside the triangle (computed with edge-sign tests)."""
    cols = (np.arange(n) + 0.5) * res
    rows = top - (np.arange(n) + 0.5) * res
    x, y = np.meshgrid(cols, rows)
    signs = []
    for (x1, y1), (x2, y2) in zip(TRIANGLE, TRIANGLE[1:] + TRIANGLE[:1], strict=True):
        cross = (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)
        assert np.abs(cross).min() > 1e-6  # no centre on an edge
        signs.append(cross > 0)
    return signs[0] & signs[1] & signs[2]


def rast_options(burn=1, layer="tri"):
    return {"outputBounds": [0, 0, 100, 100], "xRes": 10, "yRes": 10, "burnValues": [burn],
            "outputType": gdal.GDT_Byte, "layers": [layer], "initValues": [0], "noData": 0,
            "allTouched": False, "creationOptions": ["COMPRESS=DEFLATE"]}


def test_rasterize_burns_expected_pixels(tmp_path):
    vec = write_triangle(tmp_path / "tri.gpkg")
    mask = expected_triangle_mask()
    assert 10 < mask.sum() < 90
    with TempfileManager(str(tmp_path)) as tmpmgr:
        mgr = RasterizationMgr()
        out = mgr.rasterize(vec, rast_options(burn=7), tmpmgr)
        assert os.path.basename(out).startswith("rios_vecrast_") and out.endswith(".tif")
        assert os.path.dirname(out) == tmpmgr.tempsubdir
        ds = gdal.Open(out)
        assert ds.GetGeoTransform() == (0, 10, 0, 100, 0, -10)
        arr = ds.ReadAsArray()
        ds = None
        np.testing.assert_array_equal(arr, np.where(mask, 7, 0))
        # same key -> same file; other options -> another raster (RIOS keyed by name only)
        assert mgr.rasterize(vec, rast_options(burn=7), tmpmgr) == out
        other = mgr.rasterize(vec, rast_options(burn=3), tmpmgr)
        assert other != out
        np.testing.assert_array_equal(gdal.Open(other).ReadAsArray(), np.where(mask, 3, 0))
        assert len(tmpmgr.tempfileList) == 2


def test_rasterize_concurrent_callers_share_one_run(tmp_path, monkeypatch):
    calls = []

    def fake_run(outfile, vectorfile, options):
        calls.append(outfile)
        time.sleep(0.1)

    monkeypatch.setattr(structures, "_runRasterize", fake_run)
    mgr = RasterizationMgr()
    results = []
    with TempfileManager(str(tmp_path)) as tmpmgr:
        threads = [threading.Thread(
            target=lambda: results.append(mgr.rasterize("v.gpkg", rast_options(), tmpmgr)))
            for _ in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    assert len(calls) == 1 and results == calls * 4


@pytest.mark.parametrize("exceptions", [True, False])
def test_rasterize_failure(tmp_path, exceptions):
    vec = write_triangle(tmp_path / "tri.gpkg")
    was = gdal.GetUseExceptions()
    gdal.UseExceptions() if exceptions else gdal.DontUseExceptions()
    try:
        with TempfileManager(str(tmp_path)) as tmpmgr:
            with pytest.raises(rioserrors.VectorRasterizationError,
                               match=re.escape(vec) + ".*nosuchlayer"):
                RasterizationMgr().rasterize(vec, rast_options(layer="nosuchlayer"), tmpmgr)
    finally:
        gdal.UseExceptions() if was else gdal.DontUseExceptions()


def test_rasterization_mgr_pickles_cache():
    mgr = RasterizationMgr()
    mgr.rasterizedFiles[("v", ())] = "/tmp/x.tif"
    clone = pickle.loads(pickle.dumps(mgr))
    assert clone.rasterizedFiles == {("v", ()): "/tmp/x.tif"}


# ---------------------------------------------------------------- BlockBuffer (2.9)

def two_input_fa():
    fa = FilenameAssociations()
    fa.a = "a.tif"
    fa.b = ["b0.tif", "b1.tif"]
    return fa


def test_block_buffer_value():
    fa = two_input_fa()
    value = BlockBufferValue(filenameAssoc=fa)
    assert value.numMissing == 3 and not value.complete()
    value.addData("b", 1, "B1")
    value.addData("a", None, "A")
    assert value.numMissing == 1
    value.addData("b", 0, "B0")
    assert value.complete() and value.blockData.b == ["B0", "B1"]
    ba = BlockAssociations()
    ba.out = 1
    full = BlockBufferValue(blockData=ba)
    assert full.complete() and full.blockData is ba and full.numMissing == 0


def test_block_buffer_attributes():
    buf = BlockBuffer(two_input_fa(), 3, 1.5, 2.5, "read")
    assert buf.BUFFERMAX == 6 and buf.insertTimeout == 1.5 and buf.popTimeout == 2.5
    assert buf.bufferTypeName == "read" and buf.numBlocksPopped == 0
    assert buf.buffer == {} and len(buf.nextBlockQ) == 0
    assert buf.timeoutName("Insert") == "readBufferInsertTimeout"
    assert buf.timeoutName("Pop") == "readBufferPopTimeout"
    assert BlockBuffer(None, 1, 1, 1, "compute").timeoutName("Pop") == "computeBufferPopTimeout"


def test_block_buffer_assembles_in_completion_order():
    buf = BlockBuffer(two_input_fa(), 2, 1, 1, "read")
    b0, b1 = ApplierBlockDefn(0, 0, 4, 4), ApplierBlockDefn(0, 4, 4, 4)
    buf.addBlockData(b0, "a", None, "a0")
    buf.addBlockData(b1, "a", None, "a1")
    buf.addBlockData(b1, "b", 0, "b10")
    assert not buf.waitCompletion(b1, timeout=0.01)
    buf.addBlockData(b1, "b", 1, "b11")
    assert buf.waitCompletion(b1, timeout=0)
    assert list(buf.nextBlockQ) == [b1]
    buf.addBlockData(b0, "b", 1, "b01")
    buf.addBlockData(b0, "b", 0, "b00")
    defn, data = buf.popNextBlock()
    assert defn == b1 and data.a == "a1" and data.b == ["b10", "b11"]
    defn, data = buf.popNextBlock()
    assert defn == b0 and data.b == ["b00", "b01"]
    assert buf.numBlocksPopped == 2 and buf.buffer == {}


def test_block_buffer_read_insert_timeout():
    buf = BlockBuffer(two_input_fa(), 1, 0.05, 1, "read")
    buf.addBlockData(ApplierBlockDefn(0, 0, 1, 1), "a", None, 1)
    buf.addBlockData(ApplierBlockDefn(1, 0, 1, 1), "a", None, 1)
    # existing blocks still accept data while the buffer is full
    buf.addBlockData(ApplierBlockDefn(0, 0, 1, 1), "b", 0, 1)
    with pytest.raises(rioserrors.TimeoutError,
                       match=r"readBufferInsertTimeout \(current value = 0.05\)"):
        buf.addBlockData(ApplierBlockDefn(2, 0, 1, 1), "a", None, 1)


def test_block_buffer_compute_insert_timeout_is_honoured():
    buf = BlockBuffer(None, 1, 0.2, 1, "compute")
    for i in range(2):
        buf.insertCompleteBlock(ApplierBlockDefn(i, 0, 1, 1), BlockAssociations())
    start = time.monotonic()
    with pytest.raises(rioserrors.TimeoutError,
                       match=r"computeBufferInsertTimeout \(current value = 0.2\)"):
        buf.insertCompleteBlock(ApplierBlockDefn(5, 0, 1, 1), BlockAssociations())
    assert 0.15 < time.monotonic() - start < 5


def test_block_buffer_none_timeout_waits_for_free_slot():
    buf = BlockBuffer(None, 1, None, None, "compute")
    for i in range(2):
        buf.insertCompleteBlock(ApplierBlockDefn(i, 0, 1, 1), BlockAssociations())
    done = threading.Event()

    def insert_third():
        buf.insertCompleteBlock(ApplierBlockDefn(2, 0, 1, 1), BlockAssociations())
        done.set()

    thread = threading.Thread(target=insert_third, daemon=True)
    thread.start()
    assert not done.wait(0.3)  # still blocked: it waits, it does not fail
    assert buf.popNextBlock()[0] == ApplierBlockDefn(0, 0, 1, 1)
    assert done.wait(5)
    assert [buf.popNextBlock()[0].top for _ in range(2)] == [1, 2]


def test_block_buffer_replace_complete_block():
    buf = BlockBuffer(None, 1, 1, 1, "compute")
    first, second = BlockAssociations(), BlockAssociations()
    buf.insertCompleteBlock(ApplierBlockDefn(0, 0, 1, 1), first)
    buf.insertCompleteBlock(ApplierBlockDefn(0, 0, 1, 1), second)
    assert len(buf.nextBlockQ) == 1
    assert buf.popNextBlock()[1] is second
    # both slots are free again
    buf.insertCompleteBlock(ApplierBlockDefn(1, 0, 1, 1), first)
    buf.insertCompleteBlock(ApplierBlockDefn(2, 0, 1, 1), first)


def test_block_buffer_pop_timeout_message():
    buf = BlockBuffer(None, 1, 1, 0.05, "compute")
    buf.insertCompleteBlock(ApplierBlockDefn(0, 0, 1, 1), BlockAssociations())
    buf.popNextBlock()
    with pytest.raises(rioserrors.TimeoutError) as info:
        buf.popNextBlock()
    message = str(info.value)
    assert "1 blocks popped" in message
    assert "computeBufferPopTimeout (current value = 0.05)" in message
    assert not isinstance(info.value, TimeoutError)  # RIOS's class, not the built-in


def test_block_buffer_pop_complete_block():
    buf = BlockBuffer(two_input_fa(), 1, 1, 0.05, "read")
    b0 = ApplierBlockDefn(0, 0, 1, 1)
    buf.addBlockData(b0, "a", None, "A")
    assert buf.popCompleteBlock(b0) is None  # incomplete: None after popTimeout
    buf.addBlockData(b0, "b", 0, "B0")
    threading.Timer(0.02, buf.addBlockData, (b0, "b", 1, "B1")).start()
    data = buf.popCompleteBlock(b0)
    assert data.b == ["B0", "B1"] and buf.numBlocksPopped == 1
    assert len(buf.nextBlockQ) == 0 and b0 not in buf.buffer


def test_block_buffer_threads_stress():
    fa = two_input_fa()
    buf = BlockBuffer(fa, 2, 5, 5, "read")
    blocks = [ApplierBlockDefn(i, 0, 1, 1) for i in range(20)]

    tasks = queue.Queue()
    for block in blocks:  # one task per (block, file), block by block, as read workers do
        for name, seq, _ in fa:
            tasks.put((block, name, seq))

    def reader():
        while True:
            try:
                block, name, seq = tasks.get_nowait()
            except queue.Empty:
                return
            buf.addBlockData(block, name, seq, (block.top, name, seq))

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for th in threads:
        th.start()
    got = [buf.popNextBlock() for _ in blocks]
    for th in threads:
        th.join()
    assert sorted(d for d, _ in got) == blocks
    for defn, data in got:
        assert data.a == (defn.top, "a", None) and data.b[1] == (defn.top, "b", 1)


# ---------------------------------------------------------------- ApplierReturn, constants

def test_applier_return_and_constants():
    rtn = ApplierReturn()
    assert (rtn.timings, rtn.otherArgsList, rtn.workinggrid, rtn.singlePassMgr) == (None,) * 4
    for name in ("CW_NONE", "CW_THREADS", "CW_PROCESSES", "CW_SUBPROC", "CW_PBS", "CW_SLURM",
                 "CW_AWSBATCH", "CW_ECS"):
        assert getattr(structures, name) == name
    import cloudpickle
    assert structures.cloudpickle is cloudpickle


# ---------------------------------------------------------------- ConcurrencyStyle (8.1)

def test_concurrency_style_defaults_and_repr():
    cs = ConcurrencyStyle()
    assert (cs.numReadWorkers, cs.numComputeWorkers, cs.computeWorkerKind) == (0, 0, CW_NONE)
    assert cs.computeWorkerExtraParams is None and cs.computeWorkersRead is None
    assert cs.singleBlockComputeWorkers is False and cs.haveSharedTemp is True
    assert (cs.readBufferInsertTimeout, cs.readBufferPopTimeout,
            cs.computeBufferInsertTimeout, cs.computeBufferPopTimeout,
            cs.computeBarrierTimeout) == (10, 10, 10, 20, 600)
    assert cs.memoryBudget is None and cs.workerStartMethod == "forkserver"
    assert repr(cs) == (
        "ConcurrencyStyle(numReadWorkers=0, numComputeWorkers=0, computeWorkerKind=CW_NONE, "
        "computeWorkersRead=None, singleBlockComputeWorkers=False, haveSharedTemp=True, "
        "readBufferInsertTimeout=10, readBufferPopTimeout=10, computeBufferInsertTimeout=10, "
        "computeBufferPopTimeout=20, computeBarrierTimeout=600, memoryBudget=None, "
        "workerStartMethod=forkserver, reuseComputeWorkers=True)")


def test_concurrency_style_repr_values_and_extra_params():
    cs = ConcurrencyStyle(numComputeWorkers=3, computeWorkerKind=CW_PROCESSES,
                          computeWorkerExtraParams={"secret": 1}, memoryBudget=2**30,
                          workerStartMethod="forkserver", computeBufferPopTimeout=None)
    text = repr(cs)
    assert "computeWorkerKind=CW_PROCESSES" in text and "secret" not in text
    assert "computeBufferPopTimeout=None" in text
    assert text.endswith("memoryBudget=1073741824, workerStartMethod=forkserver, "
                         "reuseComputeWorkers=True)")
    assert cs.computeWorkerExtraParams == {"secret": 1}


@pytest.mark.parametrize("kind,expected", [
    (CW_NONE, False), (CW_THREADS, False), (CW_PROCESSES, True), (CW_SUBPROC, False),
    (CW_PBS, True), (CW_SLURM, True), (CW_AWSBATCH, True), (CW_ECS, True)])
def test_kind_default_compute_workers_read(kind, expected):
    workers = 0 if kind == CW_NONE else 1
    reads = 1 if kind == CW_THREADS else 0
    cs = ConcurrencyStyle(numReadWorkers=reads, numComputeWorkers=workers,
                          computeWorkerKind=kind)
    assert cs.kindDefaultComputeWorkersRead() is expected
    assert cs.resolvedComputeWorkersRead() is expected
    assert cs.computeWorkersRead is None  # never mutated


def test_resolved_compute_workers_read_explicit():
    cs = ConcurrencyStyle(numReadWorkers=1, numComputeWorkers=1, computeWorkerKind=CW_PROCESSES,
                          computeWorkersRead=False)
    assert cs.resolvedComputeWorkersRead() is False
    assert cs.kindDefaultComputeWorkersRead() is True


# ---------------------------------------------------------------- validation (8.2)

RULES = {
    1: "singleBlockComputeWorkers=True needs numComputeWorkers=0",
    2: "singleBlockComputeWorkers=True needs numReadWorkers=0",
    3: "computeWorkersRead=True is not possible with computeWorkerKind=CW_THREADS",
    4: "singleBlockComputeWorkers=True is not possible with CW_THREADS",
    5: "needs a computeWorkerKind other than CW_NONE",
    6: "needs numComputeWorkers >= 1",
    7: "leaves nobody to read",
    8: "not supported by CW_AWSBATCH",
    9: "exceeds the",
    "processesSingle": "only for batch kinds, not CW_PROCESSES",
}


def assert_rule(rule, **kwargs):
    with pytest.raises(ValueError, match=re.escape(RULES[rule])):
        ConcurrencyStyle(**kwargs)


@pytest.mark.parametrize("rule,kwargs", [
    # each rule alone
    (1, dict(singleBlockComputeWorkers=True, numComputeWorkers=2, computeWorkerKind=CW_PBS)),
    (2, dict(singleBlockComputeWorkers=True, numReadWorkers=1, computeWorkerKind=CW_PBS)),
    (3, dict(computeWorkersRead=True, computeWorkerKind=CW_THREADS, numComputeWorkers=1,
             numReadWorkers=1)),
    (4, dict(singleBlockComputeWorkers=True, computeWorkerKind=CW_THREADS)),
    (5, dict(numComputeWorkers=1)),
    (6, dict(computeWorkerKind=CW_SUBPROC)),
    (7, dict(numComputeWorkers=1, computeWorkerKind=CW_SUBPROC, computeWorkersRead=False)),
    (8, dict(singleBlockComputeWorkers=True, computeWorkerKind=CW_AWSBATCH)),
    (9, dict(numComputeWorkers=1000, computeWorkerKind=CW_THREADS, numReadWorkers=1)),
    # order: when several rules apply, the first in RIOS's order is reported
    (1, dict(singleBlockComputeWorkers=True, numComputeWorkers=2, numReadWorkers=1,
             computeWorkerKind=CW_THREADS, computeWorkersRead=True)),
    (2, dict(singleBlockComputeWorkers=True, numReadWorkers=1, computeWorkerKind=CW_THREADS,
             computeWorkersRead=True)),
    (3, dict(computeWorkersRead=True, computeWorkerKind=CW_THREADS,
             singleBlockComputeWorkers=True)),
    (4, dict(singleBlockComputeWorkers=True, computeWorkerKind=CW_THREADS)),
    (5, dict(numComputeWorkers=1, computeWorkersRead=False)),
    (6, dict(computeWorkerKind=CW_THREADS)),
    (7, dict(numComputeWorkers=1000, computeWorkerKind=CW_THREADS, computeWorkersRead=False)),
    (8, dict(singleBlockComputeWorkers=True, computeWorkerKind=CW_AWSBATCH)),
    (9, dict(numComputeWorkers=1000, computeWorkerKind=CW_THREADS)),
    # our additions come after RIOS's rules
    ("processesSingle", dict(singleBlockComputeWorkers=True, computeWorkerKind=CW_PROCESSES)),
])
def test_validation_rules_and_order(rule, kwargs):
    assert_rule(rule, **kwargs)


def test_rule9_uses_usable_cpu_count(monkeypatch):
    ConcurrencyStyle(numComputeWorkers=2, numReadWorkers=1, computeWorkerKind=CW_THREADS)
    monkeypatch.setattr(structures, "usableCpuCount", lambda: 1)
    with pytest.raises(ValueError, match=r"numComputeWorkers=2 exceeds the 1 CPUs.*<= 1"):
        ConcurrencyStyle(numComputeWorkers=2, numReadWorkers=1, computeWorkerKind=CW_THREADS)
    # CW_PROCESSES is not limited by rule 9
    ConcurrencyStyle(numComputeWorkers=4, computeWorkerKind=CW_PROCESSES)


@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(numReadWorkers=2),
    dict(numComputeWorkers=1, numReadWorkers=1, computeWorkerKind=CW_THREADS),
    dict(numComputeWorkers=1, numReadWorkers=1, computeWorkerKind=CW_THREADS,
         computeWorkersRead=False),
    dict(numComputeWorkers=2, computeWorkerKind=CW_PROCESSES),
    dict(numComputeWorkers=2, numReadWorkers=2, computeWorkerKind=CW_PROCESSES,
         computeWorkersRead=False),
    dict(numComputeWorkers=2, computeWorkerKind=CW_SLURM),
    dict(singleBlockComputeWorkers=True, computeWorkerKind=CW_PBS),
    dict(numComputeWorkers=2, computeWorkerKind=CW_ECS, computeWorkerExtraParams={}),
    dict(readBufferPopTimeout=None, computeBufferInsertTimeout=0, memoryBudget=1),
])
def test_valid_combinations(kwargs):
    ConcurrencyStyle(**kwargs)


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(computeWorkerKind="CW_MAGIC"), r"computeWorkerKind='CW_MAGIC'.*CW_NONE.*CW_PROCESSES"),
    (dict(numReadWorkers=-1), r"numReadWorkers=-1.*integer >= 0"),
    (dict(numComputeWorkers=1.5), r"numComputeWorkers=1.5.*integer >= 0"),
    (dict(readBufferPopTimeout=-2), r"readBufferPopTimeout=-2.*seconds >= 0"),
    (dict(memoryBudget=0), r"memoryBudget=0.*bytes > 0"),
    (dict(memoryBudget="1G"), r"memoryBudget='1G'"),
    (dict(workerStartMethod="fork"), r"workerStartMethod='fork'.*'spawn' or 'forkserver'"),
])
def test_value_checks(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        ConcurrencyStyle(**kwargs)


# ---------------------------------------------------------------- cpus.usableCpuCount

def fake_cgroup(tmp_path, own="0::/\n"):
    proc = tmp_path / "proc_cgroup"
    proc.write_text(own)
    root = tmp_path / "cg"
    root.mkdir()
    return root, proc


def test_cpu_count_real_machine_bounds():
    n = cpus.usableCpuCount()
    assert 1 <= n <= len(os.sched_getaffinity(0))


def test_cpu_count_slurm_env(tmp_path, monkeypatch):
    root, proc = fake_cgroup(tmp_path)
    assert cpus.usableCpuCount({"SLURM_CPUS_PER_TASK": "1"}, root, proc) == 1
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert cpus.usableCpuCount() == 1
    assert cpus.usableCpuCount({"SLURM_CPUS_ON_NODE": "1(x2)"}, root, proc) == 1
    affinity = len(os.sched_getaffinity(0))
    assert cpus.usableCpuCount({"SLURM_CPUS_PER_TASK": "junk"}, root, proc) == affinity
    assert cpus.usableCpuCount({"SLURM_CPUS_ON_NODE": "9999"}, root, proc) == affinity


def test_cpu_count_cgroup_v2(tmp_path, monkeypatch):
    monkeypatch.setattr(cpus, "_affinityCount", lambda: 64)
    root, proc = fake_cgroup(tmp_path, "0::/job/step\n")
    (root / "job" / "step").mkdir(parents=True)
    (root / "cpu.max").write_text("max 100000\n")
    assert cpus.usableCpuCount({}, root, proc) == 64
    (root / "job" / "step" / "cpu.max").write_text("250000 100000\n")
    assert cpus.usableCpuCount({}, root, proc) == 3  # ceil(2.5)
    (root / "job" / "cpu.max").write_text("100000 100000\n")  # ancestor is tighter
    assert cpus.usableCpuCount({}, root, proc) == 1
    assert cpus.usableCpuCount({"SLURM_CPUS_PER_TASK": "4"}, root, proc) == 1


def test_cpu_count_cgroup_v1(tmp_path, monkeypatch):
    monkeypatch.setattr(cpus, "_affinityCount", lambda: 64)
    root, proc = fake_cgroup(tmp_path, "3:cpu,cpuacct:/docker/abc\n1:memory:/x\n")
    v1 = root / "cpu,cpuacct"
    (v1 / "docker" / "abc").mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cpus.usableCpuCount({}, root, proc) == 64
    (v1 / "docker" / "abc" / "cpu.cfs_quota_us").write_text("400000\n")
    (v1 / "docker" / "abc" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpus.usableCpuCount({}, root, proc) == 4


def test_cpu_count_affinity_and_minimum(tmp_path, monkeypatch):
    root, proc = fake_cgroup(tmp_path)
    monkeypatch.setattr(cpus, "_affinityCount", lambda: 3)
    assert cpus.usableCpuCount({}, root, proc) == 3
    monkeypatch.setattr(cpus, "_affinityCount", lambda: 0)
    assert cpus.usableCpuCount({}, root, proc) == 1
