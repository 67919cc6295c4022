"""Resumable runs: a run killed part way (SIGKILL, SIGTERM) goes on where it stopped when
the same script runs again, and its outputs are the image an uninterrupted run writes. A
run whose fingerprint differs starts again. Real processes, real signals."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from conftest import assertSameAsGdalSees, whatGdalSees, write_raster

from sharedapplier import journal
from sharedapplier.cmdline import main as cmdmain

NBLOCKS = 6 * 5  # 320 x 384 pixels in blocks of 64


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    arr = np.random.default_rng(9).integers(0, 4000, (2, 320, 384), dtype=np.uint16)
    return write_raster(tmp_path_factory.mktemp("scene") / "in.tif", arr, nodata=0)


STYLES = {"none": "None", "processes": "ConcurrencyStyle(computeWorkerKind=CW_PROCESSES, "
                                        "numComputeWorkers=2)"}


def script(scene, folder, style, resumable=True, offset=1):
    """A program whose user function sleeps per block when SLOW is set (the same code, so
    the same fingerprint, either way)."""
    return textwrap.dedent(f"""
        import os, sys, time
        import numpy
        from sharedapplier import applier
        from sharedapplier.structures import ConcurrencyStyle, CW_PROCESSES
        def scaled(info, inputs, outputs, otherArgs):
            time.sleep(float(os.environ.get("SLOW", "0")))
            otherArgs.blocks += 1
            outputs.deflate = (inputs.a // 3 + {offset}).astype(numpy.int16)
            outputs.hfa = inputs.a[:1] % 250
        if __name__ == "__main__":
            i = applier.FilenameAssociations(); i.a = {str(scene)!r}
            o = applier.FilenameAssociations()
            o.deflate = {str(folder / 'out.tif')!r}; o.hfa = {str(folder / 'out.img')!r}
            c = applier.ApplierControls(); c.setWindowSize(64, 64); c.setOverviewMinDim(16)
            c.setOutputDriverName("HFA", imagename="hfa")
            c.setOutputDriverName("GTiff", imagename="deflate")
            c.setCreationOptions(["COMPRESS=DEFLATE", "TILED=YES", "BLOCKXSIZE=64",
                                  "BLOCKYSIZE=64"], imagename="deflate")
            c.setResumable({resumable})
            style = {STYLES[style]}
            if style is not None:
                c.setConcurrencyStyle(style)
            other = applier.OtherInputs(); other.blocks = 0
            rtn = applier.apply(scaled, i, o, other, controls=c)
            print("resumedFrom", rtn.resumedFrom, "blocks",
                  sum(x.blocks for x in rtn.otherArgsList))
    """)


def runScript(text, folder, slow=None, **kwargs):
    env = dict(os.environ, **{journal.JOURNAL_SECONDS_ENV: "0"})  # a commit every row
    if slow is not None:
        env["SLOW"] = str(slow)
    path = folder / "job.py"
    path.write_text(text)
    return subprocess.Popen([sys.executable, str(path)], env=env, cwd=folder,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def cleanedUp(folder, midRun=True):
    """Run ``sharedapplier cleanup`` after a kill: the temporary folder (``rios_*``, in the
    working directory, as no tempdir is set) that a SIGKILL ``midRun`` left is gone."""
    if midRun:
        assert list(folder.glob("rios_*")), "a killed run leaves its temporary folder"
    assert cmdmain.main(["cleanup"]) == 0
    return not list(folder.glob("rios_*"))


def journalBlocks(folder):
    """The blocks a resumed run starts from: the fewest that the two outputs' latest
    journal entries name (a kill between their two commits leaves one a row behind)."""
    entries = [journal.loadEntry(journal.journalPath(str(folder / name)))
               for name in ("out.tif", "out.img")]
    return 0 if any(e is None for e in entries) else min(e.blocksDone for e in entries)


def finished(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    words = out.split()
    return int(words[words.index("resumedFrom") + 1]), int(words[words.index("blocks") + 1]), err


def uninterrupted(scene, tmp_path, style):
    folder = tmp_path / "truth"
    folder.mkdir()
    resumedFrom, blocks, _ = finished(runScript(script(scene, folder, style), folder))
    assert (resumedFrom, blocks) == (0, NBLOCKS)
    assert not os.path.exists(journal.journalPath(str(folder / "out.tif")))
    return folder


def interrupt(scene, folder, style, signum, atLeast=12):
    """Run the job slowly and send ``signum`` once its journals name ``atLeast`` blocks."""
    proc = runScript(script(scene, folder, style), folder, slow=0.05)
    try:
        deadline = time.monotonic() + 60
        while journalBlocks(folder) < atLeast and time.monotonic() < deadline:
            time.sleep(0.05)
        assert journalBlocks(folder) >= atLeast, "the run never got that far"
        proc.send_signal(signum)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    return journalBlocks(folder)


@pytest.mark.parametrize("style", sorted(STYLES))
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
def test_an_interrupted_run_resumes_to_the_same_outputs(scene, tmp_path, style, signum):
    truth = uninterrupted(scene, tmp_path, style)
    folder = tmp_path / "resumed"
    folder.mkdir()
    committed = interrupt(scene, folder, style, signum)
    assert 12 <= committed < NBLOCKS
    if signum == signal.SIGKILL:
        assert committed % 6 == 0  # rows as they complete; SIGTERM commits what was written
    # SIGTERM lets the run remove its own temporary folder; cleanup leaves the outputs alone
    assert cleanedUp(folder, midRun=signum == signal.SIGKILL)
    assert (folder / "out.tif").exists() and (folder / "out.img").exists()
    resumedFrom, blocks, err = finished(runScript(script(scene, folder, style), folder))
    assert resumedFrom == committed and blocks == NBLOCKS - committed
    assert f"resuming: {committed} of {NBLOCKS} blocks" in err
    for name in ("out.tif", "out.img"):
        assertSameAsGdalSees(whatGdalSees(str(folder / name)), whatGdalSees(str(truth / name)))
    assert not list(folder.glob("*" + journal.JOURNAL_SUFFIX + "*"))


class FakeOutput:
    """What Journal.commit asks of an output, with no file behind it but an empty one."""

    def __init__(self, path):
        self.filename = str(path)
        path.write_bytes(b"")
        self.accumulators = []

    def flushToFile(self):
        pass

    def journalState(self):
        return 1, "<u2", list(self.accumulators)


def test_a_kill_between_two_outputs_commits_resumes_from_the_row_before(tmp_path):
    outputs = [FakeOutput(tmp_path / "a.tif"), FakeOutput(tmp_path / "b.img")]
    outfiles = [("a", 0, outputs[0].filename), ("b", 0, outputs[1].filename)]
    fingerprint = {"user function": "1234"}
    book = journal.Journal(fingerprint, nblocks=30)
    for row in (1, 2):
        for output in outputs:
            output.accumulators.append(row)
        book.commit(outputs, 6 * row)
    outputs[0].accumulators.append(3)
    book.commit(outputs[:1], 18)  # killed before the second output's journal was written
    resumption = journal.findResumption(outfiles, fingerprint)
    assert resumption.blocksDone == 12
    assert [e.accumulators for e in resumption.entries.values()] == [[1, 2], [1, 2]]
    book.commit(outputs[1:], 18)  # the next row, had it not been killed
    assert journal.findResumption(outfiles, fingerprint).blocksDone == 18


def test_a_different_run_starts_again(scene, tmp_path):
    folder = tmp_path / "changed"
    folder.mkdir()
    interrupt(scene, folder, "none", signal.SIGKILL)
    assert cleanedUp(folder)
    changed = script(scene, folder, "none", offset=2)  # another user function
    resumedFrom, blocks, err = finished(runScript(changed, folder))
    assert (resumedFrom, blocks) == (0, NBLOCKS)
    assert "cannot be resumed (its user function differ from this run's); starting again" \
        in err
    truthFolder = tmp_path / "truth2"
    truthFolder.mkdir()
    finished(runScript(script(scene, truthFolder, "none", offset=2), truthFolder))
    assertSameAsGdalSees(whatGdalSees(str(folder / "out.tif")),
                         whatGdalSees(str(truthFolder / "out.tif")))


def test_without_setResumable_a_killed_run_starts_again(scene, tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    proc = runScript(script(scene, folder, "none", resumable=False), folder, slow=0.05)
    time.sleep(1.0)
    proc.kill()
    proc.communicate(timeout=30)
    assert not list(folder.glob("*" + journal.JOURNAL_SUFFIX))
    assert cleanedUp(folder, midRun=False)
    resumedFrom, blocks, _ = finished(runScript(script(scene, folder, "none"), folder))
    assert (resumedFrom, blocks) == (0, NBLOCKS)


def test_the_fingerprint_of_a_function_is_the_same_in_every_process(tmp_path):
    """Nested code (a comprehension, an inner function) must not make every run look new:
    a code object's repr holds its address."""
    (tmp_path / "userfunc.py").write_text(textwrap.dedent("""
        def f(info, inputs, outputs):
            scale = [x * 2 for x in range(3)]
            def inner(a):
                return a + 1
            outputs.o = inner(inputs.a) * scale[1]
    """))
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import userfunc; "
             "from sharedapplier import journal; "
             "print(journal._digest(journal._functionCode(userfunc.f)))")
    digests = {subprocess.run([sys.executable, "-c", probe, str(tmp_path)], text=True,
                              capture_output=True, check=True).stdout for _ in range(2)}
    assert len(digests) == 1

