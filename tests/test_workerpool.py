"""Compute processes that stay: later CW_PROCESSES runs reuse them; a bad end never does.

Real processes and real shared memory throughout. Which worker computes which block is
left to the run: the tests look only at the pool's pids, the pids that computed, the
files and each run's otherArgsList.
"""
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from conftest import read_raster, write_raster

from sharedapplier import applier, rioserrors
from sharedapplier.engine import workerpool
from sharedapplier.engine.slots import SlotSignals
from sharedapplier.structures import (
    CW_PROCESSES,
    ConcurrencyStyle,
    FilenameAssociations,
    OtherInputs,
)

NBLOCKS = 16  # 4 x 4 blocks of 32 x 32


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    d = tmp_path_factory.mktemp("pool")
    a = np.random.default_rng(3).integers(0, 1000, (2, 128, 128)).astype(np.int16)
    return write_raster(d / "a.tif", a), a


@pytest.fixture
def fresh_pool():
    """Each test starts and ends with no idle workers (other tests may leave some)."""
    workerpool.stopAllWorkers()
    yield
    workerpool.stopAllWorkers()


def assoc(**files):
    fa = FilenameAssociations()
    for key, value in files.items():
        setattr(fa, key, value)
    return fa


def double_plus_one(info, inputs, outputs, other):
    other.blocks += 1
    other.pids.add(os.getpid())
    outputs.o = inputs.a * 2 + 1


def run(image, tmp_path, workers, userFunction=double_plus_one, progress=None, **style):
    """One apply call; (its otherArgsList, the pids that computed blocks)."""
    path, _ = image
    c = applier.ApplierControls()
    c.setOutputDriverName("GTiff")
    c.setCreationOptions(["TILED=YES", "BLOCKXSIZE=32", "BLOCKYSIZE=32"])
    c.setWindowSize(32, 32)
    c.setConcurrencyStyle(ConcurrencyStyle(computeWorkerKind=CW_PROCESSES,
                                           numComputeWorkers=workers, **style))
    if progress is not None:
        c.setProgress(progress)
    other = OtherInputs()
    other.blocks, other.pids = 0, set()
    out = tmp_path / "o.tif"
    if out.exists():
        out.unlink()
    result = applier.apply(userFunction, assoc(a=path), assoc(o=str(out)), other, controls=c)
    return result.otherArgsList, set().union(*(o.pids for o in result.otherArgsList))


def check_output(image, tmp_path, otherArgsList, workers):
    _, a = image
    assert np.array_equal(read_raster(tmp_path / "o.tif"), a * 2 + 1)
    assert len(otherArgsList) == workers
    # each worker's copy starts afresh in each run: the counts add up to this run's blocks
    assert sum(o.blocks for o in otherArgsList) == NBLOCKS


def gone(pid):
    """The process has ended (a zombie that nobody reaps has ended too)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_gone(pids, seconds=60):
    deadline = time.monotonic() + seconds
    while not all(gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if not gone(p)]


def selectorsOpen() -> int:
    """How many epoll descriptors this process holds (each run's inbox has one)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventpoll]"
        except OSError:
            pass  # the listing's own descriptor, closed by now
    return count


def test_later_runs_reuse_the_same_workers(image, tmp_path, fresh_pool, no_shm_leak):
    first, used = run(image, tmp_path, 3)
    check_output(image, tmp_path, first, 3)
    pool = workerpool.idleWorkerPids()
    assert len(pool) == 3 and used <= set(pool)
    selectors = selectorsOpen()
    for _ in range(2):
        later, used = run(image, tmp_path, 3)
        check_output(image, tmp_path, later, 3)
        assert workerpool.idleWorkerPids() == pool and used <= set(pool)
    assert selectorsOpen() == selectors, "a run left its inbox's selector open"


def test_a_smaller_run_uses_some_and_a_larger_one_adds(image, tmp_path, fresh_pool,
                                                       no_shm_leak):
    run(image, tmp_path, 3)
    pool = workerpool.idleWorkerPids()
    fewer, used = run(image, tmp_path, 2)
    check_output(image, tmp_path, fewer, 2)
    assert workerpool.idleWorkerPids() == pool and used <= set(pool[:2])
    more, used = run(image, tmp_path, 5)
    check_output(image, tmp_path, more, 5)
    larger = workerpool.idleWorkerPids()
    assert len(larger) == 5 and larger[:3] == pool and used <= set(larger)


def fail_on_block(info, inputs, outputs, other):
    if info.getBlockCount() == (1, 1):
        raise ZeroDivisionError("deliberate failure in block (1, 1)")
    double_plus_one(info, inputs, outputs, other)


def kill_self_on_block(info, inputs, outputs, other):
    if info.getBlockCount() == (2, 1):
        os.kill(os.getpid(), signal.SIGKILL)
    double_plus_one(info, inputs, outputs, other)


class InterruptAtQuarter:
    """A progress object whose user presses Ctrl-C a quarter of the way through."""

    def setProgress(self, percent):
        if 25 <= percent < 100:
            raise KeyboardInterrupt()

    def setTotalSteps(self, steps):
        pass

    def setLabelText(self, text):
        pass

    def wasCancelled(self):
        return False

    def reset(self):
        pass


@pytest.mark.parametrize("how", ["raises", "killed", "interrupted"])
def test_a_bad_run_is_followed_by_fresh_workers(image, tmp_path, how, fresh_pool,
                                                no_shm_leak):
    run(image, tmp_path, 3)
    before = workerpool.idleWorkerPids()
    if how == "interrupted":
        with pytest.raises(KeyboardInterrupt):
            run(image, tmp_path, 3, progress=InterruptAtQuarter())
    else:
        function = fail_on_block if how == "raises" else kill_self_on_block
        with pytest.raises(rioserrors.WorkerExceptionError,
                           match="deliberate failure" if how == "raises" else "SIGKILL"):
            run(image, tmp_path, 3, function)
    assert workerpool.idleWorkerPids() == []
    assert all(gone(p) for p in before)  # torn down: killed or ended, and joined
    after, used = run(image, tmp_path, 3)
    check_output(image, tmp_path, after, 3)
    fresh = workerpool.idleWorkerPids()
    assert len(fresh) == 3 and not set(fresh) & set(before) and used <= set(fresh)


def test_reuse_can_be_turned_off(image, tmp_path, fresh_pool, no_shm_leak):
    first, used = run(image, tmp_path, 2, reuseComputeWorkers=False)
    check_output(image, tmp_path, first, 2)
    assert workerpool.idleWorkerPids() == []
    assert all(gone(p) for p in used)


def test_runs_in_a_changed_folder_find_relative_inputs(image, tmp_path, fresh_pool,
                                                       no_shm_leak, monkeypatch):
    run(image, tmp_path, 2)
    monkeypatch.chdir(os.path.dirname(image[0]))
    relative = (os.path.basename(image[0]), image[1])
    later, _ = run(relative, tmp_path, 2)
    check_output(image, tmp_path, later, 2)


SCRIPT = """
import sys, time
from sharedapplier import applier
from sharedapplier.engine import workerpool
fi = applier.FilenameAssociations(); fi.a = {a!r}
fo = applier.FilenameAssociations(); fo.o = {out!r}
c = applier.ApplierControls(); c.setOutputDriverName("GTiff"); c.setWindowSize(32, 32)
c.setCreationOptions(["TILED=YES", "BLOCKXSIZE=32", "BLOCKYSIZE=32"])
c.setConcurrencyStyle(applier.ConcurrencyStyle(computeWorkerKind=applier.CW_PROCESSES,
                                                numComputeWorkers=3))
applier.apply(lambda info, i, o: setattr(o, "o", i.a), fi, fo, controls=c)
print(*workerpool.idleWorkerPids(), flush=True)
if {hang}:
    time.sleep(600)
"""


def scriptCommand(tmp_path, name, template, **fields):
    """The command that runs ``template``, filled in with ``fields`` and out=tmp_path/o.tif,
    written to tmp_path/name: a program of its own, so that the tests see what its end does.
    Each test starts it its own way: one reads it while it runs (and may kill it), the other
    once it has ended."""
    script = tmp_path / name
    script.write_text(textwrap.dedent(template.format(out=str(tmp_path / "o.tif"), **fields)))
    return [sys.executable, str(script)]


@pytest.mark.parametrize("ending", ["exits", "killed"])
def test_idle_workers_end_with_the_program(image, tmp_path, ending):
    command = scriptCommand(tmp_path, "job.py", SCRIPT, a=image[0], hang=ending == "killed")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 3, proc.stderr.read() if proc.poll() is not None else ""
        assert not any(gone(p) for p in pids)
        if ending == "killed":
            proc.kill()  # no atexit hook runs: the workers notice their parent is gone
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert ending == "killed" or proc.returncode == 0
    assert wait_gone(pids) == []
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"sa_{proc.pid}_")]


def test_signals_reset_drains_every_count():
    signals = SlotSignals.create(2)
    signals.free.acquire()
    signals.ready.release()
    signals.doorbell.release()
    signals.stop.set()
    assert signals.reset(3)
    assert [signals.free.acquire(False) for _ in range(4)] == [True] * 3 + [False]
    assert not signals.ready.acquire(False) and not signals.doorbell.acquire(False)
    assert not signals.stop.is_set()
    with signals.lock:
        assert not signals.reset(1)  # a held lock: a worker may still be in the run


def test_spawned_workers_stay_too(image, tmp_path, fresh_pool, no_shm_leak):
    first, _ = run(image, tmp_path, 2, workerStartMethod="spawn")
    check_output(image, tmp_path, first, 2)
    pool = workerpool.idleWorkerPids("spawn")
    later, used = run(image, tmp_path, 2, workerStartMethod="spawn")
    check_output(image, tmp_path, later, 2)
    assert len(pool) == 2 and workerpool.idleWorkerPids("spawn") == pool
    assert used <= set(pool)


def test_concurrent_runs_each_lease_their_own_workers(image, tmp_path, fresh_pool,
                                                      no_shm_leak):
    results, errors = {}, []

    def runIn(name):
        folder = tmp_path / name
        folder.mkdir()
        try:
            results[name] = (folder, run(image, folder, 2))
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=runIn, args=(name,)) for name in ("x", "y")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for folder, (otherArgsList, _) in results.values():
        check_output(image, folder, otherArgsList, 2)
    assert len(workerpool.idleWorkerPids()) == 2  # one set stays idle, the other ended
    later, used = run(image, tmp_path, 2)
    check_output(image, tmp_path, later, 2)
    assert used <= set(workerpool.idleWorkerPids())


PRINTING = """
from sharedapplier import applier
fi = applier.FilenameAssociations(); fi.a = {a!r}
fo = applier.FilenameAssociations(); fo.o = {out!r}
c = applier.ApplierControls(); c.setOutputDriverName("GTiff"); c.setWindowSize(32, 32)
c.setCreationOptions(["TILED=YES", "BLOCKXSIZE=32", "BLOCKYSIZE=32"])
c.setConcurrencyStyle(applier.ConcurrencyStyle(computeWorkerKind=applier.CW_PROCESSES,
                                                numComputeWorkers=2))
def noisy(info, inputs, outputs):
    print("block", info.getBlockCount())
    outputs.o = inputs.a
for run in range(2):
    applier.apply(noisy, fi, fo, controls=c)
    print("run", run, "returned", flush=True)
"""


def test_what_workers_print_comes_out_before_the_run_returns(image, tmp_path):
    command = scriptCommand(tmp_path, "printing.py", PRINTING, a=image[0])
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # two workers' lines may interleave: count what each run's workers printed
    firstRun, rest = done.stdout.split("run 0 returned\n")
    secondRun, tail = rest.split("run 1 returned\n")
    def blocks(text):
        return len(re.findall(r"\(\d, \d\)", text))

    assert blocks(firstRun) == blocks(secondRun) == NBLOCKS
    assert tail == ""
