"""A real OpenSSH server (Debian's openssh-server) on 127.0.0.1 for the SFTP tests.

It runs as the current user on a free port with its own host key and one authorized client key,
so it needs no system configuration. It can be stopped (every connection with it) and started
again on the same port, like a data-centre link going down and coming back.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def available() -> bool:
    return os.path.exists(SSHD) and shutil.which("ssh-keygen") is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SshServer:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.user = getpass.getuser()
        self.client_key = self.root / "client_key"
        for key in (self.root / "host_key", self.client_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        (self.root / "authorized_keys").write_text(Path(f"{self.client_key}.pub").read_text())
        os.chmod(self.root / "authorized_keys", 0o600)
        self.config = self.root / "sshd_config"
        self.config.write_text(f"""Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.root / 'host_key'}
AuthorizedKeysFile {self.root / 'authorized_keys'}
PidFile {self.root / 'sshd.pid'}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
""")
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", exist_ok=True)  # privilege separation directory sshd wants as root
        self.proc = None

    @property
    def storage_options(self) -> dict:
        return {"client_keys": [str(self.client_key)], "known_hosts": None}

    def url(self, path) -> str:
        return f"sftp://{self.user}@127.0.0.1:{self.port}{Path(path).resolve()}"

    def start(self):
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.root / "sshd.log", "ab"), start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.root / 'sshd.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("sshd did not start listening")

    def stop(self):
        """Stop the server and cut every open connection (its per-connection processes too)."""
        if self.proc is None:
            return
        for pid in self._session_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self.proc = None

    def _session_pids(self) -> list[int]:
        """Every descendant of the server: the processes serving open connections (each starts a
        session of its own, so killing the server's process group alone would leave them running)."""
        children: dict[int, list[int]] = {}
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(d.name))
        out, todo = [], [self.proc.pid]
        while todo:
            for c in children.get(todo.pop(), []):
                out.append(c)
                todo.append(c)
        return out
