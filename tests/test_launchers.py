"""Remote compute workers through every launcher: real subprocesses, Slurm, PBS and AWS Batch.

Each backend runs the same job as CW_NONE and must write the same file, return every
worker's otherArgs, refuse a connection without the key (tried from the worker's own host),
and, when a worker is killed mid-run, fail with a clear error naming the job, leaving no job
queued and nothing in /dev/shm.
"""
import contextlib
import os
import re
import secrets
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
from multiprocessing import AuthenticationError

import numpy as np
import pytest
from conftest import read_raster, waitUntil, write_raster
from osgeo import gdal

from sharedapplier import applier, imagereader, rioserrors
from sharedapplier.engine import messages
from sharedapplier.engine.remote import channel as chan
from sharedapplier.launchers.jobscript import END_MARKER, STATUS_LABEL
from sharedapplier.structures import (
    CW_AWSBATCH,
    CW_PBS,
    CW_SLURM,
    CW_SUBPROC,
    ConcurrencyStyle,
    FilenameAssociations,
    OtherInputs,
)

WORKER_COMMAND = [sys.executable, "-m", "sharedapplier.cmdline.computeworker"]
BACKENDS = ["subproc", "slurm", "torque", "pbs_double", "awsbatch"]


def backendStyle(request, name, tmp_path):
    """(kind, computeWorkerExtraParams) for a backend, starting its test bed if needed."""
    if name == "subproc":
        return CW_SUBPROC, {}
    if name == "slurm":
        request.getfixturevalue("slurm_cluster")
        return CW_SLURM, {"sbatchOptions": ["--time=5"]}
    if name == "torque":
        request.getfixturevalue("torque_qsub")
        return CW_PBS, {}
    if name == "pbs_double":
        request.getfixturevalue("pbs_double")
        return CW_PBS, {"qsubOptions": "-l walltime=00:05:00"}
    bed = request.getfixturevalue("aws_batch")
    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", bed["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", bed["aws_secret_access_key"])
    return CW_AWSBATCH, {"jobQueue": bed["jobQueue"], "jobDefinition": bed["jobDefinition"],
                         "region": bed["region_name"], "endpointUrl": bed["endpoint_url"],
                         "workerCommand": WORKER_COMMAND, "channelHost": "127.0.0.1",
                         "channelInterface": "127.0.0.1"}


def assertNoJobsLeft(name, request, seconds=10.0):
    """Every job of the run has left the backend's queue. The run confirmed that its jobs
    ended; the queue listing may show them a moment longer."""
    deadline = time.monotonic() + seconds
    while (live := liveJobs(name, request)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert live == []


def liveJobs(name, request) -> list[str]:
    """The backend's jobs that are still queued or running."""
    if name == "slurm" or name == "torque":
        out = subprocess.run(["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True)
        return out.stdout.split("\n")[:-1]
    if name == "pbs_double":
        out = subprocess.run(["qstat"], capture_output=True, text=True)
        return [line for line in out.stdout.splitlines()[2:] if line.strip()]
    if name == "awsbatch":
        import boto3
        bed = request.getfixturevalue("aws_batch")
        batch = boto3.client("batch", endpoint_url=bed["endpoint_url"],
                             region_name=bed["region_name"],
                             aws_access_key_id=bed["aws_access_key_id"],
                             aws_secret_access_key=bed["aws_secret_access_key"])
        live = []
        for status in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING"):
            for job in batch.list_jobs(jobQueue=bed["jobQueue"],
                                       jobStatus=status)["jobSummaryList"]:
                detail = batch.describe_jobs(jobs=[job["jobId"]])["jobs"][0]
                summary = detail.get("arrayProperties", {}).get("statusSummary")
                # moto never moves an array's parent on; real Batch derives it from children
                if summary is None or any(summary.get(s) for s in
                                          ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING",
                                           "RUNNING")):
                    live.append(job["jobId"])
        return live
    return []


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    d = tmp_path_factory.mktemp("remote_scene")
    rng = np.random.default_rng(11)
    a = rng.integers(0, 3000, (2, 200, 260)).astype(np.int16)
    return dict(path=write_raster(d / "a.tif", a), array=a)


def ndviLike(info, inputs, outputs, otherArgs):
    a = inputs.a.astype(np.float32)
    outputs.out = ((a[0] - a[1]) / (a[0] + a[1] + 1))[np.newaxis]
    otherArgs.blocks += 1
    otherArgs.pids.add(os.getpid())
    if otherArgs.probeKey and not otherArgs.probed:
        otherArgs.probed = True
        otherArgs.refused = connectWithWrongKey()


def connectWithWrongKey() -> bool:
    """From inside a worker: find the channel as the worker did, knock with a bad key."""
    argv = sys.argv
    if "--channaddrfile" in argv:
        address = chan.ChannelAddress.fromFile(argv[argv.index("--channaddrfile") + 1])
    elif "--channaddrsecret" in argv:
        from sharedapplier.launchers.awsbatch import addressFromSecret
        address = addressFromSecret(argv[argv.index("--channaddrsecret") + 1])
    else:
        address = chan.ChannelAddress.fromString(argv[argv.index("--channaddr") + 1])
    wrong = chan.ChannelAddress(address.hostname, address.portnum, "0" * 64)
    try:
        chan.connectToChannel(wrong, messages.WorkerHello(0, {}), timeout=10).close()
    except (AuthenticationError, EOFError, OSError):
        return True
    return False


def killOnBlock(info, inputs, outputs):
    if info.getBlockCount() == (1, 0):
        os.kill(os.getpid(), signal.SIGKILL)
    outputs.out = inputs.a


def failOnBlock(info, inputs, outputs):
    if info.getBlockCount() == (0, 1):
        raise ZeroDivisionError("remote user function failed on purpose")
    outputs.out = inputs.a


def makeControls(tmp_path, kind=None, extra=None, workers=2, **style):
    c = applier.ApplierControls()
    c.setOutputDriverName("GTiff")
    c.setWindowSize(128, 128)
    c.setCreationOptions(["TILED=YES", "BLOCKXSIZE=128", "BLOCKYSIZE=128"])
    c.setTempdir(str(tmp_path))
    c.setJobName("test")
    if kind is not None:
        c.setConcurrencyStyle(ConcurrencyStyle(
            computeWorkerKind=kind, numComputeWorkers=0 if style.get(
                "singleBlockComputeWorkers") else workers,
            computeWorkerExtraParams=extra, computeBarrierTimeout=120, **style))
    return c


def files(**kw):
    fa = FilenameAssociations()
    for k, v in kw.items():
        setattr(fa, k, str(v))
    return fa


def newOtherArgs(probeKey=False):
    o = OtherInputs()
    o.blocks, o.pids, o.probeKey, o.probed, o.refused = 0, set(), probeKey, False, None
    return o


def assertNothingLeft(tmp_path):
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith("sharedapplier_run")]
    assert leftovers == []


@pytest.mark.parametrize("name", BACKENDS)
def test_backend_writes_what_cw_none_writes(name, request, scene, tmp_path, no_shm_leak):
    kind, extra = backendStyle(request, name, tmp_path)
    truth = tmp_path / "none.tif"
    applier.apply(ndviLike, files(a=scene["path"]), files(out=truth), newOtherArgs(),
                  controls=makeControls(tmp_path))
    out = tmp_path / "remote.tif"
    result = applier.apply(ndviLike, files(a=scene["path"]), files(out=out),
                           newOtherArgs(probeKey=True),
                           controls=makeControls(tmp_path, kind, extra))
    assert read_raster(out).tobytes() == read_raster(truth).tobytes()
    copies = result.otherArgsList
    assert len(copies) == 2
    assert sum(o.blocks for o in copies) == 6
    assert all(o.refused for o in copies if o.probed)
    assert any(o.probed for o in copies)
    assert os.getpid() not in set().union(*(o.pids for o in copies))
    assertNothingLeft(tmp_path)
    assertNoJobsLeft(name, request)


@pytest.mark.parametrize("name", BACKENDS)
def test_killed_worker_is_a_clear_error_and_cancels_the_rest(name, request, scene, tmp_path,
                                                             no_shm_leak):
    kind, extra = backendStyle(request, name, tmp_path)
    with pytest.raises(rioserrors.WorkerExceptionError) as info:
        applier.apply(killOnBlock, files(a=scene["path"]), files(out=tmp_path / "o.tif"),
                      controls=makeControls(tmp_path, kind, extra))
    text = str(info.value)
    assert "lost its connection while processing block" in text
    backendName = {"subproc": "subprocess", "slurm": "SLURM", "torque": "PBS",
                   "pbs_double": "PBS", "awsbatch": "AWS Batch"}[name]
    assert f"{backendName} job" in text
    assert "state" in text
    if name != "awsbatch":  # Batch's logs are in CloudWatch, once the job has ended
        tail = text.split("last lines of its log:\n")[1]
        assert ": connecting to " in tail
    assertNothingLeft(tmp_path)
    # the jobs were cancelled as the run failed; the scheduler shows it a moment later
    assertNoJobsLeft(name, request)


def test_remote_exception_carries_traceback_worker_and_block(scene, tmp_path, no_shm_leak,
                                                            capsys):
    with pytest.raises(rioserrors.WorkerExceptionError) as info:
        applier.apply(failOnBlock, files(a=scene["path"]), files(out=tmp_path / "o.tif"),
                      controls=makeControls(tmp_path, CW_SUBPROC, {}))
    text = str(info.value)
    assert "ZeroDivisionError: remote user function failed on purpose" in text
    assert "in failOnBlock" in text
    assert "subprocess job pid" in text
    assert "while processing block ApplierBlockDefn(128, 0" in text
    assertNothingLeft(tmp_path)


@pytest.mark.parametrize("style", [dict(computeWorkersRead=False, numReadWorkers=1),
                                   dict(singleBlockComputeWorkers=True)],
                         ids=["main-reads", "single-block"])
def test_subproc_styles(style, scene, tmp_path, no_shm_leak):
    out = tmp_path / "o.tif"
    result = applier.apply(ndviLike, files(a=scene["path"]), files(out=out), newOtherArgs(),
                           controls=makeControls(tmp_path, CW_SUBPROC, {}, **style))
    a = scene["array"].astype(np.float32)
    np.testing.assert_array_equal(read_raster(out)[0], (a[0] - a[1]) / (a[0] + a[1] + 1))
    counts = sorted(o.blocks for o in result.otherArgsList)
    if style.get("singleBlockComputeWorkers"):
        assert counts == [1] * 6
    else:
        assert sum(counts) == 6


def test_workers_reach_a_channel_listening_only_on_their_hosts_address(scene, tmp_path,
                                                                       no_shm_leak):
    """With channelInterface left to the engine (as for the batch kinds), a channelHost
    naming one of this host's addresses is the one interface listened on."""
    import psutil
    own = sorted(a.address for addrs in psutil.net_if_addrs().values() for a in addrs
                 if a.family == socket.AF_INET and not a.address.startswith("127."))
    if not own:
        pytest.skip("this host has no address other than loopback")
    bound = []
    original = chan.ChannelListener.__init__

    def noting(self, *args, **kwargs):
        original(self, *args, **kwargs)
        bound.append(self.sock.getsockname()[0])

    out = tmp_path / "o.tif"
    extra = {"channelInterface": None, "channelHost": own[0]}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(chan.ChannelListener, "__init__", noting)
        applier.apply(ndviLike, files(a=scene["path"]), files(out=out), newOtherArgs(),
                      controls=makeControls(tmp_path, CW_SUBPROC, extra))
    assert bound == [own[0]]
    a = scene["array"].astype(np.float32)
    np.testing.assert_array_equal(read_raster(out)[0], (a[0] - a[1]) / (a[0] + a[1] + 1))


def note_gdal_cache(info, inputs, outputs, otherArgs):
    otherArgs.caches = getattr(otherArgs, "caches", set()) | {gdal.GetCacheMax()}
    outputs.out = inputs.a


def test_remote_workers_size_their_gdal_cache_for_reading(scene, tmp_path, no_shm_leak):
    """Like local compute processes, not GDAL's default (5 % of RAM in every worker)."""
    result = applier.apply(note_gdal_cache, files(a=scene["path"]), files(out=tmp_path / "o.tif"),
                           OtherInputs(), controls=makeControls(tmp_path, CW_SUBPROC, {}))
    caches = set().union(*(getattr(o, "caches", set()) for o in result.otherArgsList))
    assert caches == {imagereader.READ_CACHE_MIN_BYTES}      # the least: a small scene
    assert imagereader.READ_CACHE_MIN_BYTES < gdal.GetCacheMax()


def test_address_on_the_command_line_only_with_a_warning(scene, tmp_path, capfd):
    c = makeControls(tmp_path, CW_SUBPROC, {}, haveSharedTemp=False)
    applier.apply(ndviLike, files(a=scene["path"]), files(out=tmp_path / "o.tif"),
                  newOtherArgs(), controls=c)
    assert "haveSharedTemp=False puts the channel key on the workers' command line" in \
        capfd.readouterr().err


def test_worker_that_never_connects_is_reported_with_its_exit_code(scene, tmp_path):
    c = makeControls(tmp_path, CW_SUBPROC, {"workerCommand": [sys.executable, "-c",
                                                               "import sys; sys.exit(3)"]})
    with pytest.raises(rioserrors.WorkerExceptionError) as info:
        applier.apply(ndviLike, files(a=scene["path"]), files(out=tmp_path / "o.tif"),
                      newOtherArgs(), controls=c)
    assert "ended before connecting to the main process (state EXITED, exit code 3)" in \
        str(info.value)
    assertNothingLeft(tmp_path)


def test_channel_refuses_wrong_keys_and_garbage_before_unpickling(tmp_path):
    channel = chan.WorkerChannel(interface="127.0.0.1", portRange=(30000, 50000))
    try:
        assert 30000 <= channel.address.portnum <= 50000
        bad = chan.ChannelAddress("127.0.0.1", channel.address.portnum, "f" * 64)
        with pytest.raises(AuthenticationError):
            chan.connectToChannel(bad, messages.WorkerHello(3, {}), timeout=5)
        # a pickle that would run a shell command if anyone unpickled it
        payload = f"cos\nsystem\n(S'touch {tmp_path}/pwned'\ntR.".encode()
        with socket.create_connection(("127.0.0.1", channel.address.portnum)) as raw:
            raw.sendall(struct.pack("!i", len(payload)) + payload)
            raw.settimeout(15)
            with contextlib.suppress(ConnectionResetError):
                while raw.recv(4096):
                    pass
        assert not (tmp_path / "pwned").exists()
        good = chan.connectToChannel(channel.address, messages.WorkerHello(3, {"host": "here"}),
                                     timeout=5)
        conn, identity = channel.awaitWorker(3, timeout=10)
        assert identity == {"host": "here"}
        conn.close()
        good.close()
        assert channel.rejected == 2
    finally:
        channel.shutdown()


def test_address_file_is_private(tmp_path):
    path = tmp_path / "addr.json"
    address = chan.ChannelAddress("h", 31000, "ab" * 32)
    address.writeFile(str(path))
    assert (path.stat().st_mode & 0o777) == 0o600
    assert chan.ChannelAddress.fromFile(str(path)) == address
    assert chan.ChannelAddress.fromString(address.addressStr()) == address


def test_job_script_has_rios_parameters(tmp_path):
    from sharedapplier.launchers.base import WorkerCommand
    from sharedapplier.launchers.slurm import SlurmLauncher
    launcher = SlurmLauncher({"sbatchOptions": "--mem=1G\n#SBATCH --qos=low",
                              "initCmds": "module load gdal", "cmdPrefix": "srun ",
                              "cmdSuffix": " && true"}, tmp_path, "ndvi")
    from sharedapplier.launchers.jobscript import writeJobScript
    text = launcher.preview([0, 1], WorkerCommand(("python", "-m", "w")))["slurm_job.sh"]
    script = writeJobScript(tmp_path / "s.sh", text)
    assert "#SBATCH -J sharedapplier_ndvi\n#SBATCH --mem=1G\n#SBATCH --qos=low\n" in text
    assert "module load gdal\n" in text
    assert "srun python -m w && true\n" in text
    assert END_MARKER in text and STATUS_LABEL in text
    assert (script.stat().st_mode & 0o777) == 0o700


def test_unknown_kind_and_third_party_launcher_via_entry_point(scene, tmp_path):
    with pytest.raises(ValueError, match="CW_NOPE"):
        ConcurrencyStyle(computeWorkerKind="CW_NOPE", numComputeWorkers=1)
    site = tmp_path / "site"
    dist = site / "fakelauncher-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakelauncher\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[sharedapplier.launchers]\nCW_FAKE = fakelauncher:FakeLauncher\n")
    (site / "fakelauncher.py").write_text(textwrap.dedent("""
        from sharedapplier.launchers.subproc import SubprocLauncher
        class FakeLauncher(SubprocLauncher):
            backend = "fake"
    """))
    script = textwrap.dedent(f"""
        import numpy as np
        from sharedapplier import applier
        from sharedapplier.structures import ConcurrencyStyle
        def f(info, inputs, outputs):
            outputs.out = inputs.a + 1
        i = applier.FilenameAssociations(); i.a = {str(scene['path'])!r}
        o = applier.FilenameAssociations(); o.out = {str(tmp_path / 'fake.tif')!r}
        c = applier.ApplierControls(); c.setOutputDriverName("GTiff")
        c.setTempdir({str(tmp_path)!r})
        c.setConcurrencyStyle(ConcurrencyStyle(computeWorkerKind="CW_FAKE",
                                               numComputeWorkers=2))
        applier.apply(f, i, o, controls=c)
        print("ran with", "CW_FAKE")
    """)
    env = dict(os.environ, PYTHONPATH=str(site))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(read_raster(tmp_path / "fake.tif"), scene["array"] + 1)


def test_worker_exits_by_itself_when_the_main_process_dies(scene, tmp_path):
    script = slowRunScript(scene, tmp_path, "CW_SUBPROC", 1)
    main = subprocess.Popen([sys.executable, "-c", script])
    try:
        workers = _waitForWorkers(main.pid)
    finally:
        main.kill()
        main.wait()
    for pid in workers:
        _waitForExit(pid)


def _children(pid):
    import psutil
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _waitForWorkers(pid):
    import time
    for _ in range(600):
        found = [p.pid for p in _children(pid) if "computeworker" in " ".join(p.cmdline())]
        if found:
            time.sleep(1.0)  # let it connect and start its block
            return found
        time.sleep(0.1)
    raise AssertionError("no compute worker started")


def _waitForExit(pid):
    import time

    import psutil
    for _ in range(300):
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError(f"worker {pid} outlived its main process")


def test_job_that_never_starts_is_reported_with_its_state_and_cancelled(request, scene,
                                                                        tmp_path):
    request.getfixturevalue("slurm_cluster")
    extra = {"sbatchOptions": "--cpus-per-task=512"}  # more than the node has: pends forever
    c = makeControls(tmp_path, CW_SLURM, extra)
    c.concurrency.computeBarrierTimeout = 3
    with pytest.raises(rioserrors.WorkerExceptionError) as info:
        applier.apply(ndviLike, files(a=scene["path"]), files(out=tmp_path / "o.tif"),
                      newOtherArgs(), controls=c)
    text = str(info.value)
    assert "no compute worker started within 3 s" in text
    assert "state PENDING" in text and "computeBarrierTimeout (current value = 3)" in text
    assertNoJobsLeft("slurm", request)
    assertNothingLeft(tmp_path)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_interrupted_run_cancels_its_jobs(signum, request, scene, tmp_path):
    request.getfixturevalue("slurm_cluster")
    script = slowRunScript(scene, tmp_path, "CW_SLURM", 2)
    main = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    try:
        waitUntil(lambda: any(" RUNNING" in job for job in liveJobs("slurm", request)),
                  what="a running job")
        main.send_signal(signum)
        _, err = main.communicate(timeout=60)
    finally:
        if main.poll() is None:
            main.kill()
    assert main.returncode != 0
    assertNoJobsLeft("slurm", request)
    assertNothingLeft(tmp_path)
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"sa_{main.pid}_")]


@pytest.mark.parametrize("printed,expected", [("1234.pbs-server\n", "1234.pbs-server"),
                                              ("77\n", "77"), ("5[].server.example\n",
                                                              "5[].server.example")])
def test_pbs_job_ids_are_parsed(printed, expected):
    from sharedapplier.launchers.pbs import JOB_ID
    assert JOB_ID.match(printed).group(1) == expected
    assert JOB_ID.match("qsub: submit error (Bad UID for job execution)") is None


def test_slurm_array_task_lists_are_parsed():
    from sharedapplier.launchers.slurm import _taskNumbers
    assert _taskNumbers("3") == [3]
    assert _taskNumbers("0-3") == [0, 1, 2, 3]
    assert _taskNumbers("0,2,4-6%2") == [0, 2, 4, 5, 6]
    assert _taskNumbers("") == []


def test_each_worker_is_described_by_its_own_job(tmp_path):
    """Worker 1 ends at once while worker 0 runs: describing worker 0 must not report
    worker 1's ending (it once did, and the run failed with 'worker 0 ended before
    connecting' whenever another worker finished first)."""
    from sharedapplier.launchers.base import WorkerCommand
    from sharedapplier.launchers.subproc import SubprocLauncher
    launcher = SubprocLauncher({}, tmp_path, "describe")
    script = "import sys, time; time.sleep(30 if sys.argv[-1] == '0' else 0)"
    launcher.submit([0, 1], WorkerCommand((sys.executable, "-c", script)))
    try:
        waitUntil(lambda: launcher.describe(1).finished, what="job 1 finishing")
        time.sleep(2 * launcher.pollInterval)  # so that describing worker 0 asks again
        assert not launcher.describe(0).finished
        assert launcher.describe(0).backendID == f"pid {launcher.procs[0].pid}"
    finally:
        launcher.cancel()


def slowRunScript(scene, tmp_path, kind, workers):
    """A Python program whose run never ends by itself: its user function sleeps."""
    return textwrap.dedent(f"""
        import time
        from sharedapplier import applier
        from sharedapplier.structures import ConcurrencyStyle
        def slow(info, inputs, outputs):
            time.sleep(600)
        i = applier.FilenameAssociations(); i.a = {str(scene['path'])!r}
        o = applier.FilenameAssociations(); o.out = {str(tmp_path / 'x.tif')!r}
        c = applier.ApplierControls(); c.setOutputDriverName("GTiff")
        c.setTempdir({str(tmp_path)!r})
        c.setConcurrencyStyle(ConcurrencyStyle(computeWorkerKind={kind!r},
            numComputeWorkers={workers}, computeWorkersRead=True, computeBufferPopTimeout=900))
        applier.apply(slow, i, o, controls=c)
    """)


def moreBandsLater(info, inputs, outputs):
    outputs.out = inputs.a if info.getBlockCount() == (0, 0) else inputs.a[:1]


def test_remote_outputs_are_held_to_the_first_blocks_layout(scene, tmp_path, no_shm_leak):
    with pytest.raises(rioserrors.WorkerExceptionError) as info:
        applier.apply(moreBandsLater, files(a=scene["path"]), files(out=tmp_path / "o.tif"),
                      controls=makeControls(tmp_path, CW_SUBPROC, {}, workers=1))
    assert "has 1 bands in this block but 2 in its first block" in str(info.value)
    assertNothingLeft(tmp_path)


def killOnceOnBlock(info, inputs, outputs, otherArgs):
    """SIGKILL the worker on block (1, 0) the first time only (a marker file says)."""
    marker = os.path.join(otherArgs.folder, "killed")
    if info.getBlockCount() == (1, 0) and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    outputs.out = inputs.a


@pytest.mark.parametrize("name", ["slurm", "pbs_double", "torque", "awsbatch"])
def test_a_batch_worker_that_died_is_submitted_again(name, request, scene, tmp_path, capfd,
                                                     no_shm_leak):
    kind, extra = backendStyle(request, name, tmp_path)
    other = OtherInputs()
    other.folder = str(tmp_path)
    out = tmp_path / "o.tif"
    rtn = applier.apply(killOnceOnBlock, files(a=scene["path"]), files(out=out), other,
                        controls=makeControls(tmp_path, kind, extra, computeWorkersRead=True))
    np.testing.assert_array_equal(read_raster(out), scene["array"])
    assert len(rtn.timings.getDurationsForName("restartworker") or []) == 1
    err = capfd.readouterr().err
    backendName = {"slurm": "SLURM", "pbs_double": "PBS", "torque": "PBS",
                   "awsbatch": "AWS Batch"}[name]
    assert f"{backendName} job" in err and "will be computed again" in err
    assertNothingLeft(tmp_path)
    assertNoJobsLeft(name, request)


def captureSubmissions(tmp_path, monkeypatch, command):
    """``command`` (sbatch, qsub) wrapped, first on PATH, so that each job script it is
    given is kept in a folder before the real command submits it; returns the folder."""
    import shutil
    real = shutil.which(command)
    assert real, f"{command} is not on PATH"
    folder, bindir = tmp_path / "submitted", tmp_path / "shimbin"
    folder.mkdir()
    bindir.mkdir()
    shim = bindir / command
    shim.write_text(f'#!/bin/bash\ncp "${{@: -1}}" {folder}/\nexec {real} "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return folder


def shownScripts(stdout: str) -> dict:
    """``sharedapplier jobscript``'s output: one script, or several after ``==> name <==``."""
    if not stdout.startswith("==> "):
        return {None: stdout}
    scripts = {}
    for section in stdout.split("==> ")[1:]:
        name, _, text = section.partition(" <==\n")
        scripts[name] = text
    return scripts


@pytest.mark.parametrize("name", ["slurm", "torque"])
def test_jobscript_prints_what_is_submitted(name, request, scene, tmp_path, monkeypatch,
                                            capsys):
    from sharedapplier.cmdline import main as cmdmain
    kind, _ = backendStyle(request, name, tmp_path)
    extra = {"queue": "debug", "wallTime": "00:05:00", "memory": "100M", "cpusPerWorker": 1,
             "initCmds": "echo initialised"}
    params = [a for k, v in extra.items() for a in ("--param", f"{k}={v}")]
    jobName = f"s{secrets.token_hex(3)}"  # slurmctld remembers jobs of earlier sessions
    assert cmdmain.main(["jobscript", kind, "-n", "2", "--jobname", jobName, "--tempdir",
                         str(tmp_path), *params]) == 0
    shown = shownScripts(capsys.readouterr().out)
    folder = captureSubmissions(tmp_path, monkeypatch, "sbatch" if name == "slurm" else "qsub")
    truth, out = tmp_path / "none.tif", tmp_path / "remote.tif"
    applier.apply(ndviLike, files(a=scene["path"]), files(out=truth), newOtherArgs(),
                  controls=makeControls(tmp_path))
    controls = makeControls(tmp_path, kind, extra)
    controls.setJobName(jobName)
    result = applier.apply(ndviLike, files(a=scene["path"]), files(out=out), newOtherArgs(),
                           controls=controls)
    assert read_raster(out).tobytes() == read_raster(truth).tobytes()
    assert sum(o.blocks for o in result.otherArgsList) == 6
    submitted = {p.name: re.sub(r"sharedapplier_run_\w+", "sharedapplier_run_XXXXXXXX",
                                p.read_text()) for p in folder.iterdir()}
    if None in shown:
        assert list(submitted.values()) == [shown[None]]
    else:
        assert submitted == shown
    jobs = slurmJobsNamed(f"sharedapplier_{jobName}" if name == "slurm" else f"sa_{jobName}_")
    assert len(jobs) == 2
    for job in jobs:
        assert (job["Partition"], job["TimeLimit"], job["MinMemoryNode"]) == \
            ("debug", "00:05:00", "100M")
    assertNoJobsLeft(name, request)


def slurmJobsNamed(prefix: str) -> list[dict]:
    """The fields slurmctld still holds of every job whose name starts with ``prefix``."""
    out = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True,
                         timeout=30).stdout
    jobs = [dict(token.split("=", 1) for token in line.split() if "=" in token)
            for line in out.splitlines()]
    return [job for job in jobs if job.get("JobName", "").startswith(prefix)]
