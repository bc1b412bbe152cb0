"""A real single-node SLURM cluster on this machine, for tests/test_slurm.py.

Debian's slurm-wlm packages (munge, slurmctld, slurmd, slurm-client, slurmdbd) and
mariadb-server, installed with apt-get when missing. There is no systemd here: every
daemon is started in the foreground in its own session, its PID kept, and stopped by
that PID. State, logs and the database live in one directory.

The configuration goes to /etc/slurm/slurm.conf (and slurmdbd.conf) while the cluster
is up, and is removed before the daemons stop: SLURM_CONF alone is not enough, because
the jobstep executor drops every SLURM_* variable but a few before it calls srun inside
the job. With slurm-client installed, `scontrol show config` (which the executor plugin
runs at every snakemake start, with a 10 s timeout) answers at once while the controller
is up and fails at once when there is no slurm.conf; it is slow only with a slurm.conf
and no controller, which this module never leaves behind. An /etc/slurm/slurm.conf that
this module did not write is never touched: the cluster then refuses to start.

    python tests/slurm/slurm_cluster.py up STATE_DIR     # install if needed, start
    python tests/slurm/slurm_cluster.py down STATE_DIR   # remove the config, stop the daemons
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ("munge", "slurmctld", "slurmd", "slurm-client", "slurmdbd", "mariadb-server")
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "sacct", "slurmdbd", "mariadbd", "mariadb-install-db")
# Not SLURM's defaults (6817-6819, 3306): a real installation on the same machine is left alone.
PORTS = {"slurmctld": 16817, "slurmd": 16818, "slurmdbd": 16819, "mariadb": 13306}
MUNGE_SOCKET = "/run/munge/munge.socket.2"
MUNGE_KEY = "/etc/munge/munge.key"
CONF_DIR = Path("/etc/slurm")
MARK = "# written by embclust tests/slurm/slurm_cluster.py; removed when its cluster stops\n"


def sbin(name):
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")


def cannot_run():
    """Why this machine cannot host the cluster, or None."""
    if os.geteuid() != 0:
        return "needs root, to install Debian's slurm-wlm packages and start its daemons"
    conf = CONF_DIR / "slurm.conf"
    if conf.exists() and not conf.read_text().startswith(MARK):
        return f"{conf} belongs to a SLURM installation on this machine, which the test leaves alone"
    if conf.exists() and port_open(PORTS["slurmctld"]):
        return f"another test run's cluster is up ({conf}); one at a time"
    if all(sbin(b) for b in BINARIES):
        return None
    if not shutil.which("apt-get"):
        return "slurm-wlm is not installed and there is no apt-get to install it"
    return None


# apt-get run by two test workers at once fails on dpkg's lock: each call waits for this one.
APT_GET = ["flock", "/tmp/embclust-tests-apt.lock", "apt-get"]


def install(log=sys.stderr):
    """apt-get install the packages whose programs are missing (~20 s from nothing)."""
    if all(sbin(b) for b in BINARIES):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = [*APT_GET, "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
        subprocess.run([*APT_GET, "update", "-qq"], env=env, check=True, capture_output=True)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"apt-get install failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    missing = [b for b in BINARIES if not sbin(b)]
    if missing:
        raise RuntimeError(f"installed {' '.join(PACKAGES)} but {missing} still missing")


def port_open(port, host="127.0.0.1"):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_for(check, what, proc, log_path, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.2)
    tail = Path(log_path).read_text()[-3000:] if Path(log_path).exists() else "(no log)"
    raise RuntimeError(f"{what} did not come up; its log {log_path}:\n{tail}")


def mem_total_mb():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


SLURM_CONF = MARK + """\
ClusterName=embclust
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={slurmctld}
SlurmdPort={slurmd}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/spool
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
MailProg=/bin/true
ReturnToService=2
SchedulerType=sched/backfill
MinJobAge=300
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort={slurmdbd}
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=main Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""

SLURMDBD_CONF = MARK + """\
AuthType=auth/munge
AuthInfo=socket={munge_socket}
DbdHost=localhost
DbdPort={slurmdbd}
SlurmUser=root
PidFile={state}/slurmdbd.pid
LogFile={state}/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={mariadb}
StorageUser=slurm
StoragePass=embclust
StorageLoc=slurm_acct_db
"""


class Cluster:
    """Start with up(), stop with down(); env() is what a SLURM client needs."""

    def __init__(self, state):
        self.state = Path(state).resolve()
        self.conf = CONF_DIR / "slurm.conf"
        self.dbd_conf = CONF_DIR / "slurmdbd.conf"
        self.pids_file = self.state / "pids.json"

    def env(self, base=None):
        return dict(os.environ if base is None else base, SLURM_CONF=str(self.conf))

    def _pids(self):
        return json.loads(self.pids_file.read_text()) if self.pids_file.exists() else {}

    def _spawn(self, name, cmd, user=None):
        log = open(self.state / f"{name}.out", "w")
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            env=self.env(), user=user, group=user, extra_groups=[] if user else None,
        )
        pids = self._pids()
        pids[name] = proc.pid
        self.pids_file.write_text(json.dumps(pids))
        return proc

    def up(self):
        install()
        s = self.state
        for d in ("ctld", "spool", "db"):
            (s / d).mkdir(parents=True, exist_ok=True)
        values = dict(
            PORTS,
            state=s,
            munge_socket=MUNGE_SOCKET,
            cpus=os.cpu_count(),
            memory=int(mem_total_mb() * 0.9),  # below what slurmd detects, or the node is drained
        )
        busy = [f"{n} {p}" for n, p in PORTS.items() if port_open(p)]
        if busy:
            raise RuntimeError(f"ports already in use: {', '.join(busy)} (a cluster left running?)")

        # munge: the system's key and socket (munged refuses directories others can write).
        if not self._munge_works():
            key = Path(MUNGE_KEY)
            if not key.exists():
                subprocess.run(["mungekey", "--create", "--keyfile", MUNGE_KEY], check=True)
            shutil.chown(key, "munge", "munge")
            key.chmod(0o400)
            for d in ("/run/munge", "/var/log/munge", "/var/lib/munge"):
                Path(d).mkdir(parents=True, exist_ok=True)
                shutil.chown(d, "munge", "munge")
            p = self._spawn("munged", [sbin("munged"), "--foreground", "--force"], user="munge")
            wait_for(self._munge_works, "munged", p, s / "munged.out")

        # mariadb: a fresh data directory of our own, root over its socket, slurm over TCP.
        sock = s / "mariadb.sock"
        if not (s / "db/mysql").exists():
            subprocess.run(
                [sbin("mariadb-install-db"), "--no-defaults", "--user=root", f"--datadir={s}/db",
                 "--auth-root-authentication-method=socket", "--skip-test-db"],
                check=True, capture_output=True,
            )
        p = self._spawn(
            "mariadbd",
            [sbin("mariadbd"), "--no-defaults", "--user=root", f"--datadir={s}/db", f"--socket={sock}",
             f"--port={PORTS['mariadb']}", "--bind-address=127.0.0.1", f"--pid-file={s}/mariadbd.pid",
             "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=8M", "--skip-log-bin"],
        )
        wait_for(lambda: port_open(PORTS["mariadb"]), "mariadbd", p, s / "mariadbd.out")
        sql = (
            "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'embclust';"
            "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
        )
        subprocess.run(["mariadb", f"--socket={sock}", "-u", "root", "-e", sql], check=True, capture_output=True)

        reason = cannot_run()
        if reason:
            raise RuntimeError(reason)
        CONF_DIR.mkdir(parents=True, exist_ok=True)
        self.dbd_conf.write_text(SLURMDBD_CONF.format(**values))  # slurmdbd reads it beside slurm.conf
        self.dbd_conf.chmod(0o600)
        self.conf.write_text(SLURM_CONF.format(**values))
        p = self._spawn("slurmdbd", [sbin("slurmdbd"), "-D"])
        wait_for(lambda: port_open(PORTS["slurmdbd"]), "slurmdbd", p, s / "slurmdbd.log")
        p = self._spawn("slurmctld", [sbin("slurmctld"), "-D", "-i"])
        wait_for(lambda: port_open(PORTS["slurmctld"]), "slurmctld", p, s / "slurmctld.log")
        p = self._spawn("slurmd", [sbin("slurmd"), "-D", "-N", "localhost"])
        wait_for(self._node_idle, "slurmd", p, s / "slurmd.log")
        wait_for(self._accounting_works, "slurmdbd accounting", None, s / "slurmdbd.log")

    def _munge_works(self):
        if not Path(MUNGE_SOCKET).exists():
            return False
        cred = subprocess.run(["munge", "-n", "-S", MUNGE_SOCKET], capture_output=True)
        check = subprocess.run(["unmunge", "-S", MUNGE_SOCKET], input=cred.stdout, capture_output=True)
        return cred.returncode == 0 and check.returncode == 0

    def _run(self, *cmd):
        return subprocess.run(cmd, env=self.env(), capture_output=True, text=True, timeout=30)

    def _node_idle(self):
        out = self._run("sinfo", "-h", "-N", "-o", "%T").stdout.strip()
        return out == "idle"

    def _accounting_works(self):
        return self._run("sacct", "-X", "-n").returncode == 0 and "embclust" in self._run(
            "sacctmgr", "-n", "-P", "list", "cluster", "format=cluster"
        ).stdout

    def down(self, timeout=20):
        """Remove the config, then SIGTERM every daemon up() started, newest first,
        and SIGKILL what is left after `timeout` s. Returns the names still alive."""
        if self.conf.exists() and self._pids().get("slurmctld"):
            # Jobs left by a run that timed out: their slurmstepd outlives slurmd.
            jobs = self._run("squeue", "-h", "-o", "%i").stdout.split()
            if jobs:
                self._run("scancel", *jobs)
                end = time.monotonic() + timeout
                while time.monotonic() < end and self._run("squeue", "-h", "-o", "%i").stdout.strip():
                    time.sleep(0.5)
        for conf in (self.conf, self.dbd_conf):
            if conf.exists() and conf.read_text().startswith(MARK):
                conf.unlink()
        pids = self._pids()
        for name in reversed(list(pids)):
            try:
                os.killpg(pids[name], signal.SIGTERM)
            except ProcessLookupError:
                pass
        end = time.monotonic() + timeout
        for name in reversed(list(pids)):
            while time.monotonic() < end and _alive(pids[name]):
                time.sleep(0.1)
            if _alive(pids[name]):
                os.killpg(pids[name], signal.SIGKILL)
        self.pids_file.unlink(missing_ok=True)
        return [n for n in pids if _alive(pids[n])]


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of ours is not alive: reap it
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"


if __name__ == "__main__":
    action, state = sys.argv[1], sys.argv[2]
    cluster = Cluster(state)
    if action == "up":
        cluster.up()
    else:
        left = cluster.down()
        sys.exit(f"still running: {left}" if left else 0)
