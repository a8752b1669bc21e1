"""A bounded burst of concurrent chat requests against a server on loopback, with the server's
memory sampled from /proc: shared by tests/test_serving_load.py and
tests/benchmarks/bench_serving_load.py."""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

QUESTIONS = (
    "Onde joga o Farense?",
    "Quem foi Hassan Nader?",
    "Qual foi a melhor classificação do Farense?",
    "Em que ano foi fundado o Farense?",
    "Quem treinou o Farense em 1990?",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children, from /proc (VmRSS, kB)."""
    total = 0
    for p in [pid, *children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def children(pid: int) -> list[int]:
    try:
        return [int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()]
    except FileNotFoundError:
        return []


class MemoryWatch(threading.Thread):
    """Samples a process's RSS every `interval` seconds until stopped."""

    def __init__(self, pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.interval, self.samples = pid, interval, []
        self._stop_event = threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            self.samples.append((time.perf_counter(), rss_bytes(self.pid)))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    @property
    def peak(self) -> int:
        return max((s for _, s in self.samples), default=0)


def start_server(cmd: list[str], cwd: Path, port: int, log: Path, ready_timeout: float = 120.0) -> subprocess.Popen:
    """Start a server, its output to the file `log` (a pipe nobody reads fills up and stops the
    server's logging, and then the server), and wait until it answers a request on `port`."""
    with open(log, "w") as handle:
        server = subprocess.Popen(cmd, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT)
    deadline = time.time() + ready_timeout
    while True:
        status, _ = post(port, {"messages": [{"role": "user", "content": "Olá"}], "max_tokens": 1}, timeout=30)
        if status == 200:
            return server
        if server.poll() is not None or time.time() > deadline:
            stop_server(server)
            raise RuntimeError(f"the server did not start (exit {server.returncode}): {Path(log).read_text()[-2000:]}")
        time.sleep(0.3)


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def post(port: int, body: dict | bytes, timeout: float, path: str = "/v1/chat/completions") -> tuple[int | str, bytes]:
    """(HTTP status, or the name of the client-side error, such as "timeout"; the body)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    except (TimeoutError, socket.timeout):
        return "timeout", b""
    except (ConnectionError, http.client.HTTPException, OSError) as err:
        return type(err).__name__, b""
    finally:
        connection.close()


@dataclass
class Burst:
    statuses: list = field(default_factory=list)  # one per request: an HTTP status or a client error name
    latencies: list = field(default_factory=list)  # seconds, one per request
    seconds: float = 0.0
    rss_before: int = 0
    rss_peak: int = 0
    rss_after: int = 0
    bad_bodies: int = 0  # 200 answers without a chat completion in them (text, or an empty answer)

    @property
    def served(self) -> int:
        return sum(1 for s in self.statuses if s == 200)

    @property
    def refused(self) -> int:
        return sum(1 for s in self.statuses if isinstance(s, int) and s != 200)

    @property
    def failed(self) -> int:
        """Requests neither answered nor refused with an HTTP status: timeouts, resets."""
        return sum(1 for s in self.statuses if not isinstance(s, int))

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    def lines(self) -> list[str]:
        codes = {}
        for s in self.statuses:
            codes[str(s)] = codes.get(str(s), 0) + 1
        return [
            f"requests: {len(self.statuses)} in {self.seconds:.1f} s; served {self.served}, refused {self.refused}, "
            f"failed {self.failed} (no HTTP answer); by status {dict(sorted(codes.items()))}",
            f"latency s: p50 {self.percentile(0.5):.2f}, p90 {self.percentile(0.9):.2f}, p99 {self.percentile(0.99):.2f}, "
            f"max {max(self.latencies, default=float('nan')):.2f}, mean {statistics.fmean(self.latencies) if self.latencies else float('nan'):.2f}",
            f"server RSS MB: before {self.rss_before / 1e6:.0f}, peak {self.rss_peak / 1e6:.0f}, after {self.rss_after / 1e6:.0f}",
        ]


def burst(
    port: int,
    pid: int,
    requests: int = 200,
    clients: int = 32,
    max_tokens: int = 16,
    timeout: float = 30.0,
    extra: list[tuple[int, dict | bytes]] = (),
) -> Burst:
    """`requests` chat completions sent by `clients` threads at once, each with a client timeout;
    `extra`: (index, body) pairs sent in place of the ordinary request at that index (oversized
    or malformed bodies mixed into the burst)."""
    odd = dict(extra)
    result = Burst(rss_before=rss_bytes(pid))
    watch = MemoryWatch(pid)
    watch.start()

    def one(i: int):
        body = odd.get(i) or {
            "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
            "max_tokens": max_tokens,
            "temperature": 0,
        }
        tic = time.perf_counter()
        status, data = post(port, body, timeout)
        ok_body = True
        if status == 200:
            try:
                choice = json.loads(data)["choices"][0]
                # an empty answer (the model's first token ends its turn) is content null in
                # mlx-lm 0.32.2's server, with finish_reason "stop"
                content = choice["message"]["content"]
                ok_body = isinstance(content, str) or (content is None and choice["finish_reason"] == "stop")
            except (ValueError, KeyError, IndexError, TypeError):
                ok_body = False
        return status, time.perf_counter() - tic, ok_body

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        for status, seconds, ok_body in pool.map(one, range(requests)):
            result.statuses.append(status)
            result.latencies.append(seconds)
            result.bad_bodies += not ok_body
    result.seconds = time.perf_counter() - started
    watch.stop()
    result.rss_peak = max(watch.peak, result.rss_before)
    result.rss_after = rss_bytes(pid)
    return result


if __name__ == "__main__":  # a quick look: python tests/serve_load.py PORT PID
    print("\n".join(burst(int(sys.argv[1]), int(sys.argv[2])).lines()))
