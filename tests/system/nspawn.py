"""A Debian container with systemd as PID 1 (systemd-nspawn), and the .deb built from this tree.

Both are cached under ``CACHE_DIR`` between runs: the debootstrapped tree once per machine,
the package once per content of the source tree.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("DSA110_TEST_CACHE", "/var/cache/dsa110d-test"))
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = "systemd,systemd-sysv,dbus,python3,adduser,procps,redis-server"
"""What debootstrap installs: a booting systemd."""
DEPENDS_PACKAGES = ("aoflagger",)
"""What the .deb depends on beyond that, installed by apt in the tree (debootstrap's own
resolver cannot configure aoflagger's GTK dependencies)."""
HOST_TOOLS = {  # command -> Debian package
    "systemd-nspawn": "systemd-container",
    "debootstrap": "debootstrap",
    "dpkg-buildpackage": "dpkg-dev",
    "dh_virtualenv": "dh-virtualenv",
    "dh": "debhelper",
    "scdoc": "scdoc",
    "nsenter": "util-linux",
}
BOOT_TIMEOUT_SEC = 60.0
POWEROFF_TIMEOUT_SEC = 60.0
"""How long a clean poweroff of the container may take before its PID 1 is killed."""
SIGNAL_POWEROFF = signal.SIGRTMIN + 4
"""systemd as PID 1 powers off on SIGRTMIN+4 (systemd(1), "Signals")."""


def missing_host_tools() -> list[str]:
    return sorted({pkg for cmd, pkg in HOST_TOOLS.items() if shutil.which(cmd) is None})


def ensure_host_tools() -> None:
    """Install what the test needs from Debian when root; otherwise say exactly what is missing."""
    missing = missing_host_tools()
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(
            f"the systemd test needs Debian packages {' '.join(missing)}: "
            f"run 'sudo apt-get install {' '.join(missing)}'"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env, timeout=1200)


def source_digest() -> str:
    """A digest of every tracked file's path and content (what the package is built from)."""
    digest = hashlib.sha256()
    for name in tracked_files():
        path = REPO_ROOT / name
        if path.is_file():
            digest.update(os.fsencode(name) + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def tracked_files() -> list[str]:
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout
    return sorted(os.fsdecode(f) for f in listing.split(b"\0") if f)


def build_deb() -> Path:
    """``dpkg-buildpackage -us -uc -b`` on a copy of the tracked tree; cached by content."""
    debs = CACHE_DIR / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    cached = debs / f"dsa110d-{source_digest()}.deb"
    if cached.exists():
        return cached
    work = CACHE_DIR / "build"
    shutil.rmtree(work, ignore_errors=True)
    tree = work / "dsa110d"
    tree.mkdir(parents=True)
    for name in tracked_files():
        source = REPO_ROOT / name
        if source.is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tree / name)
    log = work / "build.log"
    with log.open("w") as out:
        done = subprocess.run(
            ["dpkg-buildpackage", "-us", "-uc", "-b"],
            cwd=tree,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=1800,
        )
    if done.returncode != 0:
        raise RuntimeError(f"dpkg-buildpackage failed; see {log}")
    built = next(work.glob("dsa110d_*.deb"))
    shutil.move(built, cached)
    return cached


def base_tree() -> Path:
    """The debootstrapped Debian tree, made once per machine and package list."""
    listed = f"{BASE_PACKAGES};{','.join(DEPENDS_PACKAGES)}"
    packages = hashlib.sha256(listed.encode()).hexdigest()[:8]
    base = CACHE_DIR / f"{SUITE}-{packages}"
    if (base / "usr/bin/systemctl").exists():
        return base
    partial = CACHE_DIR / f"{base.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={BASE_PACKAGES}",
            SUITE,
            str(partial),
            MIRROR,
        ],
        check=True,
        capture_output=True,
        timeout=1800,
    )
    shutil.copyfile("/etc/resolv.conf", partial / "etc/resolv.conf")
    install = "apt-get update -qq && apt-get install -y -qq --no-install-recommends " + " ".join(
        DEPENDS_PACKAGES
    )
    subprocess.run(
        ["chroot", str(partial), "/usr/bin/env", "DEBIAN_FRONTEND=noninteractive", "sh", "-c",
         install],
        check=True,
        capture_output=True,
        timeout=1800,
    )  # fmt: skip
    partial.rename(base)
    return base


@dataclass
class Container:
    """A booted container; commands run inside through nsenter on its PID 1."""

    root: Path
    process: subprocess.Popen[bytes]
    leader: int

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        done = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {done.returncode}: {done.stdout}{done.stderr}"
            )
        return done.stdout

    def show(self, unit: str, prop: str) -> str:
        return self.run("systemctl", "show", "-p", prop, "--value", unit).strip()

    @property
    def pid_namespace(self) -> str:
        """The container's PID namespace (``pid:[inode]``), read from its PID 1."""
        return os.readlink(f"/proc/{self.leader}/ns/pid")

    def stop(self) -> None:
        """Power the container off and wait until none of its processes is left.

        SIGKILL to ``systemd-nspawn`` alone would orphan the container: its systemd,
        journald, dbus and services would be reparented to the host's PID 1 and run on. So
        the container's own systemd is asked to power off (SIGRTMIN+4), nspawn exits when it
        has; if it does not within ``POWEROFF_TIMEOUT_SEC``, its PID 1 is killed, which takes
        every process of its PID namespace with it (pid_namespaces(7)). Idempotent.
        """
        if self.process.poll() is None:
            namespace = self.pid_namespace
            _signal_leader(self.leader, namespace, SIGNAL_POWEROFF)
            try:
                self.process.wait(timeout=POWEROFF_TIMEOUT_SEC)
            except subprocess.TimeoutExpired:
                _signal_leader(self.leader, namespace, signal.SIGKILL)
                self.process.wait(timeout=30)
            deadline = time.monotonic() + 30
            while processes_in(namespace) and time.monotonic() < deadline:
                time.sleep(0.2)
        shutil.rmtree(self.root, ignore_errors=True)


def _signal_leader(leader: int, namespace: str, signum: int) -> None:
    """Signal the container's PID 1, unless it is gone (its PID may have been reused)."""
    try:
        if os.readlink(f"/proc/{leader}/ns/pid") == namespace:
            os.kill(leader, signum)
    except (FileNotFoundError, ProcessLookupError):
        pass


def processes_in(namespace: str) -> list[int]:
    """PIDs (as the host sees them) of the live processes in the PID namespace ``namespace``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns/pid") == namespace:
                found.append(int(entry.name))
        except OSError:  # exited meanwhile
            continue
    return found


def boot(scratch: Path) -> Container:
    """Copy the base tree and boot it with systemd as PID 1, on a private network."""
    root = scratch / "root"
    subprocess.run(["cp", "-a", "--reflink=auto", str(base_tree()), str(root)], check=True)
    (root / "etc/hostname").write_text("dsa110dtest\n")
    process = subprocess.Popen(
        [
            "systemd-nspawn",
            "-D",
            str(root),
            "--boot",
            "--register=no",
            "--keep-unit",
            "--private-network",
            "-M",
            "dsa110dtest",
            "--console=passive",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + BOOT_TIMEOUT_SEC
    while time.monotonic() < deadline:
        leader = _leader(process.pid)
        if leader is not None:
            container = Container(root, process, leader)
            state = container.run("systemctl", "is-system-running", check=False).strip()
            if state in ("running", "degraded"):
                return container
        time.sleep(0.5)
    leader = _leader(process.pid)
    if leader is not None:
        Container(root, process, leader).stop()
    else:
        process.kill()
        process.wait(timeout=30)
    raise RuntimeError("the container did not finish booting")


def _leader(nspawn_pid: int) -> int | None:
    children = Path(f"/proc/{nspawn_pid}/task/{nspawn_pid}/children")
    try:
        pids = children.read_text().split()
    except OSError:
        return None
    return int(pids[0]) if pids else None
