"""Tests of sharedapplier.ratapplier on real HFA/GTiff rasters whose RATs GDAL writes."""

import numpy as np
import pytest
from conftest import open_fds, write_raster
from osgeo import gdal

from sharedapplier import rat, ratapplier, rioserrors
from sharedapplier.ratapplier import (
    RCM_EQUALS_INPUT,
    RCM_FIXED,
    RCM_INCREMENT,
    OtherArguments,
    RatApplierControls,
    RatAssociations,
    RatHandle,
)

HAVE_KEA = gdal.GetDriverByName("KEA") is not None
DRIVERS = [
    pytest.param("HFA", ".img", id="HFA"),
    pytest.param("GTiff", ".tif", id="GTiff-PAM"),
    pytest.param("KEA", ".kea", id="KEA", marks=pytest.mark.skipif(
        not HAVE_KEA, reason="GDAL has no KEA driver here")),
]


class RecordingProgress:
    """Stand-in progress object that records its calls."""

    def __init__(self):
        self.calls = []

    def setTotalSteps(self, steps):
        self.calls.append(("setTotalSteps", steps))

    def setProgress(self, value):
        self.calls.append(("setProgress", value))




def raster(tmp_path, name, driver="HFA", ext=".img", nbands=1):
    data = np.zeros((nbands, 4, 4), np.int32)
    return write_raster(tmp_path / f"{name}{ext}", data, driver=driver, thematic=True)


def raster_with_rat(tmp_path, name, columns, driver="HFA", ext=".img"):
    fn = raster(tmp_path, name, driver, ext)
    for colname, values in columns.items():
        rat.writeColumn(fn, colname, values)
    return fn


def row_count(filename, band=1):
    ds = gdal.Open(filename)
    table = ds.GetRasterBand(band).GetDefaultRAT()
    count = 0 if table is None else table.GetRowCount()
    ds = None
    return count


def associations(**handles):
    rats = RatAssociations()
    for name, handle in handles.items():
        setattr(rats, name, handle)
    return rats


def controls_with(blockLen, **settings):
    controls = RatApplierControls()
    controls.setBlockLength(blockLen)
    for name, value in settings.items():
        args = value if isinstance(value, tuple) else (value,)
        getattr(controls, name)(*args)
    return controls


# ---------------------------------------------------------------------------------------
# Controls, handles and small classes
# ---------------------------------------------------------------------------------------

def test_controls_defaults_and_setters():
    controls = RatApplierControls()
    assert controls.blockLen == 100000
    assert controls.rowCount is None
    assert controls.progress is None
    assert controls.outputRowCountMethod == RCM_EQUALS_INPUT
    controls.setBlockLength(7)
    controls.setRowCount(30)
    controls.outputRowCountHandling(RCM_INCREMENT, incrementsize=50)
    controls.setUseStringDType(True)
    assert (controls.blockLen, controls.rowCount, controls.outputRowCountMethod) == (7, 30, 2)
    assert controls.outputIncrementSize == 50 and controls.useStringDType
    assert (RCM_EQUALS_INPUT, RCM_FIXED, RCM_INCREMENT) == (0, 1, 2)


def test_controls_validation():
    controls = RatApplierControls()
    with pytest.raises(rioserrors.ParameterError, match="blockLen"):
        controls.setBlockLength(0)
    with pytest.raises(rioserrors.ParameterError, match="RCM_FIXED"):
        controls.outputRowCountHandling(7)
    with pytest.raises(rioserrors.ParameterError, match="totalsize"):
        controls.outputRowCountHandling(RCM_FIXED)


def test_rat_handle_hash_without_equality():
    a, b = RatHandle("f.img"), RatHandle("f.img")
    assert hash(a) == hash(b) == hash(("f.img", 1))
    assert a != b
    assert len({a, b}) == 2
    assert RatHandle("f.img", 2).layernum == 2


def test_rat_associations_list():
    rats = associations(first=RatHandle("a"), second=RatHandle("b"))
    assert list(rats.getRatList()) == ["first", "second"]


def test_rat_zarr_handle_needs_ratzarr(monkeypatch):
    monkeypatch.setattr(ratapplier, "ratzarr", None)
    with pytest.raises(ValueError, match="ratzarr"):
        ratapplier.RatZarrHandle("x.zarr")
    with pytest.raises(rioserrors.UnavailableError, match="ratzarr"):
        ratapplier.RatZarrHandle("x.zarr")


def test_zarr_chunk_size():
    assert ratapplier.zarrChunkSize(50) == 50
    assert ratapplier.zarrChunkSize(999999) == 999999
    assert ratapplier.zarrChunkSize(1000000) == 500000
    assert ratapplier.zarrChunkSize(2000000) == 500000
    assert ratapplier.zarrChunkSize(3000000) == 750000
    with pytest.raises(rioserrors.RatBlockLengthError, match="1000003"):
        ratapplier.zarrChunkSize(1000003)  # a prime


def test_wrong_controls_object(tmp_path):
    fn = raster_with_rat(tmp_path, "in", {"a": [1, 2]})
    with pytest.raises(rioserrors.WrongControlsObject):
        ratapplier.apply(lambda *a: None, associations(x=RatHandle(fn)), None, controls=object())


# ---------------------------------------------------------------------------------------
# Running over blocks
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("driver,ext", DRIVERS)
def test_in_place_update(tmp_path, driver, ext):
    values = np.arange(10) * 3
    fn = raster_with_rat(tmp_path, "inplace", {"a": values, "name": [f"r{i}" for i in range(10)]},
                         driver, ext)
    seen = []

    def func(info, inputs, outputs):
        seen.append((info.blockNdx, info.startrow, info.blockLen, info.rowCount,
                     info.inputRowNumbers.tolist()))
        outputs.x.doubled = inputs.x.a * 2
        outputs.x.half = inputs.x.a / 2.0
        outputs.x.label = np.char.add(inputs.x.name, b"!")

    handle = RatHandle(fn)
    ratapplier.apply(func, associations(x=handle), associations(x=handle),
                     controls=controls_with(4))
    assert seen == [(0, 0, 4, 10, [0, 1, 2, 3]), (1, 4, 4, 10, [4, 5, 6, 7]),
                    (2, 8, 2, 10, [8, 9])]
    np.testing.assert_array_equal(rat.readColumn(fn, "doubled"), values * 2)
    np.testing.assert_array_equal(rat.readColumn(fn, "half"), values / 2.0)
    np.testing.assert_array_equal(rat.readColumn(fn, "a"), values)
    assert rat.readColumn(fn, "label").tolist() == [f"r{i}!".encode() for i in range(10)]
    assert row_count(fn) == 10
    assert open_fds(fn) == 0


@pytest.mark.parametrize("outdriver,outext", DRIVERS)
def test_to_another_file(tmp_path, outdriver, outext):
    values = np.arange(25)
    infile = raster_with_rat(tmp_path, "in", {"v": values, "w": values * 0.5})
    outfile = raster(tmp_path, "out", outdriver, outext)
    progress = RecordingProgress()

    def func(info, inputs, outputs):
        outputs.o.total = inputs.i.v + inputs.i.w

    ratapplier.apply(func, associations(i=RatHandle(infile)), associations(o=RatHandle(outfile)),
                     controls=controls_with(10, setProgress=progress))
    np.testing.assert_array_equal(rat.readColumn(outfile, "total"), values * 1.5)
    assert rat.getColumnNames(outfile) == ["total"]
    assert row_count(outfile) == 25
    assert rat.getColumnNames(infile) == ["v", "w"]
    assert open_fds(infile) == 0 and open_fds(outfile) == 0
    assert progress.calls == [("setTotalSteps", 100), ("setProgress", 0), ("setProgress", 33),
                              ("setProgress", 66), ("setProgress", 100)]


def test_progress_with_many_blocks(tmp_path):
    fn = raster_with_rat(tmp_path, "in", {"v": np.arange(400)})
    progress = RecordingProgress()
    ratapplier.apply(lambda info, inputs, outputs: None, associations(i=RatHandle(fn)), None,
                     controls=controls_with(1, setProgress=progress))
    values = [v for name, v in progress.calls if name == "setProgress"]
    expected = [0] + sorted({int(i * 100 / 400) for i in range(400)} - {0}) + [100]
    assert values == expected
    assert progress.calls[0] == ("setTotalSteps", 100)


def test_other_arguments_persist(tmp_path):
    values = np.arange(1, 31)
    fn = raster_with_rat(tmp_path, "in", {"v": values})
    otherargs = OtherArguments()
    otherargs.total = 0
    otherargs.blocks = []
    ids = set()

    def func(info, inputs, outputs, other):
        ids.add(id(other))
        other.total += inputs.i.v.sum()
        other.blocks.append(info.blockNdx)

    ratapplier.apply(func, associations(i=RatHandle(fn)), None, otherargs, controls_with(7))
    assert otherargs.total == values.sum()
    assert otherargs.blocks == [0, 1, 2, 3, 4]
    assert ids == {id(otherargs)}


def test_input_columns_read_lazily_and_per_block(tmp_path):
    fn = raster_with_rat(tmp_path, "in", {"v": np.arange(6), "w": np.arange(6) + 10})
    seen = []

    def func(info, inputs, outputs):
        first = inputs.i.v
        assert inputs.i.v is first  # cached within the block
        seen.append(sorted(inputs.i.columnValues()))
        seen.append(first.tolist())

    ratapplier.apply(func, associations(i=RatHandle(fn)), None, controls=controls_with(3))
    assert seen == [["v"], [0, 1, 2], ["v"], [3, 4, 5]]


def test_string_dtype_inputs(tmp_path):
    fn = raster_with_rat(tmp_path, "in", {"s": ["a", "bé", "c"]})
    got = []

    def func(info, inputs, outputs):
        got.append(inputs.i.s)

    ratapplier.apply(func, associations(i=RatHandle(fn)), None,
                     controls=controls_with(10, setUseStringDType=True))
    assert isinstance(got[0].dtype, np.dtypes.StringDType)
    assert got[0].tolist() == ["a", "bé", "c"]
    got.clear()
    ratapplier.apply(func, associations(i=RatHandle(fn)), None, controls=controls_with(10))
    assert got[0].dtype.kind == "S"


def test_string_dtype_outputs(tmp_path):
    fn = raster_with_rat(tmp_path, "in", {"v": [1, 2, 3]})
    words = np.array(["x", "yé", "z"], dtype=np.dtypes.StringDType())

    def func(info, inputs, outputs):
        outputs.i.words = words[info.inputRowNumbers]

    handle = RatHandle(fn)
    ratapplier.apply(func, associations(i=handle), associations(i=handle))
    assert rat.readColumn(fn, "words", useStringDType=True).tolist() == ["x", "yé", "z"]


def test_usage_of_new_output_columns(tmp_path):
    infile = raster_with_rat(tmp_path, "in", {"v": [0, 100, 200]})
    outfile = raster(tmp_path, "out", "GTiff", ".tif")
    usages = []

    def func(info, inputs, outputs):
        outputs.o.setUsage("myred", gdal.GFU_Red)
        usages.append((outputs.o.getUsage("myred"), outputs.o.getUsage("plain")))
        outputs.o.myred = inputs.i.v
        outputs.o.plain = inputs.i.v

    ratapplier.apply(func, associations(i=RatHandle(infile)), associations(o=RatHandle(outfile)))
    assert usages == [(gdal.GFU_Red, gdal.GFU_Generic)]
    assert rat.getUsageOfColumn(outfile, "myred") == gdal.GFU_Red
    assert rat.getUsageOfColumn(outfile, "plain") == gdal.GFU_Generic


def test_layers_of_one_file_share_dataset(tmp_path):
    fn = raster(tmp_path, "two", nbands=2)
    rat.writeColumn(fn, "a", [1, 2, 3], bandNumber=1)
    rat.writeColumn(fn, "b", [10, 20, 30], bandNumber=2)

    def func(info, inputs, outputs):
        outputs.second.total = inputs.first.a + inputs.second.b

    first, second = RatHandle(fn, 1), RatHandle(fn, 2)
    ratapplier.apply(func, associations(first=first, second=second),
                     associations(second=second))
    np.testing.assert_array_equal(rat.readColumn(fn, "total", bandNumber=2), [11, 22, 33])
    assert rat.getColumnNames(fn, bandNumber=1) == ["a"]
    assert open_fds(fn) == 0


def test_distinct_handles_to_same_file(tmp_path):
    fn = raster_with_rat(tmp_path, "same", {"a": [1, 2, 3, 4]}, "GTiff", ".tif")

    def func(info, inputs, outputs):
        outputs.o.b = inputs.i.a + 1

    ratapplier.apply(func, associations(i=RatHandle(fn)), associations(o=RatHandle(fn)))
    assert rat.getColumnNames(fn) == ["a", "b"]
    np.testing.assert_array_equal(rat.readColumn(fn, "b"), [2, 3, 4, 5])


# ---------------------------------------------------------------------------------------
# Output row counts
# ---------------------------------------------------------------------------------------

def select_even(info, inputs, outputs):
    """Write only the rows whose value is even: the output has fewer rows."""
    v = inputs.i.v
    outputs.o.even = v[v % 2 == 0]


def test_equals_input_trims_to_rows_written(tmp_path):
    infile = raster_with_rat(tmp_path, "in", {"v": np.arange(23)})
    outfile = raster(tmp_path, "out")
    ratapplier.apply(select_even, associations(i=RatHandle(infile)),
                     associations(o=RatHandle(outfile)), controls=controls_with(5))
    np.testing.assert_array_equal(rat.readColumn(outfile, "even"), np.arange(0, 23, 2))
    assert row_count(outfile) == 12


def test_fixed_row_count(tmp_path):
    infile = raster_with_rat(tmp_path, "in", {"v": np.arange(23)})
    outfile = raster(tmp_path, "out")
    ratapplier.apply(select_even, associations(i=RatHandle(infile)),
                     associations(o=RatHandle(outfile)),
                     controls=controls_with(5, outputRowCountHandling=(RCM_FIXED, 12)))
    np.testing.assert_array_equal(rat.readColumn(outfile, "even"), np.arange(0, 23, 2))
    assert row_count(outfile) == 12


def test_fixed_row_count_overflow(tmp_path):
    infile = raster_with_rat(tmp_path, "in", {"v": np.arange(23)})
    outfile = raster(tmp_path, "out")
    with pytest.raises(rioserrors.RatBlockLengthError, match="fixed at 8 rows"):
        ratapplier.apply(select_even, associations(i=RatHandle(infile)),
                         associations(o=RatHandle(outfile)),
                         controls=controls_with(5, outputRowCountHandling=(RCM_FIXED, 8)))
    assert open_fds(outfile) == 0 and open_fds(infile) == 0


def test_increment_grows_past_input(tmp_path):
    values = np.arange(17)
    infile = raster_with_rat(tmp_path, "in", {"v": values})
    outfile = raster(tmp_path, "out")
    sizes = []

    def func(info, inputs, outputs):
        outputs.o.rep = np.repeat(inputs.i.v, 3)
        sizes.append(info.blockLen)

    ratapplier.apply(func, associations(i=RatHandle(infile)), associations(o=RatHandle(outfile)),
                     controls=controls_with(4, outputRowCountHandling=(RCM_INCREMENT, None, 5)))
    np.testing.assert_array_equal(rat.readColumn(outfile, "rep"), np.repeat(values, 3))
    assert row_count(outfile) == 51
    assert sizes == [4, 4, 4, 4, 1]


def test_increment_rows_grow_by_increment(tmp_path, monkeypatch):
    infile = raster_with_rat(tmp_path, "in", {"v": np.arange(10)})
    outfile = raster(tmp_path, "out", "GTiff", ".tif")
    counts = []
    original = ratapplier._growRows

    def spy(fh, nrows, rowCount, controls):
        original(fh, nrows, rowCount, controls)
        counts.append(fh.rat.GetRowCount())

    monkeypatch.setattr(ratapplier, "_growRows", spy)

    def func(info, inputs, outputs):
        outputs.o.v = inputs.i.v

    ratapplier.apply(func, associations(i=RatHandle(infile)), associations(o=RatHandle(outfile)),
                     controls=controls_with(2, outputRowCountHandling=(RCM_INCREMENT, None, 7)))
    assert counts == [7, 7, 7, 14, 14]
    assert row_count(outfile) == 10
    np.testing.assert_array_equal(rat.readColumn(outfile, "v"), np.arange(10))


def test_equals_input_grows_when_more_rows_written(tmp_path):
    infile = raster_with_rat(tmp_path, "in", {"v": np.arange(5)})
    outfile = raster(tmp_path, "out")

    def func(info, inputs, outputs):
        outputs.o.rep = np.repeat(inputs.i.v, 2)

    ratapplier.apply(func, associations(i=RatHandle(infile)), associations(o=RatHandle(outfile)),
                     controls=controls_with(2))
    np.testing.assert_array_equal(rat.readColumn(outfile, "rep"), np.repeat(np.arange(5), 2))


def test_no_inputs_needs_row_count(tmp_path):
    outfile = raster(tmp_path, "out")

    def func(info, inputs, outputs):
        outputs.o.idx = info.inputRowNumbers * 10

    with pytest.raises(rioserrors.ParameterError, match="setRowCount"):
        ratapplier.apply(func, None, associations(o=RatHandle(outfile)))
    ratapplier.apply(func, None, associations(o=RatHandle(outfile)),
                     controls=controls_with(4, setRowCount=11))
    np.testing.assert_array_equal(rat.readColumn(outfile, "idx"), np.arange(11) * 10)
    assert row_count(outfile) == 11


def test_outputs_untouched_without_writes(tmp_path):
    fn = raster_with_rat(tmp_path, "in", {"v": np.arange(8)})
    handle = RatHandle(fn)
    ratapplier.apply(lambda info, inputs, outputs: None, associations(i=handle),
                     associations(i=handle), controls=controls_with(3))
    assert row_count(fn) == 8
    np.testing.assert_array_equal(rat.readColumn(fn, "v"), np.arange(8))


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------

def test_mismatched_inputs(tmp_path):
    a = raster_with_rat(tmp_path, "a", {"v": np.arange(5)})
    b = raster_with_rat(tmp_path, "b", {"v": np.arange(6)})
    with pytest.raises(rioserrors.RatMismatchError) as info:
        ratapplier.apply(lambda *args: None, associations(a=RatHandle(a), b=RatHandle(b)), None)
    assert a in str(info.value) and b in str(info.value)
    assert open_fds(a) == 0 and open_fds(b) == 0


def test_row_count_larger_than_inputs(tmp_path):
    a = raster_with_rat(tmp_path, "a", {"v": np.arange(5)})
    with pytest.raises(rioserrors.RatMismatchError, match="rowCount"):
        ratapplier.apply(lambda *args: None, associations(a=RatHandle(a)), None,
                         controls=controls_with(2, setRowCount=6))


def test_block_length_mismatch(tmp_path):
    fn = raster_with_rat(tmp_path, "in", {"v": np.arange(5)})
    outfile = raster(tmp_path, "out")

    def func(info, inputs, outputs):
        outputs.o.a = inputs.i.v
        outputs.o.b = inputs.i.v[:-1]

    with pytest.raises(rioserrors.RatBlockLengthError, match="'a': 5, 'b': 4"):
        ratapplier.apply(func, associations(i=RatHandle(fn)), associations(o=RatHandle(outfile)))
    assert open_fds(outfile) == 0


def test_uninferable_output_type(tmp_path):
    fn = raster_with_rat(tmp_path, "in", {"v": np.arange(3)})

    def func(info, inputs, outputs):
        outputs.i.bad = np.array([{}, {}, {}], dtype=object)

    handle = RatHandle(fn)
    with pytest.raises(rioserrors.AttributeTableTypeError, match="'bad'"):
        ratapplier.apply(func, associations(i=handle), associations(i=handle))


def test_missing_input_column(tmp_path):
    fn = raster_with_rat(tmp_path, "in", {"v": np.arange(3)})

    def func(info, inputs, outputs):
        return inputs.i.nosuch

    with pytest.raises(rioserrors.AttributeTableColumnError) as info:
        ratapplier.apply(func, associations(i=RatHandle(fn)), None)
    message = str(info.value)
    assert "nosuch" in message and fn in message and "'v'" in message


def test_unset_output_column_read(tmp_path):
    fn = raster_with_rat(tmp_path, "in", {"v": np.arange(3)})

    def func(info, inputs, outputs):
        return outputs.i.notset

    handle = RatHandle(fn)
    with pytest.raises(AttributeError, match="notset"):
        ratapplier.apply(func, associations(i=handle), associations(i=handle))


def test_user_exception_propagates_and_closes(tmp_path):
    fn = raster_with_rat(tmp_path, "in", {"v": np.arange(3)})

    def func(info, inputs, outputs):
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        ratapplier.apply(func, associations(i=RatHandle(fn)), associations(i=RatHandle(fn)))
    assert open_fds(fn) == 0


def test_missing_file(tmp_path):
    with pytest.raises(rioserrors.FileOpenError, match="nofile"):
        ratapplier.apply(lambda *a: None, associations(i=RatHandle(str(tmp_path / "nofile"))),
                         None)


# ---------------------------------------------------------------------------------------
# copyRAT
# ---------------------------------------------------------------------------------------

def test_copy_rat(tmp_path, monkeypatch):
    monkeypatch.setattr(ratapplier, "ratzarr", None)
    infile = raster(tmp_path, "in")
    rat.writeColumn(infile, "ints", np.arange(9))
    rat.writeColumn(infile, "reals", np.arange(9) * 0.25)
    rat.writeColumn(infile, "names", [f"n{i}" for i in range(9)])
    rat.writeColumn(infile, "wholereal", np.arange(9) * 1.0)
    rat.writeColumn(infile, "Red", np.arange(9) * 20, colUsage=gdal.GFU_Red)
    rat.writeColumn(infile, "count", np.arange(9) + 5, colUsage=gdal.GFU_Max)
    rat.writeColumn(infile, "label", np.arange(9) - 4, colUsage=gdal.GFU_Min)
    outfile = raster(tmp_path, "out", "GTiff", ".tif")
    progress = RecordingProgress()
    ratapplier.copyRAT(infile, outfile, progress=progress, omitColumns=["reals"])
    assert rat.getColumnNames(outfile) == ["ints", "names", "wholereal", "Red", "count", "label"]
    for col in ("ints", "names", "wholereal", "Red", "count", "label"):
        np.testing.assert_array_equal(rat.readColumn(outfile, col), rat.readColumn(infile, col))
        assert rat.getUsageOfColumn(outfile, col) == rat.getUsageOfColumn(infile, col)
    ds = gdal.Open(outfile)
    table = ds.GetRasterBand(1).GetDefaultRAT()
    assert table.GetTypeOfCol(2) == gdal.GFT_Real
    assert table.GetTypeOfCol(1) == gdal.GFT_String
    ds = None
    assert row_count(outfile) == 9
    assert progress.calls[-1] == ("setProgress", 100)
    assert open_fds(infile) == 0 and open_fds(outfile) == 0


def test_copy_rat_with_handles(tmp_path):
    infile = raster(tmp_path, "in", nbands=2)
    rat.writeColumn(infile, "x", [1, 2, 3], bandNumber=2)
    outfile = raster(tmp_path, "out")
    ratapplier.copyRAT(RatHandle(infile, 2), RatHandle(outfile))
    np.testing.assert_array_equal(rat.readColumn(outfile, "x"), [1, 2, 3])


def test_open_failure_closes_files_already_opened(tmp_path):
    outfile = raster(tmp_path, "out")
    inputs = associations(i=RatHandle(str(tmp_path / "missing.img")))
    with pytest.raises(rioserrors.FileOpenError, match="missing.img"):
        ratapplier.apply(lambda *a: None, inputs, associations(o=RatHandle(outfile)))
    assert open_fds(outfile) == 0


def test_zarr_handles_refused_by_apply(tmp_path, monkeypatch):
    monkeypatch.setattr(ratapplier, "ratzarr", object())
    handle = ratapplier.RatZarrHandle("x.zarr")
    assert handle == ratapplier.RatZarrHandle("x.zarr")
    assert hash(handle) == hash("x.zarr")
    with pytest.raises(rioserrors.UnavailableError, match="Zarr"):
        ratapplier.apply(lambda *a: None, associations(z=handle), None)
