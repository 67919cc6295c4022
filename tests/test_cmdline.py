"""The command-line tools, through main([...]) and through the installed console scripts."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import write_raster
from osgeo import gdal

from sharedapplier.cmdline import main as cmdmain
from sharedapplier.cmdline import stats as cmdstats
from sharedapplier.engine import slabpool

SUBCOMMANDS = ("demo", "calc", "cleanup", "computeworker", "calcstats", "printstats", "bench")


def script(name):
    """Path of an installed console script of this environment, or skip the test."""
    candidate = os.path.join(sys.prefix, "bin", name)
    if os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"console script {name} is not installed (pip install -e .)")
    return found


def run_script(*args, cwd=None):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, cwd=cwd)


def mean_from_line(line):
    fields = dict(part.split(":", 1) for part in line.split(", "))
    return float(fields["Mean"])


@pytest.fixture
def small_tif(tmp_path, rng):
    data = rng.integers(1, 200, size=(2, 120, 150)).astype(np.uint8)
    return write_raster(tmp_path / "small.tif", data), data


# ---------------------------------------------------------------------------------------
# calcstats / printstats


def test_calcstats_then_printstats_main(small_tif, capsys):
    path, data = small_tif
    assert cmdmain.main(["calcstats", path]) == 0
    capsys.readouterr()
    assert cmdmain.main(["printstats", path]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for band, line in enumerate(lines):
        assert line.startswith(f"Layer:{band + 1}, Mean:")
        assert mean_from_line(line) == pytest.approx(data[band].mean(), rel=1e-6)
    ds = gdal.Open(path)
    assert ds.GetRasterBand(1).GetOverviewCount() == 0  # 150 px: below the minimum dimension
    assert ds.GetRasterBand(1).GetMetadataItem("STATISTICS_MEDIAN") is not None


def test_calcstats_ignore_and_existing_nodata(tmp_path, rng):
    data = rng.integers(0, 50, size=(80, 90)).astype(np.int16)
    path = write_raster(tmp_path / "nd.tif", data, nodata=0)
    assert cmdmain.main(["calcstats", path]) == 0
    ds = gdal.Open(path)
    band = ds.GetRasterBand(1)
    assert band.GetNoDataValue() == 0
    assert float(band.GetMetadataItem("STATISTICS_MEAN")) == pytest.approx(
        data[data != 0].mean(), rel=1e-6)

    other = write_raster(tmp_path / "ig.tif", data)
    assert cmdmain.main(["calcstats", "-i", "1", "--approx", other]) == 0
    ds = gdal.Open(other)
    assert ds.GetRasterBand(1).GetNoDataValue() == 1


def test_calcstats_then_printstats_console_scripts(small_tif, tmp_path):
    path, data = small_tif
    exe = script("sharedapplier")
    done = run_script(exe, "calcstats", path)
    assert done.returncode == 0, done.stderr
    done = run_script(exe, "printstats", "--printfilename", path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2
    assert all(line.startswith(f"File:{path}, Layer:") for line in lines)
    assert mean_from_line(lines[1]) == pytest.approx(data[1].mean(), rel=1e-6)


def test_rios_named_scripts(small_tif):
    path, data = small_tif
    done = run_script(script("rioscalcstats"), path)
    assert done.returncode == 0, done.stderr
    done = run_script(script("riosprintstats"), path)
    assert done.returncode == 0, done.stderr
    assert mean_from_line(done.stdout.splitlines()[0]) == pytest.approx(data[0].mean(), rel=1e-6)
    assert run_script(script("rioscalcstats")).returncode == 1


@pytest.mark.parametrize("command", ["calcstats", "printstats"])
def test_missing_file_main(tmp_path, capsys, command):
    missing = str(tmp_path / "no_such_file.tif")
    assert cmdmain.main([command, missing]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"sharedapplier {command}: error: {missing}: no such file"]


@pytest.mark.parametrize("command", ["calcstats", "printstats"])
def test_missing_file_console_script(tmp_path, command):
    missing = str(tmp_path / "no_such_file.tif")
    done = run_script(script("sharedapplier"), command, missing)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert missing in lines[0] and lines[0].startswith(f"sharedapplier {command}: error: ")


def test_not_a_raster_is_one_line(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("not a raster\n")
    assert cmdmain.main(["calcstats", str(text)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"sharedapplier calcstats: error: {text}: not a raster file GDAL can read"]


def test_read_only_file_is_one_line(small_tif, capsys, monkeypatch):
    path, _ = small_tif
    real_access = os.access
    # root ignores permission bits, so pretend the file is read-only
    monkeypatch.setattr(cmdstats.os, "access",
                        lambda p, mode: False if (p == path and mode == os.W_OK)
                        else real_access(p, mode))
    assert cmdmain.main(["calcstats", path]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "read-only" in err[0] and path in err[0]


def test_good_and_bad_files_together(small_tif, tmp_path, capsys):
    path, _ = small_tif
    missing = str(tmp_path / "gone.tif")
    assert cmdmain.main(["calcstats", missing, path]) == 1
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1
    ds = gdal.Open(path)
    assert ds.GetRasterBand(1).GetMetadataItem("STATISTICS_MEAN") is not None


@pytest.mark.parametrize("command", ["calcstats", "printstats"])
def test_no_files_is_usage_and_exit_1(capsys, command):
    assert cmdmain.main([command]) == 1
    assert "usage:" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# cleanup


def _pid_that_does_not_exist():
    for pid in range(999999, 999000, -1):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            continue
    pytest.skip("could not find an unused pid")


@pytest.fixture
def fake_stale_segment():
    if not os.path.isdir(slabpool.SHM_DIR):
        pytest.skip("no /dev/shm here")
    pid = _pid_that_does_not_exist()
    path = os.path.join(slabpool.SHM_DIR, f"sa_{pid}_deadbeef_in")
    with open(path, "wb") as f:
        f.write(b"\0" * 4096)
    yield path
    if os.path.exists(path):
        os.unlink(path)


def test_cleanup_main(fake_stale_segment, capsys):
    assert cmdmain.main(["cleanup", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would remove" in out and os.path.basename(fake_stale_segment) in out
    assert os.path.exists(fake_stale_segment)
    assert cmdmain.main(["cleanup"]) == 0
    out = capsys.readouterr().out
    assert f"removed {fake_stale_segment}" in out
    assert not os.path.exists(fake_stale_segment)


def test_cleanup_console_script(fake_stale_segment):
    done = run_script(script("sharedapplier"), "cleanup")
    assert done.returncode == 0, done.stderr
    assert fake_stale_segment in done.stdout
    assert not os.path.exists(fake_stale_segment)


def test_cleanup_leaves_live_segments(capsys):
    if not os.path.isdir(slabpool.SHM_DIR):
        pytest.skip("no /dev/shm here")
    path = os.path.join(slabpool.SHM_DIR, f"sa_{os.getpid()}_cafef00d_in")
    with open(path, "wb") as f:
        f.write(b"\0")
    try:
        assert cmdmain.main(["cleanup"]) == 0
        assert os.path.exists(path)
    finally:
        os.unlink(path)


# ---------------------------------------------------------------------------------------
# demo


def _check_demo(outdir, out):
    for name in ("scene.tif", "ndvi_processes.tif", "ndvi_none.tif"):
        assert (outdir / name).is_file(), name
    assert "Outputs identical: yes" in out
    assert "Wall clock elapsed time" in out and "Speed: CW_PROCESSES" in out
    a = gdal.Open(str(outdir / "ndvi_processes.tif")).ReadAsArray()
    b = gdal.Open(str(outdir / "ndvi_none.tif")).ReadAsArray()
    assert a.shape == (2, 600, 600)
    assert np.array_equal(a, b)
    assert -1 <= a.min() and a.max() <= 1 and a.std() > 0.05


def test_demo_main(tmp_path, capsys, no_shm_leak):
    outdir = tmp_path / "demo"
    assert cmdmain.main(["demo", "--size", "600", "--workers", "2",
                         "--outdir", str(outdir)]) == 0
    _check_demo(outdir, capsys.readouterr().out)


def test_demo_console_script(tmp_path):
    outdir = tmp_path / "demo"
    done = run_script(script("sharedapplier"), "demo", "--size", "600", "--outdir", str(outdir))
    assert done.returncode == 0, done.stdout + done.stderr
    _check_demo(outdir, done.stdout)


# ---------------------------------------------------------------------------------------
# bench and help


def test_bench_without_perf_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cmdmain, "benchScript", lambda: tmp_path / "perf" / "bench.py")
    assert cmdmain.main(["bench"]) == 2
    err = capsys.readouterr().err
    assert "bench" in err and "make bench" in err


def test_bench_runs_perf_main(tmp_path, monkeypatch):
    perf = tmp_path / "perf"
    perf.mkdir()
    (perf / "bench.py").write_text(
        "CALLS = []\n"
        "def main(args):\n"
        "    import pathlib\n"
        "    pathlib.Path(__file__).with_name('called.txt').write_text(' '.join(args))\n"
        "    return 3\n")
    monkeypatch.setattr(cmdmain, "benchScript", lambda: perf / "bench.py")
    assert cmdmain.main(["bench", "--quick", "x"]) == 3
    assert (perf / "called.txt").read_text() == "--quick x"


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_main(command, capsys):
    assert cmdmain.main([command, "--help"]) == 0
    assert "usage:" in capsys.readouterr().out


def test_help_console_scripts():
    exe = script("sharedapplier")
    done = run_script(exe, "--help")
    assert done.returncode == 0
    for command in SUBCOMMANDS:
        assert command in done.stdout
    for command in ("demo", "cleanup", "calcstats", "printstats"):
        done = run_script(exe, command, "--help")
        assert done.returncode == 0 and "usage:" in done.stdout, command
    for name in ("rioscalcstats", "riosprintstats"):
        done = run_script(script(name), "--help")
        assert done.returncode == 0 and f"usage: {name}" in done.stdout


# ---------------------------------------------------------------------------------------
# Without GDAL's Python bindings

HIDE_GDAL = '''
import sys
class HideGdal:
    """Stands for a Python without GDAL's bindings: 'osgeo' cannot be found."""
    def find_spec(self, name, path=None, target=None):
        if name == "osgeo" or name.startswith("osgeo."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, HideGdal())
'''


@pytest.fixture
def without_gdal(tmp_path):
    """An environment whose Python cannot import osgeo (a sitecustomize hides it)."""
    (tmp_path / "sitecustomize.py").write_text(HIDE_GDAL)
    return dict(os.environ, PYTHONPATH=str(tmp_path))


def test_the_console_script_without_gdal_says_how_to_get_it(without_gdal):
    done = subprocess.run([script("sharedapplier"), "--help"], env=without_gdal,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert done.stderr.startswith("sharedapplier: error: sharedapplier needs GDAL's Python")
    assert 'pip install "gdal[numpy]==$(gdal-config --version)"' in done.stderr
    assert "conda env create -f environment.yml" in done.stderr


def test_importing_without_gdal_raises_a_clear_import_error(without_gdal):
    probe = ("try:\n import sharedapplier.applier\nexcept ImportError as e:\n"
             " print(type(e).__name__, isinstance(e, ImportError)); print(e)")
    done = subprocess.run([sys.executable, "-c", probe], env=without_gdal,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "GdalMissingError True"
    assert "needs GDAL's Python bindings" in lines[1] and "conda-forge" in done.stdout
