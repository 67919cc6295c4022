"""RIOS's names that scripts use: present where RIOS has them, and working.

The 1.x reader and writer, the deprecated 1.x concurrency setters, ``VersionObj`` and
``--version``, and the small helpers, checked on real files GDAL writes against numpy truth.
"""
import importlib
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import DEFAULT_GT, read_raster, write_raster
from osgeo import gdal, osr

import sharedapplier
from sharedapplier import (
    applier,
    calcstats,
    imageio,
    imagereader,
    imagewriter,
    ratapplier,
    rioserrors,
)
from sharedapplier.cpus import usableCpuCount
from sharedapplier.structures import (
    CW_NONE,
    CW_PBS,
    CW_PROCESSES,
    CW_SLURM,
    CW_SUBPROC,
    CW_THREADS,
    BlockAssociations,
    FilenameAssociations,
    TempfileManager,
    Timers,
)

MIGRATING = Path(__file__).resolve().parents[1] / "docs" / "migrating.rst"

# The RIOS names (module -> names, "Class.method" for methods) that we provide, from the
# 2.0.9 release and RIOS's development head.
PROVIDED = {
    "": ["RIOS_VERSION", "VersionObj", "VersionObj.leadingDigits", "VersionObj.parse",
         "__version__"],
    "applier": ["ApplierControls.emulateOldJobManager", "ApplierControls.setJobManagerType",
                "ApplierControls.setLoggingStream", "ApplierControls.setNumThreads",
                "reportWorkerException", "apply_singleCompute", "apply_multipleCompute",
                "getComputeWorkerManager", "readBlockAllFiles", "ReadWorkerMgr",
                "specialProjFixes", "writeBlock", "closeOutfiles", "DEFAULTDRIVERNAME",
                "DEFAULTCREATIONOPTIONS", "DEFAULTFOOTPRINT", "DEFAULTLOGGINGSTREAM"],
    "calcstats": ["SinglePassManager.checkDriverPyramidSupport", "dfltOverviewLvls"],
    "computemanager": ["AWSBatchComputeWorkerMgr", "ClassicBatchComputeWorkerMgr",
                       "ComputeWorkerManager", "ECSComputeWorkerMgr",
                       "SubprocComputeWorkerManager", "ThreadsComputeWorkerMgr",
                       "getComputeWorkerManager"],
    "imageio": ["GDALTypeToNumpyType", "NumpyTypeToGDALType"],
    "imagereader": ["DEFAULTFOOTPRINT", "DEFAULTLOGGINGSTREAM", "DEFAULTOVERLAP",
                    "DEFAULTWINDOWXSIZE", "DEFAULTWINDOWYSIZE", "ReadWorkerMgr",
                    "openForWorkingGrid", "readBlockAllFiles", "readBlockOneFile",
                    "readIntoArray", "reprojResolution", "reprojectionRequired",
                    "specialProjFixes", "ImageIterator", "ImageIterator.next", "ImageReader",
                    "ImageReader.allowResample", "ImageReader.close", "ImageReader.prepare",
                    "ImageReader.readBlock", "ImageReader.readBlockWithMargin"],
    "imagewriter": ["addAutoColorTable", "closeOutfiles", "deleteIfExisting",
                    "doubleCheckCreationOptions", "makeMinMaxList", "openOutfile",
                    "writeBlock", "ImageWriter", "ImageWriter.addAutoColorTable",
                    "ImageWriter.close", "ImageWriter.deleteIfExisting",
                    "ImageWriter.doubleCheckCreationOptions", "ImageWriter.getCurrentBlock",
                    "ImageWriter.getGDALDataset", "ImageWriter.reset",
                    "ImageWriter.setLayerNames", "ImageWriter.setThematic", "ImageWriter.write",
                    "ImageWriter.writeAt", "allnotNone", "anynotNone", "setDefaultDriver",
                    "checkForNanOrInf", "nanWarningFiles", "warnNanOrInf", "DEFAULTDRIVERNAME",
                    "DEFAULTCREATIONOPTIONS", "dfltDriverOptions", "DEFAULT_OVERVIEWLEVELS",
                    "DEFAULT_MINOVERVIEWDIM", "DEFAULT_OVERVIEWAGGREGRATIONTYPE",
                    "DEFAULT_AUTOCOLORTABLETYPE"],
    "inputcollection": ["InputCollection", "InputIterator"],
    "ratapplier": ["BlockCollection.clearCache", "BlockCollection.finaliseRowCount",
                   "BlockCollection.writeCache", "FileHandles.close", "FileHandles.getRatObj",
                   "FileHandles.getRowCount", "FileHandles.setRowCount",
                   "FileHandlesCollection.checkConsistency",
                   "FileHandlesCollection.checkExistingDS", "FileHandlesCollection.getRowCount",
                   "RatBlockAssociation.checkZarrfileParams", "RatBlockAssociation.clearCache",
                   "RatBlockAssociation.finaliseRowCount",
                   "RatBlockAssociation.guessNewRowCount", "RatBlockAssociation.writeCache"],
    "readerinfo": ["ReaderInfo.getGDALBandFor", "ReaderInfo.getGDALDatasetFor"],
    "vectorreader": ["DEFAULTBURNVALUE", "Vector", "VectorReader", "rasterizeProgressFunc"],
}

# The names left out on purpose: importable, raising NotProvidedError when used.
LEFT_OUT = ["applier.apply_singleCompute", "applier.apply_multipleCompute",
            "computemanager.ComputeWorkerManager", "computemanager.ThreadsComputeWorkerMgr",
            "computemanager.SubprocComputeWorkerManager",
            "computemanager.ClassicBatchComputeWorkerMgr",
            "computemanager.AWSBatchComputeWorkerMgr", "computemanager.ECSComputeWorkerMgr",
            "computemanager.getComputeWorkerManager", "imagereader.ReadWorkerMgr",
            "inputcollection.InputCollection", "inputcollection.InputIterator",
            "vectorreader.Vector", "vectorreader.VectorReader",
            "vectorreader.rasterizeProgressFunc"]


def lookup(dotted):
    """The object a dotted name (module part first, under sharedapplier) names."""
    moduleName, _, rest = dotted.partition(".")
    obj = importlib.import_module(f"sharedapplier.{moduleName}" if moduleName else
                                  "sharedapplier")
    for part in rest.split(".") if rest else []:
        obj = getattr(obj, part)
    return obj


@pytest.fixture(autouse=True)
def freshDeprecations(monkeypatch):
    """Each test sees each deprecation warning once, whatever ran before it."""
    monkeypatch.setattr(rioserrors, "deprecatedNamesWarned", set())
    monkeypatch.setattr(rioserrors, "deprecationAlreadyWarned", set())


def legacy(factory, *args, **kwargs):
    """Call a deprecated 1.x constructor or method, its DeprecationWarning expected."""
    with pytest.warns(DeprecationWarning):
        return factory(*args, **kwargs)


# ---------------------------------------------------------------------------------------
# Names


@pytest.mark.parametrize("module", sorted(PROVIDED))
def test_rios_names_are_provided(module):
    missing = []
    for name in PROVIDED[module]:
        try:
            lookup(f"{module}.{name}" if module else f".{name}")
        except AttributeError:
            missing.append(name)
    assert missing == []


@pytest.mark.parametrize("dotted", LEFT_OUT)
def test_names_left_out_are_documented_and_raise_a_clear_error(dotted):
    text = MIGRATING.read_text()
    section = text.split("Names left out on purpose", 1)[1]
    assert f"``{dotted}``" in section
    with pytest.raises(rioserrors.NotProvidedError, match="migrating.rst") as err:
        lookup(dotted)(1, two=2)
    assert isinstance(err.value, NotImplementedError)
    assert dotted in str(err.value)


def test_from_imports_of_left_out_names_work():
    from sharedapplier.computemanager import ThreadsComputeWorkerMgr  # noqa: F401
    from sharedapplier.inputcollection import InputCollection  # noqa: F401
    from sharedapplier.vectorreader import DEFAULTBURNVALUE
    assert DEFAULTBURNVALUE == 1


# ---------------------------------------------------------------------------------------
# Versions


def test_version_obj_parses_leading_digits_of_each_field():
    V = sharedapplier.VersionObj
    assert V.parse("3.6.2") == (3, 6, 2)
    assert V.parse("2.0.0rc1") == (2, 0, 0)
    assert V.parse("2.x.1") == (2, 1)
    assert V.parse(None) == ()
    assert V.leadingDigits("12abc") == "12"
    assert V.leadingDigits("abc") == ""
    assert V("1.10") > V("1.9") > V("1.8.9")
    assert V("3.6.0") == V("3.6.0rc2") != V("3.6.1")
    assert V("3.6") < V("3.6.0")                   # the int tuples are compared
    assert V(None) < V("0")
    assert V("3.6.2") >= "3.6" and V("3.6.2") < "3.10"
    assert sorted([V("2.0"), V("1.4.10"), V("1.4.9")]) == [V("1.4.9"), V("1.4.10"), V("2.0")]
    assert repr(V("2.0.9")) == "VersionObj('2.0.9')" and V("2.0.9").vstring == "2.0.9"


def test_versions():
    assert sharedapplier.RIOS_VERSION == "2.0.9"
    from importlib import metadata
    assert sharedapplier.__version__ == metadata.version("sharedapplier")
    assert sharedapplier.VersionObj(sharedapplier.__version__) >= "0.1"


def test_version_option_of_the_console_script():
    exe = os.path.join(sys.prefix, "bin", "sharedapplier")
    if not os.access(exe, os.X_OK):
        pytest.skip("the sharedapplier console script is not installed (pip install -e .)")
    done = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert sharedapplier.__version__ in done.stdout
    assert f"RIOS {sharedapplier.RIOS_VERSION}" in done.stdout


# ---------------------------------------------------------------------------------------
# RIOS 1.x concurrency on ApplierControls


def style(c):
    s = c.concurrency
    return (s.computeWorkerKind, s.numComputeWorkers)


def test_set_job_manager_type_then_num_threads_makes_that_kind(capsys):
    c = applier.ApplierControls()
    with pytest.warns(DeprecationWarning, match="setJobManagerType"):
        c.setJobManagerType("subproc")
    assert style(c) == (CW_NONE, 0)
    with pytest.warns(DeprecationWarning, match="setNumThreads"):
        c.setNumThreads(3)
    assert style(c) == (CW_SUBPROC, 3)
    err = capsys.readouterr().err
    assert "WARNING: ApplierControls.setNumThreads is deprecated" in err
    assert os.path.basename(__file__) in err       # printed at the caller's line


@pytest.mark.parametrize(("manager", "kind"), [("multiprocessing", CW_PROCESSES),
                                                ("slurm", CW_SLURM), ("PBS", CW_PBS)])
def test_num_threads_then_job_manager_type(manager, kind):
    c = applier.ApplierControls()
    legacy(c.setNumThreads, 2)
    legacy(c.setJobManagerType, manager)
    assert style(c) == (kind, 2)
    c.setNumThreads(1)          # warned once already
    assert style(c) == (CW_NONE, 0)


def test_num_threads_alone_means_compute_threads():
    if usableCpuCount() < 2:
        pytest.skip("CW_THREADS allows no more workers than CPUs")
    c = applier.ApplierControls()
    legacy(c.setNumThreads, 2)
    assert style(c) == (CW_THREADS, 2)


def test_deprecation_warns_once_per_name():
    c = applier.ApplierControls()
    legacy(c.setNumThreads, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c.setNumThreads(1)
        c.setNumThreads(1)


def test_emulate_old_job_manager_and_unknown_manager():
    c = applier.ApplierControls()
    c.numThreads, c.jobManagerType = 4, "pbs"
    legacy(c.emulateOldJobManager)
    assert style(c) == (CW_PBS, 4)
    with pytest.raises(rioserrors.ParameterError, match="condor.*no such job manager"):
        legacy(c.setJobManagerType, "condor")
    with pytest.raises(ImportError, match="no MPI job manager.*'slurm'") as raised:
        c.setJobManagerType("mpi")  # warned already, by the call above
    assert isinstance(raised.value, rioserrors.ParameterError)


def test_set_logging_stream_reaches_info(tmp_path):
    fn = write_raster(tmp_path / "a.tif", np.ones((1, 8, 8), np.uint8))
    c = applier.ApplierControls()
    stream = open(tmp_path / "log.txt", "w")
    legacy(c.setLoggingStream, stream)
    seen = []

    def func(info, inputs, outputs):
        seen.append(info.loggingstream)
        outputs.out = inputs.a

    infiles, outfiles = FilenameAssociations(), FilenameAssociations()
    infiles.a, outfiles.out = fn, str(tmp_path / "out.img")
    applier.apply(func, infiles, outfiles, controls=c)
    stream.close()
    assert seen == [stream]


def test_setting_num_threads_runs_apply_with_workers(tmp_path, rng):
    data = rng.integers(0, 1000, (1, 100, 90), dtype=np.int16)
    fn = write_raster(tmp_path / "a.tif", data)
    c = applier.ApplierControls()
    c.setWindowSize(32, 32)
    legacy(c.setJobManagerType, "subproc")
    legacy(c.setNumThreads, 2)
    infiles, outfiles = FilenameAssociations(), FilenameAssociations()
    infiles.a, outfiles.out = fn, str(tmp_path / "out.img")
    applier.apply(lambda info, inputs, outputs: setattr(outputs, "out", inputs.a * 2),
                  infiles, outfiles, controls=c)
    np.testing.assert_array_equal(read_raster(outfiles.out), data * 2)


# ---------------------------------------------------------------------------------------
# imagereader.ImageReader


@pytest.fixture
def twoImages(tmp_path, rng):
    a = rng.integers(-500, 500, (3, 70, 90), dtype=np.int16)
    b = rng.random((1, 70, 90), dtype=np.float32)
    fa = write_raster(tmp_path / "a.tif", a, nodata=-999)
    fb = write_raster(tmp_path / "b.img", b, driver="HFA")
    return a, b, fa, fb


def padded(arr, margin, fill):
    out = np.full((arr.shape[0], arr.shape[1] + 2 * margin, arr.shape[2] + 2 * margin), fill,
                  dtype=arr.dtype)
    out[:, margin:margin + arr.shape[1], margin:margin + arr.shape[2]] = arr
    return out


def test_image_reader_list_blocks_match_numpy_with_overlap_and_layers(twoImages):
    a, b, fa, fb = twoImages
    reader = legacy(imagereader.ImageReader, [fa, fb], windowxsize=32, windowysize=24,
                    overlap=2, layerselection=[[3, 1], None])
    assert len(reader) == 3 * 3
    truthA = padded(a[[2, 0]], 2, -999)
    truthB = padded(b, 2, 0)
    seen = []
    for info, (blockA, blockB) in reader:
        x, y = info.getBlockCount()
        top, left = y * 24, x * 32
        w, h = info.getBlockSize()
        np.testing.assert_array_equal(blockA, truthA[:, top:top + h + 4, left:left + w + 4])
        np.testing.assert_array_equal(blockB, truthB[:, top:top + h + 4, left:left + w + 4])
        assert info.getFilenameFor(blockA) == fa
        assert info.getNoDataValueFor(blockA) == -999
        seen.append((x, y))
    assert seen == [(x, y) for y in range(3) for x in range(3)]
    info, (blockA, _) = reader.readBlock(4)
    assert info.getBlockCount() == (1, 1) and blockA.shape == (2, 28, 36)
    with pytest.raises(rioserrors.OutsideImageBoundsError):
        reader.readBlock(9)
    reader.close()


def test_image_reader_container_shapes(twoImages):
    a, b, fa, fb = twoImages
    _, single = legacy(imagereader.ImageReader, fa).readBlock(0)
    np.testing.assert_array_equal(single, a[:, :70, :90])
    _, asDict = imagereader.ImageReader({"x": [fa, fa], "y": fb}).readBlock(0)
    assert sorted(asDict) == ["x", "y"] and len(asDict["x"]) == 2
    np.testing.assert_array_equal(asDict["y"], b)
    names = FilenameAssociations()
    names.x, names.y = [fa], fb
    _, assoc = imagereader.ImageReader(names, windowxsize=50, windowysize=50).readBlock(1)
    assert isinstance(assoc, BlockAssociations)
    np.testing.assert_array_equal(assoc.x[0], a[:, :50, 50:90])
    np.testing.assert_array_equal(assoc.y, b[:, :50, 50:90])


def test_image_reader_needs_allow_resample_for_a_finer_grid(tmp_path, rng):
    coarse = rng.integers(0, 100, (1, 20, 30), dtype=np.uint8)
    fine = rng.integers(0, 100, (1, 40, 60), dtype=np.uint8)
    fc = write_raster(tmp_path / "coarse.tif", coarse)
    gt = list(DEFAULT_GT)
    gt[1], gt[5] = 5.0, -5.0
    ff = write_raster(tmp_path / "fine.tif", fine, geotransform=tuple(gt))
    with pytest.raises(rioserrors.ResampleNeededError):
        legacy(imagereader.ImageReader, [ff, fc]).readBlock(0)
    reader = imagereader.ImageReader([ff, fc], windowxsize=64, windowysize=64)
    reader.allowResample(refpath=ff, tempdir=str(tmp_path))
    info, (blockF, blockC) = reader.readBlock(0)
    np.testing.assert_array_equal(blockF, fine)
    np.testing.assert_array_equal(blockC, coarse.repeat(2, axis=1).repeat(2, axis=2))
    assert info.getPixelSize() == (5.0, 5.0)
    reader.close()
    assert not [p for p in os.listdir(tmp_path) if p.startswith("rios_")]


def test_read_block_with_margin(twoImages):
    a, _, fa, _ = twoImages
    ds = gdal.Open(fa)
    block = imagereader.ImageReader.readBlockWithMargin(ds, 85, 66, 5, 4, gdal.GDT_Int16,
                                                        margin=2, nullvalList=[7, 8, 9])
    truth = padded(a, 2, 0)
    for i, fill in enumerate((7, 8, 9)):
        truth[i, :2], truth[i, -2:], truth[i, :, :2], truth[i, :, -2:] = fill, fill, fill, fill
    np.testing.assert_array_equal(block, truth[:, 66:66 + 8, 85:85 + 9])


# ---------------------------------------------------------------------------------------
# imagewriter.ImageWriter


def test_image_writer_writes_reader_blocks_gdal_reads_back_equal(twoImages, tmp_path):
    a, b, fa, fb = twoImages
    reader = legacy(imagereader.ImageReader, [fa, fb], windowxsize=32, windowysize=32,
                    overlap=1)
    out = str(tmp_path / "sum.img")
    writer = None
    for info, (blockA, blockB) in reader:
        result = blockA[:2].astype(np.float32) + blockB
        if writer is None:
            writer = legacy(imagewriter.ImageWriter, out, info=info, firstblock=result)
        else:
            writer.write(result)
    assert writer.getCurrentBlock() == len(reader)
    with pytest.raises(rioserrors.OutsideImageBoundsError):
        writer.write(result)
    writer.setLayerNames(["first", "second"])
    writer.close(calcStats=True, statsIgnore=-5)
    truth = a[:2].astype(np.float32) + b
    np.testing.assert_array_equal(read_raster(out), truth)
    ds = gdal.Open(out)
    band = ds.GetRasterBand(2)
    assert band.GetDescription() == "second" and band.GetNoDataValue() == -5
    assert float(band.GetMetadataItem("STATISTICS_MAXIMUM")) == pytest.approx(truth[1].max())
    assert float(band.GetMetadataItem("STATISTICS_MEAN")) == pytest.approx(truth[1].mean(),
                                                                           rel=1e-6)
    assert band.GetOverviewCount() == 0         # too small for the default levels


def test_image_writer_from_sizes_write_at_reset_thematic(tmp_path):
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32755)
    out = str(tmp_path / "t.img")
    writer = legacy(imagewriter.ImageWriter, out, drivername="HFA", nbands=1,
                    gdaldatatype=gdal.GDT_Byte, xsize=10, ysize=7, transform=DEFAULT_GT,
                    projection=srs.ExportToWkt(), windowxsize=4, windowysize=4)
    assert writer.getGDALDataset().RasterXSize == 10
    writer.writeAt(np.full((1, 3, 2), 5, np.uint8), 8, 4)
    writer.write(np.full((1, 4, 4), 1, np.uint8))
    writer.reset()
    writer.write(np.full((1, 4, 4), 2, np.uint8))
    assert writer.getCurrentBlock() == 1
    with pytest.raises(rioserrors.OutsideImageBoundsError):
        writer.writeAt(np.zeros((1, 4, 4), np.uint8), 8, 4)
    writer.setThematic()
    writer.close()
    truth = np.zeros((1, 7, 10), np.uint8)
    truth[:, :4, :4] = 2
    truth[:, 4:7, 8:10] = 5
    np.testing.assert_array_equal(read_raster(out), truth)
    ds = gdal.Open(out)
    assert ds.GetGeoTransform() == DEFAULT_GT
    assert ds.GetRasterBand(1).GetMetadataItem("LAYER_TYPE") == "thematic"
    assert ds.GetRasterBand(1).GetMetadataItem("STATISTICS_MEAN") is None  # no calcStats


def test_image_writer_needs_a_type_and_a_grid(tmp_path):
    with pytest.raises(rioserrors.ParameterError, match="nbands"):
        legacy(imagewriter.ImageWriter, str(tmp_path / "x.img"), xsize=2, ysize=2,
               transform=DEFAULT_GT, projection="")
    with pytest.raises(rioserrors.ParameterError, match="info="):
        imagewriter.ImageWriter(str(tmp_path / "x.img"), nbands=1, gdaldatatype=gdal.GDT_Byte)


# ---------------------------------------------------------------------------------------
# Small helpers


def test_type_conversions():
    assert imageio.GDALTypeToNumpyType(gdal.GDT_UInt16) is np.uint16
    assert imageio.GDALTypeToNumpyType(gdal.GDT_Float64) is np.float64
    assert imageio.NumpyTypeToGDALType(np.int32) == gdal.GDT_Int32
    assert imageio.NumpyTypeToGDALType("float32") == gdal.GDT_Float32
    with pytest.raises(rioserrors.TypeConversionError):
        imageio.NumpyTypeToGDALType(np.bool_)
    with pytest.raises(rioserrors.TypeConversionError):
        imageio.GDALTypeToNumpyType(gdal.GDT_Unknown)


def test_small_imagewriter_helpers(tmp_path, capsys):
    assert imagewriter.allnotNone([0, "", []]) and not imagewriter.allnotNone([1, None])
    assert imagewriter.anynotNone([None, 0]) and not imagewriter.anynotNone([None, None])
    assert calcstats.dfltOverviewLvls == ",".join(map(str, calcstats.DEFAULT_OVERVIEWLEVELS))
    name = str(tmp_path / "nan.img")
    imagewriter.checkForNanOrInf(np.array([1, 2], np.int16), name)
    imagewriter.checkForNanOrInf(np.array([1.0, np.inf]), name)
    imagewriter.warnNanOrInf(name)
    assert f"WARNING: Output file {name} contains NaN, Inf or -Inf" in capsys.readouterr().err
    assert name not in imagewriter.nanWarningFiles
    imagewriter.warnNanOrInf(name)
    assert capsys.readouterr().err == ""
    with pytest.raises(rioserrors.ImageOpenError, match="multiples"):
        imagewriter.doubleCheckCreationOptions("GTiff", ["TILED=YES"], 128, 128, 1000)
    assert imagewriter.doubleCheckCreationOptions("HFA", ["A=B"], 5, 5, 1000) == ["A=B"]
    fn = write_raster(tmp_path / "gone.tif", np.ones((1, 4, 4), np.uint8))
    open(fn + ".aux.xml", "w").close()
    imagewriter.deleteIfExisting(fn)
    assert not os.path.exists(fn) and not os.path.exists(fn + ".aux.xml")


def test_nan_warning_through_apply(tmp_path, capsys):
    fn = write_raster(tmp_path / "a.tif", np.ones((1, 8, 8), np.float32))
    infiles, outfiles = FilenameAssociations(), FilenameAssociations()
    infiles.a, outfiles.out = fn, str(tmp_path / "out.img")
    applier.apply(lambda info, inputs, outputs: setattr(outputs, "out", inputs.a * np.nan),
                  infiles, outfiles)
    assert f"Output file {outfiles.out} contains NaN" in capsys.readouterr().err
    assert outfiles.out not in imagewriter.nanWarningFiles


def test_set_default_driver_rereads_the_environment(monkeypatch):
    try:
        monkeypatch.setenv("RIOS_DFLT_DRIVER", "GTiff")
        imagewriter.setDefaultDriver()
        assert imagewriter.DEFAULTDRIVERNAME == "GTiff"
        assert applier.ApplierControls().drivername == "GTiff"
    finally:
        monkeypatch.delenv("RIOS_DFLT_DRIVER")
        imagewriter.setDefaultDriver()
    assert imagewriter.DEFAULTDRIVERNAME == "HFA"


def test_gdal_dataset_for_in_a_user_function(tmp_path):
    data = np.arange(2 * 6 * 5, dtype=np.uint16).reshape(2, 6, 5)
    fn = write_raster(tmp_path / "a.tif", data)
    got = []

    def func(info, inputs, outputs):
        ds = info.getGDALDatasetFor(inputs.a)
        got.append((ds.GetDescription(), info.getGDALBandFor(inputs.a, 2).ReadAsArray()))
        outputs.out = inputs.a

    infiles, outfiles = FilenameAssociations(), FilenameAssociations()
    infiles.a, outfiles.out = fn, str(tmp_path / "out.img")
    with pytest.warns(DeprecationWarning) as record:
        applier.apply(func, infiles, outfiles)
    messages = " ".join(str(w.message) for w in record)
    assert "getGDALDatasetFor" in messages and "getGDALBandFor" in messages
    assert got[0][0] == fn
    np.testing.assert_array_equal(got[0][1], data[1])


def test_report_worker_exception(capsys):
    try:
        raise ZeroDivisionError("boom")
    except ZeroDivisionError as e:
        record = applier.WorkerErrorRecord(e, "compute", workerID=3)
    applier.reportWorkerException(record)
    err = capsys.readouterr().err
    assert "Error in compute worker 3" in err and "ZeroDivisionError: boom" in err


def test_reading_functions_on_the_working_grid(tmp_path, rng):
    data = rng.integers(0, 255, (2, 30, 40), dtype=np.uint8)
    fa = write_raster(tmp_path / "a.tif", data)
    gt = list(DEFAULT_GT)
    gt[1], gt[5] = 20.0, -20.0
    fb = write_raster(tmp_path / "b.tif", data[:, :15, :20], geotransform=tuple(gt))
    infiles = FilenameAssociations()
    infiles.a = fa
    controls = applier.ApplierControls()
    controls.setWindowSize(16, 16)
    allInfo = applier.readAllImgInfo(infiles)
    grid = applier.makeWorkingGrid(infiles, allInfo, controls)
    infoB = applier.readAllImgInfo([("b", None, fb)])[("b", None)]
    assert not imagereader.reprojectionRequired(allInfo[("a", None)], grid)
    assert imagereader.reprojectionRequired(infoB, grid)
    assert imagereader.reprojResolution(grid, grid.projection) == pytest.approx((10.0, 10.0))
    with TempfileManager(str(tmp_path)) as tmp:
        ds = imagereader.openForWorkingGrid(fb, infoB, grid, controls, tmp)
        assert (ds.RasterXSize, ds.RasterYSize) == (40, 30)
        np.testing.assert_array_equal(ds.ReadAsArray(), data[:, :15, :20].repeat(2, 1)
                                      .repeat(2, 2))
        ds = None
        specs = imagereader.prepareInputs(infiles, allInfo, grid, controls, tmp)
    reader = imagereader.BlockReader(specs, 0)
    block = applier.makeBlockList(grid, controls)[4]     # 3 blocks a row: the 2nd of row 2
    inputs = imagereader.readBlockAllFiles(infiles, block, reader)
    np.testing.assert_array_equal(inputs.a, data[:, 16:30, 16:32])
    one = imagereader.readBlockOneFile(block, specs[0], reader)
    np.testing.assert_array_equal(one, inputs.a)
    target = np.empty((1, 4, 4), np.uint8)
    imagereader.readIntoArray(target, gdal.Open(fa), [2], 38, -1, [99])
    truth = np.full((1, 4, 4), 99, np.uint8)
    truth[0, 1:, :2] = data[1, :3, 38:]
    np.testing.assert_array_equal(target, truth)
    assert imagereader.specialProjFixes("no datum here") == "no datum here"


def test_writing_functions_make_the_file_apply_would(tmp_path, rng):
    data = rng.integers(0, 100, (1, 40, 50), dtype=np.int16)
    fa = write_raster(tmp_path / "a.tif", data)
    outfiles = FilenameAssociations()
    outfiles.out = str(tmp_path / "out.img")
    controls = applier.ApplierControls()
    controls.setWindowSize(32, 32)
    grid = applier.makeWorkingGrid([("a", None, fa)],
                                   applier.readAllImgInfo([("a", None, fa)]), controls)
    with TempfileManager(str(tmp_path)) as tmp:
        singlePassMgr = calcstats.SinglePassManager(outfiles, controls, grid, tmp)
    cache = {}
    for block in applier.makeBlockList(grid, controls):
        outputs = BlockAssociations()
        outputs.out = data[:, block.top:block.top + block.nrows,
                           block.left:block.left + block.ncols] + 1
        imagewriter.writeBlock(cache, block, outfiles, outputs, controls, grid, singlePassMgr,
                               Timers())
    ds = cache[("out", None)].ds
    assert imagewriter.makeMinMaxList(ds) == [(float(data.min() + 1), float(data.max() + 1))]
    ds = None
    imagewriter.closeOutfiles(cache, outfiles)
    assert cache == {}
    np.testing.assert_array_equal(read_raster(outfiles.out), data + 1)
    ds = gdal.Open(outfiles.out)
    mean = ds.GetRasterBand(1).GetMetadataItem("STATISTICS_MEAN")
    assert float(mean) == pytest.approx(data.mean() + 1)


def test_driver_pyramid_support_probe(tmp_path):
    with TempfileManager(str(tmp_path)) as tmp:
        assert calcstats.SinglePassManager.checkDriverPyramidSupport("HFA", [], tmp) is True
        with pytest.raises(rioserrors.ImageOpenError, match="NoSuchDriver"):
            calcstats.SinglePassManager.checkDriverPyramidSupport("NoSuchDriver", [], tmp)


def test_ratapplier_internal_methods(tmp_path):
    from sharedapplier import rat
    fa = write_raster(tmp_path / "a.img", np.zeros((1, 4, 4), np.int32), driver="HFA",
                      thematic=True)
    fb = write_raster(tmp_path / "b.img", np.zeros((1, 4, 4), np.int32), driver="HFA",
                      thematic=True)
    rat.writeColumn(fa, "v", np.arange(10, dtype=np.int32))
    rat.writeColumn(fb, "v", np.arange(7, dtype=np.int32))
    inRats = ratapplier.RatAssociations()
    inRats.a, inRats.b = ratapplier.RatHandle(fa), ratapplier.RatHandle(fb)
    updated = ratapplier.RatAssociations()
    updated.b = inRats.b
    handles = ratapplier.FileHandlesCollection(inRats, updated)
    try:
        assert handles.checkExistingDS(inRats.a) is handles[inRats.a].ds
        assert handles[inRats.a].getRowCount() == 10
        assert handles[inRats.b].getRatObj().GetRowCount() == 7
        with pytest.raises(rioserrors.RatMismatchError):
            handles.checkConsistency(inRats)
        handles[inRats.b].setRowCount(10)
        assert handles.getRowCount(inRats, ratapplier.RatApplierControls()) == 10
    finally:
        handles.close()
    assert ratapplier.RatBlockAssociation.checkZarrfileParams(250000) == 250000

    inRats = ratapplier.RatAssociations()
    inRats.a = ratapplier.RatHandle(fa)
    outRats = ratapplier.RatAssociations()
    outRats.c = ratapplier.RatHandle(fb)
    controls = ratapplier.RatApplierControls()
    controls.setBlockLength(4)
    guesses = []

    def func(info, inputs, outputs):
        outputs.c.w = inputs.a.v * 2
        guesses.append(outputs.c.guessNewRowCount(info.blockLen, info.rowCount, controls))

    ratapplier.apply(func, inRats, outRats, controls=controls)
    assert guesses == [10, 10, 10]
    np.testing.assert_array_equal(rat.readColumn(fb, "w"), np.arange(10) * 2)


def test_rios_name_list_is_checked_against_the_modules():
    """Every PROVIDED module is a module of the package (no typo hides a name)."""
    for module in PROVIDED:
        if module:
            assert re.fullmatch(r"[a-z]+", module)
            importlib.import_module(f"sharedapplier.{module}")
