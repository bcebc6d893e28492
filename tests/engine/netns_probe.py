"""Run one command in a fresh network namespace and record what it tried on the network.

Not a test: ``tests/engine/test_ray_network.py`` runs it as
``unshare -n python netns_probe.py OUT -- CMD...``. Inside the new namespace the only ways out
are loopback and a veth pair with a made-up address (10.77.0.1/24, default route) whose other
end has no address and nothing behind it: the command sees a machine with an external
interface, as on a laptop, so Ray behaves as it would there, yet nothing it sends can leave
this namespace even on code that is not fixed.

The command runs under ``strace -f`` (connect, sendto, sendmsg, bind) into ``OUT/strace.log``;
every listening socket of the namespace (all of them are the command's) is sampled with psutil
while it runs; ``OUT/result.json`` holds the exit code and those sockets, ``OUT/stdout`` and
``OUT/stderr`` what the command printed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil

FAKE_EXTERNAL = "10.77.0.1/24"
SAMPLE_EVERY_S = 0.2


def _setup_interfaces() -> None:
    for command in (
        "ip link set lo up",
        "ip link add curate0 type veth peer name curate1",
        f"ip addr add {FAKE_EXTERNAL} dev curate0",
        "ip link set curate0 up",
        "ip link set curate1 up",
        "ip route add default dev curate0",
    ):
        subprocess.run(command.split(), check=True)


def _listening() -> set[tuple[str, int, str, str]]:
    found = set()
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN or (conn.type == 2 and conn.laddr):  # TCP listen or bound UDP
            try:
                name = psutil.Process(conn.pid).name() if conn.pid else "?"
            except psutil.Error:
                name = "?"
            found.add((conn.laddr.ip, conn.laddr.port, "udp" if conn.type == 2 else "tcp", name))
    return found


def main() -> int:
    out = Path(sys.argv[1])
    command = sys.argv[sys.argv.index("--") + 1 :]
    _setup_interfaces()
    strace = ["strace", "-f", "-qq", "-s", "0", "-e", "trace=connect,sendto,sendmsg,bind", "-o", str(out / "strace.log")]
    with open(out / "stdout", "wb") as stdout, open(out / "stderr", "wb") as stderr:
        proc = subprocess.Popen([*strace, *command], stdout=stdout, stderr=stderr)
        listening: set = set()
        while proc.poll() is None:
            listening |= _listening()
            time.sleep(SAMPLE_EVERY_S)
    (out / "result.json").write_text(json.dumps({"rc": proc.returncode, "listening": sorted(listening)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
