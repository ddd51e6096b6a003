"""Serving footprint: cold start to /readyz, resident memory of the running server, size of the serving install.

Usage:
    python benchmarks/serving_footprint.py --model models/reviews/latest [--runs 3] [--install-size]

Numbers are printed, not asserted; docs/benchmarks.md records what was seen on the reference machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: harness/ is not installed

from harness.server import running_server

ROOT = Path(__file__).resolve().parents[1]


def server_tree_memory_mb(pid: int) -> tuple[int, float, float]:
    """Processes, summed RSS and summed USS (MiB) of a server and all its children (entry + stage workers).

    RSS counts shared library pages once per process; USS counts only each process's own pages, so the
    truth for "how much memory does the server need" lies between the two, nearer USS.
    """
    root = psutil.Process(pid)
    processes = [root, *root.children(recursive=True)]
    infos = [p.memory_full_info() for p in processes]
    return len(processes), sum(i.rss for i in infos) / 2**20, sum(i.uss for i in infos) / 2**20


def serving_install_mb() -> float:
    """Install the project with its core (serving) dependencies into a fresh venv and measure it."""
    with tempfile.TemporaryDirectory() as tmp:
        env_dir = Path(tmp) / "venv"
        venv.create(env_dir, with_pip=True)
        python = env_dir / "bin" / "python"
        subprocess.run(
            [python, "-m", "pip", "install", "--quiet", str(ROOT)], check=True, stderr=subprocess.DEVNULL
        )
        size = sum(f.stat().st_size for f in env_dir.rglob("*") if f.is_file() and not f.is_symlink())
        return size / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "reviews" / "latest")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--install-size", action="store_true", help="also measure a fresh serving-only venv")
    args = parser.parse_args(argv)

    cold, memory = [], []
    for _ in range(args.runs):
        with running_server(args.model) as server:
            cold.append(server.cold_start_s)
            memory.append(server_tree_memory_mb(server.pid))
    print(
        f"cold start to /readyz: median {statistics.median(cold):.2f} s over {args.runs} runs "
        f"(min {min(cold):.2f}, max {max(cold):.2f})"
    )
    processes, rss, uss = memory[-1]
    print(f"server memory: RSS {rss:.0f} MiB, USS {uss:.0f} MiB, in {processes} processes")
    if args.install_size:
        print(f"serving install (fresh venv, core dependencies): {serving_install_mb():.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
