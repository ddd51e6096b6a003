"""``tripod transform`` throughput and memory: the in-process engine against its ceiling and an endpoint.

Measured in one run, on one machine, over one generated input (the reviews' texts repeated into a
header-less, one-column ``text/csv`` file, one record per line), split by line into ``MultiRecord``
mini-batches of the default 6 MB (sizes are MiB):

- ``ceiling``: ``--workers`` processes (default: the cores) calling ``Pipeline.predict`` on pre-decoded
  mini-batches, cut by the job's own batching from the first ``--ceiling-records`` records and predicted
  over and over for ``--ceiling-seconds``: what the model allows on these cores with no reading, decoding,
  encoding, writing or process start; measured before and after the in-process job (it moves by up to 20 %
  between minutes here).  The in-process engine should reach 0.8× of their mean.
- ``in-process engine``: ``run_transform`` with ``--model`` over the ``--mb`` input; records / wall seconds,
  the workers' start included (a user waits for it too).
- ``endpoint engine``: the same job against ``tripod serve`` of the same model on loopback
  (``POST /invocations``, the concurrency ``/execution-parameters`` advises), over the ``--endpoint-mb``
  input (records/s does not depend on the size).  The in-process engine should be 5× faster: it exists
  for that.
- ``memory``: ``tripod transform`` as a subprocess at each ``--rss-mb`` size, the resident memory of the
  job and its workers summed every 50 ms, the peak kept.  It should stay flat (within 10 %) as the input
  grows.
- ``MiniLM``: both engines on a small input, with ``--minilm-model DIR`` (skipped without it).

Every line also says how many cores the measurement itself kept busy and how many other processes took
meanwhile (the machine's busy time less ours): with 2 cores shared, a ratio measured while others took a
core is noise.

Usage:
    python benchmarks/batch_transform.py --model models/reviews/latest --data data/reviews.parquet
        [--mb 1024] [--endpoint-mb 100] [--rss-mb 100,1024] [--minilm-model DIR] [--minilm-mb 0.5]
        [--work /tmp/tripod-batch-bench] [--workers CORES] [--quick]

``--quick`` shrinks every size (``--mb 60 --endpoint-mb 10 --rss-mb 20,60 --minilm-mb 0.05``, a 3 s
ceiling) for a smoke run of about a minute; an explicit option still wins.  Below about 20 MB the peak
memory still grows with the input (the mini-batches in flight are not yet full): compare sizes above it.
Generated inputs are cached in ``--work`` by size; each job's output there is removed first (a job resumes
from what it finds).
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import multiprocessing
import os
import queue
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make harness/ and services/ importable
    sys.path.insert(0, str(ROOT))

from harness.processes import process_tree, tree_rss  # noqa: E402
from harness.server import running_server  # noqa: E402
from services.batch.engines import InProcessEngine, execution_parameters  # noqa: E402
from services.batch.job import run_transform  # noqa: E402
from services.batch.options import TransformOptions  # noqa: E402
from services.batch.records import Record, mini_batches  # noqa: E402
from services.batch.resolve import resolve_settings  # noqa: E402
from services.codecs.media import CSV  # noqa: E402

MIB = 1 << 20
SAMPLE_EVERY_S = 0.05
MINILM_RECORDS = 128
"""MiniLM's records per mini-batch on both engines.  A 6 MB mini-batch holds 10,000 reviews (the record
limit): minutes of MiniLM per request, past ``tripod serve``'s 60 s request timeout, and on a small input
one batch keeps one worker busy while the others wait.  128 reviews take about 6 s on a core, so even the
fourth of the 4 requests the server advises in flight ends well inside its timeout."""
GOAL_CEILING = 0.8
GOAL_ENDPOINT = 5.0
GOAL_RSS = 1.10


@dataclass(frozen=True)
class Sizes:
    """How much each measurement reads: MiB of CSV, records and seconds for the ceiling."""

    mb: float
    endpoint_mb: float
    rss_mb: tuple[float, ...]
    ceiling_records: int
    ceiling_seconds: float
    minilm_mb: float
    single_mb: float
    """The SingleRecord endpoint job's input: one request per record is slow, and records/s does not need more."""


FULL = Sizes(
    mb=1024,
    endpoint_mb=100,
    rss_mb=(100, 1024),
    ceiling_records=200_000,
    ceiling_seconds=10,
    minilm_mb=0.5,
    single_mb=2,
)
"""MiniLM answers about 30 reviews a second per core here: 0.5 MB (1,700 reviews) is half a minute or more
per engine, and records/s does not depend on the size."""
QUICK = Sizes(
    mb=60,
    endpoint_mb=10,
    rss_mb=(20, 60),
    ceiling_records=20_000,
    ceiling_seconds=3,
    minilm_mb=0.05,
    single_mb=0.2,
)


@dataclass
class CpuUse:
    """CPU seconds over a wall-clock window: ours (this process, its children, a watched process tree) and the
    rest of the machine's."""

    wall_s: float = 0.0
    own_s: float = 0.0
    others_s: float = 0.0

    def __str__(self) -> str:
        wall = max(self.wall_s, 1e-9)
        return f"busy cores: ours {self.own_s / wall:.2f}, others {max(0.0, self.others_s) / wall:.2f}"


@dataclass(frozen=True)
class Measurement:
    """One line of the results, and one row of the table."""

    name: str
    input_mb: float
    records: int
    seconds: float
    cpu: CpuUse
    detail: str = ""
    """A ratio to a goal, a memory figure."""
    peak_rss: int = 0
    """Bytes: the peak summed resident memory of the job and its workers (memory measurements)."""
    start_s: float = 0.0
    """Seconds of ``seconds`` that starting the engine takes (in-process workers; measured apart)."""

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    @property
    def steady_rate(self) -> float:
        """Records/s once the engine has started (about: the start is measured in a run of its own)."""
        return self.records / max(self.seconds - self.start_s, 1e-9)


# -- CPU accounting ---------------------------------------------------------------------------------------


def _own_cpu_s(tree: psutil.Process | None) -> float:
    """This process and its reaped children (a job joins its workers before it returns), and a live tree."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    if tree is not None:
        for process in process_tree(tree):
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
    return total


def _machine_busy_s() -> float:
    times = psutil.cpu_times()
    return float(sum(times)) - times.idle - getattr(times, "iowait", 0.0)


@contextmanager
def cpu_window(tree: psutil.Process | None = None) -> Iterator[CpuUse]:
    """Fill a :class:`CpuUse` for the ``with`` block (``tree``: a server outside this process's children)."""
    use = CpuUse()
    started, own, busy = time.perf_counter(), _own_cpu_s(tree), _machine_busy_s()
    yield use
    use.wall_s = time.perf_counter() - started
    use.own_s = _own_cpu_s(tree) - own
    use.others_s = _machine_busy_s() - busy - use.own_s


# -- input ------------------------------------------------------------------------------------------------


def csv_lines(texts: Sequence[str]) -> list[bytes]:
    """One quoted CSV field per text, one line each: line breaks inside a review become spaces, since a
    line-split job (like SageMaker's) cuts at every newline, quoted or not; empty texts are left out."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for text in texts:
        flat = " ".join(text.splitlines()).strip()
        if flat:
            writer.writerow([flat])
    return [line.encode() + b"\n" for line in buffer.getvalue().split("\n")[:-1]]


def build_input(data: Path, column: str, mb: float, work: Path) -> tuple[Path, int]:
    """A CSV of at least ``mb`` MiB of ``column``'s texts repeated in order, cached in ``work`` by size.

    Returns:
        The file and its number of records.
    """
    path = work / "inputs" / f"reviews-{mb:g}mb.csv"
    stamp = path.with_suffix(".json")
    source = {"data": str(data.resolve()), "mtime_ns": data.stat().st_mtime_ns, "column": column}
    if path.is_file() and stamp.is_file():
        known = json.loads(stamp.read_text())
        if known["source"] == source and known["size"] == path.stat().st_size:
            return path, int(known["records"])
    import pandas as pd

    if data.suffix == ".parquet":
        frame = pd.read_parquet(data, columns=[column])
    else:
        frame = pd.read_csv(data, usecols=[column])
    lines = csv_lines(frame[column].dropna().astype(str).tolist())
    block = b"".join(lines)
    target = int(mb * MIB)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    written = records = 0
    with partial.open("wb") as out:
        while written + len(block) <= target:
            out.write(block)
            written, records = written + len(block), records + len(lines)
        for line in lines:
            if written >= target:
                break
            out.write(line)
            written, records = written + len(line), records + 1
    partial.replace(path)
    stamp.write_text(json.dumps({"source": source, "size": written, "records": records}))
    return path, records


# -- the ceiling ------------------------------------------------------------------------------------------


def job_payloads(options: TransformOptions, limit: int) -> list[bytes]:
    """The request bodies of the job's first ``limit`` records, cut by the job's own batching rules (the
    generated input has one record per line, no blank line)."""
    settings = resolve_settings(options)
    with open(options.input, "rb") as stream:
        lines = itertools.islice(stream, limit)
        records = [Record(index, 0, line.rstrip(b"\r\n")) for index, line in enumerate(lines)]
    batches = mini_batches(
        records,
        multi=settings.multi,
        max_bytes=settings.max_bytes,
        max_records=options.max_records_per_request,
        line_split=True,
    )
    return [batch.payload(True) for batch in batches]


def _ceiling_worker(
    model_dir: str,
    payloads: list[bytes],
    seconds: float,
    barrier: Barrier,
    results: Queue[tuple[float, float, int]],
) -> None:
    """Decode, then predict this process's share of the mini-batches round and round for ``seconds``."""
    from services.batch.engines import _Worker
    from services.codecs.bodies import decode_body

    # The engine's own worker: the pipeline a job's worker holds (settings, ONNX threads, limits).
    pipeline = _Worker(model_dir, CSV, CSV, None).pipeline
    decoded = [decode_body(payload, CSV) for payload in payloads]
    pipeline.predict(decode_body(b"".join(payloads[0].splitlines(keepends=True)[:64]), CSV))
    barrier.wait()
    started = time.monotonic()
    records = 0
    while time.monotonic() - started < seconds:
        for batch in decoded:
            pipeline.predict(batch)
            records += len(batch)
    results.put((started, time.monotonic(), records))


def measure_ceiling(model_dir: Path, payloads: list[bytes], workers: int, seconds: float) -> Measurement:
    """``workers`` processes started together on round-robin shares of ``payloads``: records predicted over
    the span from the first start to the last finish."""
    if len(payloads) < workers:
        raise ValueError(f"{len(payloads)} mini-batches cannot keep {workers} processes busy: sample more")
    context = multiprocessing.get_context("spawn")  # as the engine: onnxruntime must not be forked
    barrier = context.Barrier(workers)
    results: Queue[tuple[float, float, int]] = context.Queue()
    processes = [
        context.Process(
            target=_ceiling_worker, args=(str(model_dir), payloads[i::workers], seconds, barrier, results)
        )
        for i in range(workers)
    ]
    spans: list[tuple[float, float, int]] = []
    with cpu_window() as cpu:
        for process in processes:
            process.start()
        try:
            while len(spans) < workers:
                try:
                    spans.append(results.get(timeout=1))
                except queue.Empty:
                    if any(process.exitcode not in (None, 0) for process in processes):
                        raise RuntimeError("a ceiling process failed (its traceback is above)") from None
        finally:
            for process in processes:
                if len(spans) < workers:
                    process.kill()
                process.join()
    span = max(end for _, end, _ in spans) - min(start for start, _, _ in spans)
    records = sum(count for _, _, count in spans)
    sample = sum(len(payload) for payload in payloads) / MIB
    largest = max(payload.count(b"\n") for payload in payloads)
    detail = (
        f"{workers} process(es), {len(payloads)} mini-batches of ≤{largest:,} records "
        f"({sample:.1f} MB), predicted for ≥{seconds:g} s"
    )
    return Measurement("ceiling (predict only)", sample, records, span, cpu, detail)


# -- jobs -------------------------------------------------------------------------------------------------


def engine_options(source: Path, output: Path, **engine: object) -> TransformOptions:
    """The job every measurement runs: line-split CSV, MultiRecord mini-batches of the default payload
    (unless ``engine`` says otherwise)."""
    return TransformOptions.build(
        **{
            "input": str(source),
            "output": str(output),
            "split_type": "Line",
            "content_type": CSV,
            "batch_strategy": "MultiRecord",
            **engine,
        }
    )


def run_job(
    name: str, options: TransformOptions, input_mb: float, server: psutil.Process | None = None
) -> Measurement:
    """Run a fresh job (its output removed first) in this process."""
    shutil.rmtree(options.output, ignore_errors=True)
    with cpu_window(server) as cpu:
        summary = run_transform(options, progress=False)
    if not summary.succeeded:
        raise RuntimeError(f"{name}: the job failed: {summary.failed[0].reason}")
    return Measurement(name, input_mb, summary.as_dict()["totals"]["records"], cpu.wall_s, cpu)


def worker_start_s(options: TransformOptions, payload: bytes) -> float:
    """Seconds from opening the in-process engine to an answer from each of its workers: spawning them and
    loading the model, which a job pays before its first answer and an endpoint paid before the job."""
    assert options.model is not None and options.workers is not None
    started = time.perf_counter()
    engine = InProcessEngine(options.model, content_type=CSV, accept=CSV, keys=None, workers=options.workers)
    try:
        for future in [engine.submit(payload) for _ in range(options.workers)]:
            future.result()
    finally:
        engine.close()
    return time.perf_counter() - started


def measure_inprocess(name: str, options: TransformOptions, input_mb: float) -> Measurement:
    """The job on the in-process engine, and apart from it how long its workers take to start."""
    with open(options.input, "rb") as stream:
        first = stream.readline()
    measured = run_job(name, options, input_mb)
    measured = replace(measured, start_s=worker_start_s(options, first))
    detail = f"workers start in {measured.start_s:.1f} s, {measured.steady_rate:,.0f} records/s once started"
    return replace(measured, detail=detail)


def measure_endpoint(
    name: str, model_dir: Path, source: Path, input_mb: float, output: Path, log: Path, **job: object
) -> Measurement:
    """The job against ``tripod serve`` of ``model_dir`` on loopback, with the concurrency it advises; the
    server's CPU counts as ours, its start is not timed (a SageMaker job starts on a running container)."""
    with running_server(model_dir, log_path=log) as server:
        advice = execution_parameters(server.url)
        options = engine_options(source, output, endpoint=server.url, **job)
        measured = run_job(name, options, input_mb, psutil.Process(server.pid))
    concurrency = advice.get("MaxConcurrentTransforms")
    detail = (
        f"MaxConcurrentTransforms {concurrency} (advised); the server started in {server.cold_start_s:.1f} s"
    )
    return replace(measured, detail=detail)


def measure_memory(model_dir: Path, source: Path, input_mb: float, output: Path, workers: int) -> Measurement:
    """``tripod transform`` as a subprocess, the summed RSS of its tree sampled every 50 ms, the peak kept;
    seconds include the interpreter's start."""
    shutil.rmtree(output, ignore_errors=True)
    command = [
        sys.executable, "-m", "tripod.cli", "transform", "--model", str(model_dir), "--input", str(source),
        "--output", str(output), "--split-type", "Line", "--content-type", CSV, "--workers", str(workers),
    ]  # fmt: skip
    peak = [0]
    done = threading.Event()
    with cpu_window() as cpu:
        child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        watched = psutil.Process(child.pid)

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], tree_rss(watched))
                time.sleep(SAMPLE_EVERY_S)

        sampler = threading.Thread(target=sample)
        sampler.start()
        _, err = child.communicate()
        done.set()
        sampler.join()
    if child.returncode != 0:
        raise RuntimeError(f"tripod transform exited {child.returncode}: {err.decode()[-2000:]}")
    summary = json.loads(next(output.rglob("summary.json")).read_text())
    records = int(summary["totals"]["records"])
    detail = f"peak RSS {peak[0] / MIB:,.0f} MiB"
    return Measurement(f"memory, {input_mb:g} MB", input_mb, records, cpu.wall_s, cpu, detail, peak[0])


# -- report -----------------------------------------------------------------------------------------------


def line(m: Measurement) -> str:
    text = (
        f"{m.name}: {m.input_mb:,.1f} MB, {m.records:,} records in {m.seconds:,.2f} s = {m.rate:,.0f} "
        f"records/s; {m.cpu}"
    )
    return f"{text}; {m.detail}" if m.detail else text


def markdown(measurements: Sequence[Measurement]) -> str:
    rows = [
        "| measurement | input MB | records | seconds | records/s | busy cores: ours / others | notes |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for m in measurements:
        wall = max(m.cpu.wall_s, 1e-9)
        cores = f"{m.cpu.own_s / wall:.2f} / {max(0.0, m.cpu.others_s) / wall:.2f}"
        rows.append(
            f"| {m.name} | {m.input_mb:,.1f} | {m.records:,} | {m.seconds:,.2f} | {m.rate:,.0f} | {cores} "
            f"| {m.detail} |"
        )
    return "\n".join(rows)


def _sizes(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.split(",") if part.strip())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="a Tripod model directory (TF-IDF)")
    parser.add_argument("--data", type=Path, required=True, help="prepared reviews (Parquet or CSV)")
    parser.add_argument("--column", default="review_body", help="the text column of --data")
    parser.add_argument("--work", type=Path, default=Path("/tmp/tripod-batch-bench"), help="inputs, outputs")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of about a minute")
    parser.add_argument("--mb", type=float, help=f"in-process input, MiB (default {FULL.mb:g})")
    parser.add_argument("--endpoint-mb", type=float, help=f"endpoint input (default {FULL.endpoint_mb:g})")
    parser.add_argument(
        "--single-mb", type=float, help=f"SingleRecord endpoint input (default {FULL.single_mb:g})"
    )
    parser.add_argument("--rss-mb", help="comma-separated input sizes for peak memory (default 100,1024)")
    parser.add_argument("--ceiling-records", type=int, help="records the ceiling predicts (default 200,000)")
    parser.add_argument("--ceiling-seconds", type=float, help="how long the ceiling predicts (default 10)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="default: the cores")
    parser.add_argument("--minilm-model", type=Path, help="a MiniLM model directory: compare its engines too")
    parser.add_argument("--minilm-mb", type=float, help=f"MiniLM input (default {FULL.minilm_mb:g})")
    parser.add_argument(
        "--minilm-records",
        type=int,
        default=MINILM_RECORDS,
        help=f"MiniLM records per mini-batch, both engines (default {MINILM_RECORDS})",
    )
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL
    sizes = Sizes(
        mb=args.mb or preset.mb,
        endpoint_mb=args.endpoint_mb or preset.endpoint_mb,
        rss_mb=_sizes(args.rss_mb) if args.rss_mb else preset.rss_mb,
        ceiling_records=args.ceiling_records or preset.ceiling_records,
        ceiling_seconds=args.ceiling_seconds or preset.ceiling_seconds,
        single_mb=args.single_mb or preset.single_mb,
        minilm_mb=args.minilm_mb or preset.minilm_mb,
    )
    work = args.work.resolve()
    model = args.model.resolve()
    work.mkdir(parents=True, exist_ok=True)
    results: list[Measurement] = []

    def report(m: Measurement) -> None:
        results.append(m)
        print(line(m), flush=True)

    load_before = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load_before[0]:.2f} (1 min) before", flush=True)
    source, records = build_input(args.data, args.column, sizes.mb, work)
    print(f"input: {sizes.mb:g} MB, {records:,} records ({source})", flush=True)

    options = engine_options(source, work / "out" / "inprocess", model=model, workers=args.workers)
    # At least one full mini-batch per process, or the ceiling would count idle processes.
    sample = max(sizes.ceiling_records, args.workers * options.max_records_per_request)
    payloads = job_payloads(options, sample)
    # The ceiling moves by up to 20 % between minutes on a shared VM: measured before and after the job, the
    # ratio is taken against their mean and the spread is printed beside it.
    before = measure_ceiling(model, payloads, args.workers, sizes.ceiling_seconds)
    report(replace(before, name="ceiling (predict only), before"))
    inprocess = measure_inprocess(f"in-process engine, {args.workers} workers", options, sizes.mb)
    after = measure_ceiling(model, payloads, args.workers, sizes.ceiling_seconds)
    report(replace(after, name="ceiling (predict only), after"))
    ceiling = (before.rate + after.rate) / 2
    low, high = sorted((inprocess.rate / before.rate, inprocess.rate / after.rate))
    goal = (
        f"{inprocess.rate / ceiling:.2f}× the ceilings' mean ({low:.2f}–{high:.2f}; goal ≥ {GOAL_CEILING}×)"
    )
    report(replace(inprocess, detail=f"{goal}; {inprocess.detail}"))

    endpoint_source, _ = build_input(args.data, args.column, sizes.endpoint_mb, work)
    endpoint = measure_endpoint(
        "endpoint engine",
        model,
        endpoint_source,
        sizes.endpoint_mb,
        work / "out" / "endpoint",
        work / "serve.log",
    )
    speedup = inprocess.rate / endpoint.rate
    goal = f"in-process ×{speedup:.2f} (goal ≥ {GOAL_ENDPOINT:g}×)"
    report(replace(endpoint, detail=f"{goal}; {endpoint.detail}"))
    # SageMaker's other common set-up, one record per request: what HTTP costs when batching does not hide it.
    single_source, _ = build_input(args.data, args.column, sizes.single_mb, work)
    single = measure_endpoint(
        "endpoint engine, SingleRecord",
        model,
        single_source,
        sizes.single_mb,
        work / "out" / "endpoint-single",
        work / "serve-single.log",
        batch_strategy="SingleRecord",
    )
    report(replace(single, detail=f"in-process ×{inprocess.rate / single.rate:.1f}; {single.detail}"))

    smallest: Measurement | None = None
    for size in sizes.rss_mb:
        rss_source, _ = build_input(args.data, args.column, size, work)
        memory = measure_memory(model, rss_source, size, work / "out" / f"rss-{size:g}", args.workers)
        if smallest is None:
            smallest = memory
        else:
            growth = memory.peak_rss / smallest.peak_rss
            flat = f"×{growth:.2f} the {smallest.input_mb:g} MB peak (goal ≤ {GOAL_RSS:.2f}×)"
            memory = replace(memory, detail=f"{memory.detail}, {flat}")
        report(memory)

    if args.minilm_model is None:
        print("MiniLM: skipped (no --minilm-model)", flush=True)
    else:
        minilm = args.minilm_model.resolve()
        minilm_source, _ = build_input(args.data, args.column, sizes.minilm_mb, work)
        batch = {"max_records_per_request": args.minilm_records}
        minilm_options = engine_options(
            minilm_source, work / "out" / "minilm-inprocess", model=minilm, workers=args.workers, **batch
        )
        minilm_inprocess = measure_inprocess("MiniLM in-process engine", minilm_options, sizes.minilm_mb)
        per_batch = f"≤{args.minilm_records} records per mini-batch"
        report(replace(minilm_inprocess, detail=f"{per_batch}; {minilm_inprocess.detail}"))
        minilm_endpoint = measure_endpoint(
            "MiniLM endpoint engine",
            minilm,
            minilm_source,
            sizes.minilm_mb,
            work / "out" / "minilm-endpoint",
            work / "serve-minilm.log",
            **batch,
        )
        both = (
            f"in-process ×{minilm_inprocess.rate / minilm_endpoint.rate:.2f}, "
            f"×{minilm_inprocess.steady_rate / minilm_endpoint.rate:.2f} once started"
        )
        report(replace(minilm_endpoint, detail=f"{both}; {per_batch}; {minilm_endpoint.detail}"))

    load_after = os.getloadavg()
    print(f"machine: load average {load_after[0]:.2f} (1 min) after", flush=True)
    print()
    print(markdown(results))
    print()
    print(
        f"{os.cpu_count()} cores, {args.workers} workers; load average (1 min) {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
