"""Data-parallel training ranks (training.processes): the mlx.launch command that starts them,
and what a failed launch means.

mlx.launch starts the ranks (ring backend on CPUs and Macs, nccl on CUDA GPUs), gives each its
MLX_RANK and peers, and when one rank dies it terminates the others. Its own exit status stays 0
all the same (mlx 0.32: a rank killed by SIGKILL left status 0 and a "[WARN] Node with rank 1
exited with code 9" line), so success is judged by what rank 0 writes at the very end: the run
record. Under Slurm the hosts of the allocation are the hosts (one rank per GPU or per task).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from .errors import PipelineError

SCRIPTS = Path(__file__).resolve().parents[1]


def backend(cuda: bool) -> str:
    return "nccl" if cuda else "ring"


def free_port() -> int:
    """A free TCP port for the ring's first rank (ring takes one port per rank from there), so
    that train_qlora and train_lora can run their ranks side by side."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slurm_hosts(environ=os.environ) -> list[str] | None:
    """The hosts of the Slurm allocation this job runs in (None outside Slurm or on one node)."""
    nodes = environ.get("SLURM_JOB_NODELIST")
    if not nodes or int(environ.get("SLURM_JOB_NUM_NODES", "1")) < 2:
        return None
    names = subprocess.run(
        ["scontrol", "show", "hostnames", nodes], check=True, capture_output=True, text=True
    ).stdout.split()
    return [socket.gethostbyname(n) for n in names]  # the ring backend wants addresses


def launch_command(
    processes: int, job_file: Path, backend_name: str, hosts: list[str] | None = None, port: int | None = None
) -> list[str]:
    launcher = Path(sys.executable).with_name("mlx.launch")
    command = [str(launcher) if launcher.exists() else "mlx.launch", "--backend", backend_name]
    if hosts:
        if processes % len(hosts):
            raise PipelineError(
                f"training.processes ({processes}) is not a multiple of the {len(hosts)} hosts of the allocation"
            )
        command += ["--hosts", ",".join(hosts), "-n", str(processes // len(hosts))]
    else:
        command += ["-n", str(processes)]
    command += ["--starting-port", str(port or free_port())]
    program = f"import sys; sys.path.insert(0, {str(SCRIPTS)!r}); from farense.adapter_job import main; main()"
    return command + ["--", sys.executable, "-c", program, str(job_file)]


def launch(job: dict, processes: int, cuda: bool, log) -> None:
    """Run `job` (farense.adapter_job) as `processes` ranks; raise PipelineError naming the ranks
    that failed when rank 0 did not finish."""
    job_file = Path(job["checkpoints"]).with_name(Path(job["checkpoints"]).name + ".job.json")
    job_file.parent.mkdir(parents=True, exist_ok=True)
    job_file.write_text(json.dumps(job, indent=1), encoding="utf-8")
    Path(job["run"]).unlink(missing_ok=True)  # rank 0 writes it last: its presence is success
    command = launch_command(processes, job_file, backend(cuda), slurm_hosts())
    log.info("data-parallel training: %d ranks, %s", processes, " ".join(command[:6]))
    proc = subprocess.run(command, stderr=subprocess.PIPE, text=True)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0 or not Path(job["run"]).exists():
        failed = re.findall(r"rank (\d+) exited with code (-?\d+)", proc.stderr)
        which = (
            ", ".join(f"rank {r} exited with code {c}" for r, c in failed)
            or f"mlx.launch exited with code {proc.returncode}"
        )
        tail = " | ".join(line for line in proc.stderr.strip().splitlines()[-3:])
        raise PipelineError(f"data-parallel training failed: {which} (last lines: {tail})")
    job_file.unlink(missing_ok=True)
