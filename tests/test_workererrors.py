"""What a failure in a worker looks like to the user, in every kind of worker.

The user's own exception is the ``__cause__`` of the WorkerExceptionError; the worker's
traceback is printed once and names the user's script and line; a user function that
hangs is named as the cause of the timeout; a worker's log that goes with the run
directory is quoted; a block of another dtype is converted with one warning.
"""
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import numpy as np
import pytest
from conftest import read_raster, write_raster

from sharedapplier import applier, rioserrors
from sharedapplier.structures import (
    CW_PROCESSES,
    CW_SUBPROC,
    CW_THREADS,
    ConcurrencyStyle,
    FilenameAssociations,
    WorkerErrorRecord,
)

WORKER_STYLES = {
    "threads": dict(computeWorkerKind=CW_THREADS, numComputeWorkers=2),
    "processes": dict(computeWorkerKind=CW_PROCESSES, numComputeWorkers=2),
    "subproc": dict(computeWorkerKind=CW_SUBPROC, numComputeWorkers=2),
}


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    d = tmp_path_factory.mktemp("errors")
    a = np.arange(2 * 128 * 192, dtype=np.int32).reshape(2, 128, 192) % 1000
    return write_raster(d / "a.tif", a.astype(np.int16)), a.astype(np.int16)


def files(**kw):
    fa = FilenameAssociations()
    for key, value in kw.items():
        setattr(fa, key, str(value))
    return fa


def controlsFor(tmp_path, style=None, window=64):
    c = applier.ApplierControls()
    c.setOutputDriverName("HFA")
    c.setWindowSize(window, window)
    c.setTempdir(str(tmp_path))
    c.setCalcStats(False)
    if style is not None:
        c.setConcurrencyStyle(ConcurrencyStyle(computeBarrierTimeout=120, **style))
    return c


SCRIPT = textwrap.dedent("""\
    import sys
    from sharedapplier import applier
    from sharedapplier.structures import ConcurrencyStyle

    def userFunc(info, inputs, outputs):
        if info.getBlockCount() == (1, 1):
            1 / 0
        outputs.o = inputs.a

    inf, outf = applier.FilenameAssociations(), applier.FilenameAssociations()
    inf.a, outf.o = sys.argv[1], sys.argv[2]
    c = applier.ApplierControls()
    c.setOutputDriverName("HFA")
    c.setWindowSize(64, 64)
    c.setTempdir(sys.argv[3])
    if sys.argv[4] != "none":
        c.setConcurrencyStyle(ConcurrencyStyle(computeWorkerKind=sys.argv[4],
                                               numComputeWorkers=2))
    applier.apply(userFunc, inf, outf, controls=c)
    """)
FAILING_LINE = 7


@pytest.mark.parametrize("kind", ["none", CW_THREADS, CW_PROCESSES, CW_SUBPROC])
def test_traceback_is_printed_once_with_the_scripts_file_and_line(kind, image, tmp_path):
    """A script's function travels to processes by value; its frames still name the
    script, and the traceback appears once in what Python prints."""
    script = tmp_path / "myscript.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script), image[0], str(tmp_path / "o.img"),
                           str(tmp_path), kind], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    frame = f'File "{script}", line {FAILING_LINE}, in userFunc'
    assert done.stderr.count(frame) == 1, done.stderr
    assert "<dynamic-code>" not in done.stderr
    assert "1 / 0" in done.stderr      # the source line, read from the script
    assert ("WorkerExceptionError" in done.stderr) == (kind != "none")


def failOnBlock(info, inputs, outputs):
    if info.getBlockCount() == (1, 1):
        raise ZeroDivisionError("failed on purpose")
    outputs.o = inputs.a


class Unpicklable(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


def failUnpicklably(info, inputs, outputs):
    if info.getBlockCount() == (1, 1):
        raise Unpicklable("holds a lock")
    outputs.o = inputs.a


@pytest.mark.parametrize("styleName", list(WORKER_STYLES))
def test_cause_is_the_users_exception_rebuilt(styleName, image, tmp_path, no_shm_leak):
    with pytest.raises(rioserrors.WorkerExceptionError) as info:
        applier.apply(failOnBlock, files(a=image[0]), files(o=tmp_path / "o.img"),
                      controls=controlsFor(tmp_path, WORKER_STYLES[styleName]))
    cause = info.value.__cause__
    assert isinstance(cause, ZeroDivisionError)
    assert str(cause) == "failed on purpose"
    assert "while processing block ApplierBlockDefn(64, 64" in str(info.value)


def openMissingFile(info, inputs, outputs):
    if info.getBlockCount() == (1, 1):
        open("/nonexistent/sharedapplier/lookup.csv")
    outputs.o = inputs.a


@pytest.mark.parametrize("styleName", list(WORKER_STYLES))
def test_an_os_error_of_the_user_function_is_the_users_error(styleName, image, tmp_path,
                                                           no_shm_leak):
    """An OSError raised by the user function is reported as its error, not as a lost
    connection, in a remote worker too (its link to the main process raises OSErrors)."""
    with pytest.raises(rioserrors.WorkerExceptionError) as info:
        applier.apply(openMissingFile, files(a=image[0]), files(o=tmp_path / "o.img"),
                      controls=controlsFor(tmp_path, WORKER_STYLES[styleName]))
    assert isinstance(info.value.__cause__, FileNotFoundError)
    assert "lookup.csv" in str(info.value) and "while processing block" in str(info.value)


def test_a_cause_that_cannot_travel_keeps_its_type_name_and_message():
    record = WorkerErrorRecord(Unpicklable("holds a lock"), "compute", 3)
    copy = pickle.loads(pickle.dumps(record))
    assert isinstance(copy.exc, RuntimeError)
    assert str(copy.exc) == "Unpicklable: holds a lock"
    assert copy.formattedTraceback == record.formattedTraceback


def test_unpicklable_cause_from_a_process(image, tmp_path, no_shm_leak):
    with pytest.raises(rioserrors.WorkerExceptionError) as info:
        applier.apply(failUnpicklably, files(a=image[0]), files(o=tmp_path / "o.img"),
                      controls=controlsFor(tmp_path, WORKER_STYLES["processes"]))
    assert str(info.value.__cause__) == "Unpicklable: holds a lock"


def misspelt(info, inputs, outputs):
    outputs.o = inputs.rde


def test_a_misspelt_input_names_the_inputs_there_are(tmp_path, image):
    with pytest.raises(AttributeError) as info:
        applier.apply(misspelt, files(red=image[0], nir=image[0]), files(o=tmp_path / "o.img"),
                      controls=controlsFor(tmp_path))
    assert "'rde'" in str(info.value)
    assert "nir, red" in str(info.value)


def hangOnBlock(info, inputs, outputs):
    if info.getBlockCount() == (1, 0):
        threading.Event().wait(30)
    outputs.o = inputs.a


@pytest.mark.parametrize("styleName,readers", [("threads", 1), ("threads", 0),
                                               ("processes", 0), ("subproc", 1)])
def test_a_hanging_user_function_is_named_as_the_cause(styleName, readers, image, tmp_path,
                                                       no_shm_leak):
    """Whichever wait runs out first (a reader's for a free slot, a worker's, or the
    writer's for the next block), the error names the block, the worker and how long the
    user function has been running."""
    style = dict(WORKER_STYLES[styleName], numReadWorkers=readers, readBufferInsertTimeout=2,
                 computeBufferPopTimeout=3, readBufferPopTimeout=30)
    with pytest.raises(rioserrors.WorkerExceptionError) as info:
        applier.apply(hangOnBlock, files(a=image[0]), files(o=tmp_path / "o.img"),
                      controls=controlsFor(tmp_path, style))
    text = str(info.value)
    assert "the user function has been running for" in text
    assert "on block ApplierBlockDefn(0, 64, 64, 64)" in text
    assert ("raise readBufferInsertTimeout (current value = 2)" in text
            or "raise computeBufferPopTimeout (current value = 3)" in text)
    assert isinstance(info.value.__cause__, rioserrors.TimeoutError)


def printAndFail(info, inputs, outputs):
    print("a line the user printed", flush=True)
    raise ValueError("remote failure")


def test_remote_error_quotes_the_log_it_cannot_leave_behind(image, tmp_path, no_shm_leak):
    """The run directory (and the worker logs in it) is removed as the run fails, so the
    error quotes the log's tail instead of naming a file that no longer exists."""
    with pytest.raises(rioserrors.WorkerExceptionError) as info:
        applier.apply(printAndFail, files(a=image[0]), files(o=tmp_path / "o.img"),
                      controls=controlsFor(tmp_path, WORKER_STYLES["subproc"]))
    text = str(info.value)
    assert "last lines of the worker's log:" in text
    assert "a line the user printed" in text
    assert "worker_0.log" not in text and "worker_1.log" not in text
    assert not [p for p in os.listdir(tmp_path) if p.startswith("sharedapplier_run")]


def changingDtype(info, inputs, outputs):
    if info.isFirstBlock():
        time.sleep(0.5)  # later blocks finish first: the first block's dtype must still win
    values = inputs.a.astype(np.int32) * 3 - 200
    outputs.o = values.astype(np.uint8) if info.isFirstBlock() else values


@pytest.mark.parametrize("styleName", [None, *WORKER_STYLES])
def test_a_later_block_of_another_dtype_is_clamped_with_one_warning(styleName, image,
                                                                     tmp_path, no_shm_leak):
    style = None if styleName is None else dict(WORKER_STYLES[styleName], numReadWorkers=1)
    out = tmp_path / "o.img"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        applier.apply(changingDtype, files(a=image[0]), files(o=out),
                      controls=controlsFor(tmp_path, style))
    ours = [w for w in caught if issubclass(w.category, rioserrors.DtypeChangeWarning)]
    assert len(ours) == 1
    assert "Output 'o'" in str(ours[0].message)
    assert "int32" in str(ours[0].message) and "uint8" in str(ours[0].message)
    values = image[1].astype(np.int32) * 3 - 200
    expected = np.clip(values, 0, 255).astype(np.uint8)
    expected[:, :64, :64] = values[:, :64, :64].astype(np.uint8)    # the first block
    assert np.array_equal(read_raster(out), expected)


def test_bad_style_values_are_rios_errors_and_value_errors():
    with pytest.raises(rioserrors.RiosError) as info:
        ConcurrencyStyle(numComputeWorkers=-1)
    assert isinstance(info.value, ValueError)
    assert "numComputeWorkers" in str(info.value)


def test_compute_threads_without_read_workers_run(image, tmp_path, no_shm_leak):
    style = ConcurrencyStyle(computeWorkerKind=CW_THREADS, numComputeWorkers=2)
    assert style.numReadWorkers == 0
    out = tmp_path / "o.img"
    c = controlsFor(tmp_path)
    c.setConcurrencyStyle(style)
    applier.apply(lambda info, inputs, outputs: setattr(outputs, "o", inputs.a * 2),
                  files(a=image[0]), files(o=out), controls=c)
    assert np.array_equal(read_raster(out), image[1] * 2)
