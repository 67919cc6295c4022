"""``sharedapplier calc``: the safe expression compiler and the command on real GeoTIFFs."""
import ast
import builtins
import pickle
import subprocess
import sys

import cloudpickle
import numpy as np
import pytest
from conftest import read_raster, write_raster
from osgeo import gdal

from sharedapplier import rastercalc
from sharedapplier.cmdline import main as cmdmain
from sharedapplier.rastercalc import ExpressionError, checkExpression

ROWS, COLS = 200, 300
PROG = "sharedapplier calc"
COARSE_GT = (500000.0, 20.0, 0.0, 7000000.0, 0.0, -20.0)
SHIFTED_GT = (501000.0, 10.0, 0.0, 6999000.0, 0.0, -10.0)


# ---------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture
def bands(tmp_path, rng):
    """red and nir uint16 GeoTIFFs (nir with no-data 0) and a 3-band float32 one."""
    red = rng.integers(1, 3000, (ROWS, COLS)).astype(np.uint16)
    nir = rng.integers(1, 6000, (ROWS, COLS)).astype(np.uint16)
    nir[:5, :7] = 0
    multi = rng.random((3, ROWS, COLS)).astype(np.float32)
    return {"red": (write_raster(tmp_path / "red.tif", red), red),
            "nir": (write_raster(tmp_path / "nir.tif", nir, nodata=0), nir),
            "multi": (write_raster(tmp_path / "multi.tif", multi), multi)}


def calc(*argv):
    """Run ``sharedapplier calc ARGV`` in this process through the console entry point."""
    return cmdmain.main(["calc", *map(str, argv)])


def one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"{PROG}: error: ")
    return err[0]


def ndvi_truth(red, nir):
    return (np.float32(nir) - red) / (np.float32(nir) + red)


NDVI = "(float32(b) - a) / (float32(b) + a)"


# ---------------------------------------------------------------------------------------
# The compiler: what it accepts


A = np.arange(1, 25, dtype=np.float64).reshape(2, 3, 4)
B = np.full((2, 3, 4), 3.0)
INTS = np.arange(24, dtype=np.int32).reshape(2, 3, 4)

ACCEPTED = [
    ("(b - a) / (b + a)", (B - A) / (B + A)),
    ("a ** 2 - a // 3 + a % 5 - +a", A ** 2 - A // 3 + A % 5 - A),
    ("-a * 2.5e0 + 1_000", -A * 2.5 + 1000),
    ("sqrt(a) + np.log(a) + numpy.exp(-a)", np.sqrt(A) + np.log(A) + np.exp(-A)),
    ("where(a > 10, a, b)", np.where(A > 10, A, B)),
    ("np.where((a > 3) & ~(a >= 20) | (b == 0), 1, 0)",
     np.where((A > 3) & ~(A >= 20) | (B == 0), 1, 0)),
    ("3 < a <= 12", (A > 3) & (A <= 12)),
    ("1 < 2 < a < 9 != a", (A > 2) & (A < 9) & (A != 9)),
    ("clip(a, 2, 8) + minimum(a, b) + maximum(a, b)",
     np.clip(A, 2, 8) + np.minimum(A, B) + np.maximum(A, B)),
    ("arctan2(a, b) + abs(-a) + pi + e", np.arctan2(A, B) + np.abs(-A) + np.pi + np.e),
    ("isnan(a - a + nan) & isfinite(a)", np.isnan(A - A + np.nan) & np.isfinite(A)),
    ("np.nan * a", np.nan * A),
    ("a[0] - a[-1]", A[0] - A[-1]),
    ("mean(a, axis=0) + np.nanmax(b, axis=0)", A.mean(axis=0) + B.max(axis=0)),
    ("percentile(a, 50, axis=0)", np.percentile(A, 50, axis=0)),
    ("float32(a) / 3", np.float32(A) / 3),
    ("2 ** 10 + 0x10", 1040),
    ("(\n  a\n  + b\n)", A + B),
]


@pytest.mark.parametrize("text, expected", ACCEPTED, ids=[t for t, _ in ACCEPTED])
def test_accepted_expressions_match_numpy(text, expected):
    with np.errstate(all="ignore"):
        value = checkExpression(text, ["a", "b"]).evaluate({"a": A, "b": B})
    np.testing.assert_array_equal(value, expected)


def test_bitwise_and_shift_operators_on_integers():
    value = checkExpression("(i >> 2) & 1 | (i << 1) ^ 5", ["i"]).evaluate({"i": INTS})
    np.testing.assert_array_equal(value, (INTS >> 2) & 1 | (INTS << 1) ^ 5)


def test_used_names_are_the_inputs_mentioned():
    assert checkExpression("sqrt(b) + b[0]", ["a", "b", "c"]).usedNames == ("b",)
    assert checkExpression("7", ["a"]).usedNames == ()


def test_no_eval_exec_or_code_compilation(monkeypatch):
    """Checking and evaluating never call eval/exec, and compile only to an AST."""
    def refuse(*args, **kwargs):
        raise AssertionError("eval/exec called")

    realCompile = builtins.compile

    def astOnly(source, filename, mode, flags=0, *args, **kwargs):
        assert flags & ast.PyCF_ONLY_AST, "compiled to code"
        return realCompile(source, filename, mode, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "eval", refuse)
    monkeypatch.setattr(builtins, "exec", refuse)
    monkeypatch.setattr(builtins, "compile", astOnly)
    value = checkExpression("where(a > 2, sqrt(a), -a)", ["a"]).evaluate({"a": A})
    np.testing.assert_array_equal(value, np.where(A > 2, np.sqrt(A), -A))


# ---------------------------------------------------------------------------------------
# The compiler: what it refuses, naming the construct and the column


REJECTED = [
    ("__import__('os').system('touch x')", "calling '__import__' is not allowed", 1),
    ("a.__class__", "attribute access '.__class__'", 1),
    ("b + a.__class__.__bases__", "attribute access '.__bases__'", 5),
    ("(lambda: 1)()", "a lambda", 1),
    ("open('f')", "calling 'open' is not allowed", 1),
    ("a + open", "unknown name 'open'", 5),
    ("__builtins__", "the name '__builtins__' is not allowed", 1),
    ("np.random.rand(3)", "'np.random' is not one of the numpy functions", 1),
    ("np.sqrt.__globals__", "attribute access '.__globals__'", 1),
    ("numpy.load", "'numpy.load' is not one of the numpy functions", 1),
    ("np", "'np' may only be used as np.FUNCTION", 1),
    ("sqrt", "the function 'sqrt' must be called", 1),
    ("sqrt(a, b)", "sqrt() takes 1 argument(s), not 2", 1),
    ("sqrt(a, out=b)", "sqrt() takes no keyword arguments", 1),
    ("sqrt(*a)", "a starred argument", 6),
    ("mean(a)", "mean() must be given axis=0", 1),
    ("sum(a, axis=1)", "sum() must be given axis=0", 1),
    ("[x for x in a]", "a list comprehension", 1),
    ("{k: 1 for k in a}", "a dict comprehension", 1),
    ("(a, b)", "a tuple", 1),
    ("a + [1]", "a list", 5),
    ("(x := 1)", "an assignment (:=)", 2),
    ("f'{a}'", "an f-string", 1),
    ("'text'", "the constant 'text' is not allowed", 1),
    ("None", "the constant None is not allowed", 1),
    ("a[0:1]", "a band selection needs one integer constant", 1),
    ("a[b]", "a band selection needs one integer constant", 1),
    ("a[0][1]", "subscripts are only allowed as band selection", 1),
    ("a and b", "'and' is not allowed: use &", 1),
    ("a or b", "'or' is not allowed: use |", 1),
    ("not a", "'not' is not allowed", 1),
    ("a if b else 1", "use where(c, x, y)", 1),
    ("a @ b", "the operator @ is not allowed", 1),
    ("a is b", "the comparison 'is' is not allowed", 1),
    ("a not in b", "the comparison 'not in' is not allowed", 1),
    ("x + 1", "unknown name 'x'", 1),
]


@pytest.mark.parametrize("text, message, column", REJECTED, ids=[t for t, _, _ in REJECTED])
def test_rejected_expressions_name_construct_and_column(text, message, column):
    with pytest.raises(ExpressionError) as info:
        checkExpression(text, ["a", "b"])
    text = str(info.value)
    assert message in text
    assert f"(at column {column})" in text
    assert "\n" not in text


def test_expression_error_is_a_rios_parameter_error():
    from sharedapplier import rioserrors
    assert issubclass(ExpressionError, rioserrors.ParameterError)


def test_syntax_errors_and_line_numbers():
    for text, where in (("a +", "at the end"), ("a b", "at column 3"), ("(a\n+)", "line 2")):
        with pytest.raises(ExpressionError, match="syntax error") as info:
            checkExpression(text, ["a"])
        assert where in str(info.value)
    with pytest.raises(ExpressionError, match="empty"):
        checkExpression("   ", ["a"])
    with pytest.raises(ExpressionError, match=r"line 3, column 1"):
        checkExpression("(a\n+\nz)", ["a"])


def test_huge_integer_constants_are_refused_not_computed():
    for text in ("9 ** 9 ** 9", "1 << 100000", "(2 ** 64) ** 64"):
        with pytest.raises(ExpressionError, match="limited to 4096 bits"):
            checkExpression(text, []).evaluate({})
    assert checkExpression("2 ** 64", []).evaluate({}) == 2 ** 64


def test_evaluation_errors_name_the_failing_part():
    with pytest.raises(ExpressionError, match=r"input 'a' has 2 band\(s\), a\[0\] to a\[1\]"):
        checkExpression("a[2]", ["a"]).evaluate({"a": A})
    with pytest.raises(ExpressionError, match=r"'1 / 0' \(at column 5\) failed"):
        checkExpression("a + 1 / 0", ["a"]).evaluate({"a": A})


@pytest.mark.parametrize("name, problem", [
    ("a", None), ("red_2", None), ("2a", "Python identifier"), ("a-b", "Python identifier"),
    ("lambda", "keyword"), ("_x", "start with '_'"), ("__import__", "start with '_'"),
    ("sqrt", "numpy function"), ("nan", "numpy function"), ("np", "numpy function"),
])
def test_input_names(name, problem):
    found = rastercalc.inputNameProblem(name)
    assert (found is None) if problem is None else (problem in found)


# ---------------------------------------------------------------------------------------
# Types, casting and the per-block function


@pytest.mark.parametrize("name, dtype", [
    ("Byte", np.uint8), ("UInt8", np.uint8), ("uint16", np.uint16), ("Int32", np.int32),
    ("float32", np.float32), ("Float64", np.float64), ("CFloat32", np.complex64),
])
def test_parse_dtype(name, dtype):
    assert rastercalc.parseDtype(name) == np.dtype(dtype)


@pytest.mark.parametrize("name", ["bool", "float16", "bogus", "str", "CInt16"])
def test_parse_dtype_refuses_types_gdal_cannot_write(name):
    with pytest.raises(rastercalc.rioserrors.ParameterError):
        rastercalc.parseDtype(name)


def test_cast_block_rounds_clips_and_fills_nodata():
    values = np.array([[[-3.0, 2.5, 3.5, 300.0, np.nan, np.inf]]])
    np.testing.assert_array_equal(rastercalc.castBlock(values, np.uint8),
                                  [[[0, 2, 4, 255, 0, 0]]])
    np.testing.assert_array_equal(rastercalc.castBlock(values, np.uint8, nodata=99),
                                  [[[0, 2, 4, 255, 99, 99]]])
    ints = np.array([[[-5, 70000]]], dtype=np.int32)
    np.testing.assert_array_equal(rastercalc.castBlock(ints, np.uint16), [[[0, 65535]]])
    invalid = np.array([[[True, False]]])
    np.testing.assert_array_equal(rastercalc.castBlock(ints, np.int32, invalid, -1),
                                  [[[-1, 70000]]])


def test_to_block_promotes_scalars_and_2d():
    assert rastercalc.toBlock(7, (3, 4)).shape == (1, 3, 4)
    assert rastercalc.toBlock(np.ones((3, 4)), (3, 4)).shape == (1, 3, 4)
    with pytest.raises(rastercalc.rioserrors.ArrayShapeError):
        rastercalc.toBlock(np.ones(4), (3, 4))


def test_block_calculator_pickles_and_computes_the_same():
    calculator = rastercalc.BlockCalculator("where(a > 5, a - b, nan)", ["a", "b"],
                                            dtype=np.float32, nodata=-1.0,
                                            inputNodata={"a": [7.0, None]})
    before = calculator.compute({"a": A, "b": B})
    for copy in (cloudpickle.loads(cloudpickle.dumps(calculator)),
                 pickle.loads(pickle.dumps(calculator))):
        np.testing.assert_array_equal(copy.compute({"a": A, "b": B}), before)
    expected = np.where(A > 5, A - B, -1).astype(np.float32)  # NaN -> no-data
    expected[0, 1, 2] = -1  # a's band 1 is 7 there, its no-data value
    np.testing.assert_array_equal(before, expected)


def test_nodata_mask_per_band_or_any_band():
    a = np.array([[[1, 2]], [[3, 0]]], dtype=np.int16)  # 2 bands, band 2 has no-data 0
    both = rastercalc.BlockCalculator("a * 10", ["a"], dtype=np.int16, nodata=-9,
                                      inputNodata={"a": [None, 0.0]})
    np.testing.assert_array_equal(both.compute({"a": a}), [[[10, 20]], [[30, -9]]])
    summed = rastercalc.BlockCalculator("sum(a, axis=0)", ["a"], dtype=np.int16, nodata=-9,
                                        inputNodata={"a": [None, 0.0]})
    np.testing.assert_array_equal(summed.compute({"a": a}), [[[4, -9]]])


def test_trial_gives_output_bands_and_type():
    calculator = rastercalc.BlockCalculator("a > b[0]", ["a", "b"])
    trial = calculator.trial({"a": (3, np.uint16), "b": (2, np.float32)})
    assert trial.shape[0] == 3 and trial.dtype == np.uint8
    with pytest.raises(ExpressionError, match="could not be broadcast"):
        rastercalc.BlockCalculator("a + b", ["a", "b"]).trial(
            {"a": (3, np.uint16), "b": (2, np.uint16)})


# ---------------------------------------------------------------------------------------
# The command: results


def test_ndvi_matches_numpy(bands, tmp_path, capsys):
    (redPath, red), (nirPath, nir) = bands["red"], bands["nir"]
    out = tmp_path / "ndvi.tif"
    assert calc("-i", f"a={redPath}", "-i", f"b={nirPath}", "-o", out, NDVI,
                "--workers", 1) == 0
    lines = capsys.readouterr().out.splitlines()
    # off a terminal: the progress bar's log lines (rate, time left), then the summary
    assert lines[-2].startswith("100%") and "blocks/s" in lines[-2]
    assert lines[-1].startswith(f"{PROG}: wrote {out} (GTiff, 1 band(s) of Float32, "
                                "300 x 200 pixels)")
    result = read_raster(out)
    assert result.shape == (1, ROWS, COLS) and result.dtype == np.float32
    np.testing.assert_array_equal(result[0], ndvi_truth(red, nir))
    ds = gdal.Open(str(out))
    band = ds.GetRasterBand(1)
    assert band.GetNoDataValue() is None  # no --nodata: no no-data value
    assert band.GetMetadataItem("STATISTICS_MEAN") is not None  # stats by default
    assert ds.GetGeoTransform() == gdal.Open(redPath).GetGeoTransform()


def test_workers_2_identical_to_workers_1(bands, tmp_path, no_shm_leak):
    (redPath, red), (nirPath, nir) = bands["red"], bands["nir"]
    outputs = {}
    for workers in (1, 2):
        outputs[workers] = tmp_path / f"ndvi{workers}.tif"
        assert calc("-i", f"a={redPath}", "-i", f"b={nirPath}", "-o", outputs[workers], NDVI,
                    "--workers", workers, "--blocksize", 128, "--quiet") == 0
    one, two = read_raster(outputs[1]), read_raster(outputs[2])
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one[0], ndvi_truth(red, nir))


def test_type_nodata_and_creation_options(bands, tmp_path):
    (redPath, red), (nirPath, nir) = bands["red"], bands["nir"]
    out = tmp_path / "scaled.tif"
    assert calc("-i", f"a={redPath}", "-i", f"b={nirPath}", "-o", out,
                "(float32(b) - a) / (float32(b) + a) * 100 + 100", "--type", "Byte",
                "--nodata", 255, "--co", "COMPRESS=LZW", "--co", "PREDICTOR=2",
                "--workers", 1, "--quiet") == 0
    ds = gdal.Open(str(out))
    band = ds.GetRasterBand(1)
    assert band.DataType == gdal.GDT_Byte
    assert band.GetNoDataValue() == 255
    assert ds.GetMetadataItem("COMPRESSION", "IMAGE_STRUCTURE") == "LZW"
    assert ds.GetMetadataItem("PREDICTOR", "IMAGE_STRUCTURE") == "2"
    assert band.GetBlockSize() == [256, 256]  # the driver's default TILED=YES is kept
    expected = np.clip(np.rint(ndvi_truth(red, nir) * 100 + 100), 0, 255).astype(np.uint8)
    expected[nir == 0] = 255  # nir's no-data pixels become the output's no-data
    np.testing.assert_array_equal(read_raster(out)[0], expected)
    assert float(band.GetMetadataItem("STATISTICS_MAXIMUM")) < 255  # no-data left out


def test_nan_results_become_nodata_in_float_output(bands, tmp_path):
    redPath, red = bands["red"]
    out = tmp_path / "nan.tif"
    assert calc("-i", f"r={redPath}", "-o", out, "where(r > 1500, sqrt(float64(r)), nan)",
                "--type", "Float32", "--nodata", -9999, "--workers", 1, "--quiet") == 0
    expected = np.where(red > 1500, np.sqrt(red.astype(np.float64)), -9999).astype(np.float32)
    np.testing.assert_array_equal(read_raster(out)[0], expected)


def test_multiband_band_selection_reductions_and_booleans(bands, tmp_path):
    multiPath, multi = bands["multi"]
    out3, out1, outBool = tmp_path / "x3.tif", tmp_path / "x1.tif", tmp_path / "bool.tif"
    assert calc("-i", f"m={multiPath}", "-o", out3, "m * 2", "--workers", 1, "--quiet") == 0
    np.testing.assert_array_equal(read_raster(out3), multi * 2)
    assert calc("-i", f"m={multiPath}", "-o", out1, "m[2] - mean(m, axis=0)",
                "--workers", 1, "--quiet") == 0
    np.testing.assert_allclose(read_raster(out1)[0], multi[2] - multi.mean(axis=0), rtol=1e-6)
    assert calc("-i", f"m={multiPath}", "-o", outBool, "(m[0] > 0.5) & (m[1] < 0.5)",
                "--workers", 1, "--quiet") == 0
    ds = gdal.Open(str(outBool))
    assert ds.GetRasterBand(1).DataType == gdal.GDT_Byte  # booleans are written as Byte
    np.testing.assert_array_equal(read_raster(outBool)[0], (multi[0] > 0.5) & (multi[1] < 0.5))


def test_constant_expression_fills_the_grid(bands, tmp_path):
    out = tmp_path / "seven.tif"
    assert calc("-i", f"a={bands['red'][0]}", "-o", out, "7", "--type", "Int16",
                "--workers", 1, "--quiet") == 0
    result = read_raster(out)
    assert result.shape == (1, ROWS, COLS) and (result == 7).all()


def test_reference_resample_and_footprint(tmp_path, rng):
    fine = rng.integers(0, 100, (ROWS, COLS)).astype(np.int16)
    coarse = rng.integers(0, 100, (ROWS // 2, COLS // 2)).astype(np.int16)
    finePath = write_raster(tmp_path / "fine.tif", fine)
    coarsePath = write_raster(tmp_path / "coarse.tif", coarse, geotransform=COARSE_GT)
    shiftedPath = write_raster(tmp_path / "shifted.tif", fine, geotransform=SHIFTED_GT)
    onFine, onCoarse = tmp_path / "onfine.tif", tmp_path / "oncoarse.tif"
    common = ["-i", f"f={finePath}", "-i", f"c={coarsePath}", "--workers", 1, "--quiet"]
    assert calc(*common, "-o", onFine, "c + 0 * f", "--reference", "f",
                "--resample", "near") == 0
    np.testing.assert_array_equal(read_raster(onFine)[0],
                                  np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1))
    assert calc(*common, "-o", onCoarse, "c + 0 * f", "--reference", "c") == 0
    np.testing.assert_array_equal(read_raster(onCoarse)[0], coarse)
    union = tmp_path / "union.tif"
    assert calc("-i", f"a={finePath}", "-i", f"s={shiftedPath}", "-o", union, "a + s",
                "--footprint", "union", "--workers", 1, "--quiet") == 0
    assert read_raster(union).shape == (1, ROWS + 100, COLS + 100)


def test_different_grids_without_reference_is_a_run_error(tmp_path, rng, capsys):
    data = rng.integers(0, 100, (ROWS // 2, COLS // 2)).astype(np.int16)
    finePath = write_raster(tmp_path / "fine.tif", np.zeros((ROWS, COLS), np.int16))
    coarsePath = write_raster(tmp_path / "coarse.tif", data, geotransform=COARSE_GT)
    out = tmp_path / "out.tif"
    assert calc("-i", f"f={finePath}", "-i", f"c={coarsePath}", "-o", out, "f + c",
                "--workers", 1) == 1
    assert "give --reference NAME" in one_error_line(capsys)
    assert not out.exists()


def test_nostats_driver_from_extension_and_quiet(bands, tmp_path, capsys):
    out = tmp_path / "plain.img"
    assert calc("-i", f"a={bands['red'][0]}", "-o", out, "a + 1", "--nostats",
                "--workers", 1, "--quiet") == 0
    assert capsys.readouterr().out == ""
    ds = gdal.Open(str(out))
    assert ds.GetDriver().ShortName == "HFA"
    assert ds.GetRasterBand(1).GetMetadataItem("STATISTICS_MEAN") is None
    np.testing.assert_array_equal(read_raster(out)[0], bands["red"][1] + 1)


# ---------------------------------------------------------------------------------------
# The command: errors are one line, nothing is written, nothing happens


MALICIOUS = [
    "__import__('os').system('touch pwned')",
    "a.__class__",
    "(lambda: 1)()",
    "open('pwned', 'w')",
    "a.__class__.__base__.__subclasses__()",
    "[c for c in ().__class__.__bases__]",
    "getattr(a, 'tofile')('pwned')",
    "np.save('pwned', a)",
    "9 ** 9 ** 9",
]


@pytest.mark.parametrize("expression", MALICIOUS)
def test_malicious_expression_refused(bands, tmp_path, monkeypatch, capsys, expression):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.tif"
    status = calc("-i", f"a={bands['red'][0]}", "-o", out, expression, "--workers", 1)
    assert status == 2
    one_error_line(capsys)
    assert not out.exists()
    assert not list(tmp_path.glob("pwned*"))


@pytest.mark.parametrize("expression, options, fragment", [
    ("a", ["--type", "Bogus"], "--type Bogus: unknown type"),
    ("a", ["--type", "Byte", "--nodata", "-1"], "not a value of the output type Byte"),
    ("a", ["--nodata", "abc"], "--nodata abc: not a number"),
    ("a", ["--workers", "0"], "--workers must be at least 1"),
    ("a", ["--workers", "many"], "invalid int value"),
    ("a", ["--blocksize", "0"], "--blocksize must be at least 1"),
    ("a", ["--co", "COMPRESS"], "give KEY=VALUE"),
    ("a", ["--driver", "NoSuchDriver"], "GDAL has no driver"),
    ("a", ["--footprint", "bounds"], "--footprint bounds needs --reference"),
    ("a", ["--reference", "zz"], "neither an input name"),
    ("a", ["--resample", "fancy"], "invalid choice"),
    ("a", ["--bogus"], "unrecognized arguments: --bogus"),
    ("a", ["extra"], "quote the expression"),
    ("a[3]", [], "input 'a' has 1 band(s)"),
])
def test_bad_options_are_one_line_status_2(bands, tmp_path, capsys, expression, options,
                                           fragment):
    out = tmp_path / "out.tif"
    status = calc("-i", f"a={bands['red'][0]}", "-o", out, expression, *options)
    assert status == 2
    assert fragment in one_error_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize("inputs, fragment", [
    ([], "give at least one input"),
    (["a"], "give NAME=FILE"),
    (["2x=f.tif"], "Python identifier"),
    (["where=f.tif"], "numpy function"),
    (["a=f.tif", "a=g.tif"], "given twice"),
])
def test_bad_inputs_are_status_2(tmp_path, capsys, inputs, fragment):
    argv = [arg for spec in inputs for arg in ("-i", spec)]
    assert calc(*argv, "-o", tmp_path / "out.tif", "1") == 2
    assert fragment in one_error_line(capsys)


def test_missing_input_file_names_it(bands, tmp_path, capsys):
    missing = tmp_path / "no_such.tif"
    out = tmp_path / "out.tif"
    assert calc("-i", f"a={bands['red'][0]}", "-i", f"b={missing}", "-o", out, "a + b") == 1
    assert one_error_line(capsys) == f"{PROG}: error: input 'b': {missing}: no such file"
    assert not out.exists()


def test_output_over_an_input_or_in_missing_folder(bands, tmp_path, capsys):
    redPath = bands["red"][0]
    assert calc("-i", f"a={redPath}", "-o", redPath, "a + 1") == 2
    assert "that is input 'a'" in one_error_line(capsys)
    np.testing.assert_array_equal(read_raster(redPath)[0], bands["red"][1])
    missingFolder = tmp_path / "nowhere" / "out.tif"
    assert calc("-i", f"a={redPath}", "-o", missingFolder, "a", "--workers", 1) == 1
    assert "does not exist" in one_error_line(capsys)


def test_help_lists_calc_and_its_grammar(capsys):
    assert cmdmain.main(["calc", "--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: sharedapplier calc")
    assert "expression grammar" in text and "arctan2" in text and "--resample" in text
    cmdmain.main(["--help"])
    assert "calc " in capsys.readouterr().out


# ---------------------------------------------------------------------------------------
# As a real process


def run_module(*argv, cwd):
    return subprocess.run([sys.executable, "-m", "sharedapplier.cmdline.main", "calc",
                           *map(str, argv)], capture_output=True, text=True, timeout=120,
                          cwd=cwd)


def test_subprocess_run_and_refusal(bands, tmp_path):
    (redPath, red), (nirPath, nir) = bands["red"], bands["nir"]
    out = tmp_path / "ndvi.tif"
    done = run_module("-i", f"a={redPath}", "-i", f"b={nirPath}", "-o", out, NDVI,
                      "--workers", 2, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "wrote" in done.stdout
    np.testing.assert_array_equal(read_raster(out)[0], ndvi_truth(red, nir))

    bad = tmp_path / "bad.tif"
    done = run_module("-i", f"a={redPath}", "-o", bad, "__import__('os').system('touch x')",
                      cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{PROG}: error: ")
    assert "Traceback" not in done.stderr
    assert not bad.exists() and not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------------------
# Arithmetic that never wraps round


def test_ndvi_of_uint16_bands_as_written_is_ndvi(bands, tmp_path):
    """The gdal_calc trap: (b - a) on UInt16 wrapped round, and 29,745 of 60,000 pixels
    were wrong. The result equals numpy's on float64 copies of the inputs."""
    (redPath, red), (nirPath, nir) = bands["red"], bands["nir"]
    out = tmp_path / "ndvi.tif"
    assert calc("-i", f"a={redPath}", "-i", f"b={nirPath}", "-o", out, "(b - a) / (b + a)",
                "--quiet") == 0
    a, b = red.astype(np.float64), nir.astype(np.float64)
    result = read_raster(out)[0]
    assert result.dtype == np.float64
    np.testing.assert_array_equal(result, (b - a) / (b + a))
    assert (result < 0).sum() > 10000  # the pixels that wrapped round before


@pytest.mark.parametrize("expression,truth", [
    ("a * -1", lambda a, b: -a),
    ("-a", lambda a, b: -a),
    ("a * b", lambda a, b: a * b),
    ("a - b", lambda a, b: a - b),
    ("a ** 2", lambda a, b: a ** 2),
    ("sqrt(a)", lambda a, b: np.sqrt(a)),
    ("sum(a, axis=0) * 1000", lambda a, b: a * 1000),
    ("a // 7 + b % 5", lambda a, b: a // 7 + b % 5),
])
def test_integer_arithmetic_is_numpys_on_float64_copies(expression, truth):
    a = np.array([[[0, 1, 60000, 65535]]], dtype=np.uint16)
    b = np.array([[[65535, 2, 3, 65535]]], dtype=np.uint16)
    got = rastercalc.BlockCalculator(expression, ["a", "b"]).compute({"a": a, "b": b})
    want = truth(a.astype(np.float64), b.astype(np.float64))
    np.testing.assert_array_equal(got, want.reshape(got.shape))
    assert got.dtype == np.float64


@pytest.mark.parametrize("expression,dtype,truth", [
    ("a & 255", np.uint16, lambda a: a & 255),
    ("(a >> 8) | 1", np.uint16, lambda a: (a >> 8) | 1),
    ("~a", np.uint16, lambda a: ~a),
    ("where(a > 100, a, 0)", np.uint16, lambda a: np.where(a > 100, a, 0)),
    ("maximum(a, 7)", np.uint16, lambda a: np.maximum(a, 7)),
    ("int32(a) - 1", np.float64, lambda a: a.astype(np.float64) - 1),
    ("float32(a) - a", np.float32, lambda a: np.float32(a) - a),
])
def test_bitwise_selections_and_floats_keep_their_types(expression, dtype, truth):
    a = np.array([[[0, 1, 300, 65535]]], dtype=np.uint16)
    got = rastercalc.BlockCalculator(expression, ["a"]).compute({"a": a})
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, truth(a).astype(dtype).reshape(got.shape))


def test_type_casts_only_at_the_end(bands, tmp_path):
    (redPath, red), (nirPath, nir) = bands["red"], bands["nir"]
    out = tmp_path / "diff.tif"
    assert calc("-i", f"a={redPath}", "-i", f"b={nirPath}", "-o", out, "b - a",
                "--type", "Int16", "--quiet") == 0
    result = read_raster(out)[0]
    assert result.dtype == np.int16
    np.testing.assert_array_equal(result, nir.astype(np.int32) - red)

