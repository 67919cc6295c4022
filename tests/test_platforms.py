"""What runs off Linux: CW_NONE and CW_THREADS; the other kinds are refused at the start of
the run with what to use instead, and the package imports without Unix-only modules."""
import subprocess
import sys

import numpy as np
import pytest
from conftest import read_raster, write_raster

from sharedapplier import applier, platforms, rioserrors
from sharedapplier.structures import ConcurrencyStyle

OTHER_KINDS = ["CW_PROCESSES", "CW_SUBPROC", "CW_SLURM", "CW_PBS", "CW_AWSBATCH"]


@pytest.mark.parametrize("platform,name", [("darwin", "macOS"), ("win32", "Windows")])
@pytest.mark.parametrize("kind", OTHER_KINDS)
def test_kinds_that_need_linux_say_so_and_what_runs_instead(kind, platform, name):
    style = ConcurrencyStyle(computeWorkerKind=kind, numComputeWorkers=2)
    with pytest.raises(rioserrors.UnavailableError) as info:
        platforms.checkStyleRuns(style, platform)
    text = str(info.value)
    assert f"{kind} needs Linux, and this is {name}" in text and "CW_THREADS" in text
    platforms.checkStyleRuns(style, "linux")


def job(tmp_path, style):
    arr = np.arange(3 * 80 * 70, dtype=np.uint16).reshape(3, 80, 70)
    infiles, outfiles = applier.FilenameAssociations(), applier.FilenameAssociations()
    infiles.a = write_raster(tmp_path / "in.tif", arr)
    outfiles.b = str(tmp_path / "out.img")
    controls = applier.ApplierControls()
    controls.setWindowSize(32, 32)
    controls.setConcurrencyStyle(style)
    return arr, infiles, outfiles, controls


def square(info, inputs, outputs):
    outputs.b = inputs.a.astype(np.float64) ** 2


def test_a_run_off_linux_is_refused_before_it_opens_a_file(tmp_path, monkeypatch):
    _, infiles, outfiles, controls = job(
        tmp_path, ConcurrencyStyle(computeWorkerKind="CW_PROCESSES", numComputeWorkers=2))
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(rioserrors.UnavailableError, match="CW_PROCESSES needs Linux"):
        applier.apply(square, infiles, outfiles, controls=controls)
    assert not (tmp_path / "out.img").exists()


@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_threads_run_off_linux(tmp_path, monkeypatch, platform):
    arr, infiles, outfiles, controls = job(
        tmp_path, ConcurrencyStyle(computeWorkerKind="CW_THREADS", numComputeWorkers=2,
                                   numReadWorkers=1))
    monkeypatch.setattr(sys, "platform", platform)
    applier.apply(square, infiles, outfiles, controls=controls)
    monkeypatch.undo()
    assert np.array_equal(read_raster(outfiles.b), arr.astype(np.float64) ** 2)


def test_the_package_imports_without_unix_only_modules():
    """Every module imports where fcntl, resource, termios and pwd do not exist (Windows).
    psutil, whose Linux half uses resource, has its own Windows half: it is imported first."""
    code = (
        "import sys, pkgutil, importlib, psutil\n"
        "for name in ('fcntl', 'resource', 'termios', 'pwd', 'grp'):\n"
        "    sys.modules[name] = None\n"
        "import sharedapplier\n"
        "names = [m.name for m in pkgutil.walk_packages(sharedapplier.__path__,\n"
        "                                               'sharedapplier.')\n"
        "         if not m.name.endswith('__main__')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names), 'modules')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[0]) > 40
