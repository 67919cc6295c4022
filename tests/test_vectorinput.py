"""Vector inputs rasterised onto the working grid (spec §6), checked against OGR's own geometry."""
import numpy as np
import pytest
from conftest import DEFAULT_GT, write_raster
from osgeo import ogr, osr

from sharedapplier import applier, rioserrors
from sharedapplier.structures import CW_PROCESSES, ConcurrencyStyle, FilenameAssociations

X0, Y0 = DEFAULT_GT[0], DEFAULT_GT[3]


def make_gpkg(path, epsg=32755):
    """Two squares: 'low' (value 5) and 'high' (value 9), in a layer called 'fields'."""
    sr = osr.SpatialReference()
    sr.ImportFromEPSG(epsg)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = ds.CreateLayer("fields", sr, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("value", ogr.OFTInteger))
    for value, (c0, r0, c1, r1) in [(5, (2, 3, 12, 10)), (9, (20, 15, 35, 30))]:
        ring = ogr.Geometry(ogr.wkbLinearRing)
        for c, r in [(c0, r0), (c1, r0), (c1, r1), (c0, r1), (c0, r0)]:
            ring.AddPoint_2D(X0 + c * 10, Y0 - r * 10)
        poly = ogr.Geometry(ogr.wkbPolygon)
        poly.AddGeometry(ring)
        feat = ogr.Feature(layer.GetLayerDefn())
        feat.SetField("value", value)
        feat.SetGeometry(poly)
        layer.CreateFeature(feat)
    ds = None
    return str(path)


def expected_burn(value_low, value_high, null=0):
    out = np.full((40, 40), null, np.uint8)
    out[3:10, 2:12] = value_low
    out[15:30, 20:35] = value_high
    return out


def run(tmp_path, style=None, **options):
    img = write_raster(tmp_path / "img.tif", np.ones((1, 40, 40), np.uint8))
    vec = make_gpkg(tmp_path / "v.gpkg")
    infiles = FilenameAssociations()
    infiles.img, infiles.vec = img, vec
    outfiles = FilenameAssociations()
    outfiles.o = str(tmp_path / "o.tif")
    c = applier.ApplierControls()
    c.setOutputDriverName("GTiff")
    for setter, value in options.items():
        getattr(c, setter)(value, vectorname="vec")
    if style:
        c.setConcurrencyStyle(style)
    seen = {}

    def f(info, inputs, outputs):
        seen["name"] = info.getFilenameFor(inputs.vec)
        outputs.o = inputs.vec
    applier.apply(f, infiles, outfiles, controls=c)
    from conftest import read_raster
    return read_raster(outfiles.o)[0], seen


def test_burn_value_by_default(tmp_path):
    out, seen = run(tmp_path)
    assert np.array_equal(out, expected_burn(1, 1))
    assert seen["name"].endswith("v.gpkg")


def test_burn_attribute_and_null_and_layer_name(tmp_path):
    out, _ = run(tmp_path, setBurnAttribute="value", setVectorNull=3, setVectorlayer="fields")
    assert np.array_equal(out, expected_burn(5, 9, null=3))


@pytest.mark.parametrize("sql", ["value > 6", "SELECT * FROM fields WHERE value > 6"])
def test_filter_sql_where_clause_or_statement(tmp_path, sql):
    out, _ = run(tmp_path, setFilterSQL=sql, setBurnValue=2)
    assert np.array_equal(out, expected_burn(0, 2))


def test_vector_in_processes(tmp_path):
    style = ConcurrencyStyle(computeWorkerKind=CW_PROCESSES, numComputeWorkers=2)
    out, _ = run(tmp_path, style=style, setBurnAttribute="value")
    assert np.array_equal(out, expected_burn(5, 9))


def test_vector_in_another_projection_is_reprojected(tmp_path):
    img = write_raster(tmp_path / "img.tif", np.ones((1, 40, 40), np.uint8))
    utm = osr.SpatialReference()
    utm.ImportFromEPSG(32755)
    ll = osr.SpatialReference()
    ll.ImportFromEPSG(4326)
    for sr in (utm, ll):
        sr.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    tr = osr.CoordinateTransformation(utm, ll)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(tmp_path / "ll.gpkg"))
    layer = ds.CreateLayer("sq", ll, ogr.wkbPolygon)
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for c, r in [(5, 5), (35, 5), (35, 35), (5, 35), (5, 5)]:
        x, y, _ = tr.TransformPoint(X0 + c * 10, Y0 - r * 10)
        ring.AddPoint_2D(x, y)
    poly = ogr.Geometry(ogr.wkbPolygon)
    poly.AddGeometry(ring)
    feat = ogr.Feature(layer.GetLayerDefn())
    feat.SetGeometry(poly)
    layer.CreateFeature(feat)
    ds = None
    infiles = FilenameAssociations()
    infiles.img, infiles.vec = img, str(tmp_path / "ll.gpkg")
    outfiles = FilenameAssociations()
    outfiles.o = str(tmp_path / "o.tif")
    c = applier.ApplierControls()
    c.setOutputDriverName("GTiff")
    applier.apply(lambda i, inp, o: setattr(o, "o", inp.vec), infiles, outfiles, controls=c)
    from conftest import read_raster
    out = read_raster(outfiles.o)[0]
    assert out[10:30, 10:30].all() and not out[:3].any() and not out[:, -3:].any()


def test_unknown_layer_and_attribute_are_clear_errors(tmp_path):
    with pytest.raises(rioserrors.VectorLayerError, match="no layer named 'nope'"):
        run(tmp_path, setVectorlayer="nope")
    with pytest.raises(rioserrors.VectorAttributeError, match="no attribute 'height'"):
        run(tmp_path, setBurnAttribute="height")
