"""Tests of sharedapplier.rat against real thematic rasters whose RATs GDAL writes."""
import warnings

import numpy as np
import pytest
from conftest import open_fds, write_raster
from osgeo import gdal

from sharedapplier import rat, rioserrors

HAVE_KEA = gdal.GetDriverByName("KEA") is not None
DRIVERS = [
    pytest.param("HFA", ".img", id="HFA"),
    pytest.param("KEA", ".kea", id="KEA", marks=pytest.mark.skipif(
        not HAVE_KEA, reason="GDAL has no KEA driver here")),
]




def thematic(tmp_path, driver="HFA", ext=".img", dtype=np.int32, name="thm"):
    data = (np.arange(100).reshape(10, 10) % 7).astype(dtype)
    return write_raster(tmp_path / f"{name}{ext}", data, driver=driver, thematic=True)


def raw_column(filename, colName, band=1):
    """Read a column straight through GDAL: (values, type, usage, row count)."""
    ds = gdal.Open(filename)
    table = ds.GetRasterBand(band).GetDefaultRAT()
    names = [table.GetNameOfCol(i) for i in range(table.GetColumnCount())]
    idx = names.index(colName)
    result = (table.ReadAsArray(idx), table.GetTypeOfCol(idx), table.GetUsageOfCol(idx),
              table.GetRowCount())
    ds = None
    return result


# ---------------------------------------------------------------------------------------
# Column round trips
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("driver,ext", DRIVERS)
def test_int_float_columns_round_trip(tmp_path, driver, ext):
    fn = thematic(tmp_path, driver, ext)
    ints = np.array([5, -3, 0, 7, 2**31 - 1, -(2**31), 9])
    floats = np.array([0.5, -1.25, 3e10, np.pi, 0.0, 1e-9, 42.0])
    rat.writeColumn(fn, "ints", ints)
    rat.writeColumn(fn, "floats", floats)
    got = rat.readColumn(fn, "ints")
    assert got.dtype.kind == "i"
    np.testing.assert_array_equal(got, ints)
    np.testing.assert_array_equal(rat.readColumn(fn, "floats"), floats)
    assert raw_column(fn, "ints")[1] == gdal.GFT_Integer
    assert raw_column(fn, "floats")[1] == gdal.GFT_Real
    assert open_fds(fn) == 0


@pytest.mark.parametrize("driver,ext", DRIVERS)
def test_text_columns_round_trip(tmp_path, driver, ext):
    fn = thematic(tmp_path, driver, ext)
    words = ["alpha", "bé", "", "gamma", "δέλτα", "e", "f"]
    rat.writeColumn(fn, "unicode", np.array(words))
    rat.writeColumn(fn, "bytes", [w.encode("utf-8") for w in words])
    rat.writeColumn(fn, "pylist", words)
    rat.writeColumn(fn, "sdt", np.array(words, dtype=np.dtypes.StringDType()))
    expected = np.array([w.encode("utf-8") for w in words])
    for col in ("unicode", "bytes", "pylist", "sdt"):
        got = rat.readColumn(fn, col)
        assert got.dtype.kind == "S"
        np.testing.assert_array_equal(got, expected)
        assert raw_column(fn, col)[1] == gdal.GFT_String
    got = rat.readColumn(fn, "sdt", useStringDType=True)
    assert isinstance(got.dtype, np.dtypes.StringDType)
    assert got.tolist() == words


def test_numpy_scalar_columns_and_bool(tmp_path):
    fn = thematic(tmp_path)
    rat.writeColumn(fn, "i16", np.array([1, 2, 3], dtype=np.int16))
    rat.writeColumn(fn, "f32", np.array([1.5, 2.5, 3.5], dtype=np.float32))
    rat.writeColumn(fn, "flag", [True, False, True])
    assert raw_column(fn, "i16")[1] == gdal.GFT_Integer
    assert raw_column(fn, "f32")[1] == gdal.GFT_Real
    np.testing.assert_array_equal(rat.readColumn(fn, "flag"), [1, 0, 1])


def test_column_names_from_file_dataset_and_band(tmp_path):
    fn = thematic(tmp_path)
    rat.writeColumn(fn, "a", [1, 2])
    rat.writeColumn(fn, "b", [1.0, 2.0])
    assert rat.getColumnNames(fn) == ["a", "b"]
    ds = gdal.Open(fn)
    assert rat.getColumnNames(ds) == ["a", "b"]
    assert rat.getColumnNamesFromBand(ds.GetRasterBand(1)) == ["a", "b"]
    np.testing.assert_array_equal(rat.readColumn(ds, "a"), [1, 2])
    np.testing.assert_array_equal(rat.readColumnFromBand(ds.GetRasterBand(1), "b"), [1.0, 2.0])
    ds = None


def test_column_names_without_rat_is_empty(tmp_path):
    fn = write_raster(tmp_path / "plain.tif", np.zeros((4, 4), np.int16))
    assert rat.getColumnNames(fn) == []


def test_missing_column_names_column_file_and_existing(tmp_path):
    fn = thematic(tmp_path)
    rat.writeColumn(fn, "present", [1, 2, 3])
    with pytest.raises(rioserrors.AttributeTableColumnError) as info:
        rat.readColumn(fn, "absent")
    message = str(info.value)
    assert "absent" in message and fn in message and "present" in message
    with pytest.raises(rioserrors.AttributeTableColumnError, match="absent"):
        rat.getUsageOfColumn(fn, "absent")
    assert open_fds(fn) == 0


def test_bad_band_number_and_missing_file(tmp_path):
    fn = thematic(tmp_path)
    with pytest.raises(rioserrors.GDALLayerNumberError, match="band 3"):
        rat.readColumn(fn, "x", bandNumber=3)
    with pytest.raises(rioserrors.FileOpenError, match="nosuch"):
        rat.readColumn(str(tmp_path / "nosuch.img"), "x")


def test_second_band(tmp_path):
    data = np.stack([np.zeros((5, 5), np.int32), np.ones((5, 5), np.int32)])
    fn = write_raster(tmp_path / "two.img", data, driver="HFA", thematic=True)
    rat.writeColumn(fn, "second", [10, 20, 30], bandNumber=2)
    assert rat.getColumnNames(fn, bandNumber=1) == []
    np.testing.assert_array_equal(rat.readColumn(fn, "second", bandNumber=2), [10, 20, 30])


# ---------------------------------------------------------------------------------------
# inferColumnType
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("seq,expected", [
    ([1, 2], gdal.GFT_Integer),
    ([True, False], gdal.GFT_Integer),
    (np.array([1, 2], dtype=np.uint16), gdal.GFT_Integer),
    ([np.int64(3)], gdal.GFT_Integer),
    ([1.5], gdal.GFT_Real),
    (np.array([1, 2], dtype=np.float32), gdal.GFT_Real),
    (["x"], gdal.GFT_String),
    ([b"x"], gdal.GFT_String),
    (np.array(["x"]), gdal.GFT_String),
    (np.array(["x"], dtype=np.dtypes.StringDType()), gdal.GFT_String),
    (np.array([True]), None),
    ([None], None),
    ([{"a": 1}], None),
    (np.array([], dtype=np.int32), gdal.GFT_Integer),
    ([], None),
])
def test_infer_column_type(seq, expected):
    assert rat.inferColumnType(seq) == expected


def test_uninferable_and_invalid_types(tmp_path):
    fn = thematic(tmp_path)
    with pytest.raises(rioserrors.AttributeTableTypeError, match="'col'"):
        rat.writeColumn(fn, "col", [{"a": 1}])
    with pytest.raises(rioserrors.AttributeTableTypeError, match="invalid column type"):
        rat.writeColumn(fn, "col", [1, 2], colType=99)
    with pytest.raises(rioserrors.AttributeTableTypeError, match="32 bits"):
        rat.writeColumn(fn, "big", np.array([2**40]))
    assert "col" not in rat.getColumnNames(fn)


def test_explicit_col_type(tmp_path):
    fn = thematic(tmp_path)
    rat.writeColumn(fn, "asreal", [1, 2, 3], colType=gdal.GFT_Real)
    values, coltype, _, _ = raw_column(fn, "asreal")
    assert coltype == gdal.GFT_Real
    np.testing.assert_array_equal(values, [1.0, 2.0, 3.0])
    rat.writeColumn(fn, "big", np.array([2**40, 1]), colType=gdal.GFT_Real)
    np.testing.assert_array_equal(rat.readColumn(fn, "big"), [2.0**40, 1.0])


# ---------------------------------------------------------------------------------------
# Row counts
# ---------------------------------------------------------------------------------------

def test_byte_band_gets_256_rows(tmp_path):
    fn = thematic(tmp_path, dtype=np.uint8)
    rat.writeColumn(fn, "v", [3, 4, 5])
    values, _, _, nrows = raw_column(fn, "v")
    assert nrows == 256
    np.testing.assert_array_equal(values[:3], [3, 4, 5])
    np.testing.assert_array_equal(values[3:], 0)
    with pytest.raises(rioserrors.ArrayShapeError, match="256"):
        rat.writeColumn(fn, "v", np.arange(300))


def test_byte_band_gtiff_pam(tmp_path):
    fn = write_raster(tmp_path / "b.tif", np.zeros((4, 4), np.uint8), thematic=True)
    rat.writeColumn(fn, "v", [7, 8])
    rat.writeColumn(fn, "w", [0.5])
    assert len(rat.readColumn(fn, "v")) == 256
    np.testing.assert_array_equal(rat.readColumn(fn, "v")[:2], [7, 8])
    assert rat.readColumn(fn, "w")[0] == 0.5
    assert open_fds(fn) == 0


def test_row_count_follows_sequence_and_type_is_kept(tmp_path):
    fn = thematic(tmp_path)
    rat.writeColumn(fn, "a", np.arange(10))
    rat.writeColumn(fn, "a", np.array([1.7, 2.2, 3.9]))
    values, coltype, _, nrows = raw_column(fn, "a")
    assert nrows == 3
    assert coltype == gdal.GFT_Integer
    np.testing.assert_array_equal(values, [1, 2, 3])


def test_text_into_numeric_column_is_refused(tmp_path):
    fn = thematic(tmp_path)
    rat.writeColumn(fn, "a", [1, 2])
    with pytest.raises(rioserrors.AttributeTableTypeError, match="'a'"):
        rat.writeColumn(fn, "a", ["x", "y"])


def test_two_dimensional_sequence_is_refused(tmp_path):
    fn = thematic(tmp_path)
    with pytest.raises(rioserrors.ArrayShapeError, match="1-D"):
        rat.writeColumn(fn, "a", np.zeros((2, 2), np.int32))


# ---------------------------------------------------------------------------------------
# Usages and colour columns
# ---------------------------------------------------------------------------------------

def test_usage_of_column(tmp_path):
    fn = write_raster(tmp_path / "u.tif", np.zeros((4, 4), np.int16), thematic=True)
    rat.writeColumn(fn, "generic", [1, 2])
    rat.writeColumn(fn, "red", [10, 20], colUsage=gdal.GFU_Red)
    assert rat.getUsageOfColumn(fn, "generic") == gdal.GFU_Generic
    assert rat.getUsageOfColumn(fn, "red") == gdal.GFU_Red
    ds = gdal.Open(fn)
    assert rat.getUsageOfColumnFromBand(ds.GetRasterBand(1), "red") == gdal.GFU_Red
    ds = None


def test_is_color_col_from_usage():
    for usage in (gdal.GFU_Red, gdal.GFU_Green, gdal.GFU_Blue, gdal.GFU_Alpha):
        assert rat.isColorColFromUsage(usage)
    for usage in (gdal.GFU_Generic, gdal.GFU_Name, gdal.GFU_PixelCount, gdal.GFU_Min):
        assert not rat.isColorColFromUsage(usage)


class RealColourRat:
    """Stand-in for a driver RAT that keeps colour columns as reals in 0..1.

    GDAL 3.6's own tables (default, PAM, HFA) turn every colour column into an integer
    one, so a real colour column can only come from other drivers (e.g. KEA).
    """

    def __init__(self, columns):
        self.columns = [[name, coltype, usage, np.asarray(values)]
                        for name, coltype, usage, values in columns]

    def GetColumnCount(self):
        return len(self.columns)

    def GetNameOfCol(self, i):
        return self.columns[i][0]

    def GetTypeOfCol(self, i):
        return self.columns[i][1]

    def GetUsageOfCol(self, i):
        return self.columns[i][2]

    def GetRowCount(self):
        return len(self.columns[0][3])

    def SetRowCount(self, n):
        for col in self.columns:
            col[3] = np.resize(col[3], n)

    def ReadAsArray(self, i, start=0, length=None):
        stop = None if length is None else start + length
        return self.columns[i][3][start:stop].copy()

    def WriteArray(self, values, i, start=0):
        self.columns[i][3][start:start + len(values)] = values

    def ChangesAreWrittenToFile(self):
        return True


class FakeBand:
    DataType = gdal.GDT_Int32

    def __init__(self, table):
        self.table = table

    def GetDefaultRAT(self):
        return self.table

    def GetDataset(self):
        return None


def test_real_colour_columns_are_scaled():
    table = RealColourRat([
        ("R", gdal.GFT_Real, gdal.GFU_Red, [0.0, 0.2, 0.6, 1.0]),
        ("G", gdal.GFT_Real, gdal.GFU_Green, [1.0, 0.4, 0.0, 0.8]),
        ("plain", gdal.GFT_Real, gdal.GFU_Generic, [0.25, 0.5, 0.75, 1.0]),
    ])
    band = FakeBand(table)
    red = rat.readColumnFromBand(band, "R")
    assert red.dtype.kind == "i"
    np.testing.assert_array_equal(red, [0, 51, 153, 255])
    np.testing.assert_array_equal(rat.readColumnFromBand(band, "plain"), [0.25, 0.5, 0.75, 1.0])
    # integer colours written into an existing real colour column are stored as 0..1
    rat.writeColumnToBand(band, "G", np.array([255, 102, 0, 51], dtype=np.uint8))
    np.testing.assert_allclose(table.columns[1][3], [1.0, 0.4, 0.0, 0.2])
    np.testing.assert_array_equal(rat.readColumnFromBand(band, "G"), [255, 102, 0, 51])
    rat.writeColumnToBand(band, "plain", [1, 2, 3, 4])
    np.testing.assert_array_equal(table.columns[2][3], [1.0, 2.0, 3.0, 4.0])


def test_gdal_keeps_colour_columns_integer(tmp_path):
    fn = write_raster(tmp_path / "c.tif", np.zeros((4, 4), np.int16), thematic=True)
    rat.writeColumn(fn, "myred", [0, 128, 255], colUsage=gdal.GFU_Red)
    values, coltype, usage, _ = raw_column(fn, "myred")
    assert (coltype, usage) == (gdal.GFT_Integer, gdal.GFU_Red)
    np.testing.assert_array_equal(rat.readColumn(fn, "myred"), [0, 128, 255])


def test_write_to_band_without_rat_sets_it(tmp_path):
    fn = write_raster(tmp_path / "i.tif", np.zeros((4, 4), np.int16), thematic=True)
    ds = gdal.Open(fn, gdal.GA_Update)
    band = ds.GetRasterBand(1)
    assert band.GetDefaultRAT() is None
    rat.writeColumnToBand(band, "x", [4, 5, 6])
    rat.writeColumnToBand(band, "y", [1.0, 2.0, 3.0])
    band = None
    ds = None
    np.testing.assert_array_equal(rat.readColumn(fn, "x"), [4, 5, 6])
    np.testing.assert_array_equal(rat.readColumn(fn, "y"), [1.0, 2.0, 3.0])


# ---------------------------------------------------------------------------------------
# Colour tables through GDAL's colour-table API
# ---------------------------------------------------------------------------------------

def test_set_and_get_colour_table_with_gaps(tmp_path):
    fn = thematic(tmp_path)
    table = np.array([[4, 10, 20, 30, 255], [1, 1, 2, 3, 128], [6, 200, 100, 50, 0]])
    rat.setColorTable(fn, table)
    got = rat.getColorTable(fn)
    assert got.shape == (7, 5)
    expected = np.zeros((7, 5), dtype=int)
    expected[:, 0] = np.arange(7)
    for row in table:
        expected[row[0], 1:] = row[1:]
    np.testing.assert_array_equal(got, expected)
    assert open_fds(fn) == 0


def test_legacy_four_column_colour_table(tmp_path):
    fn = thematic(tmp_path)
    table = np.array([[255, 0, 0, 255], [0, 255, 0, 255], [0, 0, 255, 100]])
    rat.setColorTable(fn, table)
    got = rat.getColorTable(fn)
    np.testing.assert_array_equal(got[:, 0], [0, 1, 2])
    np.testing.assert_array_equal(got[:, 1:], table)


def test_byte_colour_table_has_256_entries(tmp_path):
    fn = thematic(tmp_path, dtype=np.uint8)
    rat.setColorTable(fn, np.array([[2, 9, 8, 7, 255]]))
    got = rat.getColorTable(fn)
    assert got.shape == (256, 5)
    np.testing.assert_array_equal(got[2], [2, 9, 8, 7, 255])
    np.testing.assert_array_equal(got[3:, 1:], 0)


def test_colour_table_from_dataset(tmp_path):
    fn = thematic(tmp_path)
    ds = gdal.Open(fn, gdal.GA_Update)
    rat.setColorTable(ds, np.array([[0, 1, 2, 3, 4]]))
    np.testing.assert_array_equal(rat.getColorTable(ds), [[0, 1, 2, 3, 4]])
    ds = None


def test_large_colour_table_warns(tmp_path):
    fn = thematic(tmp_path)
    with pytest.warns(DeprecationWarning, match="colortable"):
        rat.setColorTable(fn, np.array([[300, 1, 2, 3, 255]]))
    assert len(rat.getColorTable(fn)) == 301
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rat.setColorTable(fn, np.array([[255, 1, 2, 3, 255]]))


@pytest.mark.parametrize("bad", [
    np.zeros((3, 3)), np.zeros((3, 6)), np.zeros(5), np.zeros((0, 5)), np.zeros((2, 2, 5)),
])
def test_bad_colour_table_shape(tmp_path, bad):
    fn = thematic(tmp_path)
    with pytest.raises(rioserrors.ArrayShapeError, match="colour table"):
        rat.setColorTable(fn, bad)


def test_bad_colour_table_values(tmp_path):
    fn = thematic(tmp_path)
    with pytest.raises(rioserrors.ParameterError, match="non-negative"):
        rat.setColorTable(fn, np.array([[-1, 1, 2, 3, 4]]))
    with pytest.raises(rioserrors.ParameterError, match="0..255"):
        rat.setColorTable(fn, np.array([[0, 1, 2, 300, 4]]))


def test_no_colour_table(tmp_path):
    fn = thematic(tmp_path)
    with pytest.raises(rioserrors.AttributeTableColumnError, match="no colour table"):
        rat.getColorTable(fn)


# ---------------------------------------------------------------------------------------
# genColorTable
# ---------------------------------------------------------------------------------------

def expected_rainbow(n):
    """Rainbow truth from exact arithmetic (n chosen so every step is exact)."""
    half, rest = n // 2, n - n // 2
    table = np.zeros((n, 4), dtype=np.int64)
    for i in range(half):
        frac = i / (half - 1)
        table[i, :3] = [int(255 - 255 * frac), int(255 * frac), 0]
    for i in range(rest):
        frac = i / (rest - 1)
        table[half + i, :3] = [0, int(255 - 255 * frac), int(255 * frac)]
    table[:, 3] = 255
    return table


@pytest.mark.parametrize("n", [10, 11, 12])
def test_gen_colour_table_rainbow(n):
    table = rat.genColorTable(n, "rainbow")
    assert table.shape == (n, 4) and table.dtype == np.uint32
    np.testing.assert_array_equal(table, expected_rainbow(n))
    np.testing.assert_array_equal(rat.genColorTable_rainbow(n), table)


def test_gen_colour_table_gray():
    table = rat.genColorTable(16, "gray")
    assert table.shape == (16, 4) and table.dtype == np.uint8
    steps = np.arange(16) * 17
    np.testing.assert_array_equal(table[:, :3], np.stack([steps] * 3, axis=1))
    np.testing.assert_array_equal(table[:, 3], 255)
    np.testing.assert_array_equal(rat.genColorTable_gray(256)[:, 0], np.arange(256))


def test_gen_colour_table_random():
    table = rat.genColorTable(500, "random")
    assert table.shape == (500, 4) and table.dtype == np.uint8
    np.testing.assert_array_equal(table[:, 3], 255)
    assert len(np.unique(table[:, :3])) > 100
    assert rat.genColorTable_random(3).shape == (3, 4)


def test_gen_colour_table_unknown_type():
    with pytest.raises(rioserrors.ColorTableGenerationError, match="'plaid'"):
        rat.genColorTable(5, "plaid")


def test_constants():
    assert rat.MAX_RECOMMENDED_COLOR_TABLE == 256
    assert hasattr(rat, "DEFAULT_AUTOCOLORTABLETYPE")


# ---------------------------------------------------------------------------------------
# Work-arounds for GDAL 3.6 RAT defects
# ---------------------------------------------------------------------------------------

def test_growing_hfa_rat_keeps_other_columns_readable(tmp_path):
    fn = thematic(tmp_path)
    rat.writeColumn(fn, "short", [1, 2, 3, 4])
    rat.writeColumn(fn, "words", list("abcdef"))
    rat.writeColumn(fn, "long", np.arange(10) * 1.5)
    np.testing.assert_array_equal(rat.readColumn(fn, "short"), [1, 2, 3, 4, 0, 0, 0, 0, 0, 0])
    assert rat.readColumn(fn, "words").tolist() == [c.encode() for c in "abcdef"] + [b""] * 4
    np.testing.assert_array_equal(rat.readColumn(fn, "long"), np.arange(10) * 1.5)


def test_in_memory_rat_rows_at_an_offset():
    table = gdal.RasterAttributeTable()
    for name, coltype in (("i", gdal.GFT_Integer), ("r", gdal.GFT_Real),
                          ("s", gdal.GFT_String)):
        table.CreateColumn(name, coltype, gdal.GFU_Generic)
    table.SetRowCount(12)
    rat.writeRatRows(table, np.arange(12), 0)
    rat.writeRatRows(table, np.array([100, 101, 102]), 0, 5)
    rat.writeRatRows(table, np.array([2.5, 3.5]), 1, 10)
    rat.writeRatRows(table, np.array([b"x", b"longer"]), 2, 7)
    expected = np.arange(12)
    expected[5:8] = [100, 101, 102]
    np.testing.assert_array_equal(rat.readRatRows(table, 0, 4, 5), expected[4:9])
    np.testing.assert_array_equal(rat.readRatRows(table, 1, 9, 3), [0.0, 2.5, 3.5])
    assert rat.readRatRows(table, 2, 6, 3).tolist() == [b"", b"x", b"longer"]
