"""Serving under load: a bounded burst of concurrent chat requests against the server that
serves the adapter on loopback, with the server's memory read from /proc.

    python tests/benchmarks/bench_serving_load.py [--workdir DIR] [--requests 200] [--clients 32] [--max-tokens 16]

DIR holds a built results/ (models/base-int4 and adapters/qlora); without it the tiny test
configuration (tests/config/tiny.yaml) builds them in a temporary folder first. Then, one after
the other, each server is started on a free loopback port and sent `--requests` requests by
`--clients` threads at once (each with a 60 s client timeout), and it prints for each: requests
served (200), refused (an HTTP error status), failed (no HTTP answer: timeout, reset), latency
percentiles and the server's RSS before, at its peak (sampled every 50 ms) and after:

- `serve_qlora`: scripts/cli/serve_qlora.py with its default bounds; three odd requests are mixed
  into the burst (a 1 MB prompt, a body that is not UTF-8, a prompt over the model's context);
- `serve_qlora --max-in-flight 8`: the same server with fewer slots than clients (503s);
- `mlx_lm.server`: mlx-lm's own server as the README documented it before (no odd requests but
  the one that is not UTF-8: a 1 MB prompt would hold it for longer than the run).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import copy_workflow, snakemake  # noqa: E402
from serve_load import burst, free_port, start_server, stop_server  # noqa: E402

TINY = ["--configfile", "config/config.yaml", str(ROOT / "tests/config/tiny.yaml")]
NOT_UTF8 = b'{"messages": [{"role": "user", "content": "\xff"}]}'


def odd_requests() -> list[tuple[int, object]]:
    ask = lambda content: {"messages": [{"role": "user", "content": content}], "max_tokens": 16}  # noqa: E731
    return [(7, ask("O Farense jogou em Faro. " * 40_000)), (77, NOT_UTF8), (150, ask("Onde joga o Farense? " * 600))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--workdir", type=Path, help="a folder with a built results/ (default: a tiny build in a temporary folder)"
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    scratch = tempfile.TemporaryDirectory(prefix="bench-serving-")
    workdir = args.workdir
    if workdir is None:
        workdir = copy_workflow(Path(scratch.name) / "wf")
        started = time.perf_counter()
        snakemake(workdir, "results/adapters/qlora", *TINY)
        print(f"tiny build (results/adapters/qlora): {time.perf_counter() - started:.0f} s")
    load = os.getloadavg()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {load[0]:.1f}; python {platform.python_version()}"
    )
    print(
        f"burst: {args.requests} requests, {args.clients} clients at once, max_tokens {args.max_tokens}, client timeout 60 s"
    )
    model = ["--model", "results/models/base-int4", "--adapter-path", "results/adapters/qlora"]
    servers = [
        ("serve_qlora (default bounds)", [sys.executable, str(ROOT / "scripts/cli/serve_qlora.py")], odd_requests()),
        (
            "serve_qlora --max-in-flight 8",
            [sys.executable, str(ROOT / "scripts/cli/serve_qlora.py"), "--max-in-flight", "8"],
            [],
        ),
        ("mlx_lm.server", [sys.executable, "-m", "mlx_lm", "server", *model], [(77, NOT_UTF8)]),
    ]
    for name, cmd, extra in servers:
        port = free_port()
        process = start_server(
            [*cmd, "--host", "127.0.0.1", "--port", str(port)], workdir, port, Path(scratch.name) / f"{port}.log"
        )
        try:
            result = burst(port, process.pid, args.requests, args.clients, args.max_tokens, timeout=60.0, extra=extra)
        finally:
            stop_server(process)
        print(
            f"\n{name}"
            + (
                f" (odd requests at {[i for i, _ in extra]}: statuses {[result.statuses[i] for i, _ in extra]})"
                if extra
                else ""
            )
        )
        print("  " + "\n  ".join(result.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
