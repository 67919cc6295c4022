"""Tests of sharedapplier.fileinfo on real files written by GDAL/OGR."""
import os

import numpy as np
import pytest
from conftest import write_raster
from osgeo import gdal, ogr, osr

from sharedapplier import fileinfo, rioserrors
from sharedapplier.fileinfo import (
    ColumnStats,
    ImageFileStats,
    ImageInfo,
    ImageLayerStats,
    RatStats,
    VectorFileInfo,
    VectorLayerInfo,
    geometryTypeStringDict,
    preventGdal3axisSwap,
)

GT = (500000.0, 10.0, 0.0, 7000000.0, 0.0, -20.0)


@pytest.fixture
def gdal_exceptions_off():
    """Run a test with GDAL exceptions off, restoring the previous state afterwards."""
    was_on = gdal.GetUseExceptions()
    gdal.DontUseExceptions()
    yield
    if was_on:
        gdal.UseExceptions()


def open_files_of_this_process():
    names = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            names.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return names


def assert_not_open(path):
    assert os.path.realpath(str(path)) not in open_files_of_this_process()


@pytest.fixture
def three_band_img(tmp_path):
    data = np.arange(3 * 6 * 8, dtype=np.int16).reshape(3, 6, 8)
    # HFA keeps a no-data value per band (GTiff has one for the whole file)
    path = write_raster(tmp_path / "img.img", data, geotransform=GT, driver="HFA",
                        nodata=[-1, None, 7], thematic=True)
    ds = gdal.Open(path, gdal.GA_Update)
    for i, name in enumerate(["red", "green", "blue"]):
        ds.GetRasterBand(i + 1).SetDescription(name)
    ds = None
    return path


# ---- ImageInfo -----------------------------------------------------------------------------

def test_imageinfo_attributes(three_band_img):
    info = ImageInfo(three_band_img)
    assert (info.nrows, info.ncols, info.rasterCount) == (6, 8, 3)
    assert (info.xMin, info.xMax, info.yMin, info.yMax) == (500000.0, 500080.0,
                                                            6999880.0, 7000000.0)
    assert (info.xRes, info.yRes) == (10.0, 20.0)
    assert info.transform == GT
    assert info.lnames == ["red", "green", "blue"]
    assert info.nodataval == [-1.0, None, 7.0]
    assert all(v is None or type(v) is float for v in info.nodataval)
    assert info.layerType == "thematic"
    assert info.dataType == gdal.GDT_Int16 and info.dataTypeName == "Int16"
    ds = gdal.Open(three_band_img)
    assert info.projection == ds.GetProjection()
    ds = None
    assert_not_open(three_band_img)


def test_imageinfo_omitperband(three_band_img):
    info = ImageInfo(three_band_img, omitPerBand=True)
    assert info.lnames == [] and info.nodataval == []
    assert info.layerType == "thematic" and info.dataType == gdal.GDT_Int16


def test_imageinfo_hfa_and_athematic(tmp_path):
    path = write_raster(tmp_path / "a.img", np.ones((4, 5), np.float32), driver="HFA")
    info = ImageInfo(path)
    assert info.dataTypeName == "Float32" and info.nodataval == [None]
    assert info.layerType in (None, "athematic")
    assert_not_open(path)


def test_imageinfo_str_order_and_format(three_band_img):
    info = ImageInfo(three_band_img)
    lines = str(info).split("\n")
    names = ["nrows", "ncols", "rasterCount", "xMin", "xMax", "yMin", "yMax", "xRes", "yRes",
             "lnames", "layerType", "dataType", "dataTypeName", "nodataval", "transform",
             "projection"]
    starts = [line for line in lines if line[:20].strip() in names and line[:1] != " "]
    assert [s[:20].strip() for s in starts] == names
    assert lines[0] == "nrows".ljust(20) + "6"
    assert "xMin".ljust(20) + "500000.0" in lines


def test_layer_number_and_name(three_band_img):
    info = ImageInfo(three_band_img)
    assert info.layerNumberFromName("green") == 2
    assert info.layerNumberFromName("nothing") == 0
    assert info.layerNameFromNumber(3) == "blue"
    for bad in (0, 4):
        with pytest.raises(rioserrors.GDALLayerNumberError):
            info.layerNameFromNumber(bad)


def test_getcorners_native(three_band_img):
    info = ImageInfo(three_band_img)
    assert info.getCorners() == (500000.0, 7000000.0, 500080.0, 7000000.0,
                                 500080.0, 6999880.0, 500000.0, 6999880.0)


def independent_corners_latlong(info):
    src = osr.SpatialReference()
    src.ImportFromWkt(info.projection)
    dst = osr.SpatialReference()
    dst.ImportFromEPSG(4326)
    for sr in (src, dst):
        sr.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    ct = osr.CoordinateTransformation(src, dst)
    out = []
    for x, y in [(info.xMin, info.yMax), (info.xMax, info.yMax),
                 (info.xMax, info.yMin), (info.xMin, info.yMin)]:
        out.extend(ct.TransformPoint(x, y)[:2])
    return out


@pytest.mark.parametrize("how", ["epsg_int", "epsg_str", "wkt", "proj4"])
def test_getcorners_reprojected(three_band_img, how):
    info = ImageInfo(three_band_img)
    sr = osr.SpatialReference()
    sr.ImportFromEPSG(4326)
    kwargs = {"epsg_int": {"outEPSG": 4326}, "epsg_str": {"outEPSG": "4326"},
              "wkt": {"outWKT": sr.ExportToWkt()},
              "proj4": {"outPROJ4": "+proj=longlat +datum=WGS84 +no_defs"}}[how]
    corners = info.getCorners(**kwargs)
    assert corners == pytest.approx(independent_corners_latlong(info), abs=1e-9)
    assert 146 < corners[0] < 148 and -28 < corners[1] < -26  # lon first


@pytest.mark.parametrize("exceptions", ["on", "off"])
def test_imageinfo_missing_file(tmp_path, exceptions, request):
    if exceptions == "off":
        request.getfixturevalue("gdal_exceptions_off")
    path = tmp_path / "missing.tif"
    with pytest.raises(rioserrors.FileOpenError) as excinfo:
        ImageInfo(path)
    message = str(excinfo.value)
    assert f"Unable to open '{path}' as a raster" in message
    assert "No such file" in message
    if exceptions == "on":
        assert isinstance(excinfo.value.__cause__, RuntimeError)


@pytest.mark.parametrize("exceptions", ["on", "off"])
def test_imageinfo_not_a_raster(tmp_path, exceptions, request):
    if exceptions == "off":
        request.getfixturevalue("gdal_exceptions_off")
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    with pytest.raises(rioserrors.FileOpenError, match="notes.txt.*not recognized"):
        ImageInfo(text)
    with pytest.raises(rioserrors.FileOpenError, match="polys.gpkg"):
        ImageInfo(make_gpkg(tmp_path))


# ---- ImageLayerStats / ImageFileStats ------------------------------------------------------

def write_stats_file(tmp_path):
    path = write_raster(tmp_path / "stats.tif", np.zeros((2, 3, 4), np.uint8))
    ds = gdal.Open(path, gdal.GA_Update)
    ds.GetRasterBand(1).SetMetadata({
        "STATISTICS_MEAN": "52", "STATISTICS_STDDEV": "1.5", "STATISTICS_MINIMUM": "3",
        "STATISTICS_MAXIMUM": "250", "STATISTICS_MEDIAN": "49", "STATISTICS_MODE": "48",
        "STATISTICS_SKIPFACTORX": "1", "STATISTICS_SKIPFACTORY": "1",
        "STATISTICS_HISTOMIN": "0", "STATISTICS_HISTOMAX": "255",
        "STATISTICS_HISTONUMBINS": "4", "STATISTICS_HISTOBINVALUES": "5|0|17|2|"})
    ds = None
    return path


def test_imagelayerstats_from_metadata(tmp_path):
    path = write_stats_file(tmp_path)
    ds = gdal.Open(path)
    stats = ImageLayerStats(ds.GetRasterBand(1))
    empty = ImageLayerStats(ds.GetRasterBand(2))
    ds = None
    assert stats.mean == 52 and type(stats.mean) is int
    assert stats.stddev == 1.5 and type(stats.stddev) is float
    assert (stats.min, stats.max, stats.median, stats.mode) == (3, 250, 49, 48)
    assert (stats.skipfactorx, stats.skipfactory) == (1, 1)
    assert (stats.histoMin, stats.histoMax, stats.histoNumBins) == (0, 255, 4)
    assert stats.histoCounts == [5, 0, 17, 2]
    assert str(stats) == "Mean: 52, Stddev: 1.5, Min: 3, Max: 250, Median: 49, Mode: 48"
    assert empty.mean is None and empty.histoCounts is None and empty.histoMax is None


def test_imagefilestats(tmp_path):
    path = write_stats_file(tmp_path)
    fstats = ImageFileStats(path)
    assert len(fstats) == 2
    assert fstats[0].mean == 52 and fstats[1].mean is None
    text = str(fstats)
    assert "Mean: 52" in text and "Mean: None" in text
    assert_not_open(path)


def test_imagefilestats_missing(tmp_path):
    with pytest.raises(rioserrors.FileOpenError, match="gone.tif"):
        ImageFileStats(tmp_path / "gone.tif")


# ---- RAT based statistics ------------------------------------------------------------------

HIST = np.array([40, 3, 0, 7, 11, 0, 2, 9], dtype=np.float64)
VALUE = np.array([1.0, -2.5, 100.0, 4.25, 8.0, -50.0, 3.0, 6.5])
CLASS = np.array([0, 10, 20, 30, 40, 50, 60, 70], dtype=np.int32)


def make_rat_file(tmp_path, nodata=0, pixelcount_usage=True, name="rat.img", driver="HFA"):
    """A thematic file with a RAT: Histogram (pixel counts), Value, Class, Label."""
    path = write_raster(tmp_path / name, np.arange(8, dtype=np.uint8).reshape(2, 4),
                        driver=driver, nodata=nodata, thematic=True)
    rat = gdal.RasterAttributeTable()
    usage = gdal.GFU_PixelCount if pixelcount_usage else gdal.GFU_Generic
    rat.CreateColumn("Histogram", gdal.GFT_Real, usage)
    rat.CreateColumn("Value", gdal.GFT_Real, gdal.GFU_Generic)
    rat.CreateColumn("Class", gdal.GFT_Integer, gdal.GFU_Generic)
    rat.CreateColumn("Label", gdal.GFT_String, gdal.GFU_Generic)
    rat.SetRowCount(len(HIST))
    rat.WriteArray(HIST, 0)
    rat.WriteArray(VALUE, 1)
    rat.WriteArray(CLASS, 2)
    rat.WriteArray(np.array([f"c{i}" for i in range(len(HIST))]), 3)
    ds = gdal.Open(path, gdal.GA_Update)
    ds.GetRasterBand(1).SetDefaultRAT(rat)
    ds = None
    return path


def expected_stats(values, weights):
    mean = np.sum(values * weights) / np.sum(weights)
    std = np.sqrt(np.sum(weights * (values - mean) ** 2) / np.sum(weights))
    used = weights != 0
    return dict(count=np.sum(weights), mean=mean, stddev=std, sum=np.sum(values * weights),
                min=values[used].min(), max=values[used].max())


def column_stats(path, column, **kwargs):
    ds = gdal.Open(path)
    band = ds.GetRasterBand(1)
    stats = ColumnStats(band, column, **kwargs)
    band = None
    ds = None
    return stats


def check(stats, expected):
    for key, value in expected.items():
        assert getattr(stats, key) == pytest.approx(value), key
    assert stats.median is None and stats.mode is None


def test_columnstats_weighted_excluding_null(tmp_path):
    path = make_rat_file(tmp_path)
    weights = HIST.copy()
    weights[0] = 0  # the image null is 0, so row 0 is left out
    stats = column_stats(path, "Value")
    check(stats, expected_stats(VALUE, weights))
    assert stats.min == -2.5 and stats.max == 8.0  # rows with zero count are ignored
    assert stats.count == 32 and type(stats.count) is int


def test_columnstats_including_null(tmp_path):
    path = make_rat_file(tmp_path)
    check(column_stats(path, "Value", includeImageNull=True), expected_stats(VALUE, HIST))


def test_columnstats_unweighted(tmp_path):
    path = make_rat_file(tmp_path)
    weights = np.ones(len(VALUE))
    weights[0] = 0
    stats = column_stats(path, "Value", histogramweighted=False)
    check(stats, expected_stats(VALUE, weights))
    assert stats.min == -50.0 and stats.max == 100.0 and stats.count == 7


def test_columnstats_integer_column_gives_ints(tmp_path):
    path = make_rat_file(tmp_path, nodata=None)
    stats = column_stats(path, "Class")
    check(stats, expected_stats(CLASS.astype(float), HIST))
    assert type(stats.min) is int and type(stats.max) is int and type(stats.sum) is int


def test_columnstats_weight_column_found_by_name(tmp_path):
    path = make_rat_file(tmp_path, pixelcount_usage=False, name="rat.tif", driver="GTiff")
    ds = gdal.Open(path)
    rat = ds.GetRasterBand(1).GetDefaultRAT()
    assert rat.GetUsageOfCol(0) != gdal.GFU_PixelCount
    rat = None
    ds = None
    weights = HIST.copy()
    weights[0] = 0
    check(column_stats(path, "Value"), expected_stats(VALUE, weights))


def test_columnstats_string_column_is_empty(tmp_path):
    path = make_rat_file(tmp_path)
    stats = column_stats(path, "Label")
    for attr in ("count", "mean", "stddev", "min", "max", "sum", "median", "mode"):
        assert getattr(stats, attr) is None


def test_columnstats_missing_column(tmp_path):
    path = make_rat_file(tmp_path)
    with pytest.raises(rioserrors.AttributeTableColumnError, match="NoSuchColumn"):
        column_stats(path, "NoSuchColumn")


def test_columnstats_zero_total_weight(tmp_path):
    path = write_raster(tmp_path / "z.img", np.zeros((2, 2), np.uint8), driver="HFA",
                        thematic=True)
    rat = gdal.RasterAttributeTable()
    rat.CreateColumn("Histogram", gdal.GFT_Real, gdal.GFU_PixelCount)
    rat.CreateColumn("Value", gdal.GFT_Real, gdal.GFU_Generic)
    rat.SetRowCount(3)
    rat.WriteArray(np.zeros(3), 0)
    rat.WriteArray(np.array([1.0, 2.0, 3.0]), 1)
    ds = gdal.Open(path, gdal.GA_Update)
    ds.GetRasterBand(1).SetDefaultRAT(rat)
    ds = None
    stats = column_stats(path, "Value")
    assert stats.mean is None and stats.stddev is None
    assert stats.min is None and stats.max is None and stats.count == 0


def test_ratstats_all_numeric_columns(tmp_path):
    path = make_rat_file(tmp_path)
    rs = RatStats(path)
    assert hasattr(rs, "Histogram") and hasattr(rs, "Value") and hasattr(rs, "Class")
    assert not hasattr(rs, "Label")
    weights = HIST.copy()
    weights[0] = 0
    check(rs.Value, expected_stats(VALUE, weights))
    assert_not_open(path)


def test_ratstats_columnlist_and_options(tmp_path):
    path = make_rat_file(tmp_path)
    rs = RatStats(path, columnlist=["Value"], includeImageNull=True, histogramweighted=False)
    assert list(vars(rs)) == ["Value"]
    check(rs.Value, expected_stats(VALUE, np.ones(len(VALUE))))


def test_ratstats_errors(tmp_path):
    path = make_rat_file(tmp_path)
    with pytest.raises(rioserrors.GDALLayerNumberError):
        RatStats(path, layernum=2)
    with pytest.raises(rioserrors.AttributeTableColumnError):
        RatStats(path, columnlist=["Nope"])
    with pytest.raises(rioserrors.FileOpenError, match="absent.img"):
        RatStats(tmp_path / "absent.img")


def test_histocounts_from_rat_pixelcount(tmp_path):
    path = make_rat_file(tmp_path)
    fstats = ImageFileStats(path)
    np.testing.assert_array_equal(fstats[0].histoCounts, HIST)


# ---- vectors -------------------------------------------------------------------------------

def make_gpkg(tmp_path):
    """A GeoPackage with a polygon layer (2 features, 3 fields) and a point layer."""
    path = str(tmp_path / "polys.gpkg")
    sr = osr.SpatialReference()
    sr.ImportFromEPSG(28355)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    layer = ds.CreateLayer("fields", sr, ogr.wkbPolygon)
    for name, ftype in (("name", ogr.OFTString), ("code", ogr.OFTInteger),
                        ("area", ogr.OFTReal)):
        layer.CreateField(ogr.FieldDefn(name, ftype))
    polys = [("a", 1, 50.0, "POLYGON((500000 6000000,500010 6000000,500010 6000005,"
                            "500000 6000005,500000 6000000))"),
             ("b", 2, 200.0, "POLYGON((500020 6000010,500040 6000010,500040 6000020,"
                             "500020 6000020,500020 6000010))")]
    for name, code, area, wkt in polys:
        feat = ogr.Feature(layer.GetLayerDefn())
        feat.SetField("name", name)
        feat.SetField("code", code)
        feat.SetField("area", area)
        feat.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        layer.CreateFeature(feat)
    points = ds.CreateLayer("points", sr, ogr.wkbPoint)
    feat = ogr.Feature(points.GetLayerDefn())
    feat.SetGeometry(ogr.CreateGeometryFromWkt("POINT(500001 6000001)"))
    points.CreateFeature(feat)
    ds.CreateLayer("multi", sr, ogr.wkbMultiPolygon)
    feat = layer = points = None
    ds = None
    return path


def test_vectorfileinfo(tmp_path):
    path = make_gpkg(tmp_path)
    info = VectorFileInfo(path)
    assert info.layerCount == 3 and len(info) == 3
    poly = info[0]
    assert poly.name == "fields" and poly.featureCount == 2
    assert (poly.xMin, poly.xMax, poly.yMin, poly.yMax) == (500000.0, 500040.0,
                                                            6000000.0, 6000020.0)
    assert poly.geomType == ogr.wkbPolygon and poly.geomTypeStr == "Polygon"
    assert poly.fieldCount == 3 and poly.fieldNames == ["name", "code", "area"]
    assert poly.fieldTypes == [ogr.OFTString, ogr.OFTInteger, ogr.OFTReal]
    assert poly.fieldTypeNames == ["String", "Integer", "Real"]
    assert poly.spatialRef.GetAuthorityCode(None) == "28355"
    assert poly.spatialRef.GetAxisMappingStrategy() == osr.OAMS_TRADITIONAL_GIS_ORDER
    assert info[1].geomTypeStr == "Point" and info[1].featureCount == 1
    assert info[2].geomType == ogr.wkbMultiPolygon and not hasattr(info[2], "geomTypeStr")
    assert_not_open(path)


def test_vectorfileinfo_str(tmp_path):
    text = str(VectorFileInfo(make_gpkg(tmp_path)))
    lines = text.split("\n")
    assert lines[0] == "Layer:0" and lines[1] == "  name: fields"
    assert "  featureCount: 2" in lines and "Layer:1" in lines and "Layer:2" in lines
    assert "  fieldNames: ['name', 'code', 'area']" in lines


def test_vectorlayerinfo_from_open_dataset(tmp_path):
    ds = ogr.Open(make_gpkg(tmp_path))
    layer_info = VectorLayerInfo(ds, 1)
    ds = None
    assert layer_info.name == "points" and layer_info.geomTypeStr == "Point"
    assert layer_info.xMin == 500001.0 and layer_info.yMax == 6000001.0


@pytest.mark.parametrize("exceptions", ["on", "off"])
def test_vectorfileinfo_unopenable(tmp_path, exceptions, request):
    if exceptions == "off":
        request.getfixturevalue("gdal_exceptions_off")
    missing = tmp_path / "nothing.gpkg"
    with pytest.raises(rioserrors.VectorLayerError, match="nothing.gpkg") as excinfo:
        VectorFileInfo(missing)
    assert f"Unable to open '{missing}' as a vector" in str(excinfo.value)
    raster = write_raster(tmp_path / "r.tif", np.zeros((2, 2), np.uint8))
    with pytest.raises(rioserrors.VectorLayerError, match="r.tif"):
        VectorFileInfo(raster)


def test_geometry_type_dict():
    assert geometryTypeStringDict == {1: "Point", 2: "Line", 3: "Polygon"}


# ---- spatial reference helpers -------------------------------------------------------------

def test_preventgdal3axisswap():
    sr = osr.SpatialReference()
    sr.ImportFromEPSG(4326)
    assert sr.GetAxisMappingStrategy() == osr.OAMS_AUTHORITY_COMPLIANT
    assert preventGdal3axisSwap(sr) is None
    assert sr.GetAxisMappingStrategy() == osr.OAMS_TRADITIONAL_GIS_ORDER
    utm = osr.SpatialReference()
    utm.ImportFromEPSG(32755)
    utm.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    lon, lat = osr.CoordinateTransformation(sr, utm).TransformPoint(147.0, -36.0)[:2]
    assert lon == pytest.approx(500000.0) and lat < 10000000


@pytest.mark.parametrize("osr_exceptions", [False, True])
def test_transform_points_marks_failures_as_inf(osr_exceptions):
    was_on = osr.GetUseExceptions()
    try:
        if osr_exceptions:
            osr.UseExceptions()
        else:
            osr.DontUseExceptions()
        utm = fileinfo.spatialRefFromEpsg(32755)
        latlong = fileinfo.spatialRefFromEpsg(4326)
        out = fileinfo.transformPoints([(1e12, 1e12), (500000.0, 6000000.0)], utm, latlong)
    finally:
        if was_on:
            osr.UseExceptions()
        else:
            osr.DontUseExceptions()
    assert np.all(np.isinf(out[0]))
    assert out[1] == pytest.approx([147.0, -36.1447181], abs=1e-6)


def test_spatial_ref_helpers_raise_our_error():
    with pytest.raises(rioserrors.ParameterError):
        fileinfo.spatialRefFromWkt("")
    with pytest.raises(rioserrors.ParameterError):
        fileinfo.spatialRefFromWkt("this is not WKT")


def test_transform_points_without_a_path_raises_our_error():
    local = osr.SpatialReference()
    local.SetLocalCS("site grid")
    with pytest.raises(rioserrors.ParameterError, match="Cannot transform"):
        fileinfo.transformPoints([(0.0, 0.0)], local, fileinfo.spatialRefFromEpsg(4326))
