"""``make bench``: Tripod's HTTP pipeline against the in-process runtime, a fused graph, services by hand.

One run measures, on the same held-out reviews and the same request bodies, throughput and latency against
concurrency of:

- ``inprocess``: the pipeline called in-process (``Pipeline.predict`` on decoded records, from threads): the
  ceiling, no HTTP, no JSON;
- ``tripod``: ``tripod serve`` with its defaults (the three ONNX stages run in the entry worker), ``POST /predict``;
- ``tripod_services``: ``tripod serve`` with ``TRIPOD_STAGES=services`` (three BentoML stage services composed with
  ``bentoml.depends``, adaptive batching);
- ``fused``: the three graphs merged into one, one BentoML service (``serving_fused_service.py``);
- ``floor``: the same route, requests and answer shape with no model (``serving_floor_service.py``): what
  BentoML, HTTP and JSON allow before any inference;
- ``sklearn``: the fitted scikit-learn pipeline pickled in one BentoML service, written as a user would
  (``serving_sklearn_service.py``, BentoML's defaults);
- with ``--minilm-model DIR`` or ``--minilm-build``: ``minilm_inprocess``, ``minilm_tripod`` and
  ``minilm_torch`` (plain ``transformers`` + PyTorch in one BentoML service, ``serving_torch_service.py``).

Each HTTP variant runs as its own server on loopback, driven by ``serving_client.py`` in a separate process
(closed loop at each concurrency level, then an open loop of single reviews at half the variant's best
throughput for the latency SLO).  The 2 cores are shared by client and server, identically for every variant.
Cold start and memory per process come from the same servers (and ``serving_footprint.py``'s helper).

Results: ``OUT/serving_results.json`` and ``.csv``, ``OUT/serving_summary.md``, and PNG plots; logs and the
generated model, sample and bodies under ``--work`` (git-ignored).

Usage:
    python benchmarks/serving_compare.py --data data/reviews.parquet [--out docs/benchmarks]
        [--work loadtests/results/bench] [--concurrency 1 2 4 8 16 32] [--seconds 4] [--batch 32]
        [--variants inprocess tripod fused sklearn] [--minilm-build | --minilm-model DIR [--minilm-hf DIR]]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(ROOT) not in sys.path:  # run as a script: make harness/ and services/ importable
    sys.path.insert(0, str(ROOT))

import serving_artifacts as artifacts  # noqa: E402
from serving_measure import (  # noqa: E402
    CHECK_RECORDS,
    bentoml_service,
    cold_starts,
    measure_inprocess,
    measure_server,
)
from serving_peers import PEERS, peer_variants, wire_of  # noqa: E402
from serving_report import (  # noqa: E402
    GOALS,
    Variant,
    goals,
    label_agreement,
    machine,
    plot,
    ratios,
    replot,
    summary_markdown,
    write_csv,
)

from harness.server import running_server  # noqa: E402

__all__ = ["GOALS", "main"]

VARIANTS = ("inprocess", "tripod", "tripod_no_access_log", "tripod_services", "fused", "sklearn", "floor")
"""Tripod's own variants and its references, in the order they run (the peers are ``--peers``)."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "reviews.parquet", help="prepared table")
    parser.add_argument("--sample", type=int, default=None, help="train the TF-IDF model on this many rows")
    parser.add_argument("--work", type=Path, default=ROOT / "loadtests" / "results" / "bench")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(VARIANTS),
        choices=list(VARIANTS),
    )
    parser.add_argument(
        "--peers",
        nargs="*",
        default=list(PEERS),
        choices=list(PEERS),
        help="peer model servers to compare (each in its own virtual environment; none: --peers)",
    )
    parser.add_argument(
        "--peer-envs", type=Path, help="where the peers' virtual environments live (default: WORK/peers)"
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--batch", type=int, default=32, help="records per batched request")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per level")
    parser.add_argument("--slo-seconds", type=float, default=10.0, help="open-loop run at half max (0: skip)")
    parser.add_argument("--cold-start-runs", type=int, default=3, help="extra tripod serve starts (0: skip)")
    minilm = parser.add_mutually_exclusive_group()
    minilm.add_argument("--minilm-model", type=Path, help="a MiniLM Tripod model directory to compare")
    minilm.add_argument("--minilm-build", action="store_true", help="fit a few-step MiniLM and compare it")
    parser.add_argument("--minilm-hf", type=Path, help="save_pretrained weights matching --minilm-model")
    parser.add_argument("--minilm-concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--minilm-batch", type=int, default=8, help="records per batched MiniLM request")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument(
        "--replot", type=Path, help="only redraw the PNGs of this serving_results.json into --out"
    )
    args = parser.parse_args(argv)
    if args.minilm_hf and not args.minilm_model:
        parser.error("--minilm-hf needs --minilm-model")
    if not all(1 <= c <= 256 for c in [*args.concurrency, *args.minilm_concurrency]):
        parser.error("concurrency levels must be in 1..256")
    if not 0 < args.seconds <= 120:
        parser.error("--seconds must be in (0, 120]")
    return args


def wire_bodies(
    variant: Variant, bodies: dict[int, Path], work: Path, records: list[dict[str, str]], columns: list[str]
) -> dict[int, Path]:
    """The request bodies of a variant: Tripod's, or the same records in a peer protocol's envelope."""
    wire = wire_of(variant)
    if wire.name == "records":
        return bodies
    prefix = "minilm_" if variant.name.startswith("minilm_") else ""
    return {
        n: artifacts.write_bodies(
            work / f"{prefix}bodies_{wire.name}_{n}.jsonl",
            records,
            n,
            envelope=lambda chunk, wire=wire: wire.encode(chunk, columns),
        )
        for n in bodies
    }


def minilm_variants(args: argparse.Namespace, work: Path) -> tuple[dict[str, Variant], Path]:
    from services.artifacts import ModelArtifact

    if args.minilm_build:
        built = artifacts.build_minilm(args.data, work)
    else:
        built = artifacts.MiniLMArtifacts(
            args.minilm_model.resolve(), args.minilm_hf, args.minilm_hf is not None
        )
    manifest = ModelArtifact.from_directory(built.model_dir).manifest
    text = manifest.inputs[0].name
    max_length = manifest.stages["transformer"].outputs[0].shape[-1]
    if built.hf_dir is not None:
        hf_env = {"HF_MODEL_DIR": str(built.hf_dir)}
    else:  # the bundled base weights with a fresh head: the same computation, not the same answers
        from training.automl.families.minilm import model_path

        hf_env = {"HF_MODEL_DIR": str(model_path()), "HF_LABELS": ",".join(manifest.labels)}
    hf_env |= {"HF_MAX_LENGTH": str(max_length), "HF_INPUT": text, "HF_HUB_OFFLINE": "1"}
    candidate = manifest.candidate
    peers = peer_variants(
        args.peers,
        model_dir=built.model_dir,
        model_name=manifest.name,
        work=work,
        envs=args.peer_envs or work / "peers",
        sklearn_pickle=None,
        columns=[column.name for column in manifest.inputs],
        prefix="minilm_",
    )
    variants = {
        "minilm_inprocess": Variant("minilm_inprocess", "MiniLM in-process ONNX", None),
        "minilm_tripod": Variant(
            "minilm_tripod",
            "MiniLM Tripod HTTP (stages in the entry worker)",
            lambda log: running_server(built.model_dir, log_path=log),
        ),
        "minilm_torch": Variant(
            "minilm_torch",
            "MiniLM hand-written transformers",
            lambda log: bentoml_service("serving_torch_service:HandWrittenTransformers", hf_env, log),
        ),
        # PyTorch's default (one intra-op thread per core) oversubscribes 2 cores shared with the client; one
        # thread, like each of Tripod's onnxruntime stages, shows the same service without that penalty.
        "minilm_torch1": Variant(
            "minilm_torch1",
            "MiniLM hand-written transformers, 1 thread",
            lambda log: bentoml_service(
                "serving_torch_service:HandWrittenTransformers", {**hf_env, "HF_TORCH_THREADS": "1"}, log
            ),
        ),
    }
    variants |= peers
    variants["minilm_tripod"].extra["model"] = {
        "family": candidate.family,
        "max_length": max_length,
        "same_weights": built.same_weights,
        "quantized": artifacts.is_quantized(built.model_dir / manifest.stages["classifier"].file),
    }
    return variants, built.model_dir


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from services.artifacts import ModelArtifact

    args = parse_args(argv)
    if args.replot:
        return replot(args.replot, args.out)
    work, out = args.work.resolve(), args.out.resolve()
    logs = work / "logs"
    for directory in (work, out, logs):
        directory.mkdir(parents=True, exist_ok=True)
    load_before = [round(x, 2) for x in os.getloadavg()]
    started = time.monotonic()
    print(f"load average {load_before}; preparing artifacts under {work}", flush=True)
    tfidf = artifacts.prepare_tfidf(args.data, work, sample=args.sample)
    shapes = sorted({1, args.batch})
    bodies = {n: artifacts.write_bodies(work / f"bodies_{n}.jsonl", tfidf.records, n) for n in shapes}

    all_variants = {
        "inprocess": Variant("inprocess", "in-process ONNX runtime (ceiling)", None),
        "tripod": Variant(
            "tripod",
            "Tripod HTTP (3 stages in the entry worker, default)",
            lambda log: running_server(tfidf.model_dir, log_path=log),
        ),
        "tripod_no_access_log": Variant(
            "tripod_no_access_log",
            "Tripod HTTP, no access line (TRIPOD_ACCESS_LOG=false)",
            lambda log: running_server(tfidf.model_dir, env={"TRIPOD_ACCESS_LOG": "false"}, log_path=log),
        ),
        "tripod_services": Variant(
            "tripod_services",
            "Tripod HTTP (3 stage services)",
            lambda log: running_server(tfidf.model_dir, env={"TRIPOD_STAGES": "services"}, log_path=log),
        ),
        "fused": Variant(
            "fused",
            "fused graph, one service",
            lambda log: bentoml_service(
                "serving_fused_service:FusedPipeline",
                {"FUSED_ONNX": str(tfidf.fused_onnx), "FUSED_MODEL_DIR": str(tfidf.model_dir)},
                log,
            ),
        ),
        "floor": Variant(
            "floor",
            "BentoML floor: same requests, no model",
            lambda log: bentoml_service("serving_floor_service:Floor", {}, log),
        ),
        "sklearn": Variant(
            "sklearn",
            "hand-written scikit-learn service",
            lambda log: bentoml_service(
                "serving_sklearn_service:HandWrittenSklearn",
                {"SKLEARN_PIPELINE": str(tfidf.sklearn_pickle)},
                log,
            ),
        ),
    }
    variants = {name: all_variants[name] for name in all_variants if name in args.variants}
    manifest = ModelArtifact.from_directory(tfidf.model_dir).manifest
    columns = [column.name for column in manifest.inputs]
    variants |= peer_variants(
        args.peers,
        model_dir=tfidf.model_dir,
        model_name=manifest.name,
        work=work,
        envs=args.peer_envs or work / "peers",
        sklearn_pickle=tfidf.sklearn_pickle,
        columns=columns,
    )
    for variant in variants.values():
        print(f"{variant.label}:", flush=True)
        if variant.start is None:
            measure_inprocess(variant, tfidf.model_dir, tfidf.records, shapes, args.concurrency, args.seconds)
        else:
            measure_server(
                variant,
                wire_bodies(variant, bodies, work, tfidf.records, columns),
                args.concurrency,
                args.seconds,
                logs,
                args.slo_seconds,
                tfidf.records[:CHECK_RECORDS],
            )
    cold = cold_starts(tfidf.model_dir, args.cold_start_runs, logs) if "tripod" in variants else []
    if cold:
        print(f"tripod serve cold start to /readyz: {[round(c, 2) for c in cold]} s", flush=True)

    minilm_model = None
    if args.minilm_model or args.minilm_build:
        extra, minilm_model = minilm_variants(args, work)
        minilm_columns = [c.name for c in ModelArtifact.from_directory(minilm_model).manifest.inputs]
        mshapes = sorted({1, args.minilm_batch})
        mbodies = {
            n: artifacts.write_bodies(work / f"minilm_bodies_{n}.jsonl", tfidf.records, n) for n in mshapes
        }
        for variant in extra.values():
            print(f"{variant.label}:", flush=True)
            if variant.start is None:
                measure_inprocess(
                    variant, minilm_model, tfidf.records, mshapes, args.minilm_concurrency, args.seconds
                )
            else:
                measure_server(
                    variant,
                    wire_bodies(variant, mbodies, work, tfidf.records, minilm_columns),
                    args.minilm_concurrency,
                    args.seconds,
                    logs,
                    slo_seconds=0,
                    check_records=tfidf.records[:CHECK_RECORDS],
                )
        variants |= extra

    ratio = ratios(variants, args.batch) | ratios(variants, args.minilm_batch, prefix="minilm_")
    agreement = label_agreement(variants)
    results = {
        "machine": machine(),
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.monotonic() - started, 1),
        "seconds": args.seconds,
        "batch": args.batch,
        "minilm_batch": args.minilm_batch,
        "model_dir": str(tfidf.model_dir),
        "minilm_model_dir": str(minilm_model) if minilm_model else None,
        "cold_start_s": cold,
        "ratios": ratio,
        "label_agreement": agreement,
        "goals": goals(variants, ratio, cold),
        "variants": {name: {"label": v.label, "points": v.points, **v.extra} for name, v in variants.items()},
    }
    (out / "serving_results.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    write_csv(out / "serving_results.csv", variants)
    summary = summary_markdown(results, variants, args.batch)
    (out / "serving_summary.md").write_text(summary)
    if not args.no_plots:
        subtitle = (
            f"{results['machine']['cores']} cores shared by client and server; 1-min load average "
            f"{load_before[0]} at start, {results['load_after'][0]} at end"
        )
        written = plot(out, variants, ratio, subtitle)
        if minilm_model:
            written += plot(out, variants, ratio, subtitle, prefix="minilm_")
        results["plots"] = [str(p) for p in written]
    print("\n" + summary, flush=True)
    print(f"results in {out} ({results['wall_s']:.0f} s)", flush=True)
    return results


if __name__ == "__main__":
    main()
