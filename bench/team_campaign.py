"""Issue 18's campaigns tried as a team and a user would, through the ``sluice`` CLI: a table of cases.

    .venv/bin/python -m bench.team_campaign                  # every campaign (about 10-15 min)
    .venv/bin/python -m bench.team_campaign kills data       # some campaigns only

Each case runs ``.venv/bin/sluice`` in its own temporary folder (the toy pipeline of
``tests/orchestration/fixtures`` for fast cases, penguin only where the Pusher matters), against
the default SQLite store, a real ``mlflow server`` over PostgreSQL 15 (artifacts proxied from its
own folder) or one over SQLite, on loopback. Each checks what issue 18's Deliver section asks:
one error line naming the culprit, within 10 s, no secret in stdout/stderr/--json/files under the
root/compiled YAML, nothing written outside the root, a store usable after kills, one version per
pushed model. Cases run one after another (the machine is shared). Prints a markdown table:
campaign | case | behaved | what happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
VENV = os.path.join(REPO, ".venv", "bin")
SLUICE = os.path.join(VENV, "sluice")
PYTHON = os.path.join(VENV, "python")
TOY = os.path.join(REPO, "tests", "orchestration", "fixtures", "toy_pipeline.py")
FAULTS = os.path.join(REPO, "tests", "orchestration", "fault_plugin")
TAXI = next((p for p in ("/work/shared/data/chicago_taxi", os.path.join(REPO, "..", "shared", "data", "chicago_taxi"))
             if os.path.isdir(p)), "")
TAXI_SCHEMA = os.path.join(REPO, "schemas", "taxi.pbtxt")
SECRET = "s3cr3tPW42"
TOKEN = "tok3nXYZ987"
RESULTS: list[tuple[str, str, bool, str]] = []

# A pipeline whose components take their time, fail or talk about the tracking URI on demand.
SLOW_PIPELINE = '''
import os, sys, time
from sluice.components.artifacts import Examples, Model
from sluice.components.sdk import ComponentError, Input, Output, component
from sluice.orchestration.pipeline import Pipeline


def src(out: Output[Examples]) -> None:
    with open(out.path("x.txt"), "w") as fh:
        fh.write("1")


def slow(data: Input[Examples], model: Output[Model], seconds: float = 4.0) -> None:
    time.sleep(seconds)
    with open(model.path("m.txt"), "w") as fh:
        fh.write("m")


def boom(data: Input[Examples], model: Output[Model], mode: str = "ok") -> None:
    time.sleep(0.5)
    import mlflow
    uri = os.environ.get("TC_QUOTE") or os.environ.get("MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri()
    print(f"talking to {uri}")
    sys.stderr.write(f"stderr says {uri}\\n")
    if mode == "raise":
        raise ComponentError(f"boom refused; server was {uri}")
    if mode == "zero":
        1 / 0
    if mode == "mlflow":  # a user's component using MLflow's module-level API directly
        mlflow.log_metric("direct", 1.0)
    with open(model.path("m.txt"), "w") as fh:
        fh.write("m")


def down(model: Input[Model], out: Output[Model]) -> None:
    with open(out.path("d.txt"), "w") as fh:
        fh.write("d")


Src, Slow = component(src, name="Src"), component(slow, name="Slow")
Boom, Down = component(boom, name="Boom"), component(down, name="Down")


def create_pipeline(pipeline_root: str = "r", mode: str = "ok", seconds: float = 4.0) -> Pipeline:
    s = Src()
    sl = Slow(data=s.outputs["out"], seconds=seconds)
    b = Boom(data=s.outputs["out"], mode=mode)
    d = Down(model=b.outputs["model"])
    return Pipeline(name="slowp", components=[s, sl, b, d], pipeline_root=pipeline_root, enable_cache=False)
'''

CSV_PIPELINE = '''
from sluice.components.example_gen import CsvExampleGen
from sluice.components.example_validator import ExampleValidator
from sluice.components.import_schema_gen import ImportSchemaGen
from sluice.components.schema_gen import SchemaGen
from sluice.components.statistics_gen import StatisticsGen
from sluice.orchestration.pipeline import Pipeline


def create_pipeline(pipeline_root: str, data_root: str, pattern: str = "*", schema_file: str = ""):
    gen = CsvExampleGen(input_base=data_root, input_pattern=pattern)
    stats = StatisticsGen(examples=gen.outputs["examples"])
    schema = (ImportSchemaGen(schema_file=schema_file) if schema_file
              else SchemaGen(statistics=stats.outputs["statistics"]))
    check = ExampleValidator(statistics=stats.outputs["statistics"], schema=schema.outputs["schema"])
    return Pipeline(name="bad", components=[gen, stats, schema, check], pipeline_root=pipeline_root)
'''


# -- helpers ---------------------------------------------------------------------------------


class Ran:
    def __init__(self, rc, out, err, seconds):
        self.rc, self.out, self.err, self.seconds = rc, out, err, seconds

    @property
    def lines(self) -> list[str]:
        # The slow pipeline's own component prints are relayed on purpose: not the CLI's lines.
        return [line for line in self.err.splitlines() if line.strip() and not line.startswith(("stderr says",
                                                                                                  "talking to"))]

    def one_line(self) -> bool:
        return self.rc not in (0, None) and len(self.lines) == 1 and "Traceback" not in self.err

    def doc(self):
        try:
            return json.loads(self.out)
        except ValueError:
            return None

    def short(self, n: int = 150) -> str:
        text = " / ".join(self.lines[-2:]) or self.out.strip()[-n:]
        return f"rc={self.rc}, {self.seconds:.1f}s, {len(self.lines)} stderr line(s): {text[:n]}"


def sh(argv, cwd, env=None, timeout=180, extra_env=None) -> Ran:
    env = dict(env or os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("SLUICE_PIPELINE_ROOT", None)
    env.update(extra_env or {})
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return Ran(None, out, err + f"\n[killed after {timeout}s]", time.monotonic() - start)
    return Ran(proc.returncode, out, err, time.monotonic() - start)


def workspace(name: str) -> str:
    ws = tempfile.mkdtemp(prefix=f"tc-{name}-")
    with open(os.path.join(ws, "numbers.txt"), "w") as fh:
        fh.write("1 2 3\n")
    with open(os.path.join(ws, "toy_module.py"), "w") as fh:
        fh.write("def transform(v):\n    return v + 1\n")
    with open(os.path.join(ws, "slow.py"), "w") as fh:
        fh.write(SLOW_PIPELINE)
    with open(os.path.join(ws, "csvp.py"), "w") as fh:
        fh.write(CSV_PIPELINE)
    return ws


def toy(ws, root="root", *args, **kw) -> Ran:
    return sh([SLUICE, "run", TOY, "--param", f"data_file={ws}/numbers.txt", "--param",
               f"module_file={ws}/toy_module.py", "--pipeline-root", root, *args], ws, **kw)


def slowp(ws, root="root", *args, **kw) -> Ran:
    return sh([SLUICE, "run", os.path.join(ws, "slow.py"), "--pipeline-root", root, *args], ws, **kw)


def record(campaign: str, case: str, behaved: bool, what: str) -> None:
    RESULTS.append((campaign, case, bool(behaved), what.replace("|", "/").replace("\n", " ")))
    print(f"[{campaign}] {case}: {'yes' if behaved else 'NO'} - {what}", file=sys.stderr, flush=True)


def files_under(root: str) -> list[str]:
    found = []
    for folder, _, names in os.walk(root):
        found += [os.path.join(folder, n) for n in names]
    return found


def leaks(secret: str, *texts: str, roots=()) -> list[str]:
    where = [f"text{i}" for i, t in enumerate(texts) if secret in (t or "")]
    for root in roots:
        for path in files_under(root):
            with contextlib.suppress(OSError), open(path, "rb") as fh:
                if secret.encode() in fh.read():
                    where.append(os.path.relpath(path, root))
    return where


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
            return


def wait_http(url, proc, seconds=120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited before {url} answered")
        with contextlib.suppress(Exception):
            urllib.request.urlopen(url, timeout=1)
            return
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer")


def unprivileged() -> list[str]:
    if os.getuid() != 0:
        return []
    import pwd

    nobody = pwd.getpwnam("nobody")
    return ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", "--"]


@contextlib.contextmanager
def postgres():
    """PostgreSQL 15 on loopback (as ``nobody`` when we are root); yields a database URI."""
    import psycopg2

    base = tempfile.mkdtemp(prefix="tc-postgres-")
    prefix = unprivileged()
    if prefix:
        import pwd

        os.chown(base, pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("nobody").pw_gid)
    subprocess.run([*prefix, "/usr/local/bin/initdb", "-D", f"{base}/data", "-U", "sluice", "--auth=trust"],
                   check=True, capture_output=True, timeout=120)
    port = free_port()
    proc = subprocess.Popen([*prefix, "/usr/local/bin/postgres", "-D", f"{base}/data", "-p", str(port), "-h",
                             "127.0.0.1", "-k", base, "-c", "fsync=off"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 60
        while True:
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=port, user="sluice", dbname="postgres")
                break
            except psycopg2.OperationalError:
                if time.time() > deadline:
                    raise
                time.sleep(0.3)
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE mlflow")
        conn.close()
        yield f"postgresql+psycopg2://sluice@127.0.0.1:{port}/mlflow"
    finally:
        stop(proc)
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def mlflow_server(backend: str | None = None):
    """``mlflow server`` on loopback, proxying artifacts from its own folder; yields (url, folder, process)."""
    base = tempfile.mkdtemp(prefix="tc-mlflow-")
    port = free_port()
    log = open(os.path.join(base, "server.log"), "w")  # noqa: SIM115 - the server holds it until stopped
    proc = subprocess.Popen(
        [PYTHON, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--backend-store-uri",
         backend or f"sqlite:///{base}/server.db", "--artifacts-destination", f"{base}/artifacts", "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=base,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        yield f"http://127.0.0.1:{port}", f"{base}/artifacts", proc
    finally:
        stop(proc)
        log.close()
        shutil.rmtree(base, ignore_errors=True)


def with_credentials(url: str, userinfo: str) -> str:
    return url.replace("http://", f"http://{userinfo}@")


def registry(tracking_uri: str, name: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    return sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))


def versions_in(serving: str) -> list[str]:
    return sorted(n for n in os.listdir(serving) if not n.startswith(".")) if os.path.isdir(serving) else []


# -- campaigns -------------------------------------------------------------------------------


def penguin(ws, root, *args, extra_env=None) -> Ran:
    return sh([SLUICE, "run", "penguin", "--pipeline-root", root, "--json", "--max-parallel", "1", *args], ws,
              timeout=400, extra_env=extra_env)


def kills(server) -> None:
    c = "kills"
    # Kill during store creation: SIGKILL the first run of a fresh root at growing delays.
    broken = []
    for delay in (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0):
        ws = workspace("kill-create")
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        proc = subprocess.Popen([SLUICE, "run", TOY, "--param", f"data_file={ws}/numbers.txt", "--param",
                                 f"module_file={ws}/toy_module.py", "--pipeline-root", "root"], cwd=ws, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(delay)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        left = sorted(os.listdir(os.path.join(ws, "root"))) if os.path.isdir(os.path.join(ws, "root")) else []
        again = toy(ws)
        if again.rc != 0:
            broken.append(f"{delay}s left {left}: {again.short()}")
    record(c, "SIGKILL during store creation (8 delays 0.5-4 s), then re-run", not broken,
           "; ".join(broken) or "every re-run completed without hand repair")
    # A component SIGKILLed mid-write, then a re-run and `runs list`.
    ws = workspace("kill-mid")
    killed = toy(ws, extra_env={"TOY_KILL_MID_WRITE": "1"})
    again, listed = toy(ws, "root", "--json"), sh([SLUICE, "runs", "list", "--pipeline-root", "root"], ws)
    doc = again.doc() or {}
    record(c, "component SIGKILLed mid-write, re-run", killed.rc != 0 and again.rc == 0 and listed.rc == 0,
           f"killed: {killed.short(80)}; re-run rc={again.rc} status={doc.get('status')}; runs list rc={listed.rc}")
    # The whole CLI SIGKILLed while a slow component runs, then `runs list` and a re-run.
    ws = workspace("kill-cli")
    proc = subprocess.Popen([SLUICE, "run", f"{ws}/slow.py", "--pipeline-root", "root", "--param", "seconds=20"],
                            cwd=ws, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(9)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    listed = sh([SLUICE, "runs", "list", "--pipeline-root", "root"], ws)
    again = slowp(ws, "root", "--param", "seconds=0.1")
    record(c, "whole CLI SIGKILLed mid-run, then runs list + re-run", listed.rc == 0 and again.rc == 0,
           f"runs list rc={listed.rc}: {listed.out.strip().splitlines()[-1:] if listed.out else listed.short(80)};"
           f" re-run rc={again.rc}")
    # Ctrl-C (SIGINT to the group) mid-run: a short message, the store usable.
    ws = workspace("sigint")
    proc = subprocess.Popen([SLUICE, "run", f"{ws}/slow.py", "--pipeline-root", "root", "--param", "seconds=20"],
                            cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    time.sleep(9)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
    again = slowp(ws, "root", "--param", "seconds=0.1")
    lines = [x for x in err.splitlines() if x.strip()]
    record(c, "Ctrl-C (SIGINT) mid-run, then re-run", proc.returncode != 0 and "Traceback" not in err and again.rc == 0,
           f"rc={proc.returncode}, {len(lines)} stderr line(s): {' / '.join(lines[-2:])[:120]}; re-run rc={again.rc}")
    pusher_kills()


def pusher_kills() -> None:
    c = "kills"
    ws = workspace("pusher-kill")
    env = {"PYTHONPATH": FAULTS + os.pathsep + REPO}
    for step, fault in (("after the rename", "Pusher:after_call=sluice.components.pusher:place_version"),
                        ("after registering", "Pusher:after_call=sluice.components.pusher:Registry.register")):
        root = os.path.join(ws, "root")
        if step == "after registering":  # undo the push: the Pusher runs again on the cached Trainer
            shutil.rmtree(os.path.join(root, "serving"), ignore_errors=True)
            for entry in os.listdir(os.path.join(root, "penguin", "Pusher")):
                if entry != ".logs":
                    shutil.rmtree(os.path.join(root, "penguin", "Pusher", entry))
            from mlflow.tracking import MlflowClient
            MlflowClient(f"sqlite:///{root}/metadata.db").delete_registered_model("penguin")
        killed = penguin(ws, "root", extra_env={**env, "SLUICE_FAULT": fault})
        again = penguin(ws, "root")
        serving = versions_in(os.path.join(root, "serving", "penguin"))
        vs = registry(f"sqlite:///{root}/metadata.db", "penguin")
        doc = again.doc() or {}
        ok = killed.rc == -9 and again.rc == 0 and serving == ["1"] and len(vs) == 1
        record(c, f"Pusher SIGKILLed {step}, then re-run", ok,
               f"killed rc={killed.rc}; re-run rc={again.rc} {doc.get('status')}; serving {serving};"
               f" registry versions {[v.version for v in vs]}" + ("" if again.rc == 0 else f"; {again.short()}"))
    third = penguin(ws, "root")
    serving = versions_in(os.path.join(ws, "root", "serving", "penguin"))
    vs = registry(f"sqlite:///{ws}/root/metadata.db", "penguin")
    record(c, "third run of the same model after the kills", third.rc == 0 and serving == ["1"] and len(vs) == 1,
           f"rc={third.rc}; serving {serving}; registry versions {[v.version for v in vs]}")


def concurrency(server) -> None:
    c = "concurrency"
    url, artifacts, _ = server
    # Penguin with the Pusher on the team server (PostgreSQL), --pipeline-root; then again (reuse).
    ws = workspace("http-pusher")
    before = set(os.listdir(ws))
    first = penguin(ws, "root", "--tracking-uri", url)
    serving = versions_in(os.path.join(ws, "root", "serving", "penguin"))
    vs = registry(url, "penguin")
    src = vs[-1].source if vs else ""
    record(c, "penguin with the Pusher on mlflow server (PostgreSQL, --artifacts-destination)",
           first.rc == 0 and serving == ["1"] and len(vs) == 1,
           f"rc={first.rc}; serving {serving}; versions {[v.version for v in vs]}; source {src[:60]}"
           + ("" if first.rc == 0 else f"; {first.short()}"))
    record("paths", "--pipeline-root moves the serving folder (penguin); nothing in the cwd",
           first.rc == 0 and set(os.listdir(ws)) - before == {"root"} and serving == ["1"],
           f"new in cwd: {sorted(set(os.listdir(ws)) - before)}; serving under root: {serving}")
    for entry in os.listdir(os.path.join(ws, "root", "penguin", "Pusher")):  # the Pusher misses the cache
        if entry != ".logs":
            shutil.rmtree(os.path.join(ws, "root", "penguin", "Pusher", entry))
    again = penguin(ws, "root", "--tracking-uri", url)
    vs2 = registry(url, "penguin")
    serving = versions_in(os.path.join(ws, "root", "serving", "penguin"))
    record(c, "same model pushed again on the server (Pusher outputs removed): no second version",
           again.rc == 0 and len(vs2) == 1,
           f"rc={again.rc}; versions {[v.version for v in vs2]}; serving {serving}"
           + ("" if again.rc == 0 else f"; {again.short()}"))
    # Two roots sharing one store at once (toy, then a cache check across roots).
    ws = workspace("two-roots")
    shared = f"sqlite:///{ws}/shared.db"
    procs = [subprocess.Popen([SLUICE, "run", TOY, "--param", f"data_file={ws}/numbers.txt", "--param",
                               f"module_file={ws}/toy_module.py", "--pipeline-root", r, "--tracking-uri", shared,
                               "--json"], cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in ("alice", "bob")]
    outs = [p.communicate(timeout=180) for p in procs]
    docs = [json.loads(o) if p.returncode == 0 else {} for p, (o, _) in zip(procs, outs)]
    outside = [path for d, r in zip(docs, ("alice", "bob")) for comp in d.get("components", [])
               for uris in comp.get("outputs", {}).values() for path in uris if not path.startswith(f"{ws}/{r}/")]
    record(c, "two roots on one SQLite store at once", all(p.returncode == 0 for p in procs) and not outside,
           f"rcs {[p.returncode for p in procs]}; outputs outside own root: {outside[:2]}"
           + "".join(f"; {e.strip()[-120:]}" for _, e in outs if e.strip()))
    third = toy(ws, "carol", "--tracking-uri", shared, "--json")
    doc = third.doc() or {}
    cached = [comp["id"] for comp in doc.get("components", []) if comp.get("status") == "cached"]
    outside = [p for comp in doc.get("components", []) for uris in comp.get("outputs", {}).values() for p in uris
               if not p.startswith(f"{ws}/carol/")]
    record(c, "third root on the shared store: no cache hit into another root", third.rc == 0 and not outside,
           f"rc={third.rc}; cached {cached}; outputs outside carol: {outside[:2]}")
    # Two runs on one root at once, on the team server.
    ws = workspace("same-root")
    procs = [subprocess.Popen([SLUICE, "run", TOY, "--param", f"data_file={ws}/numbers.txt", "--param",
                               f"module_file={ws}/toy_module.py", "--pipeline-root", "root", "--tracking-uri", url,
                               "--no-cache"], cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    outs = [p.communicate(timeout=240) for p in procs]
    record(c, "three runs on one root at once (mlflow server)", all(p.returncode == 0 for p in procs),
           f"rcs {[p.returncode for p in procs]}" + "".join(f"; {e.strip()[-120:]}" for _, e in outs if e.strip()))


DISK_SCRIPT = r'''
set -u
M=$1; WS=$2; SLUICE=$3; TOY=$4
run() { local t0=$(date +%s.%N); "$SLUICE" run "$TOY" --param data_file=$WS/numbers.txt \
  --param module_file=$WS/toy_module.py --pipeline-root "$1" "${@:2}" >$WS/out.txt 2>$WS/err.txt; local rc=$?;
  local secs=$(echo "$(date +%s.%N) - $t0" | bc)
  echo "RESULT $rc $secs $(grep -c . $WS/err.txt) $(tail -c 300 $WS/err.txt | tr '\n|' '  ')"; }
mkdir -p $M && mount -t tmpfs -o size=300k tmpfs $M
echo CASE full-at-creation; run $M/root
mount -o remount,size=50m $M; echo CASE after-space-freed; run $M/root
mount -o remount,size=2m $M; head -c 10m /dev/zero > $M/filler 2>/dev/null
echo CASE full-while-running; run $M/root --no-cache
rm -f $M/filler; echo CASE after-filler-removed; run $M/root --no-cache
mount -o remount,ro $M; echo CASE ro-root-with-store; run $M/root
echo CASE ro-root-json; run $M/root --json; echo "JSON $(head -c 200 $WS/out.txt | tr '\n|' '  ')"
mkdir -p $WS/e; echo CASE ro-existing-empty-root; mount -o remount,rw $M; mkdir -p $M/empty; mount -o remount,ro $M
run $M/empty
echo CASE ro-missing-root; run $M/a/b
'''


def disk(server) -> None:
    c = "disk"
    ws = workspace("disk")
    script = os.path.join(ws, "disk.sh")
    with open(script, "w") as fh:
        fh.write(DISK_SCRIPT)
    r = sh(["unshare", "-m", "--propagation", "private", "bash", script, f"{ws}/mnt", ws, SLUICE, TOY], ws,
           timeout=400)
    cases, current = {}, None
    for line in r.out.splitlines():
        if line.startswith("CASE "):
            current = line[5:]
        elif line.startswith(("RESULT ", "JSON ")) and current:
            cases.setdefault(current, []).append(line)
    if not cases:
        record(c, "tmpfs / read-only mounts", False, f"could not run: {r.short()}")
        return
    expect_ok = {"after-space-freed", "after-filler-removed"}
    for name, lines in cases.items():
        parts = lines[0].split(" ", 4)
        rc, secs, nlines = int(parts[1]), float(parts[2] or 0), int(parts[3])
        text = parts[4] if len(parts) > 4 else ""
        if name in expect_ok:
            ok = rc == 0
        else:
            ok = rc != 0 and nlines == 1 and secs < 10 and "Traceback" not in text
        if name == "ro-root-json":
            ok = ok and '"status": "failed"' in lines[-1]
            text += " | " + lines[-1]
        record(c, name.replace("-", " "), ok, f"rc={rc}, {secs:.1f}s, {nlines} line(s): {text.strip()[:170]}")
    # Store file problems, no mount needed.
    for label, make in (("metadata.db is a directory", lambda p: os.makedirs(p)),
                        ("metadata.db holds garbage", lambda p: Path(p).write_bytes(b"not sqlite" * 100)),
                        ("metadata.db truncated to 8 KiB", None)):
        ws = workspace("storefile")
        db = os.path.join(ws, "root", "metadata.db")
        if make is None:
            toy(ws)
            with open(db, "r+b") as fh:
                fh.truncate(8192)
        else:
            os.makedirs(os.path.dirname(db), exist_ok=True)
            make(db)
        r = toy(ws)
        record(c, label, r.one_line() and r.seconds < 10 and "metadata.db" in r.err, r.short())


def dead_port_cases() -> None:
    c = "failures"
    ws = workspace("dead")
    port = free_port()
    r = toy(ws, "root", "--tracking-uri", f"http://127.0.0.1:{port}")
    record(c, "dead tracking port", r.one_line() and r.seconds < 10, r.short())
    r = toy(ws, "root", "--tracking-uri", f"http://127.0.0.1:{port}", "--json")
    doc = r.doc() or {}
    record(c, "--json on a store failure (dead port)", doc.get("status") == "failed" and r.seconds < 10,
           f"status={doc.get('status')} error={str(doc.get('error'))[:100]}; {r.short(60)}")
    r = toy(ws, "root", "--tracking-uri", "http://10.255.255.1:5000")
    record(c, "unroutable tracking host (10.255.255.1)", r.one_line() and r.seconds < 10 and "10.255.255.1" in r.err,
           r.short())
    r = sh([SLUICE, "runs", "list", "--pipeline-root", "root", "--tracking-uri", f"http://127.0.0.1:{port}"], ws)
    record(c, "runs list on a dead port", r.one_line() and r.seconds < 10, r.short())


def taxi_rows(n=300) -> list[str]:
    with open(os.path.join(TAXI, "data.csv")) as fh:
        return [next(fh) for _ in range(n + 1)]


def write_case(ws: str, name: str, content) -> str:
    data = os.path.join(ws, name)
    os.makedirs(data)
    if callable(content):
        content(os.path.join(data, "data.csv"))
    else:
        with open(os.path.join(data, "data.csv"), "wb") as fh:
            fh.write(content)
    return data


def csv_run(ws, data, *params, timeout=120) -> Ran:
    argv = [SLUICE, "run", os.path.join(ws, "csvp.py"), "--param", f"pipeline_root={ws}/root-{os.path.basename(data)}",
            "--param", f"data_root={data}"]
    for p in params:
        argv += ["--param", p]
    return sh(argv, ws, timeout=timeout)


def data_cases() -> list[tuple]:
    rows = taxi_rows()
    head = rows[0].rstrip("\n").split(",")
    tips = head.index("tips")
    drop_tips = "".join(",".join(c for i, c in enumerate(r.rstrip("\n").split(",")) if i != tips) + "\n" for r in rows)
    int_tips = "".join(",".join(c if i != tips or j == 0 else str(int(float(c or 0)))
                                for i, c in enumerate(r.rstrip("\n").split(","))) + "\n" for j, r in enumerate(rows))
    text = "".join(rows)
    good = "a,b,label\n" + "".join(f"{i},{i * 2},{i % 2}.0\n" for i in range(200))
    wide = ",".join(["a", "b", "label"] + [f"extra_{i:04d}" for i in range(2000)]) + "\n" + "".join(
        ",".join([str(i), "2", "0.5"] + ["1"] * 2000) + "\n" for i in range(30))
    schema = f"schema_file={TAXI_SCHEMA}"

    def fifo(path):
        os.mkfifo(path)

    def devzero(path):
        os.symlink("/dev/zero", path)

    def ragged_bad(path):
        with open(path, "wb") as fh:
            fh.write(good.encode() + b"3,4\n" + b"5,\xff\xfe6,1.0\n" + good.encode()[10:200])

    return [  # (case, content, extra params, words the message must hold, must fail)
        ("large UTF-16 CSV", ("a,b,label\n" + "1,2,0.5\n" * 200000).encode("utf-16"), (), ["data.csv", "UTF-16"], True),
        ("UTF-32 CSV", good.encode("utf-32"), (), ["data.csv", "UTF-32"], True),
        ("bad byte first in the header", b"\xffa,b,label\n" + good.encode()[10:], (), ["data.csv"], True),
        ("bad byte + ragged row", ragged_bad, (), ["data.csv"], True),
        ("FIFO named data.csv", fifo, (), ["data.csv"], True),
        ("data.csv -> /dev/zero", devzero, (), ["data.csv"], True),
        ("50 MB single-line file", b"x" * 50_000_000, (), ["data.csv"], True),
        ("0-byte file (really empty)", b"", (), ["data.csv", "empty"], True),
        ("header only, no rows", b"a,b,label\n", (), ["data.csv"], True),
        ("NUL bytes in the middle", good.encode()[:300] + b"\0\0\0" + good.encode()[300:], (), ["data.csv"], True),
        ("gzip named data.csv", __import__("gzip").compress(good.encode()), (), ["data.csv", "gzip"], True),
        ("missing label (taxi schema)", drop_tips.encode(), (schema,), ["tips"], True),
        ("int label (taxi schema)", int_tips.encode(), (schema,), ["tips"], True),
        ("';'-separated taxi (taxi schema)", text.replace(",", ";").encode(), (schema,), ["data.csv"], True),
        ("';'-separated, no schema", good.replace(",", ";").encode(), (), ["data.csv", ";"], True),
        ("2,000 unexpected columns (taxi-like, inferred then curated)", wide.encode(),
         ("schema_file={ws}/small.pbtxt",), ["extra_"], True),
        ("30 identical rows (every row hashes to one split)", ("a,b,label\n" + "1,2,0.5\n" * 30).encode(),
         ("schema_file={ws}/small.pbtxt",), ["eval", "rows"], True),
        ("duplicate column names", b"a,a,label\n1,2,0.5\n3,4,0.5\n", (), ["data.csv", "a"], True),
        ("a string in a numeric taxi column (schema)", text.replace(",12.45,", ",twelve,").encode(), (schema,),
         ["fare"], True),
    ]


SMALL_SCHEMA = '''
feature { name: "a" type: INT presence { min_fraction: 1.0 } }
feature { name: "b" type: INT presence { min_fraction: 1.0 } }
feature { name: "label" type: FLOAT presence { min_fraction: 1.0 } }
'''


def data(server) -> None:
    c = "data"
    if not TAXI:
        record(c, "taxi data", False, "no chicago_taxi folder found")
        return
    ws = workspace("data")
    with open(os.path.join(ws, "small.pbtxt"), "w") as fh:
        fh.write(SMALL_SCHEMA)
    for i, (case, content, params, words, must_fail) in enumerate(data_cases()):
        folder = write_case(ws, f"case{i:02d}", content)
        r = csv_run(ws, folder, *[p.replace("{ws}", ws) for p in params], timeout=120)
        named = all(w.lower() in r.err.lower() for w in words)
        short = len(r.lines) <= 25 and "Traceback" not in r.err
        ok = (r.rc not in (0, None)) == must_fail and named and short
        if "2,000" in case:
            ok = ok and len(r.lines) <= 25
        first = r.lines[0] if r.lines else r.out.strip()[-100:]
        record(c, case, ok, f"rc={r.rc}, {r.seconds:.1f}s, {len(r.lines)} line(s): {first[:160]}")


def paths(server) -> None:
    c = "paths"
    for name in ("a#b", "a?b", "a%2Fb", "a b", "été-数据", "x%3Fy#?z %25", "semi;colon&amp", "new\nline",
                 "file:x", "sqlite:"):
        ws = workspace("paths")
        before = set(os.listdir(ws))
        r = toy(ws, name, "--json")
        doc = r.doc() or {}
        new = sorted(set(os.listdir(ws)) - before)
        root = os.path.join(ws, name)
        db = os.path.isfile(os.path.join(root, "metadata.db"))
        outside = [p for comp in doc.get("components", []) for uris in comp.get("outputs", {}).values() for p in uris
                   if not p.startswith(root + "/")]
        stray = [p for p in files_under(os.path.dirname(ws)) if p.startswith(ws) and not p.startswith(root + "/")
                 and os.path.basename(p) not in ("numbers.txt", "toy_module.py", "slow.py", "csvp.py")]
        ok = r.rc == 0 and new == [name] and db and not outside and not stray
        again = toy(ws, name, "--json")
        statuses = {comp["status"] for comp in (again.doc() or {}).get("components", [])}
        record(c, f"root named {name!r}", ok and again.rc == 0,
               f"rc={r.rc}; new in cwd {new}; metadata.db under root {db}; outside {outside[:1]}; stray {stray[:2]};"
               f" re-run {statuses}" + ("" if r.rc == 0 else f"; {r.short()}"))
    outside = tempfile.mkdtemp(prefix="tc-outside-")
    for link in ("mlflow-artifacts", "metadata.db"):
        ws = workspace("symlink")
        os.makedirs(os.path.join(ws, "root"))
        target = os.path.join(outside, link)
        os.symlink(target, os.path.join(ws, "root", link))
        r = toy(ws)
        record(c, f"symlinked <root>/{link} leading outside", r.one_line() and link in r.err and not os.path.exists(
            target), r.short() + f"; target created: {os.path.exists(target)}")
    ws = workspace("rootsym")
    os.makedirs(os.path.join(ws, "root", "toy"))
    os.symlink(outside, os.path.join(ws, "root", "toy", "Scale"))
    r = toy(ws)
    record(c, "symlinked component folder <root>/toy/Scale leading outside",
           r.one_line() and not os.listdir(outside), r.short() + f"; outside now {os.listdir(outside)[:3]}")
    ws = workspace("direct-mlflow")
    before = set(os.listdir(ws))
    r = slowp(ws, "root", "--param", "mode=mlflow", "--param", "seconds=0.1")
    new = sorted(set(os.listdir(ws)) - before)
    record(c, "component calls mlflow.log_metric directly: nothing outside the root", r.rc == 0 and new == ["root"],
           f"rc={r.rc}; new in cwd {new}" + ("" if r.rc == 0 else f"; {r.short()}"))
    ws = workspace("envroot")
    r = sh([SLUICE, "run", TOY, "--param", f"data_file={ws}/numbers.txt", "--param", f"module_file={ws}/toy_module.py"],
           ws, extra_env={"SLUICE_PIPELINE_ROOT": f"{ws}/envroot"})
    record(c, "$SLUICE_PIPELINE_ROOT is the root; nothing in ./sluice_runs",
           r.rc == 0 and os.path.isfile(f"{ws}/envroot/metadata.db") and not os.path.exists(f"{ws}/sluice_runs"),
           f"rc={r.rc}; envroot/metadata.db {os.path.isfile(f'{ws}/envroot/metadata.db')};"
           f" ./sluice_runs {os.path.exists(f'{ws}/sluice_runs')}")
    r = toy(ws, "rootA", "--param", "pipeline_root=rootB")
    record(c, "--pipeline-root A and --param pipeline_root=B together",
           (r.one_line() and "pipeline_root" in r.err) or (r.rc == 0 and not os.path.exists(f"{ws}/rootB")),
           r.short() + f"; rootA {os.path.exists(f'{ws}/rootA')} rootB {os.path.exists(f'{ws}/rootB')}")


def secret_check(c, case, r, secret, roots=(), extra=(), want_ok=True) -> None:
    where = leaks(secret, r.out, r.err, *extra, roots=roots)
    ok = not where and ((r.rc == 0) if want_ok else r.rc not in (0, None))
    record(c, case, ok, f"leaks in {where[:4]}; " + r.short(110))


def secrets(server) -> None:
    c = "secrets"
    url, _, _ = server
    cred = with_credentials(url, f"alice:{SECRET}")
    tok = with_credentials(url, TOKEN)
    ws = workspace("secrets")
    for label, uri, secret in (("user:password", cred, SECRET), ("token-only user info", tok, TOKEN)):
        r = toy(ws, f"root-{label[:4]}", "--tracking-uri", uri, "--json")
        secret_check(c, f"http://{label}@host: run --json + files under root", r, secret,
                     roots=[f"{ws}/root-{label[:4]}"])
        r = toy(ws, f"root-{label[:4]}", "--tracking-uri", uri, "--no-cache")
        secret_check(c, f"http://{label}@host: text output", r, secret)
        r = sh([SLUICE, "runs", "list", "--pipeline-root", f"root-{label[:4]}", "--tracking-uri", uri, "--json"], ws)
        secret_check(c, f"http://{label}@host: runs list --json", r, secret)
        r = slowp(ws, f"rootc-{label[:4]}", "--tracking-uri", uri, "--param", "mode=raise", "--param", "seconds=0.1",
                  "--json", extra_env={"TC_QUOTE": uri})
        secret_check(c, f"http://{label}@host: component prints and raises with the URI", r, secret,
                     roots=[f"{ws}/rootc-{label[:4]}"], want_ok=False)
    for q in (f"?token={TOKEN}", f"?sig={TOKEN}", f"?access_token={TOKEN}&x=1", f"#key={TOKEN}"):
        r = toy(ws, "rootq", "--tracking-uri", url + q, "--json")
        secret_check(c, f"tracking URI with {q.split('=')[0]}=: refused or masked", r, TOKEN, roots=[f"{ws}/rootq"],
                     want_ok=False)
    r = sh([SLUICE, "--debug", "run", TOY, "--param", f"data_file={ws}/numbers.txt", "--param",
            f"module_file={ws}/toy_module.py", "--pipeline-root", "rootd", "--tracking-uri",
            f"http://bob:{SECRET}@127.0.0.1:{free_port()}"], ws)
    secret_check(c, "--debug traceback, dead port with user:password", r, SECRET, roots=[f"{ws}/rootd"], want_ok=False)
    r = sh([SLUICE, "run", TOY, "--param", f"data_file={ws}/numbers.txt", "--param", f"module_file={ws}/toy_module.py",
            "--pipeline-root", "roote"], ws, extra_env={"MLFLOW_TRACKING_URI": cred})
    secret_check(c, "MLFLOW_TRACKING_URI env with user:password", r, SECRET, roots=[f"{ws}/roote"])
    for label, uri in (("user:password", cred), ("?token=", url + f"?token={TOKEN}"),
                       ("postgresql password", f"postgresql://u:{SECRET}@127.0.0.1:5/db")):
        out = os.path.join(ws, f"ir-{label[:4]}.yaml")
        r = sh([SLUICE, "compile", TOY, "-o", out, "--image", "sluice:1", "--tracking-uri", uri, "--param",
                "data_file=/d/n.txt", "--param", "module_file=/d/m.py"], ws)
        yaml = ""
        if os.path.exists(out):
            with open(out) as fh:
                yaml = fh.read()
        secret = TOKEN if "token" in label else SECRET
        secret_check(c, f"compile --tracking-uri with {label}: refused, no secret", r, secret, extra=(yaml,),
                     want_ok=False)
    server_dies(ws)


def server_dies(ws) -> None:
    c = "secrets"
    with mlflow_server() as (url, _, proc):
        cred = with_credentials(url, f"carol:{SECRET}")
        run = subprocess.Popen([SLUICE, "--debug", "run", f"{ws}/slow.py", "--pipeline-root", "rootk", "--tracking-uri",
                                cred, "--param", "seconds=12", "--json"], cwd=ws, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
        time.sleep(10)
        stop(proc)
        start = time.monotonic()
        out, err = run.communicate(timeout=300)
        r = Ran(run.returncode, out, err, time.monotonic() - start)
    secret_check(c, "server killed mid-run (--debug, --json, logs)", r, SECRET, roots=[f"{ws}/rootk"], want_ok=False)
    with mlflow_server() as (url, _, proc):
        cred = with_credentials(url, f"carol:{SECRET}")
        run = subprocess.Popen([SLUICE, "run", f"{ws}/slow.py", "--pipeline-root", "rootl", "--tracking-uri", cred,
                                "--param", "seconds=12"], cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
        time.sleep(10)
        stop(proc)
        start = time.monotonic()
        out, err = run.communicate(timeout=300)
        r = Ran(run.returncode, out, err, time.monotonic() - start)
    where = leaks(SECRET, out, err, roots=[f"{ws}/rootl"])
    record(c, "server killed mid-run (no --debug): one line, no secret", not where and r.one_line(),
           f"leaks in {where[:3]}; " + r.short())


def failures(server) -> None:
    c = "failures"
    ws = workspace("fail")
    r = slowp(ws, "root", "--param", "mode=raise", "--param", "seconds=4", "--max-parallel", "2", "--json")
    doc = r.doc() or {}
    st = {comp["id"]: comp["status"] for comp in doc.get("components", [])}
    record(c, "component fails while a sibling runs (--max-parallel 2)",
           r.rc not in (0, None) and "KeyError" not in r.err and "Boom" in r.err and st.get("Slow") == "executed"
           and "Down" in st, f"statuses {st}; {r.short(120)}")
    r = slowp(ws, "root2", "--param", "mode=zero", "--param", "seconds=3", "--max-parallel", "2")
    record(c, "ZeroDivisionError in a component while a sibling runs", r.one_line() and "Boom" in r.err, r.short())
    runs = sh([SLUICE, "runs", "list", "--pipeline-root", "root2"], ws)
    record(c, "runs list after those failures", runs.rc == 0 and "failed" in runs.out.lower(),
           f"rc={runs.rc}: {runs.out.strip().splitlines()[-1:]}")
    for label, body in (("sys.exit(3)", "import sys\nsys.exit(3)\n"),
                        ("sys.exit('bye')", "import sys\nsys.exit('bye')\n"),
                        ("sys.exit(0) at import", "import sys\nsys.exit(0)\n"),
                        ("os._exit(5) at import", "import os\nos._exit(5)\n"),
                        ("SyntaxError", "def create_pipeline(:\n"), ("ImportError", "import no_such_module_xyz\n"),
                        ("create_pipeline raises KeyboardInterrupt",
                         "def create_pipeline(pipeline_root='r'):\n    raise KeyboardInterrupt\n")):
        path = os.path.join(ws, "mod.py")
        with open(path, "w") as fh:
            fh.write(body)
        r = sh([SLUICE, "run", path, "--pipeline-root", "rootm"], ws)
        named = "mod.py" in r.err or "KeyboardInterrupt" in label
        record(c, f"pipeline module: {label}", r.one_line() and named, r.short())
    dead_port_cases()


CAMPAIGNS = {"kills": kills, "concurrency": concurrency, "disk": disk, "data": data, "paths": paths,
             "secrets": secrets, "failures": failures}


def table() -> str:
    lines = ["| campaign | case | behaved | what happened |", "|---|---|---|---|"]
    lines += [f"| {c} | {case} | {'yes' if ok else '**no**'} | {what} |" for c, case, ok, what in RESULTS]
    behaved = sum(ok for _, _, ok, _ in RESULTS)
    lines.append(f"\n{behaved} of {len(RESULTS)} cases behaved.")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    chosen = argv or list(CAMPAIGNS)
    start = time.monotonic()
    with postgres() as db, mlflow_server(db) as server:
        for name in chosen:
            try:
                CAMPAIGNS[name](server)
            except Exception as exc:  # a harness failure is a row too, not the end of the table
                record(name, "harness", False, f"{type(exc).__name__}: {exc}"[:200])
    print(table())
    print(f"\n({time.monotonic() - start:.0f} s)")
    return 0 if all(ok for _, _, ok, _ in RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
