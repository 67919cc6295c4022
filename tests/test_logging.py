"""Messages go through the ``sharedapplier`` logger: a handler there gets them, and with no
logging configured they are on stderr, text only, as they were when they were printed."""
import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
from conftest import write_raster

from sharedapplier import applier
from sharedapplier.structures import FilenameAssociations, WorkerErrorRecord


class Kept(logging.Handler):
    """Keeps every record it is given."""

    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_a_warning_reaches_a_handler_on_the_sharedapplier_logger(tmp_path):
    kept = Kept()
    logger = logging.getLogger("sharedapplier")
    logger.addHandler(kept)
    try:
        fn = write_raster(tmp_path / "a.tif", np.ones((1, 8, 8), np.float32))
        infiles, outfiles = FilenameAssociations(), FilenameAssociations()
        infiles.a, outfiles.out = fn, str(tmp_path / "out.img")
        applier.apply(lambda info, inputs, outputs: setattr(outputs, "out", inputs.a * np.nan),
                      infiles, outfiles)
        try:
            raise ZeroDivisionError("boom")
        except ZeroDivisionError as e:
            applier.reportWorkerException(WorkerErrorRecord(e, "compute", workerID=3))
    finally:
        logger.removeHandler(kept)
    seen = [(r.name, r.levelno, r.getMessage()) for r in kept.records]
    assert ("sharedapplier.blockwriter", logging.WARNING,
            f"WARNING: Output file {outfiles.out} contains NaN, Inf or -Inf") in seen
    errors = [m for name, level, m in seen if level == logging.ERROR]
    assert len(errors) == 1 and "Error in compute worker 3" in errors[0]
    assert "ZeroDivisionError: boom" in errors[0]


SCRIPT = textwrap.dedent("""
    import logging, sys
    {configure}
    from sharedapplier import blockwriter
    assert not logging.getLogger("sharedapplier").handlers  # the library adds none
    blockwriter.nanWarningFiles.add("out.img")
    blockwriter.warnNanOrInf("out.img")
""")
OBSOLETE = ("WARNING: environment variable RIOS_PBSJOBMGR_INITCMDS is obsolete; use "
            "ConcurrencyStyle(computeWorkerExtraParams=...) instead")
NAN = "WARNING: Output file out.img contains NaN, Inf or -Inf"


def runScript(tmp_path, configure=""):
    env = dict(os.environ, RIOS_PBSJOBMGR_INITCMDS="module load gdal")
    return subprocess.run([sys.executable, "-c", SCRIPT.format(configure=configure)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_with_no_logging_configured_the_messages_are_on_stderr(tmp_path):
    done = runScript(tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [OBSOLETE, NAN]
    assert done.stdout == ""


def test_basicConfig_sends_them_to_a_file(tmp_path):
    done = runScript(tmp_path, 'logging.basicConfig(filename="run.log", '
                               'format="%(levelname)s %(name)s: %(message)s")')
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert (tmp_path / "run.log").read_text().splitlines() == [
        f"WARNING sharedapplier.const: {OBSOLETE}", f"WARNING sharedapplier.blockwriter: {NAN}"]
