"""A single-node Ceph cluster with a RADOS Gateway (a production S3 server) for the tests and benchmarks.

One monitor, one in-memory OSD (memstore, capped in size) and radosgw bound to 127.0.0.1 on random free
ports (HTTP, and HTTPS with a self-signed certificate), all under one temp folder, with no systemd and no
authentication inside the cluster (radosgw still checks S3 signatures against the user we create).
Every daemon's pid is recorded and `stop()` ends exactly those processes.

Two settings are needed on these machines: with `auth_*_required = none` radosgw must be told
`ms mon client mode = crc secure` (it forces `secure`, which fails with EACCES without auth), and a short
`paxos propose interval` cuts the first start (radosgw creating its pools) from ~12 s to ~2 s.

Needs the Debian packages ceph-mon, ceph-osd, radosgw and ceph-common (.ci/install-ceph.sh).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph-authtool", "monmaptool", "ceph", "openssl")
INSTALL_HINT = "install the Ceph packages with `bash .ci/install-ceph.sh` (Debian: ceph-mon ceph-osd radosgw)"


class CephUnavailable(RuntimeError):
    """Ceph is not installed or did not start; the message says why (and where the logs are)."""


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if shutil.which(name) is None]


def _free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _config(root: Path, fsid: str, ports: dict[str, int], memstore_bytes: int) -> str:
    rgw = ports["rgw"]
    ssl = ports["rgw_ssl"]
    return f"""[global]
fsid = {fsid}
mon host = [v2:127.0.0.1:{ports["mon"]},v1:127.0.0.1:{ports["mon_v1"]}]
public addr = 127.0.0.1
ms bind ipv4 = true
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
mon warn on insecure global id reclaim allowed = false
run dir = {root}/run
admin socket = {root}/run/$name.asok
pid file = {root}/run/$name.pid
log file = {root}/log/$name.log
keyring = {root}/keyring
crash dir = {root}/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 1
paxos propose interval = 0.1
paxos min wait = 0.01

[mon]
mon data = {root}/mon.$id
mon cluster log file = {root}/log/cluster.log

[osd]
osd data = {root}/osd.$id
osd objectstore = memstore
memstore device bytes = {memstore_bytes}
osd crush update on start = true

[client.rgw.0]
ms mon client mode = crc secure
rgw frontends = beast endpoint=127.0.0.1:{rgw} ssl_endpoint=127.0.0.1:{ssl} \
ssl_certificate={root}/rgw.crt ssl_private_key={root}/rgw.key
rgw data = {root}/rgw
rgw gc obj min wait = 60
rgw gc processor period = 60
"""


@dataclass
class CephRGW:
    """A running single-node Ceph + radosgw. `url` speaks HTTP, `https_url` HTTPS (trust `ca_bundle`)."""

    root: Path
    access_key: str
    secret_key: str
    url: str = ""
    https_url: str = ""
    ca_bundle: str = ""
    pids: list[tuple[int, str]] = field(default_factory=list)
    startup_s: float = 0.0

    @property
    def conf(self) -> Path:
        return self.root / "ceph.conf"

    def _run(self, *argv: str, timeout: float = 60) -> str:
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise CephUnavailable(f"{argv[0]} did not finish in {timeout:.0f}s; logs in {self.root}/log") from None
        if result.returncode != 0:
            raise CephUnavailable(
                f"{' '.join(argv[:3])} failed ({result.returncode}): {result.stderr.strip()[-500:]}; "
                f"logs in {self.root}/log"
            )
        return result.stdout

    def _record(self, pid_file: Path, name: str, deadline_s: float = 10) -> None:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            try:
                self.pids.append((int(pid_file.read_text().strip()), name))
                return
            except (OSError, ValueError):
                time.sleep(0.05)
        raise CephUnavailable(f"{name} wrote no pid file {pid_file}; logs in {self.root}/log")

    def start(self, memstore_bytes: int) -> None:
        started = time.monotonic()
        for sub in ("run", "log", "mon.a", "osd.0", "rgw"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        ports = dict(zip(("mon", "mon_v1", "rgw", "rgw_ssl"), _free_ports(4), strict=True))
        fsid, osd_uuid = str(uuid.uuid4()), str(uuid.uuid4())
        self.conf.write_text(_config(self.root, fsid, ports, memstore_bytes))
        c = ("-c", str(self.conf))
        self._run(
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(self.root / "rgw.key"), "-out", str(self.root / "rgw.crt"),
        )  # fmt: skip
        keyring = str(self.root / "keyring")
        self._run(
            "ceph-authtool", *c, "--create-keyring", keyring, "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"
        )
        self._run(
            "ceph-authtool", *c, keyring, "--gen-key", "-n", "client.admin",
            "--cap", "mon", "allow *", "--cap", "osd", "allow *", "--cap", "mgr", "allow *",
        )  # fmt: skip
        monmap = str(self.root / "monmap")
        mon_addr = f"[v2:127.0.0.1:{ports['mon']},v1:127.0.0.1:{ports['mon_v1']}]"
        self._run("monmaptool", "--create", "--clobber", "--fsid", fsid, "--addv", "a", mon_addr, monmap)
        self._run("ceph-mon", *c, "--mkfs", "-i", "a", "--monmap", monmap, "--keyring", keyring)
        self._run("ceph-mon", *c, "-i", "a")  # daemonizes; the pid file names the daemon
        self._record(self.root / "run" / "mon.a.pid", "mon.a")
        osd_id = self._run("ceph", *c, "osd", "new", osd_uuid).strip()
        self._run("ceph-osd", *c, "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid)
        self._run("ceph-osd", *c, "-i", osd_id)
        self._record(self.root / "run" / f"osd.{osd_id}.pid", f"osd.{osd_id}")
        self._wait(lambda: '"num_up_osds":1' in self._run("ceph", *c, "osd", "stat", "-f", "json"), 60, "the OSD up")
        self._run("radosgw", *c, "-n", "client.rgw.0")
        self._record(self.root / "run" / "client.rgw.0.pid", "rgw.0")
        self.url = f"http://127.0.0.1:{ports['rgw']}"
        self.https_url = f"https://127.0.0.1:{ports['rgw_ssl']}"
        self.ca_bundle = str(self.root / "rgw.crt")
        self._wait(self._answers, 120, f"radosgw answering at {self.url}")
        user = self._run(
            "radosgw-admin", *c, "user", "create", "--uid=test", "--display-name=test",
            f"--access-key={self.access_key}", f"--secret-key={self.secret_key}",
        )  # fmt: skip
        json.loads(user)  # the user exists
        self.startup_s = time.monotonic() - started

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # any HTTP answer means it is serving
        except OSError:
            return False

    def _wait(self, predicate, deadline_s: float, what: str) -> None:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except CephUnavailable:
                pass
            for pid, name in self.pids:
                if not _alive(pid):
                    raise CephUnavailable(
                        f"{name} (pid {pid}) exited while waiting for {what}; logs in {self.root}/log"
                    )
            time.sleep(0.2)
        raise CephUnavailable(f"timed out after {deadline_s:.0f}s waiting for {what}; logs in {self.root}/log")

    def stop(self) -> None:
        """End the daemons we started, by pid, newest first: SIGTERM, then SIGKILL after 10 s."""
        for pid, _name in reversed(self.pids):
            if not _alive(pid):
                continue
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.pids.clear()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a daemon we started but nobody reaps (it double-forked to init) can linger as a zombie: count it as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def start_ceph(access_key: str, secret_key: str, memstore_gb: float = 2.0, root: Path | None = None) -> CephRGW:
    """Start a cluster in `root` (a new temp folder by default). On failure everything started is stopped."""
    missing = missing_binaries()
    if missing:
        raise CephUnavailable(f"{', '.join(missing)} not found on PATH: {INSTALL_HINT}")
    root = root or Path(tempfile.mkdtemp(prefix="jobsub-ceph-"))
    server = CephRGW(root, access_key, secret_key)
    try:
        server.start(int(memstore_gb * (1 << 30)))
    except BaseException:
        server.stop()
        raise
    return server
