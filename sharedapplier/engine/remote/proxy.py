"""Remote compute workers, seen from the main process: one proxy thread serves each.

To the rest of the engine a proxy is a compute thread: it runs the one
:class:`~..stages.WorkerLoop`, taking slots of the board (ready ones, or free ones when
workers read for themselves) and leaving outputs in them with the same
:class:`~..stages.SlotSink`. Only its compute stage differs: it trades the block with its
worker over the channel::

    proxy (main process)                        worker (sharedapplier computeworker)
    <--------------------------------------  WorkerHello after the handshake
    JobForWorker --------------------------->
    <--------------------------------------  NextBlockPlease
    BlockToCompute + raw inputs (none when the worker reads)  ... or NoMoreBlocks
    <--------------------------------------  BlockResult + raw outputs
    <--------------------------------------  WorkerFinished, or WorkerFailed
    <------------- Heartbeat --------------->  both ways, while either side waits
"""
from __future__ import annotations

import logging
import shutil
import socket
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing import connection
from pathlib import Path

import cloudpickle

from ... import rioserrors
from ...launchers.base import ADDRESS_FILE_NAME, DEFAULT_PORT_RANGE
from ...structures import Timers, WorkerErrorRecord
from .. import messages as msg
from .. import recovery, slots
from ..computeworkers import PipeToMain, slotSink
from ..slots import Party, Role, SlotBoard
from ..stages import ClaimedBlock, SlotSource, WorkerLoop, WorkerState
from . import wire
from .channel import WorkerChannel, interfaceFor
from .link import JobReports, RemoteFailure, RemoteLink, WorkerLost

DEFAULT_HEARTBEAT_TIMEOUT = 60.0
# After a successful run, how long jobs may take to end by themselves before being cancelled.
JOB_END_GRACE_SECONDS = 10.0
# After cancelling, how long to wait for the scheduler to say every job has ended (it stops
# jobs asynchronously: a terminated job runs on until its process has gone).
CANCEL_CONFIRM_SECONDS = 15.0

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProxySettings:
    """What every proxy of a run shares."""

    jobBytes: bytes
    reads: bool
    blocksPerWorker: int | None
    heartbeatTimeout: float


class RemoteCompute:
    """The compute stage of a proxy: send the block, receive its outputs (straight into
    the slot once the layout is known)."""

    def __init__(self, job, pool, board: SlotBoard, link: RemoteLink, reads: bool,
                 state: WorkerState):
        self.job, self.pool, self.board = job, pool, board
        self.link = link
        self.reads = reads
        self.state = state

    def __call__(self, block: ClaimedBlock) -> dict:
        blockDefn = self.job.blockList[block.index]
        self.board.noteUserFunctionStart(block.slot)
        if self.reads:
            self.link.send(msg.BlockToCompute(block.index, None))
        else:
            inputs = self.pool.inputViews(block.slot, self.job.inputShapes(blockDefn))
            self.link.send(msg.BlockToCompute(block.index, wire.arraySpecs(inputs)))
            wire.sendArrayBytes(self.link.conn, inputs)
            self.link.sent()
        result = self.link.expect(msg.BlockResult)
        if result.blockIndex != block.index:
            raise WorkerLost(f"compute worker {self.link.workerID} returned block "
                             f"{result.blockIndex} for block {block.index}")
        into = None
        if self.state.layouts is not None:
            into = self.pool.outputViews(block.slot,
                                         self.job.outputShapes(blockDefn, self.state.layouts))
        try:
            return wire.receiveArrays(self.link.conn, result.specs, into)
        except wire.WireError as e:
            raise WorkerLost(str(e)) from None


class RequestedSlots:
    """The proxy's block source: a slot of the board each time the worker asks for one."""

    def __init__(self, slotSource: SlotSource, link: RemoteLink):
        self.slotSource = slotSource
        self.link = link
        self.unanswered = False

    def next(self) -> ClaimedBlock | None:
        self.link.expect(msg.NextBlockPlease)
        block = self.slotSource.next()
        self.unanswered = block is None
        return block


class WorkerProxy:
    """Serves remote worker ``workerID`` from a thread of the main process."""

    def __init__(self, workerID: int, job, pool, board: SlotBoard, pipe: PipeToMain,
                 settings: ProxySettings, reports: JobReports):
        self.workerID = workerID
        self.job, self.pool, self.board = job, pool, board
        self.pipe = pipe
        self.settings = settings
        self.reports = reports
        self.state = WorkerState(workerID, None)
        self.loop: WorkerLoop | None = None
        self.finishedCleanly = False

    def serve(self, conn, replacement=None) -> None:
        """Drive the worker on ``conn`` (None: it never came) until no blocks are left;
        ``replacement`` (a :class:`Replacement`) starts another when the worker dies."""
        if conn is None:
            self.pipe.send(msg.WorkerFinished(self.workerID, Timers(), cloudpickle.dumps(None)))
            return
        while conn is not None:
            conn = self._serveOnce(conn, replacement)

    def _serveOnce(self, conn, replacement):
        """Serve one worker's connection; the next worker's, when this one died and
        another took its place."""
        link = RemoteLink(conn, self.workerID, self.board.signals.stop,
                          self.settings.heartbeatTimeout, self.reports, self._blockInHand)
        try:
            self._serveLink(link)
        except (slots.StopRequested, slots.PeerGone):
            pass
        except RemoteFailure as e:
            self.pipe.send(msg.WorkerFailed(e.record))
        except WorkerLost as e:
            return self._replace(e, replacement)
        except Exception as e:
            self.pipe.send(msg.WorkerFailed(self.errorRecord(e)))
        finally:
            conn.close()
        return None

    def _replace(self, lost: WorkerLost, replacement):
        """The connection of a worker started in place of the lost one (whose blocks go
        back on the board), or None after reporting why there is none."""
        try:
            if replacement is None or not replacement.possible(self.workerID):
                raise lost
            party = Party(Role.COMPUTE, self.workerID)
            blocks = self.board.reclaimFrom(party, recovery.LOCK_SECONDS)
            sent = self.board.reclaimComputing(party, recovery.LOCK_SECONDS)
            if blocks is None or sent is None:
                raise lost
            blocks += [block for _, block in sent]
            replacement.strikes.count(blocks, str(lost))
            for slot, _ in sent:
                self.board.markReady(slot)  # as read: the worker computed on a copy
            self.loop = None
            with self.state.timings.interval("restartworker"):
                return replacement.start(self.workerID, blocks, str(lost).splitlines()[0])
        except (slots.StopRequested, slots.PeerGone):
            return None  # the run is stopping anyway
        except Exception as e:
            self.pipe.send(msg.WorkerFailed(self.errorRecord(e)))
            return None

    def _serveLink(self, link: RemoteLink) -> None:
        link.send(msg.JobForWorker(self.settings.jobBytes, self.settings.reads,
                                   tuple(sys.path)))
        party = Party(Role.COMPUTE, self.workerID)
        source = RequestedSlots(SlotSource(self.job, self.pool, self.board, party,
                                           self.state.timings, claims=self.settings.reads,
                                           peerAlive=link.keepAlive), link)
        self.loop = WorkerLoop(source, RemoteCompute(self.job, self.pool, self.board, link,
                                                     self.settings.reads, self.state),
                               slotSink(self.job, self.pool, self.board, self.state,
                                        self.pipe),
                               limit=self.settings.blocksPerWorker)
        self.loop.run()
        if not source.unanswered:
            link.expect(msg.NextBlockPlease)
        link.send(msg.NoMoreBlocks())
        finished = link.expect(msg.WorkerFinished)
        self.finishedCleanly = True
        finished.timers.merge(self.state.timings)  # this side's reading, copying, summaries
        self.pipe.send(msg.WorkerFinished(self.workerID, finished.timers,
                                          finished.otherArgsBytes))

    def _blockInHand(self):
        current = None if self.loop is None else self.loop.current
        return None if current is None else self.job.blockList[current]

    def errorRecord(self, e: Exception) -> WorkerErrorRecord:
        record = WorkerErrorRecord(e, "compute", self.workerID, blockDefn=self._blockInHand())
        self.reports.noteOrigin(record, self.workerID)
        if isinstance(e, (WorkerLost, rioserrors.TimeoutError)):
            # the message says it all; the proxy's own stack would only distract
            record.formattedTraceback = traceback.format_exception_only(e)
        return record


class RemoteWorkers:
    """Compute workers started by a launcher, each served by a :class:`WorkerProxy`.

    The channel's address reaches the workers in a 0600 file in ``rundir`` (a private
    directory on the shared filesystem), or on their command line when the style says
    there is no shared temp directory.
    """

    def __init__(self, job, pool, board: SlotBoard, count: int, reads: bool, launcher, rundir):
        style = job.concurrency
        self.job = job
        self.board = board
        self.launcher = launcher
        self.rundir = Path(rundir)
        self.extra = launcher.extraParams  # with the user's config file's defaults
        self.reports = JobReports(launcher, self.rundir)
        settings = ProxySettings(
            cloudpickle.dumps(job), reads, 1 if style.singleBlockComputeWorkers else None,
            float(self.extra.get("heartbeatTimeout", DEFAULT_HEARTBEAT_TIMEOUT)))
        self.connected = threading.Event()
        self.replacement = Replacement(self)
        self.channel = None
        self.conns, self.proxies, self.threads = [], [], []
        for i in range(count):
            mainEnd, proxyEnd = connection.Pipe(duplex=True)
            self.conns.append(mainEnd)
            self.proxies.append(WorkerProxy(i, job, pool, board, PipeToMain(proxyEnd, board),
                                            settings, self.reports))
            self.threads.append(threading.Thread(target=self._serve, args=(i,), daemon=True,
                                                 name=f"sharedapplier-remote-{i}"))

    # --- the interface the runner uses (as for local workers) -------------------------
    def start(self):
        hostname = self.extra.get("channelHost")
        interface = self.extra.get("channelInterface", self.launcher.defaultInterface)
        if interface is None:
            hostname = hostname or socket.gethostname()
            interface = interfaceFor(hostname)
        self.channel = WorkerChannel(
            hostname=hostname, interface=interface,
            portRange=tuple(self.extra.get("channelPortRange", DEFAULT_PORT_RANGE)))
        self.command = self._workerCommand()
        self.launcher.submit(list(range(len(self.conns))), self.command)
        self.startTime = time.monotonic()
        for thread in self.threads:
            thread.start()

    def waitingForStart(self) -> bool:
        return not self.connected.is_set()

    def deadWorkers(self, finished):
        return [i for i, t in enumerate(self.threads) if i not in finished and not t.is_alive()]

    def describeDeath(self, workerID):
        return f"the proxy of remote worker {workerID} ended unexpectedly"

    def stop(self, timeout=3.0):
        """End the run's jobs (letting them end by themselves after success) and wait,
        briefly, for the scheduler to confirm it."""
        self.board.requestStop()
        try:
            if all(proxy.finishedCleanly for proxy in self.proxies):
                self._liveJobsAfter(JOB_END_GRACE_SECONDS)
            self.launcher.cancel()
            live = self._liveJobsAfter(CANCEL_CONFIRM_SECONDS)
            if live:
                logger.warning(f"sharedapplier: warning: {len(live)} compute job(s) had not "
                               f"ended {CANCEL_CONFIRM_SECONDS:.0f} s after being cancelled: "
                               + "; ".join(self.launcher.describe(i).identity() for i in live))
        finally:
            if self.channel is not None:
                self.channel.shutdown()
            for thread in self.threads:
                if thread.ident is not None:
                    thread.join(timeout)
            shutil.rmtree(self.rundir, ignore_errors=True)

    def _liveJobsAfter(self, seconds) -> list[int]:
        """Wait up to ``seconds`` for every worker's job to end; the workers whose have not."""
        deadline = time.monotonic() + seconds
        while True:
            live = [i for i in self.launcher.recorded() if not self.launcher.describe(i).finished]
            if not live or time.monotonic() >= deadline:
                return live
            time.sleep(0.2)

    # --- how workers find the channel ----------------------------------------------
    def _workerCommand(self):
        address = self.channel.address
        addressFile = None
        if self.job.concurrency.haveSharedTemp and self.launcher.sharedFilesystem:
            addressFile = self.rundir / ADDRESS_FILE_NAME
            address.writeFile(str(addressFile))
        command = self.launcher.workerCommand(address, addressFile)
        if "--channaddr" in command.base:
            logger.warning("sharedapplier: warning: haveSharedTemp=False puts the channel key "
                           "on the workers' command line, where other users of the machine "
                           "may see it")
        return command

    # --- one proxy's thread ----------------------------------------------------------
    def _serve(self, i):
        proxy = self.proxies[i]
        try:
            conn = self.awaitConnection(i)
        except (slots.StopRequested, slots.PeerGone):
            return
        except Exception as e:
            proxy.pipe.send(msg.WorkerFailed(proxy.errorRecord(e)))
            return
        proxy.serve(conn, self.replacement)

    def awaitConnection(self, i, since: float | None = None):
        """The worker's connection; None if others started and this one never came
        within computeBarrierTimeout of ``since`` (the run's start)."""
        timeout = self.job.concurrency.computeBarrierTimeout
        start = self.startTime if since is None else since
        while True:
            link = self.channel.awaitWorker(i, timeout=slots.POLL_SECONDS)
            if link is not None:
                self.connected.set()
                self.launcher.noteHost(i, str(link[1].get("host", "")))
                return link[0]
            if self.board.stopping:
                raise slots.StopRequested()
            self._checkStillComing(i, time.monotonic() - start, timeout)
            if timeout is not None and time.monotonic() - start > timeout:
                return None

    def _checkStillComing(self, i, waited, timeout):
        """Raise if worker ``i``'s job ended, or if no worker came within ``timeout``;
        warn (the run goes on without it) if only this one did not."""
        desc = self.launcher.describe(i)
        if desc.finished:
            raise WorkerLost(self.reports.lostText(
                i, f"ended before connecting to the main process ({desc.status()})"))
        if timeout is None or waited <= timeout:
            return
        if not self.connected.is_set():
            raise rioserrors.TimeoutError(
                f"no compute worker started within {timeout} s; worker {i} is "
                f"{desc.identity()}, {desc.status()}. Try increasing "
                f"computeBarrierTimeout (current value = {timeout}) in the "
                "ConcurrencyStyle, or check the queue")
        logger.warning(f"sharedapplier: warning: compute worker {i} ({desc.identity()}) has "
                       f"not started after {timeout} s ({desc.status()}); carrying on with the "
                       "workers that did")


class Replacement:
    """Starts another remote worker in place of one whose job died, where the launcher can
    (``Launcher.canResubmit``), for the proxies of one run. The dead worker's blocks are in
    the slots it held: those it was reading are read again (REDO); those it was sent are
    given out again as they are, since it computed on a copy."""

    def __init__(self, workers: RemoteWorkers):
        self.workers = workers
        self.strikes = recovery.BlockStrikes(workers.job)

    def possible(self, workerID: int) -> bool:
        launcher = self.workers.launcher
        return (launcher.canResubmit and not self.workers.board.stopping
                and launcher.describe(workerID).finished)

    def start(self, workerID: int, blocks, death: str):
        """Resubmit the worker and wait for it; its connection."""
        self.workers.launcher.resubmit(workerID, self.workers.command)
        conn = self.workers.awaitConnection(workerID, since=time.monotonic())
        if conn is None:
            raise rioserrors.TimeoutError(
                f"the compute worker started in place of worker {workerID} ({death}) did not "
                "connect within computeBarrierTimeout")
        recovery.warnReplaced(self.workers.job, workerID, death, blocks)
        return conn


def makeRunDirectory(tempdir: str) -> Path:
    """A private directory for a remote run's address file, job scripts and logs."""
    return Path(tempfile.mkdtemp(prefix="sharedapplier_run_", dir=tempdir or None)).resolve()
