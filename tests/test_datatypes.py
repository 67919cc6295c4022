"""Every GDAL data type over every transport: each style writes what CW_NONE writes.

One run per style carries one input of each GDAL type and passes it through, along with
outputs of numpy's 1-byte types (int8, which GDAL 3.6 stores as Byte); the pixels must
equal the inputs as numpy holds them, and CW_NONE's files byte for byte. Blocks of 32 x 32
(35 blocks) and 128 x 128 (4) over a 200 x 150 grid, both with partial blocks on the right
and bottom edges.
"""
import numpy as np
import pytest
from conftest import read_raster
from osgeo import gdal, gdal_array, osr

from sharedapplier import applier
from sharedapplier.structures import (
    CW_PROCESSES,
    CW_SLURM,
    CW_SUBPROC,
    CW_THREADS,
    ConcurrencyStyle,
    FilenameAssociations,
)

# Every data type GDAL 3.6 offers (Int8 came with 3.7).
GDAL_TYPES = ["Byte", "UInt16", "Int16", "UInt32", "Int32", "UInt64", "Int64", "Float32",
              "Float64", "CInt16", "CInt32", "CFloat32", "CFloat64"]

STYLES = {
    "none": None,
    "none_readers": dict(numReadWorkers=2),
    "threads": dict(computeWorkerKind=CW_THREADS, numComputeWorkers=2, numReadWorkers=1),
    "processes_read": dict(computeWorkerKind=CW_PROCESSES, numComputeWorkers=2,
                           computeWorkersRead=True),
    "processes_noread": dict(computeWorkerKind=CW_PROCESSES, numComputeWorkers=2,
                             computeWorkersRead=False, numReadWorkers=1),
    "subproc_read": dict(computeWorkerKind=CW_SUBPROC, numComputeWorkers=2,
                         computeWorkersRead=True),
    "subproc_noread": dict(computeWorkerKind=CW_SUBPROC, numComputeWorkers=2,
                           computeWorkersRead=False, numReadWorkers=1),
    "slurm": dict(computeWorkerKind=CW_SLURM, numComputeWorkers=2,
                  computeWorkerExtraParams={"sbatchOptions": ["--time=5"]}),
}

SHAPE = (2, 150, 200)   # bands, rows, cols


def _values(gdalType: str, rng) -> np.ndarray:
    """Values spanning the type: its extremes, zero, and random ones between."""
    code = gdal.GetDataTypeByName(gdalType)
    dtype = np.dtype(gdal_array.GDALTypeCodeToNumericTypeCode(code))
    complexInts = {"CInt16": np.int16, "CInt32": np.int32}
    partType = complexInts.get(gdalType, dtype.type if dtype.kind != "c" else
                               np.float32 if dtype.itemsize == 8 else np.float64)
    info = np.iinfo(partType) if np.issubdtype(partType, np.integer) else np.finfo(partType)
    if np.issubdtype(partType, np.integer):
        part = rng.integers(info.min, info.max, SHAPE, dtype=partType, endpoint=True)
    else:
        part = (rng.standard_normal(SHAPE) * 1e6).astype(partType)
    part.flat[:3] = [info.min, info.max, 0]
    if dtype.kind != "c":
        return part.astype(dtype)
    imag = np.roll(part, 1)
    return (part.astype(dtype) + 1j * imag.astype(dtype)).astype(dtype)


def _writeTyped(path, gdalType, values):
    ds = gdal.GetDriverByName("GTiff").Create(str(path), SHAPE[2], SHAPE[1], SHAPE[0],
                                              gdal.GetDataTypeByName(gdalType))
    ds.SetGeoTransform((500000.0, 10.0, 0.0, 7000000.0, 0.0, -10.0))
    sr = osr.SpatialReference()
    sr.ImportFromEPSG(32755)
    ds.SetProjection(sr.ExportToWkt())
    for i in range(SHAPE[0]):
        ds.GetRasterBand(i + 1).WriteArray(values[i])
    ds = None


@pytest.fixture(scope="module")
def typedInputs(tmp_path_factory):
    """{GDAL type name: (path, the values GDAL reads back)}."""
    d = tmp_path_factory.mktemp("typed")
    rng = np.random.default_rng(5)
    inputs = {}
    for gdalType in GDAL_TYPES:
        path = d / f"{gdalType}.tif"
        _writeTyped(path, gdalType, _values(gdalType, rng))
        inputs[gdalType] = (str(path), read_raster(path))
    return inputs


def passThrough(info, inputs, outputs):
    for name in GDAL_TYPES:
        setattr(outputs, name, getattr(inputs, name))
    small = (inputs.Byte & 0x7F).astype(np.int8)   # int8 goes to Byte on GDAL 3.6
    outputs.int8 = small


def _run(typedInputs, outdir, style, window):
    infiles, outfiles = FilenameAssociations(), FilenameAssociations()
    for name, (path, _) in typedInputs.items():
        setattr(infiles, name, path)
    for name in [*GDAL_TYPES, "int8"]:
        setattr(outfiles, name, str(outdir / f"{name}.tif"))
    controls = applier.ApplierControls()
    controls.setOutputDriverName("GTiff")
    controls.setCreationOptions(["TILED=YES", f"BLOCKXSIZE={window}", f"BLOCKYSIZE={window}"])
    controls.setWindowSize(window, window)
    controls.setCalcStats(False)
    controls.setTempdir(str(outdir))
    if style is not None:
        controls.setConcurrencyStyle(ConcurrencyStyle(computeBarrierTimeout=120, **style))
    applier.apply(passThrough, infiles, outfiles, controls=controls)
    return {name: read_raster(outdir / f"{name}.tif") for name in outfiles.__dict__}


def _truth(typedInputs):
    truth = {name: values for name, (_, values) in typedInputs.items()}
    byte = truth["Byte"]
    truth["int8"] = (byte & 0x7F).astype(np.uint8)
    return truth


@pytest.fixture(scope="module")
def noneOutputs(typedInputs, tmp_path_factory):
    """CW_NONE's files for each window size, made once."""
    return {window: _run(typedInputs, tmp_path_factory.mktemp(f"none{window}"), None, window)
            for window in (32, 128)}


# One Slurm run (small blocks) covers the batch kinds' channel.
CASES = [(name, window) for name in STYLES for window in (32, 128)
         if not (name == "slurm" and window == 128)]


@pytest.mark.parametrize(("styleName", "window"), CASES)
def test_every_gdal_type_in_every_style(styleName, window, typedInputs, noneOutputs, request,
                                        tmp_path, no_shm_leak):
    if styleName == "slurm":
        request.getfixturevalue("slurm_cluster")
    written = _run(typedInputs, tmp_path, STYLES[styleName], window)
    truth = _truth(typedInputs)
    for name, expected in truth.items():
        got = written[name]
        assert got.dtype == expected.dtype, name
        assert np.array_equal(got, expected, equal_nan=True), name
        assert got.tobytes() == noneOutputs[window][name].tobytes(), name
