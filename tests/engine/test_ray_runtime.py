"""Embedded Ray (issue 5 §2, §7): reaches nothing, listens on loopback only, always starts its own,
keeps the terminal quiet, and cleans up after a driver that was killed.

The network tests run one real ``curate run`` (a served synthetic corpus plus one PNG big enough
for PIL's DecompressionBombWarning) under ``strace -f`` inside a fresh network namespace
(``netns_probe.py``), so that nothing can leave the machine even on code that is not fixed."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
CURATE = str(Path(PYTHON).with_name("curate"))
PROBE = Path(__file__).with_name("netns_probe.py")
RUN_TIMEOUT_S = 240

pytestmark = pytest.mark.slow  # each test starts Ray in fresh processes (20-60 s on 2 busy cores)

# strace: connect(5, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("169.254.169.254")}, 16) = ...
# and the same inside sendto/sendmsg (msg_name=...); AF_INET6 as inet_pton(AF_INET6, "::1", ...).
SOCKADDR = re.compile(
    r'sa_family=AF_INET6?, sin6?_port=htons\((?P<port>\d+)\).*?'
    r'(?:inet_addr\("(?P<v4>[^"]+)"\)|inet_pton\(AF_INET6, "(?P<v6>[^"]+)")'
)
CALL = re.compile(r"^\d+\s+(?P<call>connect|sendto|sendmsg)\(")
RAY_NOISE = [
    re.compile(r"\b(WARNING|ERROR|INFO)\b \S+\.py:\d+ --"),  # Python logging of Ray's processes
    re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+ [IWEF] \d+ \d+\]", re.MULTILINE),  # Ray's C++ log lines
    re.compile(r"\(\w[^()]* pid=\d+(, ip=[^)]*)?\)"),  # worker-name prefixes: (map_batches pid=123)
    re.compile(r"Token authentication|DecompressionBombWarning|ray\.io|RAY_", re.IGNORECASE),
]


def clean_env(**extra: str) -> dict[str, str]:
    """A user's shell: none of Ray's variables (the session's own embedded Ray sets some)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return {**env, "NO_ALBUMENTATIONS_UPDATE": "1", **extra}


def netns_problem() -> str | None:
    for tool in ("strace", "unshare", "ip"):
        if shutil.which(tool) is None:
            return f"needs {tool} (Debian: apt-get install strace util-linux iproute2; .ci/run installs them)"
    probe = subprocess.run(["unshare", "-n", "ip", "link", "add", "t0", "type", "veth", "peer", "name", "t1"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"needs a network namespace with a veth pair (unshare -n, root): {probe.stderr.strip()}"
    return None


def write_corpus(root: Path) -> None:
    """30 synthetic rows and one 9,500 x 9,500 1-bit PNG (90 Mpx: over PIL's warning limit, under its error limit)."""
    from PIL import Image

    from curate.sample.synth import write_synth_corpus

    write_synth_corpus(root, 30, seed=11)
    Image.new("1", (9500, 9500)).save(root / "images" / "bomb.png")
    table = pq.read_table(root / "samples.parquet").select(["url", "caption"])
    extra = pa.table({"url": ["images/bomb.png"], "caption": ["a very large blank picture of nothing"]})
    pq.write_table(pa.concat_tables([table, extra]), root / "samples.parquet")


@pytest.fixture(scope="module")
def probed_run(tmp_path_factory) -> dict:
    """One ``curate run`` in a fresh network namespace under strace; its log, listeners and output."""
    problem = netns_problem()
    if problem:
        pytest.skip(problem)
    work = tmp_path_factory.mktemp("probed")
    write_corpus(work / "corpus")
    spec = {
        "name": "probe",
        "input": {"path": str(work / "corpus" / "samples.parquet"), "serve": str(work / "corpus"), "rows_per_unit": 16},
        "stages": [{"stage": "laion_caption"}, {"stage": "download", "timeout": 10, "threads": 8}],
        "output": {"path": str(work / "run"), "image_size": 64},
        "resources": {"cpus": 2},
    }
    (work / "spec.yaml").write_text(json.dumps(spec))
    (work / "probe").mkdir()
    subprocess.run(["unshare", "-n", PYTHON, str(PROBE), str(work / "probe"), "--", CURATE, "run", str(work / "spec.yaml")],
                   env=clean_env(), cwd=work, check=True, timeout=RUN_TIMEOUT_S)
    probe = work / "probe"
    result = json.loads((probe / "result.json").read_text())
    result["strace"] = (probe / "strace.log").read_text(errors="replace")
    result["output"] = (probe / "stdout").read_text(errors="replace") + (probe / "stderr").read_text(errors="replace")
    return result


def network_calls(strace_log: str) -> list[tuple[str, str, int]]:
    """(call, address, port) of every connect/sendto/sendmsg to an IPv4/IPv6 address."""
    calls = []
    for line in strace_log.splitlines():
        call, address = CALL.match(line), SOCKADDR.search(line)
        if call and address:
            calls.append((call["call"], address["v4"] or address["v6"], int(address["port"])))
    return calls


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback


def test_the_probed_run_succeeded(probed_run) -> None:
    assert probed_run["rc"] == 0, probed_run["output"][-3000:]
    assert "run directory:" in probed_run["output"]
    assert network_calls(probed_run["strace"]), "strace saw no network calls at all: the probe is broken"


def test_embedded_run_connects_and_sends_to_loopback_only(probed_run) -> None:
    """Before: Ray's API server connected to 169.254.169.254:80 (Azure, AWS metadata) and the driver
    to 8.8.8.8:53 (to find its "external" IP), and GCS, raylet and workers were dialled at 10.77.0.1."""
    beyond = sorted({c for c in network_calls(probed_run["strace"]) if not is_loopback(c[1])})
    assert beyond == []


def test_embedded_run_resolves_no_names(probed_run) -> None:
    """Before: the API server resolved metadata.google.internal (glibc's resolver sends to the
    nameserver's port 53). DNS on any address, loopback resolvers included, counts."""
    assert [c for c in network_calls(probed_run["strace"]) if c[2] == 53] == []


def test_embedded_ray_listens_on_loopback_only(probed_run) -> None:
    """Before: GCS, raylets and workers listened on ``::`` (every interface) and the runtime-env
    agent on the machine's external address."""
    listening = [tuple(entry) for entry in probed_run["listening"]]
    assert {entry[3] for entry in listening} >= {"gcs_server", "raylet"}, listening
    assert [entry for entry in listening if not is_loopback(entry[0])] == []


def test_terminal_shows_no_ray_output(probed_run) -> None:
    """Before: Ray's token-auth warning and its C++ network warning reached the terminal; worker
    output came with ``(map_batches pid=...)`` prefixes. Now: the progress bar, the funnel and the
    run's own lines."""
    found = [m.group(0) for pattern in RAY_NOISE for m in pattern.finditer(probed_run["output"])]
    assert found == [], probed_run["output"][-3000:]


def run_python(code: str, tmp: Path, timeout: float = RUN_TIMEOUT_S, **popen) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-c", code], env=clean_env(RAY_TMPDIR=str(tmp)), cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, **popen)


SESSION = """
import ray
from curate.config import ResourcesSpec
from curate.engine.ray_runtime import ray_session
with ray_session(None, ResourcesSpec(cpus=1)):
    print("gcs", ray.get_runtime_context().gcs_address, flush=True)
    {body}
"""


@pytest.fixture
def short_tmp():
    """A temp dir with a short path: Ray's unix socket paths under it must stay below 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="cr", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_embedded_ray_ignores_a_stale_cluster_file(short_tmp: Path) -> None:
    """Before: after a ``ray start``, ``ray_current_cluster`` made the embedded ``ray.init()`` join
    that (dead) cluster and hang on "Failed to connect to GCS". Now it starts its own."""
    stale = f"127.0.0.1:{dead_port()}"
    (short_tmp / "ray").mkdir()
    (short_tmp / "ray" / "ray_current_cluster").write_text(stale + "\n")
    try:
        done = run_python(SESSION.format(body="print(ray.get(ray.remote(lambda: 41).remote()) + 1)"), short_tmp, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"embedded Ray hung joining the stale cluster {stale}")
    assert done.returncode == 0, done.stderr[-3000:]
    gcs, answer = done.stdout.split("\n")[:2]
    assert gcs.startswith("gcs 127.0.0.1:") and gcs != f"gcs {stale}"
    assert answer == "42"


def alive(procs: list[psutil.Process]) -> list[str]:
    found = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(f"{proc.pid} {proc.name()}")
        except psutil.NoSuchProcess:
            pass
    return found


def kill_naming(path: Path) -> None:
    """Test clean-up: whatever still runs with ``path`` in its command line."""
    for proc in psutil.process_iter(["cmdline"]):
        if proc.pid != os.getpid() and any(str(path) in arg for arg in proc.info["cmdline"] or ()):
            proc.kill()


HOLD = "ray.get(ray.remote(lambda: 1).remote()); print('ready', flush=True); import time; time.sleep(600)"


def start_and_kill_a_driver(tmp: Path) -> list[psutil.Process]:
    """A driver with an embedded Ray that ran a task, killed with SIGKILL; its process tree as it was."""
    first = subprocess.Popen([PYTHON, "-c", SESSION.format(body=HOLD)], env=clean_env(RAY_TMPDIR=str(tmp)), cwd=REPO,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().startswith("gcs ")
        assert first.stdout.readline() == "ready\n"
        tree = psutil.Process(first.pid).children(recursive=True)
        assert {p.name() for p in tree} >= {"gcs_server", "raylet"}
    finally:
        first.kill()
        first.wait()
    return tree


def test_orphans_of_a_killed_driver_are_gone_after_the_next_start(short_tmp: Path) -> None:
    """Before: after kill -9 of a driver, its raylet's agents lived on for a minute or more
    (~190 MB). Now the next embedded start kills what is left of dead drivers' sessions."""
    try:
        tree = start_and_kill_a_driver(short_tmp)
        second = run_python(SESSION.format(body="print(ray.get(ray.remote(lambda: 2).remote()))"), short_tmp)
        assert second.returncode == 0, second.stderr[-3000:]
        assert alive(tree) == []
    finally:
        kill_naming(short_tmp)


def test_reaping_spares_live_sessions_and_removes_dead_ones(short_tmp: Path) -> None:
    """Only dead drivers' sessions are reaped: a session whose lock is held (a live driver) keeps
    its processes and files; a dead one's directory goes, its processes with it."""
    import fcntl

    from curate.engine.ray_runtime import LOCK_NAME, sessions_root

    root = sessions_root(str(short_tmp))
    root.mkdir(mode=0o700, parents=True)  # as private as curate makes it (others may not enter)
    live = root / "slive"
    live.mkdir()
    lock = os.open(live / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)
    sleeper = [PYTHON, "-c", "import time; time.sleep(300)"]
    bystanders = [subprocess.Popen([*sleeper, str(live / "x")]), subprocess.Popen([*sleeper, str(short_tmp / "x")])]
    try:
        start_and_kill_a_driver(short_tmp)
        dead = [p for p in root.iterdir() if p.is_dir() and p != live]
        assert len(dead) == 1
        second = run_python(SESSION.format(body="print(ray.get(ray.remote(lambda: 2).remote()))"), short_tmp)
        assert second.returncode == 0, second.stderr[-3000:]
        assert not dead[0].exists()
        assert [b.poll() for b in bystanders] == [None, None] and live.exists()
        assert [p for p in root.iterdir() if p.is_dir()] == [live]  # the second driver removed its own too
    finally:
        for proc in bystanders:
            proc.kill()
            proc.wait()
        os.close(lock)
        kill_naming(short_tmp)


WORKER_CHATTER = """
import warnings, ray
from PIL import Image
def chatty(batch):
    print("chatter-from-a-worker", flush=True)
    warnings.warn("big picture", Image.DecompressionBombWarning)
    if {fail}:
        raise ValueError("the-real-error-7f3a")
    return batch
print(len(ray.data.range(4, override_num_blocks=2).map_batches(chatty).take_all()))
"""


def test_worker_output_stays_off_the_terminal_but_errors_surface(short_tmp: Path) -> None:
    """Before: a worker's prints and warnings reached the terminal as ``(map_batches pid=...)``
    lines. Now they stay in the session's logs; a worker's exception still reaches the driver,
    and the failed run's Ray logs are kept and named."""
    quiet = run_python(SESSION.format(body=WORKER_CHATTER.format(fail=False).replace("\n", "\n    ")), short_tmp)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert quiet.stdout.splitlines()[1:] == ["4"]
    assert "chatter-from-a-worker" not in quiet.stderr + quiet.stdout
    assert "DecompressionBombWarning" not in quiet.stderr + quiet.stdout

    failing = run_python(SESSION.format(body=WORKER_CHATTER.format(fail=True).replace("\n", "\n    ")), short_tmp)
    assert failing.returncode == 1
    assert "ValueError: the-real-error-7f3a" in failing.stderr
    kept = re.search(r"Ray's logs of this run: (\S+)", failing.stderr)
    assert kept and Path(kept.group(1)).is_dir(), failing.stderr[-3000:]
    assert "chatter-from-a-worker" not in failing.stderr + failing.stdout


def test_a_sessions_dir_others_can_enter_is_refused(short_tmp: Path, monkeypatch) -> None:
    """Ray makes its session dirs world-writable, so the dir holding them must be ours alone."""
    from curate.engine.ray_runtime import EmbeddedRay, sessions_root
    from curate.errors import UserError

    monkeypatch.setenv("RAY_TMPDIR", str(short_tmp))
    root = sessions_root()
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    with pytest.raises(UserError, match=f"^{root}: not a private directory of this user \\(mode 755"):
        EmbeddedRay().start()
