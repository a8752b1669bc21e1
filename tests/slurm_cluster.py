"""A single-node Slurm cluster in a temporary folder, from Debian's packages (munge, slurmctld,
slurmd), for the tests: its own munge key and socket, its own ports, state and logs, so that a
munge or Slurm of the machine's own keeps running beside it untouched.

The lightest that works: no accounting (no slurmdbd, no MariaDB), so snakemake-executor-plugin-slurm
asks squeue for job states, which Slurm keeps for MinJobAge seconds after a job ends (an hour
here, so that the test can still look its jobs up after the run; the plugin itself needs 3x its
first status delay). No cgroup plugins (proctrack/linuxproc, task/none): nothing to set up, and
nothing here needs confining.

One thing is put outside the folder while the cluster runs: /etc/slurm/slurm.conf, a link to its
configuration. The plugin starts each job's command with srun inside the job, and drops every
SLURM_* variable but the job's ids from srun's environment, SLURM_CONF too; srun then reads the
configuration where every Slurm client looks first. A machine with a configuration of its own
there is therefore not used (missing() says so, and the test skips).

The node declares more CPUs and memory than the machine has (SlurmdParameters=config_overrides)
and four GPUs that are only counted (GRES on stand-in device files), so that the jobs' real
requests (--cpus-per-task, --mem, --gpus) are scheduled as on a cluster, here on a 2-core machine
without a GPU. The daemons run as root (slurmd must, to start jobs) and are stopped by their pids.

    python tests/slurm_cluster.py /tmp/cluster   # starts one, prints its SLURM_CONF and pids
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "sinfo", "scontrol", "srun")
NODE_CPUS = 16  # declared: what the jobs may ask for (cleaning.threads is 4), not the machine's
NODE_MEMORY_MB = 65536  # declared as well: the model stages ask for about 2 GB each
FAKE_GPU_DEVICES = (
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/urandom",
)  # the tiny build runs up to 3 GPU jobs at once
NODE_GPUS = len(FAKE_GPU_DEVICES)
PARTITION = "debug"
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
KILL_WAIT = 5  # seconds from SIGTERM to SIGKILL when a job is cancelled or over time (Slurm's default: 30)


def missing() -> str | None:
    """Why a cluster cannot be started here (None: it can)."""
    if os.geteuid() != 0:
        return "Slurm's daemons must run as root (slurmd starts the jobs), and this is not root"
    absent = [name for name in DAEMONS + CLIENTS if not _which(name)]
    if absent:
        return f"no {', '.join(absent)} (Debian: apt-get install munge slurmctld slurmd)"
    if SYSTEM_CONF.exists():
        return f"this machine has a Slurm configuration of its own ({SYSTEM_CONF}): the jobs' srun would use it"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _which(name: str) -> str:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


class Cluster:
    """Started by start(), stopped by stop(); `env` is what a client (sbatch, Snakemake) needs."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.host = socket.gethostname().split(".")[0]
        self.node = "node1"
        self.conf = self.root / "slurm.conf"
        self.processes: dict[str, subprocess.Popen] = {}
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def _write_config(self) -> None:
        r = self.root
        for sub in ("state", "spool", "log"):
            (r / sub).mkdir(parents=True, exist_ok=True)
        key = r / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.conf.write_text(f"""\
ClusterName=farense-test
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={r / "munge.socket"}
CredType=cred/munge
StateSaveLocation={r / "state"}
SlurmdSpoolDir={r / "spool"}
SlurmctldPidFile={r / "slurmctld.pid"}
SlurmdPidFile={r / "slurmd.pid"}
SlurmctldLogFile={r / "log" / "slurmctld.log"}
SlurmdLogFile={r / "log" / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=3600
KillWait={KILL_WAIT}
InactiveLimit=0
GresTypes=gpu
NodeName={self.node} NodeAddr=127.0.0.1 NodeHostname={self.host} CPUs={NODE_CPUS} RealMemory={NODE_MEMORY_MB} Gres=gpu:{NODE_GPUS} State=UNKNOWN
PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
""")
        # Slurm drops a GPU without a device file, and wants a character device: /dev/null and
        # others stand in (task/none: no job is confined to them).
        (r / "gres.conf").write_text(
            "AutoDetect=off\n" + "".join(f"NodeName={self.node} Name=gpu File={dev}\n" for dev in FAKE_GPU_DEVICES)
        )

    def _daemon(self, name: str, *args: str) -> None:
        log = open(self.root / "log" / f"{name}.out", "wb")
        self.processes[name] = subprocess.Popen(
            [_which(name), *args], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )

    def start(self, timeout: float = 60) -> "Cluster":
        self._write_config()
        if SYSTEM_CONF.is_symlink() and not SYSTEM_CONF.exists():
            SYSTEM_CONF.unlink()  # left by a test cluster that was not stopped
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.symlink_to(self.conf)
        r = self.root
        self._daemon(
            "munged",
            "-F",
            "--force",
            f"--socket={r / 'munge.socket'}",
            f"--key-file={r / 'munge.key'}",
            f"--pid-file={r / 'munged.pid'}",
            f"--log-file={r / 'log' / 'munged.log'}",
            f"--seed-file={r / 'munged.seed'}",
        )
        self._wait(lambda: (r / "munge.socket").exists(), timeout, "munged")
        self._daemon("slurmctld", "-D", "-i")
        self._wait(lambda: self.run("scontrol", "ping", check=False).stdout.count("UP") > 0, timeout, "slurmctld")
        self._daemon("slurmd", "-D", "-N", self.node)
        self._wait(lambda: self.run("sinfo", "-h", "-o", "%T", check=False).stdout.strip() == "idle", timeout, "slurmd")
        return self

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}):\n{self.logs()}")
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{what} not ready after {timeout} s:\n{self.logs()}")

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [_which(cmd[0]), *cmd[1:]], env=self.env, capture_output=True, text=True, check=check, timeout=60
        )

    def jobs(self) -> list[dict]:
        """Every job Slurm still knows of (MinJobAge): id, name, state, comment (Snakemake's rule)."""
        out = self.run("squeue", "--states=all", "--noheader", "--format=%i|%j|%T|%k").stdout
        return [
            dict(zip(("id", "name", "state", "comment"), line.split("|", 3)))
            for line in out.splitlines()
            if line.strip()
        ]

    def logs(self) -> str:
        parts = []
        for f in sorted((self.root / "log").glob("*")):
            parts.append(f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancel what still runs, then stop the daemons this object started (by pid)."""
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            self.run("scancel", "--full", "--user", getpass.getuser(), check=False)
            deadline = time.time() + KILL_WAIT + 10
            while time.time() < deadline and any(
                j["state"] in ("RUNNING", "COMPLETING", "PENDING") for j in self.jobs()
            ):
                time.sleep(0.5)
        for name in reversed(DAEMONS):
            proc = self.processes.get(name)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if SYSTEM_CONF.is_symlink() and os.readlink(SYSTEM_CONF) == str(self.conf):
            SYSTEM_CONF.unlink()


if __name__ == "__main__":
    why = missing()
    if why:
        sys.exit(why)
    cluster = Cluster(Path(sys.argv[1])).start()
    print(f"export SLURM_CONF={cluster.conf}")
    print(f"pids: {' '.join(str(p.pid) for p in cluster.processes.values())}")
