"""Throughput of the runner against a local OpenAI-compatible server that answers after a fixed delay.

Run it from the repository root (the machine otherwise idle, or the figures say little)::

    .venv/bin/python benchmarks/runner_throughput.py
    .venv/bin/python benchmarks/runner_throughput.py --requests 2000 --concurrency 64 --delay 0.1

It starts ``python -m workbench.testing.openai_stub --delay D`` in a separate process, builds a
synthetic classification task and N distinct short texts, and calls `workbench.prompting.runner.run_variants`
with an `OpenAICompatibleModel` (through the ``openai`` SDK over real HTTP) and a fresh SQLite
cache, so every part of the real path is measured: prompt rendering, cache keys, lookups and
per-answer commits, the SDK's request and response handling, answer parsing and DataFrame assembly.
Nothing is special-cased for the benchmark.

It prints:

- achieved requests/s of the first (uncached) run of N calls at concurrency C, wall time of the
  whole `run_variants` call, and its ratio to the ideal C / D requests/s (target: >= 0.9). With
  N = 2,000, C = 64 and D = 0.1 s the ideal is 640/s; note that ceil(N / C) rounds of D seconds
  already cap the achievable ratio at N / (ceil(N / C) * C), about 0.977 here;
- client CPU time per call (this process's user + system CPU during that run, divided by N),
  and the stub server's CPU per request (from psutil or /proc/<pid>/stat);
- wall time to re-run the same N calls from the cache (asserted to send 0 calls; target < 1 s);
- wall time of a cached run of M calls (default 10,000; the cache is filled first, then timed);
- the load average at start, the CPU other processes used during the timed run (/proc/stat) and a
  speed check (CPU time of a fixed Python loop), so a reader can tell whether the machine was
  shared or slowed down; on a virtual machine the same work can cost twice the CPU time when the
  host is busy.

Options: ``--requests``, ``--concurrency``, ``--delay``, ``--cached-requests`` (0 skips that
part), ``--repeat R`` (time the uncached run R times with new texts, report the median; useful on
a shared machine), ``--uvloop`` (run the event loop on uvloop, if installed).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openai
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a plain script from a checkout
    sys.path.insert(0, str(REPO))

from workbench.core.task import task_from_dict  # noqa: E402
from workbench.models import OpenAICompatibleModel  # noqa: E402
from workbench.models.openai_compatible import aiohttp_client  # noqa: E402
from workbench.prompting.runner import run_variants  # noqa: E402

TASK = task_from_dict({
    "name": "bench_triage",
    "kind": "classification",
    "description": "Messages from a bank's customers.",
    "labels": [
        {"name": "complaint", "definition": "The customer is unhappy with something the bank did."},
        {"name": "request", "definition": "The customer asks the bank to do something."},
        {"name": "question", "definition": "The customer asks for information."},
    ],
})

_SUBJECTS = ["card", "transfer", "loan", "account", "app", "statement", "fee", "branch"]
_VERBS = ["was declined", "is late", "looks wrong", "needs changing", "stopped working", "was charged twice"]


def make_dataset(n: int) -> pd.DataFrame:
    """N distinct short texts (labels are only there to satisfy validation)."""
    labels = TASK.label_names
    texts = [
        f"Message {i}: my {_SUBJECTS[i % len(_SUBJECTS)]} {_VERBS[(i // 8) % len(_VERBS)]}, "
        f"reference {i * 7919 % 100_003}."
        for i in range(n)
    ]
    return pd.DataFrame({
        "example_id": [f"ex{i:06d}" for i in range(n)],
        "text": texts,
        "label": [labels[i % len(labels)] for i in range(n)],
    })


def start_stub(delay: float, workdir: Path) -> tuple[subprocess.Popen, int]:
    port_file = workdir / "stub.port"
    process = subprocess.Popen(
        [sys.executable, "-m", "workbench.testing.openai_stub", "--delay", str(delay), "--port", "0",
         "--port-file", str(port_file)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not port_file.exists():
        if process.poll() is not None:
            raise RuntimeError(f"stub server exited: {process.stderr.read().decode(errors='replace')}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("stub server did not start within 30 s")
        time.sleep(0.02)
    return process, int(port_file.read_text().strip())


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far."""
    try:
        import psutil

        times = psutil.Process(pid).cpu_times()
        return times.user + times.system
    except ImportError:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        # After the ")" closing the command name, utime and stime are fields 12 and 13 (0-based).
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_cpu_s() -> float | None:
    """CPU seconds all processes on the machine have used so far (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(value) for value in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal ...: everything but idle and iowait is busy.
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def speed_check_ms() -> float:
    """CPU milliseconds of a fixed pure-Python loop: compares this machine's speed between runs."""
    started = time.process_time()
    total = 0
    for value in range(2_000_000):
        total += value * value
    return (time.process_time() - started) * 1e3


def timed_run(task, data, model, cache: Path) -> tuple[pd.DataFrame, float, float]:
    """run_variants once; returns (predictions, wall seconds, client CPU seconds)."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    predictions = run_variants(task, data, ["zero_shot"], model, cache=cache, progress=False)
    return predictions, time.perf_counter() - wall0, time.process_time() - cpu0


def check_answers(predictions: pd.DataFrame, n: int) -> None:
    stats = predictions.attrs["run_stats"]
    bad = predictions["prediction"].isna().sum()
    if len(predictions) != n or bad or stats["failed"]:
        raise SystemExit(f"benchmark run was not clean: {len(predictions)} rows, {bad} without a prediction, "
                         f"stats {stats}; first errors: {predictions['request_error'].dropna().head(3).tolist()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="calls in the uncached run (default 2000)")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent calls (default 64)")
    parser.add_argument("--delay", type=float, default=0.1, help="server answer delay in seconds (default 0.1)")
    parser.add_argument("--cached-requests", type=int, default=10_000,
                        help="calls in the large cached re-run (default 10000; 0 skips it)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="time the uncached run this many times, each with new texts, and report the median")
    parser.add_argument("--uvloop", action="store_true", help="use uvloop's event loop (must be installed)")
    args = parser.parse_args(argv)

    if args.uvloop:
        try:
            import uvloop
        except ImportError:
            parser.error("--uvloop needs uvloop: pip install uvloop")
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    load = os.getloadavg()
    ideal = args.concurrency / args.delay
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
          + ("  (the machine may be shared: see the other processes' CPU below)" if load[0] > 0.5 else ""))
    speed = speed_check_ms()
    print(f"speed check: a fixed Python loop took {speed:.0f} ms of CPU (compare between runs; on a virtual "
          "machine it also moves with its host's load)")

    with tempfile.TemporaryDirectory(prefix="wb-bench-") as tmp:
        workdir = Path(tmp)
        stub, port = start_stub(args.delay, workdir)
        try:
            base_url = f"http://127.0.0.1:{port}/v1"

            # One model for every run, as in a notebook: each run_variants call has its own event loop.
            model = OpenAICompatibleModel("bench", base_url=base_url, structured_output="none",
                                          max_concurrency=args.concurrency)
            transport = "aiohttp" if aiohttp_client(1.0) is not None else "httpx (SDK default)"
            print(f"openai {openai.__version__}, SDK HTTP transport {transport}, event loop "
                  f"{'uvloop' if args.uvloop else 'asyncio'}; stub pid {stub.pid} on port {port}, "
                  f"delay {args.delay:g} s")

            cache = workdir / "cache.sqlite"
            timings = []  # (wall, client CPU, server CPU, other processes' CPU) per uncached run
            for repeat in range(max(1, args.repeat)):
                # Each repeat gets texts of its own, so every call really goes to the server.
                data = make_dataset(args.requests)
                if repeat:
                    data["text"] = data["text"] + f" (repeat {repeat})"
                server_cpu0, busy0 = process_cpu_s(stub.pid), machine_busy_cpu_s()
                first, wall, cpu = timed_run(TASK, data, model, cache)
                server_cpu = process_cpu_s(stub.pid) - server_cpu0
                busy1 = machine_busy_cpu_s()
                others = None if busy0 is None or busy1 is None else max(0.0, busy1 - busy0 - cpu - server_cpu)
                check_answers(first, args.requests)
                assert first.attrs["run_stats"]["calls_sent"] == args.requests, first.attrs["run_stats"]
                timings.append((wall, cpu, server_cpu, others))
                if args.repeat > 1:
                    print(f"  run {repeat + 1}: {args.requests / wall:.0f} requests/s, client CPU "
                          f"{cpu / args.requests * 1e3:.2f} ms/call", flush=True)
            wall, cpu, server_cpu, others = sorted(timings)[len(timings) // 2]  # the median run by wall time
            sent = args.requests
            rate = sent / wall
            ratio = rate / ideal
            cap = args.requests / (math.ceil(args.requests / args.concurrency) * args.concurrency)

            again, cached_wall, _ = timed_run(TASK, data, model, cache)
            assert again.attrs["run_stats"]["calls_sent"] == 0, again.attrs["run_stats"]
            assert again["cached"].all()

            big_wall = None
            if args.cached_requests:
                big = make_dataset(args.cached_requests)
                fill, fill_wall, _ = timed_run(TASK, big, model, cache)
                check_answers(fill, args.cached_requests)
                print(f"(filled the cache for {args.cached_requests:,} calls: "
                      f"{fill.attrs['run_stats']['calls_sent']:,} sent in {fill_wall:.1f} s)")
                rerun, big_wall, _ = timed_run(TASK, big, model, cache)
                assert rerun.attrs["run_stats"]["calls_sent"] == 0, rerun.attrs["run_stats"]
                assert rerun["cached"].all()
        finally:
            stub.terminate()
            try:
                stub.wait(10)
            except subprocess.TimeoutExpired:
                stub.kill()

    end_load = os.getloadavg()[0]

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    rows = [
        (f"{args.requests:,} calls at concurrency {args.concurrency}, {args.delay:g} s server delay",
         f"{wall:.2f} s wall", "", ""),
        ("achieved requests/s", f"{rate:.0f}/s", f"ideal {ideal:.0f}/s", ""),
        ("ratio to ideal", f"{ratio:.3f}", ">= 0.9", verdict(ratio >= 0.9)),
        ("client CPU per call (whole run_variants)", f"{cpu / sent * 1e3:.2f} ms",
         f"total {cpu:.2f} s", ""),
        ("server CPU per request (stub process)", f"{server_cpu / sent * 1e3:.2f} ms",
         f"total {server_cpu:.2f} s", ""),
        ("CPU used by other processes during that run", "n/a" if others is None else f"{others:.2f} s",
         f"of {os.cpu_count()} CPUs x {wall:.1f} s", ""),
        (f"re-run of the same {args.requests:,} calls from the cache", f"{cached_wall:.3f} s",
         "< 1 s", verdict(cached_wall < 1.0)),
    ]
    if big_wall is not None:
        rows.append((f"{args.cached_requests:,} cached calls", f"{big_wall:.3f} s",
                     f"{big_wall / args.cached_requests * 1e6:.0f} us/call", ""))
    width = max(len(row[0]) for row in rows)
    print()
    print(f"{'measure':<{width}}  {'result':>14}  {'target / note':<16}  verdict")
    print("-" * (width + 44))
    for name, value, target, mark in rows:
        print(f"{name:<{width}}  {value:>14}  {target:<16}  {mark}")
    if others is not None and others > 0.1 * (os.cpu_count() or 1) * wall:
        print(f"\nOther processes used {others / ((os.cpu_count() or 1) * wall):.0%} of the machine's CPU during the "
              "timed run: the throughput and CPU figures are lower than on an otherwise idle machine.")
    print(f"\nNotes: ceil(N/C) rounds of the delay cap the ratio at {cap:.3f} for these settings. The cached re-run's "
          f"{cached_wall:.2f} s (rendering, cache keys and lookups, parsing, DataFrame) is roughly the part of "
          f"the first run's {wall:.2f} s spent outside sending, so sending itself ran at about "
          f"{sent / max(wall - cached_wall, 1e-9):.0f} requests/s. Load average at end {end_load:.2f}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
