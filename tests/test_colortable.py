"""Tests of sharedapplier.colortable: named ramps, genTable, and RAT colour tables."""

import numpy as np
import pytest
from conftest import open_fds, write_raster
from osgeo import gdal

from sharedapplier import colortable, rat, rioserrors

COLORBREWER = """Accent Blues BrBG BuGn BuPu Dark2 GnBu Greens Greys OrRd Oranges PRGn Paired
    Pastel1 Pastel2 PiYG PuBuGn PuBu PuOr PuRd Purples RdBu RdGy RdPu RdYlBu RdYlGn Reds Set1
    Set2 Set3 Spectral YlGnBu YlGn YlOrBr YlOrRd""".split()
MATPLOTLIB = ["viridis", "magma", "plasma", "inferno", "cividis"]

# Control colours typed in independently from the published palettes.
KNOWN_CONTROLS = {
    "Blues": [(247, 251, 255), (222, 235, 247), (198, 219, 239), (158, 202, 225),
              (107, 174, 214), (66, 146, 198), (33, 113, 181), (8, 81, 156), (8, 48, 107)],
    "RdYlGn": [(165, 0, 38), (215, 48, 39), (244, 109, 67), (253, 174, 97), (254, 224, 139),
               (255, 255, 191), (217, 239, 139), (166, 217, 106), (102, 189, 99),
               (26, 152, 80), (0, 104, 55)],
    "Set1": [(228, 26, 28), (55, 126, 184), (77, 175, 74), (152, 78, 163), (255, 127, 0),
             (255, 255, 51), (166, 86, 40), (247, 129, 191), (153, 153, 153)],
    "gray": [(0, 0, 0), (255, 255, 255)],
    "rainbow": [(255, 0, 0), (0, 255, 0), (0, 0, 255)],
}
CLASS_COUNTS = {"Blues": 9, "Greys": 9, "YlOrRd": 9, "Spectral": 11, "BrBG": 11, "Paired": 12,
                "Set3": 12, "Accent": 8, "Dark2": 8, "Pastel1": 9, "Pastel2": 8, "Set2": 8}


def thematic(tmp_path, driver="HFA", ext=".img", dtype=np.int32, name="thm"):
    data = (np.arange(100).reshape(10, 10) % 7).astype(dtype)
    return write_raster(tmp_path / f"{name}{ext}", data, driver=driver, thematic=True)


def controls_of(name):
    desc = colortable.RAMP[name]["description"]
    return np.array([[int(v) for v in desc[ch].split()] for ch in ("red", "green", "blue")])


def expected_table(n, controls, xp=None):
    """Truth: numpy.interp of each channel, truncated, alpha 255."""
    controls = np.asarray(controls, dtype=float).T
    if xp is None:
        xp = np.linspace(0, n, controls.shape[1])
    x = np.linspace(0, n, n)
    table = np.full((4, n), 255, dtype=np.uint8)
    for i in range(3):
        table[i] = np.trunc(np.interp(x, xp, controls[i]))
    return table


# ---------------------------------------------------------------------------------------
# Ramps
# ---------------------------------------------------------------------------------------

def test_ramp_names():
    names = colortable.getRampNames()
    expected = set(COLORBREWER + MATPLOTLIB + ["gray", "rainbow"])
    assert len(expected) == 42
    assert set(names) == expected | {"RANDOM"}
    assert colortable.RANDOM_NAME == "RANDOM"
    assert set(colortable.RAMP) == expected


def test_ramp_descriptions_are_consistent():
    for name, ramp in colortable.RAMP.items():
        desc = ramp["description"]
        counts = {len(desc[ch].split()) for ch in ("red", "green", "blue")}
        assert len(counts) == 1, name
        values = controls_of(name)
        assert values.min() >= 0 and values.max() <= 255, name
    for name in MATPLOTLIB:
        assert controls_of(name).shape == (3, 12), name
    for name, count in CLASS_COUNTS.items():
        assert controls_of(name).shape == (3, count), name


@pytest.mark.parametrize("name", sorted(KNOWN_CONTROLS))
def test_known_control_colours(name):
    np.testing.assert_array_equal(controls_of(name).T, KNOWN_CONTROLS[name])


def test_viridis_ends():
    viridis = controls_of("viridis").T
    np.testing.assert_array_equal(viridis[0], (68, 1, 84))
    np.testing.assert_array_equal(viridis[-1], (253, 231, 37))


def test_load_builtin_ramps_restores():
    saved = colortable.RAMP.pop("Blues")
    try:
        colortable.loadBuiltinRamps()
        assert colortable.RAMP["Blues"] == saved
    finally:
        colortable.RAMP["Blues"] = saved


def test_add_ramp_and_errors():
    try:
        colortable.addRamp("mine", "0 100 200", "10 20 30", "255 128 0")
        assert "mine" in colortable.getRampNames()
        table = colortable.genTable(5, "mine")
        controls = [(0, 10, 255), (100, 20, 128), (200, 30, 0)]
        np.testing.assert_array_equal(table, expected_table(5, controls))
        with pytest.raises(colortable.ColorTableException, match="already exists"):
            colortable.addRamp("mine", "0", "0", "0")
    finally:
        colortable.RAMP.pop("mine", None)
    with pytest.raises(colortable.ColorTableException, match="already exists"):
        colortable.addRamp("Blues", "0", "0", "0")
    with pytest.raises(colortable.ColorTableException, match="string"):
        colortable.addRamp("other", [0, 1], "0 1", "0 1")
    with pytest.raises(colortable.ColorTableException, match="different numbers"):
        colortable.addRamp("other", "0 1", "0 1 2", "0 1")
    with pytest.raises(colortable.ColorTableException, match="0..255"):
        colortable.addRamp("other", "0 300", "0 1", "0 1")
    assert "other" not in colortable.RAMP


def test_exception_classes():
    assert issubclass(colortable.ColorTableException, Exception)
    assert issubclass(colortable.ColorTableMissingException, colortable.ColorTableException)


# ---------------------------------------------------------------------------------------
# genTable
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,n", [
    ("Blues", 256), ("RdYlGn", 100), ("Set1", 7), ("gray", 256), ("rainbow", 50),
    ("Blues", 1), ("RdYlGn", 3000),
])
def test_gen_table_interpolation(name, n):
    table = colortable.genTable(n, name)
    assert table.shape == (4, n) and table.dtype == np.uint8
    np.testing.assert_array_equal(table, expected_table(n, KNOWN_CONTROLS[name]))


@pytest.mark.parametrize("name", COLORBREWER + MATPLOTLIB)
def test_gen_table_every_ramp(name):
    table = colortable.genTable(64, name)
    np.testing.assert_array_equal(table, expected_table(64, controls_of(name).T))
    np.testing.assert_array_equal(table[:3, 0], controls_of(name)[:, 0])
    np.testing.assert_array_equal(table[:3, -1], controls_of(name)[:, -1])


def test_gen_table_color_points():
    points = [0, 10, 100]
    table = colortable.genTable(100, "rainbow", colorPoints=points)
    np.testing.assert_array_equal(table, expected_table(100, KNOWN_CONTROLS["rainbow"], points))
    with pytest.raises(colortable.ColorTableException, match="3 control"):
        colortable.genTable(100, "rainbow", colorPoints=[0, 100])
    with pytest.raises(colortable.ColorTableException, match="increasing"):
        colortable.genTable(100, "rainbow", colorPoints=[0, 80, 50])


def test_gen_table_ignore_value():
    table = colortable.genTable(20, "viridis", ignoreVal=5)
    np.testing.assert_array_equal(table[:, 5], [0, 0, 0, 0])
    expected = expected_table(20, controls_of("viridis").T)
    expected[:, 5] = 0
    np.testing.assert_array_equal(table, expected)
    with pytest.raises(colortable.ColorTableException, match="ignoreVal"):
        colortable.genTable(20, "viridis", ignoreVal=20)


def test_gen_table_random():
    table = colortable.genTable(1000, "RANDOM", ignoreVal=0)
    assert table.shape == (4, 1000) and table.dtype == np.uint8
    np.testing.assert_array_equal(table[:, 0], 0)
    np.testing.assert_array_equal(table[3, 1:], 255)
    assert table[:3].max() <= 254
    assert len(np.unique(table[:3])) > 100


def test_gen_table_unknown_ramp_lists_names():
    with pytest.raises(colortable.ColorTableException) as info:
        colortable.genTable(10, "NoSuchRamp")
    assert "NoSuchRamp" in str(info.value) and "viridis" in str(info.value)


# ---------------------------------------------------------------------------------------
# getTable / setTable
# ---------------------------------------------------------------------------------------

def raw_rat_columns(filename):
    ds = gdal.Open(filename)
    table = ds.GetRasterBand(1).GetDefaultRAT()
    result = {table.GetNameOfCol(i): (table.GetUsageOfCol(i), table.ReadAsArray(i))
              for i in range(table.GetColumnCount())}
    nrows = table.GetRowCount()
    ds = None
    return result, nrows


@pytest.mark.parametrize("driver,ext", [("HFA", ".img"), ("GTiff", ".tif")])
def test_set_table_rat_round_trip(tmp_path, driver, ext):
    fn = thematic(tmp_path, driver, ext)
    rat.writeColumn(fn, "other", np.arange(7) * 2)
    table = colortable.genTable(7, "Spectral", ignoreVal=0)
    colortable.setTable(fn, table)
    got = colortable.getTable(fn)
    assert got.dtype == np.uint8 and got.shape == (4, 7)
    np.testing.assert_array_equal(got, table)
    columns, nrows = raw_rat_columns(fn)
    assert nrows == 7
    by_usage = {usage: values for usage, values in columns.values()}
    for row, usage in enumerate((gdal.GFU_Red, gdal.GFU_Green, gdal.GFU_Blue, gdal.GFU_Alpha)):
        np.testing.assert_array_equal(by_usage[usage], table[row])
    np.testing.assert_array_equal(columns["other"][1], np.arange(7) * 2)
    assert open_fds(fn) == 0


def test_set_table_rewrites_existing_columns_and_row_count(tmp_path):
    fn = write_raster(tmp_path / "t.tif", np.zeros((4, 4), np.int16), thematic=True)
    colortable.setTable(fn, colortable.genTable(10, "Blues"))
    table = colortable.genTable(4, "Reds")
    colortable.setTable(fn, table)
    columns, nrows = raw_rat_columns(fn)
    assert nrows == 4
    assert sorted(columns) == ["Alpha", "Blue", "Green", "Red"]
    np.testing.assert_array_equal(colortable.getTable(fn), table)


def test_set_table_colour_table_api(tmp_path):
    fn = thematic(tmp_path, "GTiff", ".tif", dtype=np.uint8)
    table = colortable.genTable(7, "viridis")
    colortable.setTable(fn, table, colorTableAPI=True)
    ds = gdal.Open(fn)
    ct = ds.GetRasterBand(1).GetColorTable()
    entries = np.array([ct.GetColorEntry(i) for i in range(ct.GetCount())]).T
    ds = None
    np.testing.assert_array_equal(entries[:, :7], table)  # TIFF pads to 256 entries
    assert rat.getColumnNames(fn) == []


def test_set_table_api_on_hfa_keeps_alpha(tmp_path):
    fn = thematic(tmp_path)
    table = colortable.genTable(7, "Set2", ignoreVal=3)
    colortable.setTable(fn, table, colorTableAPI=True)
    got = rat.getColorTable(fn)
    np.testing.assert_array_equal(got[:, 1:].T, table)


def test_set_table_on_dataset_second_band(tmp_path):
    data = np.zeros((2, 4, 4), np.int32)
    fn = write_raster(tmp_path / "two.img", data, driver="HFA", thematic=True)
    table = colortable.genTable(5, "magma")
    ds = gdal.Open(fn, gdal.GA_Update)
    colortable.setTable(ds, table, bandNumber=2)
    np.testing.assert_array_equal(colortable.getTable(ds, bandNumber=2), table)
    ds = None
    np.testing.assert_array_equal(colortable.getTable(fn, bandNumber=2), table)
    with pytest.raises(colortable.ColorTableMissingException):
        colortable.getTable(fn, bandNumber=1)


def test_get_table_missing(tmp_path):
    plain = write_raster(tmp_path / "p.tif", np.zeros((4, 4), np.int16))
    with pytest.raises(colortable.ColorTableMissingException, match="no raster attribute"):
        colortable.getTable(plain)
    fn = thematic(tmp_path)
    rat.writeColumn(fn, "x", [1, 2, 3])
    with pytest.raises(colortable.ColorTableMissingException, match="Red"):
        colortable.getTable(fn)
    rat.writeColumn(fn, "Red", [1, 2, 3], colUsage=gdal.GFU_Red)
    with pytest.raises(colortable.ColorTableMissingException, match="Green"):
        colortable.getTable(fn)


@pytest.mark.parametrize("bad", [np.zeros((3, 5)), np.zeros(4), np.zeros((4, 0)),
                                 np.zeros((5, 4))])
def test_set_table_bad_shape(tmp_path, bad):
    fn = thematic(tmp_path)
    with pytest.raises(rioserrors.ArrayShapeError, match=r"\(4, n\)"):
        colortable.setTable(fn, bad)


def test_set_table_bad_values(tmp_path):
    fn = thematic(tmp_path)
    with pytest.raises(colortable.ColorTableException, match="0..255"):
        colortable.setTable(fn, np.full((4, 3), 300))


