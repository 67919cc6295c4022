#!/usr/bin/env python3
# TEST DOUBLE -- NOT real PBS.  Copies OpenPBS's visible behaviour (qsub/qstat/qdel output,
# exit codes, job environment) so the project's PBS launcher can be tested without a PBS server.
"""pbs_shim -- a TEST DOUBLE for OpenPBS / PBS Pro's qsub, qstat and qdel.

THIS IS NOT PBS.  There is no pbs_server, no scheduler, no MoM: every job is run
at once on this machine by a small detached "runner" process.  It exists so a
PBS launcher can be tested end to end (submit -> poll -> worker really starts ->
connects back -> cancel) on a machine where no PBS can be installed.  What it
copies from real OpenPBS (checked against openpbs/openpbs src/cmds/qsub.c,
qstat.c, qdel.c and src/resmom/start_exec.c):

  qsub   prints the new job id "<seq>.<server>" + "\\n" on stdout, exit 0.
         Options: -N -o -e -j oe|eo|n -l (walltime enforced, rest recorded)
         -v VAR[=val],...  -V  -q  -S shell  -A -P -m -M -r -k -p -a -c (recorded)
         -z (do not print id)  and  "qsub [opts] -- executable [args]".
         "#PBS" directives (prefix from -C / PBS_DPREFIX) are read until the first
         non-blank, non-comment line; command-line options win over directives.
         Rejected with an error (not emulated): -I -J -W depend=... -h -X -R.
  job    cwd = $HOME (NOT the submit dir -- use $PBS_O_WORKDIR);  environment =
         PBS_O_{HOME,LANG,LOGNAME,PATH,MAIL,SHELL,TZ,WORKDIR,HOST,QUEUE,SYSTEM},
         PBS_JOBID, PBS_JOBNAME, PBS_QUEUE, PBS_ENVIRONMENT=PBS_BATCH, PBS_NODEFILE,
         PBS_NODENUM, PBS_TASKNUM, PBS_MOMPORT, PBS_JOBDIR, NCPUS, OMP_NUM_THREADS,
         TMPDIR, HOME, LOGNAME, USER, SHELL + -v variables; the whole submit
         environment only with -V.  A script is fed on stdin to the login shell
         ("-bash"; -S overrides), like pbs_mom does, so its #! line is only a comment.
         Output goes to -o/-e (default <PBS_O_WORKDIR>/<name>.o<seq> / .e<seq>).
         (Real PBS spools output and copies it at job end; the shim writes directly.)
  qstat  [-x] [-f [-F json|dsv]] [-w] [jobid...].  Default table layout, "-f" text
         layout ("Job Id: ..." then "    attr = value") and -F json root keys
         (timestamp, pbs_version, pbs_server, Jobs) follow OpenPBS.  States: Q R E F.
         Unknown id -> stderr "qstat: Unknown Job Id <id>", exit 153 (15001 & 0xff).
         Finished job without -x -> "qstat: <id> Job has finished, use -x or -H to
         obtain historical job information", exit 35 (15139 & 0xff).
         Exit_status: script exit code; 256+signal if killed by a signal (qdel ->
         SIGTERM -> 271); -29 if walltime exceeded (JOB_EXEC_KILL_WALLTIME).
  qdel   [-W force] [-x] jobid...: SIGTERM to the job's process group, SIGKILL after
         $PBS_SHIM_KILL_DELAY s (default 2; PBS's kill_delay default is 10).  Silent,
         exit 0.  Unknown -> "qdel: Unknown Job Id <id>", exit 153; finished ->
         "qdel: Job has finished <id>", exit 35.

Config (environment): PBS_SHIM_HOME  state dir (default /tmp/pbs_shim)
                      PBS_SHIM_SERVER server name in job ids (default: short hostname)
                      PBS_SHIM_MAX_RUNNING  >0: jobs beyond this stay Q (default 0 = no limit)
                      PBS_SHIM_KILL_DELAY   seconds between SIGTERM and SIGKILL on qdel
                      PBS_SHIM_HISTORY=0    emulate a server WITHOUT job_history_enable: finished
                                            jobs vanish ("Unknown Job Id", exit 153), -x shows nothing
Install: put bin/ (qsub, qstat, qdel -> this file) first on PATH.
"""
import fcntl
import getpass
import json
import os
import pwd
import shlex
import signal
import socket
import subprocess
import sys
import time

PBSE_UNKJOBID = 15001
PBSE_HISTJOBID = 15139
PBSE_BADSTATE = 15016
JOB_EXEC_KILL_WALLTIME = -29
HOME = os.environ.get("PBS_SHIM_HOME", "/tmp/pbs_shim")
SERVER = os.environ.get("PBS_SHIM_SERVER") or socket.gethostname().split(".")[0]
VERSION = "shim-0.1 (test double, not OpenPBS)"
OPTS_WITH_ARG = set("aAcCeJjklmMNoPpqrRSuvW")
OPTS_FLAGS = set("fhIVXz")


# ---------------------------------------------------------------- state ----
def _jobdir():
    d = os.path.join(HOME, "jobs")
    os.makedirs(d, exist_ok=True)
    return d


class _Lock:
    def __enter__(self):
        os.makedirs(HOME, exist_ok=True)
        self.f = open(os.path.join(HOME, "lock"), "a+")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *a):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def _path(jid):
    return os.path.join(_jobdir(), jid + ".json")


def load(jid):
    try:
        with open(_path(jid)) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def save(job):
    tmp = _path(job["id"]) + ".tmp"
    with open(tmp, "w") as f:
        json.dump(job, f, indent=1)
    os.replace(tmp, _path(job["id"]))


def update(jid, **kw):
    with _Lock():
        job = load(jid)
        job.update(kw)
        job["mtime"] = int(time.time())
        save(job)
        return job


def all_jobs():
    jobs = []
    for n in os.listdir(_jobdir()):
        if n.endswith(".json"):
            j = load(n[:-5])
            if j:
                jobs.append(j)
    return sorted(jobs, key=lambda j: j["seq"])


def _history():
    return os.environ.get("PBS_SHIM_HISTORY", "1") != "0"


def normalize_id(arg):
    """'12', '12.vm', '12.vm.example.com' -> '12.<SERVER>' (like PBS does)."""
    seq = arg.split(".", 1)[0]
    return f"{seq}.{SERVER}" if seq.isdigit() else arg


# ----------------------------------------------------------------- qsub ----
def _getopt(argv):
    """PBS-style getopt: returns ([(opt, val)], rest).  Stops at '--' or first operand."""
    opts, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            return opts, argv[i:]
        if not a.startswith("-") or a == "-":
            return opts, argv[i:]
        j = 1
        while j < len(a):
            c = a[j]
            if c in OPTS_WITH_ARG:
                val = a[j + 1:] if j + 1 < len(a) else None
                if val is None:
                    i += 1
                    if i >= len(argv):
                        raise ValueError(f"option requires an argument -- '{c}'")
                    val = argv[i]
                opts.append((c, val))
                break
            elif c in OPTS_FLAGS:
                opts.append((c, None))
                j += 1
            else:
                raise ValueError(f"invalid option -- '{c}'")
        i += 1
    return opts, []


def _directives(script_text, prefix):
    opts = []
    lines = script_text.splitlines()
    for n, line in enumerate(lines):
        s = line.strip()
        if n == 0 and (s.startswith("#!") or s.startswith(":")):
            continue
        if not s:
            continue
        if s.startswith(prefix) and (len(s) == len(prefix) or s[len(prefix)] in " \t"):
            o, rest = _getopt(shlex.split(s[len(prefix):], comments=False))
            opts.extend(o)
            continue
        if s.startswith("#"):
            continue
        break  # first executable line ends directive processing
    return opts


def _parse_l(val, res):
    # "select=1:ncpus=2:mem=1gb,walltime=00:10:00"  (a select value may contain ':' and '=')
    for part in val.split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            res[k] = v


def _walltime_secs(w):
    if not w:
        return None
    parts = [float(x) for x in w.split(":")]
    secs = 0.0
    for p in parts:
        secs = secs * 60 + p
    return secs


def _ncpus(res):
    if "ncpus" in res:
        return int(res["ncpus"])
    sel = res.get("select", "")
    for chunk in sel.split(":"):
        if chunk.startswith("ncpus="):
            return int(chunk.split("=", 1)[1])
    return 1


def qsub(argv):
    try:
        cl_opts, rest = _getopt(argv)
    except ValueError as e:
        print(f"qsub: {e}", file=sys.stderr)
        print("usage: qsub [-a date_time] [-A account_string] ... [script | -- command [arg1 ...]]", file=sys.stderr)
        return 2
    executable = None
    script_text = None
    if rest and rest[0] == "--":
        if len(rest) < 2:
            print("qsub: no executable after --", file=sys.stderr)
            return 2
        executable = rest[1:]
        base = os.path.basename(rest[1])
    elif rest:
        try:
            with open(rest[0]) as f:
                script_text = f.read()
        except OSError:
            print("qsub: script file:: No such file or directory", file=sys.stderr)
            return 1
        base = os.path.basename(rest[0])
    else:
        script_text = sys.stdin.read()
        base = "STDIN"
    prefix = dict(cl_opts).get("C") or os.environ.get("PBS_DPREFIX") or "#PBS"
    dir_opts = _directives(script_text, prefix) if script_text is not None else []
    cl_keys = {o for o, _ in cl_opts}
    opts = [(o, v) for o, v in dir_opts if o not in cl_keys or o in "lvW"] + cl_opts

    for o, v in opts:
        if o in ("I", "X"):
            print(f"qsub: -{o} (interactive) is not supported by pbs_shim", file=sys.stderr)
            return 2
        if o in ("J", "h", "R") or (o == "W" and not v.startswith(("umask", "block", "sandbox"))):
            print(f"qsub: -{o} {v or ''} is not supported by pbs_shim (test double)", file=sys.stderr)
            return 2

    res, varlist, export_all, printid = {}, {}, False, True
    name, out, err, join, queue, shell = base, None, None, "n", "workq", None
    attrs = {}
    for o, v in opts:
        if o == "N":
            name = v
        elif o == "o":
            out = v
        elif o == "e":
            err = v
        elif o == "j":
            join = v
        elif o == "l":
            _parse_l(v, res)
        elif o == "v":
            for item in v.split(","):
                if "=" in item:
                    k, val = item.split("=", 1)
                    varlist[k] = val
                elif item in os.environ:
                    varlist[item] = os.environ[item]
        elif o == "V":
            export_all = True
        elif o == "q":
            queue = v.split("@", 1)[0] or "workq"
        elif o == "S":
            shell = v.split(",")[0].split("@")[0]
        elif o == "z":
            printid = False
        elif o in "AmMPprkac":
            attrs[o] = v
    if not name or len(name) > 236 or not (name[0].isalnum() or name[0] == "_"):
        print("qsub: illegal -N value", file=sys.stderr)
        return 2

    env = {}
    if export_all:
        env.update({k: v for k, v in os.environ.items() if not k.startswith("PBS_O_")})
    cwd = os.getcwd()
    for k in ("HOME", "LANG", "LOGNAME", "PATH", "MAIL", "SHELL", "TZ"):
        if k in os.environ:
            env["PBS_O_" + k] = os.environ[k]
    env["PBS_O_WORKDIR"] = cwd
    env["PBS_O_HOST"] = socket.getfqdn()
    env["PBS_O_QUEUE"] = queue
    env["PBS_O_SYSTEM"] = os.uname().sysname
    env.update(varlist)

    now = int(time.time())
    with _Lock():
        seqf = os.path.join(HOME, "seq")
        seq = int(open(seqf).read()) + 1 if os.path.exists(seqf) else 1
        with open(seqf, "w") as f:
            f.write(str(seq))
        jid = f"{seq}.{SERVER}"
        spool = os.path.join(HOME, "spool")
        os.makedirs(spool, exist_ok=True)
        script_path = None
        if script_text is not None:
            script_path = os.path.join(spool, jid + ".SC")
            with open(script_path, "w") as f:
                f.write(script_text)

        def _outpath(p, suffix):
            if p is None:
                return os.path.join(cwd, f"{name}.{suffix}{seq}")
            if ":" in p and not p.startswith("/"):
                p = p.split(":", 1)[1]          # host:path
            p = os.path.join(cwd, os.path.expanduser(p))
            if os.path.isdir(p):
                p = os.path.join(p, f"{name}.{suffix}{seq}")
            return p

        user = getpass.getuser()
        job = {
            "id": jid, "seq": seq, "Job_Name": name, "Job_Owner": f"{user}@{socket.getfqdn()}",
            "user": user, "job_state": "Q", "queue": queue, "server": SERVER,
            "ctime": now, "qtime": now, "mtime": now, "Resource_List": res,
            "Output_Path": _outpath(out, "o"), "Error_Path": _outpath(err, "e"),
            "Join_Path": join, "Variable_List": env, "export_all": export_all,
            "script": script_path, "executable": executable, "shell": shell,
            "Submit_arguments": " ".join(shlex.quote(a) for a in argv),
            "attrs": attrs, "ncpus": _ncpus(res),
            "walltime_s": _walltime_secs(res.get("walltime")),
        }
        save(job)
    # detached runner (own session, stdio closed), so qsub returns at once
    subprocess.Popen([sys.executable, os.path.realpath(__file__), "_run", jid],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, close_fds=True, cwd="/")
    if printid:
        print(jid)
    return 0


# --------------------------------------------------------------- runner ----
def run_job(jid):
    maxrun = int(os.environ.get("PBS_SHIM_MAX_RUNNING", "0") or 0)
    while True:
        with _Lock():
            job = load(jid)
            if job is None or job["job_state"] != "Q":
                return 0          # deleted while queued
            running = sum(1 for j in all_jobs() if j["job_state"] in ("R", "E"))
            if maxrun <= 0 or running < maxrun:
                job["job_state"] = "R"
                job["stime"] = job["mtime"] = int(time.time())
                job["exec_host"] = f"{socket.gethostname().split('.')[0]}/0*{job['ncpus']}"
                job["exec_vnode"] = f"({socket.gethostname().split('.')[0]}:ncpus={job['ncpus']})"
                job["runner_pid"] = os.getpid()
                save(job)
                break
        time.sleep(0.2)

    pw = pwd.getpwuid(os.getuid())
    host = socket.gethostname().split(".")[0]
    aux = os.path.join(HOME, "aux")
    os.makedirs(aux, exist_ok=True)
    nodefile = os.path.join(aux, jid)
    with open(nodefile, "w") as f:
        f.write(host + "\n")
    tmpdir = os.path.join(HOME, "tmp", jid)
    os.makedirs(tmpdir, exist_ok=True)
    shell = job["shell"] or pw.pw_shell or "/bin/sh"
    env = dict(job["Variable_List"])
    env.update({
        "HOME": pw.pw_dir, "LOGNAME": pw.pw_name, "USER": pw.pw_name, "SHELL": shell,
        "PBS_JOBNAME": job["Job_Name"], "PBS_JOBID": jid, "PBS_QUEUE": job["queue"],
        "PBS_ENVIRONMENT": "PBS_BATCH", "PBS_NODEFILE": nodefile, "PBS_NODENUM": "0",
        "PBS_TASKNUM": "1", "PBS_MOMPORT": "15003", "PBS_JOBDIR": pw.pw_dir,
        "NCPUS": str(job["ncpus"]), "OMP_NUM_THREADS": str(job["ncpus"]), "TMPDIR": tmpdir,
    })
    if not job["export_all"] and "PATH" not in env:
        env["PATH"] = "/usr/local/bin:/usr/bin:/bin"   # the login shell sets the real one
    out_path, err_path = job["Output_Path"], job["Error_Path"]
    join = job["Join_Path"]
    try:
        if join == "oe":
            out_f = open(out_path, "w")
            err_f = out_f
        elif join == "eo":
            err_f = open(err_path, "w")
            out_f = err_f
        else:
            out_f = open(out_path, "w")
            err_f = open(err_path, "w")
    except OSError:
        out_f = err_f = open(os.devnull, "w")
    if job["executable"]:
        argv, exe, stdin = job["executable"], None, subprocess.DEVNULL
    else:
        # pbs_mom style: login shell ("-bash"), script on stdin
        exe, argv, stdin = shell, ["-" + os.path.basename(shell)], open(job["script"])
    start = time.time()
    try:
        proc = subprocess.Popen(argv, executable=exe, stdin=stdin, stdout=out_f, stderr=err_f,
                                env=env, cwd=pw.pw_dir, start_new_session=True)
    except OSError as e:
        err_f.write(f"pbs_shim: cannot execute {argv}: {e}\n")
        err_f.flush()
        update(jid, job_state="F", Exit_status=-1, comment=f"Job exec failed: {e}",
               obittime=int(time.time()))
        return 0
    update(jid, session_id=proc.pid)
    wall = job.get("walltime_s")
    status, walltime_killed, term_sent = None, False, None
    kill_delay = float(os.environ.get("PBS_SHIM_KILL_DELAY", "2"))
    while status is None:
        try:
            status = proc.wait(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            pass
        j = load(jid) or {}
        if wall and time.time() - start > wall and not walltime_killed:
            walltime_killed = True
            _signal_group(proc.pid, signal.SIGTERM)
            term_sent = time.time()
        if j.get("delete_requested") and term_sent is None:
            _signal_group(proc.pid, signal.SIGKILL if j.get("force") else signal.SIGTERM)
            term_sent = time.time()
        if term_sent and time.time() - term_sent > kill_delay:
            _signal_group(proc.pid, signal.SIGKILL)
    _signal_group(proc.pid, signal.SIGKILL)     # reap stragglers left in the job's group
    if status < 0:
        exit_status = 256 + (-status)
    else:
        exit_status = status
    comment = f"Job run at {time.ctime(start)} on ({host}:ncpus={job['ncpus']}) and finished"
    if walltime_killed:
        exit_status = JOB_EXEC_KILL_WALLTIME
        comment = "Job killed: walltime exceeded"
    elif (load(jid) or {}).get("delete_requested"):
        comment = "Job deleted"
    for f in {id(out_f): out_f, id(err_f): err_f}.values():
        f.close()
    cput = int(time.time() - start)
    update(jid, job_state="F", Exit_status=exit_status, obittime=int(time.time()), comment=comment,
           resources_used={"walltime": _hms(time.time() - start), "cput": _hms(cput), "ncpus": job["ncpus"]})
    return 0


def _signal_group(pid, sig):
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _hms(secs):
    secs = int(secs)
    return f"{secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}"


# ---------------------------------------------------------------- qstat ----
def _attrs_for_display(j):
    """Ordered (name, resource, value) triples, names as OpenPBS qstat -f uses them."""
    def t(k):
        return time.ctime(j[k])
    out = [("Job_Name", None, j["Job_Name"]), ("Job_Owner", None, j["Job_Owner"])]
    if "resources_used" in j:
        for k, v in j["resources_used"].items():
            out.append(("resources_used", k, str(v)))
    out += [("job_state", None, j["job_state"]), ("queue", None, j["queue"]),
            ("server", None, j["server"]), ("ctime", None, t("ctime"))]
    out += [("Error_Path", None, f"{socket.getfqdn()}:{j['Error_Path']}")]
    if "exec_host" in j:
        out += [("exec_host", None, j["exec_host"]), ("exec_vnode", None, j["exec_vnode"])]
    out += [("Join_Path", None, j["Join_Path"]), ("mtime", None, t("mtime")),
            ("Output_Path", None, f"{socket.getfqdn()}:{j['Output_Path']}"),
            ("qtime", None, t("qtime"))]
    for k, v in j["Resource_List"].items():
        out.append(("Resource_List", k, v))
    out.append(("Resource_List", "ncpus", str(j["ncpus"]))) if "ncpus" not in j["Resource_List"] else None
    if "stime" in j:
        out.append(("stime", None, t("stime")))
    if "session_id" in j:
        out.append(("session_id", None, str(j["session_id"])))
    out.append(("euser", None, j["user"]))
    if "comment" in j:
        out.append(("comment", None, j["comment"]))
    out.append(("Variable_List", None, ",".join(f"{k}={v}" for k, v in j["Variable_List"].items())))
    if "Exit_status" in j:
        out.append(("Exit_status", None, str(j["Exit_status"])))
    out.append(("Submit_arguments", None, j["Submit_arguments"]))
    if "obittime" in j:
        out.append(("obittime", None, t("obittime")))
    return out


def _prt_attr(name, res, value, one_line):
    key = f"{name}.{res}" if res else name
    if one_line:
        print(f"    {key} = {value}")
        return
    start = len(key) + 7
    line = f"    {key} = "
    pieces = value.split(",")
    for i, p in enumerate(pieces):
        if len(p) + start < 78:
            line += p
            start += len(p)
        else:
            if i:
                line += "\n\t"
                start = 9
            for ch in p:
                line += ch
                start += 1
                if start > 78:
                    line += "\n\t"
                    start = 8
        if i < len(pieces) - 1:
            line += ","
    print(line)


def _json_val(v):
    try:
        return int(v)
    except (TypeError, ValueError):
        try:
            return float(v)
        except (TypeError, ValueError):
            return v


def qstat(argv):
    try:
        opts, rest = _getopt_qstat(argv)
    except ValueError as e:
        print(f"qstat: {e}", file=sys.stderr)
        return 2
    full, hist, fmt, wide = "f" in opts, "x" in opts or "H" in opts, opts.get("F", "").lower(), "w" in opts
    rc = 0
    if rest:
        jobs = []
        for a in rest:
            jid = normalize_id(a)
            j = load(jid)
            if j is not None and j["job_state"] == "F" and not _history():
                j = None
            if j is None:
                print(f"qstat: Unknown Job Id {jid}", file=sys.stderr)
                rc = PBSE_UNKJOBID
            elif j["job_state"] == "F" and not hist:
                print(f"qstat: {jid} Job has finished, use -x or -H to obtain historical job information",
                      file=sys.stderr)
                rc = PBSE_HISTJOBID
            else:
                jobs.append(j)
    else:
        jobs = [j for j in all_jobs() if (hist and _history()) or j["job_state"] != "F"]
    if full and fmt == "json":
        doc = {"timestamp": int(time.time()), "pbs_version": VERSION, "pbs_server": SERVER, "Jobs": {}}
        for j in jobs:
            d = {}
            for name, res, val in _attrs_for_display(j):
                if name == "Variable_List":
                    d[name] = dict(j["Variable_List"])
                elif res:
                    d.setdefault(name, {})[res] = _json_val(val)
                else:
                    d[name] = _json_val(val) if name in ("Exit_status", "session_id") else val
            doc["Jobs"][j["id"]] = d
        print(json.dumps(doc, indent=4))
    elif full:
        for j in jobs:
            print(f"Job Id: {j['id']}")
            for name, res, val in _attrs_for_display(j):
                _prt_attr(name, res, val, wide)
            print()
    elif jobs:
        w = 17
        print("Job id            Name             User              Time Use S Queue")
        print("----------------  ---------------- ----------------  -------- - -----")
        for j in jobs:
            jid = j["id"] if len(j["id"]) <= w else j["id"][: w - 1] + "*"
            nm = j["Job_Name"] if len(j["Job_Name"]) <= 16 else j["Job_Name"][:15] + "*"
            tu = j.get("resources_used", {}).get("cput", "0")
            print(f"{jid:<{w}} {nm:<16} {j['user']:<16}  {tu:>8} {j['job_state']:1} {j['queue']:<16}")
    return rc & 0xFF


def _getopt_qstat(argv):
    opts, rest, i = {}, [], 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("-") and len(a) > 1 and not rest:
            j = 1
            while j < len(a):
                c = a[j]
                if c in "FuWD":
                    v = a[j + 1:] or (argv[i + 1] if i + 1 < len(argv) else None)
                    if v is None:
                        raise ValueError(f"option requires an argument -- '{c}'")
                    if not a[j + 1:]:
                        i += 1
                    opts[c] = v
                    break
                opts[c] = True
                j += 1
        else:
            rest.append(a)
        i += 1
    return opts, rest


# ----------------------------------------------------------------- qdel ----
def qdel(argv):
    force, ids, i = False, [], 0
    while i < len(argv):
        a = argv[i]
        if a == "-W":
            force = argv[i + 1] == "force"
            i += 2
            continue
        if a.startswith("-W"):
            force = a[2:] == "force"
            i += 1
            continue
        if a == "-x":
            i += 1
            continue
        ids.append(a)
        i += 1
    if not ids:
        print("usage: qdel [-W force|suppress_email=X] [-x] job_identifier...", file=sys.stderr)
        return 2
    rc = 0
    for a in ids:
        jid = normalize_id(a)
        with _Lock():
            j = load(jid)
            if j is not None and j["job_state"] == "F" and not _history():
                j = None
            if j is None:
                print(f"qdel: Unknown Job Id {jid}", file=sys.stderr)
                rc = PBSE_UNKJOBID
                continue
            if j["job_state"] == "F":
                print(f"qdel: Job has finished {jid}", file=sys.stderr)
                rc = PBSE_HISTJOBID
                continue
            if j["job_state"] == "Q":
                j.update(job_state="F", comment="Job deleted", obittime=int(time.time()),
                         delete_requested=True, mtime=int(time.time()))
            else:
                j.update(delete_requested=True, force=force, mtime=int(time.time()))
            save(j)
    return rc & 0xFF


def main():
    prog = os.path.basename(sys.argv[0])
    args = sys.argv[1:]
    if prog.endswith(".py") and args and args[0] in ("qsub", "qstat", "qdel", "_run"):
        prog, args = args[0], args[1:]
    if prog == "_run":
        return run_job(args[0])
    if prog == "qsub":
        return qsub(args)
    if prog == "qstat":
        return qstat(args)
    if prog == "qdel":
        return qdel(args)
    print("usage: qsub|qstat|qdel ... (symlink this file under those names)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
