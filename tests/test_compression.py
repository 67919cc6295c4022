"""Compressed GTiff outputs compress on GDAL's own threads, and are the same image."""
import numpy as np
import pytest
from conftest import write_raster
from osgeo import gdal

from sharedapplier import applier
from sharedapplier.blockwriter import (
    MAX_COMPRESSION_THREADS,
    MIN_COMPRESSION_THREADS,
    withCompressionThreads,
)
from sharedapplier.structures import CW_NONE, CW_PROCESSES, CW_THREADS, ConcurrencyStyle

DEFLATE = ["TILED=YES", "COMPRESS=DEFLATE", "INTERLEAVE=BAND", "BIGTIFF=IF_SAFER"]


def threadsIn(options):
    return [o for o in options if o.upper().startswith("NUM_THREADS=")]


@pytest.mark.parametrize("style", [ConcurrencyStyle(),
                                   ConcurrencyStyle(computeWorkerKind=CW_THREADS,
                                                    numComputeWorkers=2),
                                   ConcurrencyStyle(computeWorkerKind=CW_PROCESSES,
                                                    numComputeWorkers=64)])
def test_compressed_output_gets_compression_threads(style):
    options = withCompressionThreads(DEFLATE, style)
    assert options[:len(DEFLATE)] == DEFLATE
    (added,) = threadsIn(options)
    assert MIN_COMPRESSION_THREADS <= int(added.split("=")[1]) <= MAX_COMPRESSION_THREADS


@pytest.mark.parametrize("options", [["TILED=YES"], ["TILED=YES", "COMPRESS=NONE"],
                                     [*DEFLATE, "NUM_THREADS=3"], ["compress=lzw", "num_threads=1"]])
def test_uncompressed_or_already_threaded_options_are_left_alone(options):
    assert withCompressionThreads(options, ConcurrencyStyle()) == options


def _describe(path):
    """Everything GDAL's readers see of an output: pixels, overviews, metadata."""
    ds = gdal.Open(str(path))
    band = ds.GetRasterBand(1)
    overviews = [band.GetOverview(i).ReadAsArray() for i in range(band.GetOverviewCount())]
    return (ds.ReadAsArray(), overviews, band.GetMetadata(), ds.GetMetadata(),
            ds.GetMetadata("IMAGE_STRUCTURE").get("COMPRESSION"))


def _doubleIt(info, inputs, outputs):
    outputs.o = inputs.a * 2


@pytest.mark.parametrize("kind", [CW_NONE, CW_PROCESSES])
def test_threaded_compression_writes_the_image_serial_compression_writes(kind, tmp_path,
                                                                        no_shm_leak):
    rng = np.random.default_rng(7)
    infile = write_raster(tmp_path / "a.tif", rng.integers(0, 3000, (1, 700, 900),
                                                           dtype=np.uint16))
    described = []
    for name, options in (("serial", [*DEFLATE, "NUM_THREADS=1"]), ("threaded", None)):
        c = applier.ApplierControls()
        c.setOutputDriverName("GTiff")
        if options is not None:
            c.setCreationOptions(options)
        if kind != CW_NONE:
            c.setConcurrencyStyle(ConcurrencyStyle(computeWorkerKind=kind,
                                                   numComputeWorkers=2))
        i, o = applier.FilenameAssociations(), applier.FilenameAssociations()
        i.a, o.o = str(infile), str(tmp_path / f"{name}.tif")
        applier.apply(_doubleIt, i, o, controls=c)
        described.append(_describe(tmp_path / f"{name}.tif"))
    serial, threaded = described
    np.testing.assert_array_equal(threaded[0], serial[0])
    assert len(threaded[1]) == len(serial[1]) > 0
    for a, b in zip(threaded[1], serial[1], strict=True):
        np.testing.assert_array_equal(a, b)
    assert threaded[2] == serial[2] and "STATISTICS_MEAN" in threaded[2]
    assert threaded[3] == serial[3]
    assert threaded[4] == serial[4] == "DEFLATE"
