"""apply() in the sequential style: the RIOS contract of spec §1-§5 and §7, on real files."""
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import DEFAULT_GT, read_raster, write_raster
from osgeo import gdal, osr

from sharedapplier import applier, readerinfo, rioserrors
from sharedapplier.imageio import Coord
from sharedapplier.pixelgrid import PixelGridDefn
from sharedapplier.structures import FilenameAssociations, OtherInputs


def gtiff_controls(**kw):
    c = applier.ApplierControls()
    c.setOutputDriverName("GTiff")
    for key, value in kw.items():
        getattr(c, key)(*value) if isinstance(value, tuple) else getattr(c, key)(value)
    return c


def assoc(**files):
    fa = FilenameAssociations()
    for k, v in files.items():
        setattr(fa, k, v)
    return fa


@pytest.fixture
def img(tmp_path, rng):
    arr = rng.integers(1, 250, (2, 300, 520)).astype(np.uint8)
    return write_raster(tmp_path / "img.tif", arr), arr


def test_called_once_per_block_in_row_major_order_with_and_without_otherargs(tmp_path, img):
    path, arr = img
    seen = []

    def f(info, inputs, outputs):
        seen.append((info.yblock, info.xblock))
        outputs.o = inputs.a

    applier.apply(f, assoc(a=path), assoc(o=str(tmp_path / "o.tif")), controls=gtiff_controls())
    assert seen == [(y, x) for y in range(2) for x in range(3)]

    def g(info, inputs, outputs, other):
        other.count += 1
        outputs.o = inputs.a

    other = OtherInputs()
    other.count = 0
    rtn = applier.apply(g, assoc(a=path), assoc(o=str(tmp_path / "o2.tif")), other,
                        controls=gtiff_controls())
    assert other.count == 6
    assert rtn.otherArgsList == [other] and rtn.otherArgsList[0] is other
    assert np.array_equal(read_raster(tmp_path / "o2.tif"), arr)


def test_inputs_are_3d_with_overlap_and_edge_blocks_truncated(tmp_path, img):
    path, arr = img
    shapes = []

    def f(info, inputs, outputs):
        shapes.append(inputs.a.shape)
        outputs.o = inputs.a
    c = gtiff_controls(setOverlap=3)
    applier.apply(f, assoc(a=path), assoc(o=str(tmp_path / "o.tif")), controls=c)
    assert shapes[0] == (2, 262, 262)
    assert shapes[2] == (2, 256 + 6, 520 - 512 + 6)
    assert shapes[-1] == (2, 300 - 256 + 6, 8 + 6)
    assert np.array_equal(read_raster(tmp_path / "o.tif"), arr)


def test_overlap_margin_holds_neighbour_pixels_and_nulls_outside(tmp_path, rng):
    arr = rng.integers(1, 100, (1, 20, 20)).astype(np.int16)
    path = write_raster(tmp_path / "a.tif", arr, nodata=-5)
    got = {}

    def f(info, inputs, outputs):
        got[(info.yblock, info.xblock)] = inputs.a.copy()
        outputs.o = inputs.a
    c = gtiff_controls(setOverlap=2, setWindowSize=(16, 16))
    c.setCreationOptions(["TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16"])
    applier.apply(f, assoc(a=path), assoc(o=str(tmp_path / "o.tif")), controls=c)
    padded = np.pad(arr, ((0, 0), (2, 2 + 12), (2, 2 + 12)), constant_values=-5)
    assert np.array_equal(got[(0, 0)], padded[:, 0:20, 0:20])
    assert np.array_equal(got[(1, 1)], padded[:, 16:16 + 8, 16:16 + 8])


def test_list_inputs_layer_selection_and_dtype_of_first_selected_band(tmp_path, rng):
    a = rng.integers(0, 100, (3, 50, 60)).astype(np.int16)
    paths = [write_raster(tmp_path / f"b{i}.tif", a + i) for i in range(2)]
    f32 = tmp_path / "mixed.tif"
    drv = gdal.GetDriverByName("MEM")
    mem = drv.Create("", 60, 50, 2, gdal.GDT_Float32)
    mem.SetGeoTransform(DEFAULT_GT)
    sr = osr.SpatialReference()
    sr.ImportFromEPSG(32755)
    mem.SetProjection(sr.ExportToWkt())
    mem.GetRasterBand(1).WriteArray(a[0].astype(np.float32) + 0.5)
    mem.GetRasterBand(2).WriteArray(a[1].astype(np.float32))
    gdal.GetDriverByName("GTiff").CreateCopy(str(f32), mem)
    seen = {}

    def f(info, inputs, outputs):
        seen["list"] = [x.shape for x in inputs.many]
        seen["sel"] = inputs.mixed.dtype, inputs.mixed.shape
        outputs.o = inputs.many[1][[2, 0]]
    c = gtiff_controls()
    c.selectInputImageLayers([2], imagename="mixed")
    applier.apply(f, assoc(many=paths, mixed=str(f32)), assoc(o=str(tmp_path / "o.tif")),
                  controls=c)
    assert seen["list"] == [(3, 50, 60), (3, 50, 60)]
    assert seen["sel"] == (np.float32, (1, 50, 60))
    assert np.array_equal(read_raster(tmp_path / "o.tif"), (a + 1)[[2, 0]])


def test_union_and_intersection_footprints_fill_nulls(tmp_path, rng):
    a = rng.integers(1, 50, (1, 40, 40)).astype(np.uint8)
    b = rng.integers(1, 50, (1, 40, 40)).astype(np.uint8)
    pa = write_raster(tmp_path / "a.tif", a, nodata=0)
    gt_b = (DEFAULT_GT[0] + 100, 10.0, 0.0, DEFAULT_GT[3] - 50, 0.0, -10.0)
    pb = write_raster(tmp_path / "b.tif", b, geotransform=gt_b, nodata=7)
    out = {}

    def f(info, inputs, outputs):
        out["a"], out["b"] = inputs.a.copy(), inputs.b.copy()
        outputs.o = inputs.a
    c = gtiff_controls(setFootprintType=applier.UNION)
    rtn = applier.apply(f, assoc(a=pa, b=pb), assoc(o=str(tmp_path / "u.tif")), controls=c)
    assert rtn.workinggrid.getDimensions() == (45, 50)
    assert np.array_equal(out["a"][0, :40, :40], a[0]) and (out["a"][0, 40:, :] == 0).all()
    assert np.array_equal(out["b"][0, 5:, 10:], b[0]) and (out["b"][0, :5, :] == 7).all()
    c = gtiff_controls()
    rtn = applier.apply(f, assoc(a=pa, b=pb), assoc(o=str(tmp_path / "i.tif")), controls=c)
    assert rtn.workinggrid.getDimensions() == (35, 30)
    assert np.array_equal(out["a"][0], a[0, 5:, 10:]) and np.array_equal(out["b"][0], b[0, :35, :30])


def test_mismatched_grids_need_reference_and_resample_with_it(tmp_path, rng):
    a = rng.integers(1, 50, (1, 40, 40)).astype(np.uint8)
    pa = write_raster(tmp_path / "a.tif", a)
    coarse = rng.integers(1, 50, (1, 20, 20)).astype(np.uint8)
    pc = write_raster(tmp_path / "c.tif", coarse,
                      geotransform=(DEFAULT_GT[0], 20.0, 0, DEFAULT_GT[3], 0, -20.0))

    def f(info, inputs, outputs):
        outputs.o = inputs.c
    with pytest.raises(rioserrors.ResampleNeededError, match="c.tif"):
        applier.apply(f, assoc(a=pa, c=pc), assoc(o=str(tmp_path / "o.tif")),
                      controls=gtiff_controls())
    c = gtiff_controls(setReferenceImage="a")
    applier.apply(f, assoc(a=pa, c=pc), assoc(o=str(tmp_path / "o.tif")), controls=c)
    expected = coarse[0].repeat(2, axis=0).repeat(2, axis=1)
    assert np.array_equal(read_raster(tmp_path / "o.tif")[0], expected)


def test_reprojection_onto_reference_in_another_crs(tmp_path, rng):
    a = rng.integers(1, 50, (1, 60, 60)).astype(np.uint8)
    pa = write_raster(tmp_path / "a.tif", a)
    ref = write_raster(tmp_path / "ref.tif", np.zeros((1, 10, 10), np.uint8), epsg=4326,
                       geotransform=(147.0, 0.0002, 0, -27.1, 0, -0.0002))
    grid = {}

    def f(info, inputs, outputs):
        grid["proj"] = info.getProjection()
        outputs.o = inputs.a
    c = gtiff_controls(setReferenceImage=ref)
    c.setWindowSize(256, 256)
    rtn = applier.apply(f, assoc(a=pa), assoc(o=str(tmp_path / "o.tif")), controls=c)
    assert rtn.workinggrid.xRes == 0.0002
    sr = osr.SpatialReference(wkt=grid["proj"])
    assert sr.GetAuthorityCode(None) == "4326"
    out = read_raster(tmp_path / "o.tif")
    assert set(np.unique(out)) <= set(np.unique(a)) | {0}


def test_bounds_from_reference_with_no_inputs(tmp_path):
    ref = write_raster(tmp_path / "ref.tif", np.zeros((1, 30, 30), np.uint8))

    def f(info, inputs, outputs):
        x, y = info.getBlockCoordArrays()
        outputs.o = (x > x.mean())[np.newaxis].astype(np.uint8)
    c = gtiff_controls(setFootprintType=applier.BOUNDS_FROM_REFERENCE, setReferenceImage=ref)
    applier.apply(f, assoc(), assoc(o=str(tmp_path / "o.tif")), controls=c)
    assert read_raster(tmp_path / "o.tif").shape == (1, 30, 30)


def test_files_for_extent(tmp_path, rng):
    a = rng.integers(1, 50, (1, 40, 40)).astype(np.uint8)
    pa = write_raster(tmp_path / "a.tif", a)
    small = write_raster(tmp_path / "s.tif", a[:, :10, :20])
    c = gtiff_controls(setFilesForExtent=[small])
    rtn = applier.apply(lambda i, inp, out: setattr(out, "o", inp.a), assoc(a=pa),
                        assoc(o=str(tmp_path / "o.tif")), controls=c)
    assert rtn.workinggrid.getDimensions() == (10, 20)


def test_no_common_extent_is_a_clear_error(tmp_path):
    pa = write_raster(tmp_path / "a.tif", np.ones((1, 10, 10), np.uint8))
    pb = write_raster(tmp_path / "b.tif", np.ones((1, 10, 10), np.uint8),
                      geotransform=(DEFAULT_GT[0] + 1000, 10.0, 0, DEFAULT_GT[3], 0, -10.0))
    with pytest.raises(rioserrors.IntersectionError, match="no area in common"):
        applier.apply(lambda *a: None, assoc(a=pa, b=pb), assoc(o=str(tmp_path / "o.tif")),
                      controls=gtiff_controls())


def test_info_object(tmp_path, img):
    path, arr = img
    records = []

    def f(info, inputs, outputs):
        x, y = info.getBlockCoordArrays()
        records.append(dict(
            tl=(info.blocktl.x, info.blocktl.y), first=info.isFirstBlock(),
            last=info.isLastBlock(), pct=info.getPercent(), x00=x[0, 0], y00=y[0, 0],
            shape=x.shape, fname=info.getFilenameFor(inputs.a),
            null=info.getNoDataValueFor(inputs.a, 2), total=info.getTotalSize(),
            blocks=info.getTotalBlocks(), size=info.getBlockSize(),
            rc=info.getPixRowColBlock(info.blocktl.x + 15, info.blocktl.y - 25)))
        outputs.o = inputs.a
    c = gtiff_controls(setOverlap=1)
    c.setInputNoDataValue([None, 9], imagename="a")
    applier.apply(f, assoc(a=path), assoc(o=str(tmp_path / "o.tif")), controls=c)
    r = records[4]
    assert r["tl"] == (DEFAULT_GT[0] + 256 * 10, DEFAULT_GT[3] - 256 * 10)
    assert r["x00"] == r["tl"][0] - 10 + 5 and r["y00"] == r["tl"][1] + 10 - 5
    assert r["shape"] == (300 - 256 + 2, 256 + 2)
    assert [x["first"] for x in records] == [True] + [False] * 5
    assert [x["last"] for x in records] == [False] * 5 + [True]
    assert [x["pct"] for x in records] == [0, 16, 33, 50, 66, 83]
    assert r["fname"] == path and r["null"] == 9 and r["null"].dtype == np.uint8
    assert r["total"] == (520, 300) and r["blocks"] == (3, 2) and r["size"] == (256, 44)
    assert r["rc"] == (3, 2)


def test_info_block_fields_are_the_same_in_any_reading_order(tmp_path, img):
    """The factory's info objects fill their block fields on first use: whichever is read
    first, all are right; a setter called before any read keeps its value."""
    path, _ = img
    seen = []

    def f(info, inputs, outputs):
        if len(seen) % 2:
            info.setBlockSize(7, 9)
            first = info.getFilenameFor(inputs.a)
        else:
            first = info.blockbr
        seen.append((isinstance(info, readerinfo.ReaderInfo), first, info.blocktl,
                     info.blockbr, info.getBlockCount(), info.getBlockSize(),
                     info.getFilenameFor(inputs.a), info.blocklookup))
        outputs.o = inputs.a
    applier.apply(f, assoc(a=path), assoc(o=str(tmp_path / "o.tif")), controls=gtiff_controls())
    assert len(seen) == 6
    for i, (isInfo, first, tl, br, count, size, fname, lookup) in enumerate(seen):
        xblock, yblock = i % 3, i // 3
        left, top = 256 * xblock, 256 * yblock
        right, bottom = min(left + 256, 520), min(top + 256, 300)
        assert isInfo and fname == path and lookup == {}
        assert tl == Coord(DEFAULT_GT[0] + left * DEFAULT_GT[1],
                           DEFAULT_GT[3] + top * DEFAULT_GT[5])
        assert br == Coord(DEFAULT_GT[0] + right * DEFAULT_GT[1],
                           DEFAULT_GT[3] + bottom * DEFAULT_GT[5])
        assert count == (xblock, yblock)
        assert size == ((7, 9) if i % 2 else (right - left, bottom - top))
        assert first == (path if i % 2 else br)
    grid = PixelGridDefn(xMin=0, xMax=8, yMin=0, yMax=8, xRes=1, yRes=1, projection="")
    info = readerinfo.ReaderInfoFactory(grid, 4, 4, 0, None).make(
        applier.ApplierBlockDefn(0, 0, 4, 4), {}, {}, {})
    with pytest.raises(AttributeError, match="noSuchField"):
        assert info.noSuchField is None


def test_getnodatavaluefor_without_null_is_none(tmp_path, img):
    path, _ = img
    got = []

    def f(info, inputs, outputs):
        got.append(info.getNoDataValueFor(inputs.a))
        outputs.o = inputs.a
    applier.apply(f, assoc(a=path), assoc(o=str(tmp_path / "o.tif")), controls=gtiff_controls())
    assert got[0] is None


def test_output_creation_metadata_and_stats(tmp_path, rng):
    a = rng.integers(0, 40, (2, 300, 300)).astype(np.int16)
    pa = write_raster(tmp_path / "a.tif", a)
    calls = []

    def before_close(ds, tag):
        calls.append((ds.RasterCount, tag))
    c = gtiff_controls()
    c.setThematic(True)
    c.setLayerNames(["first", "second"])
    c.setStatsIgnore(3)
    c.setCallBeforeClose(before_close, ("x",))
    out = str(tmp_path / "o.tif")
    applier.apply(lambda i, inp, o: setattr(o, "o", inp.a), assoc(a=pa), assoc(o=out), controls=c)
    ds = gdal.Open(out)
    b2 = ds.GetRasterBand(2)
    assert ds.GetRasterBand(1).GetDescription() == "first" and b2.GetDescription() == "second"
    assert b2.GetMetadataItem("LAYER_TYPE") == "thematic" and b2.GetNoDataValue() == 3
    valid = a[1][a[1] != 3]
    assert float(b2.GetMetadataItem("STATISTICS_MEAN")) == pytest.approx(valid.mean(), abs=1e-6)
    assert float(b2.GetMetadataItem("STATISTICS_STDDEV")) == pytest.approx(valid.std(), abs=1e-6)
    assert float(b2.GetMetadataItem("STATISTICS_MINIMUM")) == valid.min()
    assert b2.GetMetadataItem("STATISTICS_EXCLUDEDVALUES") == "3.0"
    assert calls == [(2, "x")]


@pytest.mark.parametrize("driver,ext", [("HFA", ".img"), ("ENVI", ".bsq"), ("GTiff", ".tif")])
def test_output_drivers_write_same_pixels(tmp_path, rng, driver, ext):
    a = rng.random((1, 300, 280)).astype(np.float32)
    pa = write_raster(tmp_path / "a.tif", a)
    out = str(tmp_path / ("o" + ext))
    c = applier.ApplierControls()
    c.setOutputDriverName(driver)
    applier.apply(lambda i, inp, o: setattr(o, "o", inp.a * 2), assoc(a=pa), assoc(o=out),
                  controls=c)
    assert np.array_equal(read_raster(out), a * 2)
    assert gdal.Open(out).GetDriver().ShortName == driver


def test_pyramids_made_for_big_outputs(tmp_path):
    a = np.arange(1024 * 1024, dtype=np.uint32).reshape(1, 1024, 1024) % 251
    pa = write_raster(tmp_path / "a.tif", a.astype(np.uint8))
    out = str(tmp_path / "o.img")
    applier.apply(lambda i, inp, o: setattr(o, "o", inp.a), assoc(a=pa), assoc(o=out))
    ds = gdal.Open(out)
    band = ds.GetRasterBand(1)
    assert band.GetOverviewCount() == 1
    assert np.array_equal(band.GetOverview(0).ReadAsArray(), a[0, 2::4, 2::4])


def test_gtiff_window_must_be_block_multiple(tmp_path, img):
    path, _ = img
    c = gtiff_controls(setWindowSize=(128, 128))
    with pytest.raises(rioserrors.ImageOpenError, match="multiples of GTiff block"):
        applier.apply(lambda i, inp, o: setattr(o, "o", inp.a), assoc(a=path),
                      assoc(o=str(tmp_path / "o.tif")), controls=c)
    assert not os.path.exists(tmp_path / "o.tif")


@pytest.mark.parametrize("bad,error,match", [
    (lambda a: a[0], rioserrors.ArrayShapeError, "3-D"),
    (lambda a: a > 3, rioserrors.ImageOpenError, "bool"),
    (None, rioserrors.OutputMissingError, "did not set output 'o'"),
])
def test_bad_user_outputs_give_clear_errors_and_no_file(tmp_path, img, bad, error, match):
    path, _ = img
    out = tmp_path / "o.tif"

    def f(info, inputs, outputs):
        if bad is not None:
            outputs.o = bad(inputs.a)
    with pytest.raises(error, match=match):
        applier.apply(f, assoc(a=path), assoc(o=str(out)), controls=gtiff_controls())
    assert not out.exists()


def test_missing_output_is_also_a_keyerror(tmp_path, img):
    path, _ = img
    with pytest.raises(KeyError):
        applier.apply(lambda *a: None, assoc(a=path), assoc(o=str(tmp_path / "o.tif")),
                      controls=gtiff_controls())


def test_user_exception_propagates_unchanged_and_removes_partial_output(tmp_path, img):
    path, _ = img
    out = tmp_path / "o.tif"

    def f(info, inputs, outputs):
        if not info.isFirstBlock():
            raise ZeroDivisionError("boom")
        outputs.o = inputs.a
    with pytest.raises(ZeroDivisionError):
        applier.apply(f, assoc(a=path), assoc(o=str(out)), controls=gtiff_controls())
    assert not out.exists()


def test_bad_inputs_name_the_file(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a raster\n")
    for name, match in [(str(tmp_path / "missing.tif"), "does not exist"),
                        (str(text), "neither as a raster nor as a vector")]:
        with pytest.raises(rioserrors.FileOpenError, match=match) as e:
            applier.apply(lambda *a: None, assoc(a=name), assoc(o=str(tmp_path / "o.tif")))
        assert name in str(e.value)


def test_unwritable_output_folder(tmp_path, img):
    path, _ = img
    with pytest.raises(rioserrors.PermissionError, match="does not exist"):
        applier.apply(lambda *a: None, assoc(a=path), assoc(o=str(tmp_path / "no" / "o.tif")))


def test_controls_validation(tmp_path, img):
    path, _ = img
    c = applier.ApplierControls()
    c.setThematic(True, imagename="nonesuch")
    with pytest.raises(ValueError, match="nonesuch"):
        applier.apply(lambda *a: None, assoc(a=path), assoc(o="o.tif"), controls=c)
    c = applier.ApplierControls()
    c.setApproxStats(True)
    c.setOmitPyramids(True)
    with pytest.raises(ValueError, match="approxStats"):
        applier.apply(lambda *a: None, assoc(a=path), assoc(o="o.tif"), controls=c)
    c = applier.ApplierControls()
    c.setFootprintType(7)
    with pytest.raises(ValueError, match="Footprint"):
        applier.apply(lambda *a: None, assoc(a=path), assoc(o="o.tif"), controls=c)
    with pytest.raises(ValueError, match="BOUNDS_FROM_REFERENCE"):
        applier.apply(lambda *a: None, assoc(), assoc(o="o.tif"))


def test_controls_defaults_and_per_image_options():
    c = applier.ApplierControls()
    assert (c.windowxsize, c.windowysize, c.overlap, c.footprint) == (256, 256, 0, 0)
    assert c.drivername == "HFA" and c.statsIgnore == 0 and c.resampleMethod == "near"
    c.setStatsIgnore(5, imagename="x")
    assert c.getOptionForImagename("statsIgnore", "x") == 5
    assert c.getOptionForImagename("statsIgnore", "y") == 0
    c.setCalcStats(False, imagename="x")
    assert c.getOptionForImagename("omitPyramids", "x") is True and c.calcStats is True


def test_constants_on_applier():
    assert (applier.INTERSECTION, applier.UNION, applier.BOUNDS_FROM_REFERENCE) == (0, 1, 2)
    for name in ("CW_NONE", "CW_THREADS", "CW_SUBPROC", "CW_PBS", "CW_SLURM", "CW_AWSBATCH",
                 "CW_ECS", "CW_PROCESSES"):
        assert getattr(applier, name) == name
    assert applier.DEFAULT_RESAMPLEMETHOD == "near"
    assert applier.DEFAULTDRIVERNAME == os.getenv("RIOS_DFLT_DRIVER", "HFA")


def test_environment_variables_set_defaults():
    env = dict(os.environ, RIOS_DFLT_DRIVER="GTiff", RIOS_DFLT_BLOCKXSIZE="512",
               RIOS_DFLT_OVERLAP="2", RIOS_DFLT_CREOPT_GTiff="TILED=YES COMPRESS=LZW",
               RIOS_DFLT_OVERVIEWLEVELS="2,4")
    code = ("from sharedapplier import applier as a; c = a.ApplierControls(); "
            "print(c.drivername, c.windowxsize, c.overlap, a.dfltDriverOptions['GTiff'], "
            "c.overviewLevels)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "GTiff 512 2 ['TILED=YES', 'COMPRESS=LZW'] [2, 4]"


def test_resampling_null_stops_smearing(tmp_path):
    a = np.zeros((1, 40, 40), np.uint8)
    a[:, :, 20:] = 200
    pa = write_raster(tmp_path / "a.tif", a)
    ref = write_raster(tmp_path / "ref.tif", np.zeros((1, 27, 27), np.uint8),
                       geotransform=(DEFAULT_GT[0], 15.0, 0, DEFAULT_GT[3], 0, -15.0))

    def run(nodata):
        c = gtiff_controls(setReferenceImage=ref, setResampleMethod="cubic")
        if nodata is not None:
            c.setInputNoDataValue(nodata, imagename="a")
        out = str(tmp_path / f"o{nodata}.tif")
        applier.apply(lambda i, inp, o: setattr(o, "o", inp.a), assoc(a=pa), assoc(o=out),
                      controls=c)
        return set(np.unique(read_raster(out)).tolist())
    assert run(None) - {0, 200}
    assert run(0) <= {0, 200}


class RecordingProgress:
    def __init__(self):
        self.values = []

    def setProgress(self, value):
        self.values.append(value)


def test_progress_reports_each_percent_change_up_to_100(tmp_path, img):
    path, _ = img
    progress = RecordingProgress()
    c = gtiff_controls(setProgress=progress)
    applier.apply(lambda i, inp, o: setattr(o, "o", inp.a), assoc(a=path),
                  assoc(o=str(tmp_path / "o.tif")), controls=c)
    assert progress.values == [0, 17, 33, 50, 67, 83, 100]


@pytest.mark.parametrize("driver,ext", [("HFA", ".img"), ("GTiff", ".tif")])
def test_auto_colour_table_on_thematic_output(tmp_path, driver, ext):
    classes = (np.arange(60 * 60).reshape(1, 60, 60) % 7).astype(np.uint8)
    pa = write_raster(tmp_path / "a.tif", classes)
    out = str(tmp_path / ("o" + ext))
    c = applier.ApplierControls()
    c.setOutputDriverName(driver)
    c.setThematic(True)
    c.setStatsIgnore(None)
    c.setAutoColorTableType("rainbow")
    applier.apply(lambda i, inp, o: setattr(o, "o", inp.a), assoc(a=pa), assoc(o=out),
                  controls=c)
    ds = gdal.Open(out)
    table = ds.GetRasterBand(1).GetColorTable()
    assert table is not None and table.GetCount() >= 7
    assert table.GetColorEntry(0)[:3] == (255, 0, 0)
