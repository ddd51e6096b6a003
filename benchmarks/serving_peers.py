"""The model servers a user would pick instead of Tripod, as variants of the serving benchmark.

Each peer serves the *same* exported model (the three ONNX stages through ``peers/onnx_pipeline.py``, or for
MLServer's scikit-learn runtime the same fitted pipeline) from a virtual environment of its own, created here
from a fully pinned requirements file (``peers/requirements/<env>.txt``) — its packages never enter Tripod's
``.venv``.  Environments live under ``<work>/peers/<env>`` and are rebuilt only when their requirements change.

The peers and the settings chosen for each (as its own documentation recommends for production on a 2-core
CPU machine; docs/benchmarks.md "Against the peers" gives the reasons and sources):

- ``mlserver_sklearn``: MLServer 1.7.1 with its scikit-learn runtime, 2 parallel workers, adaptive batching
  (32 requests or 10 ms), Open Inference Protocol with the ``pd`` content type;
- ``mlserver_onnx``: the same server with a custom runtime over the ONNX stages, Open Inference Protocol;
- ``kserve_v1`` / ``kserve_v2``: KServe 0.21's Python model server (``kserve.Model`` over the ONNX stages),
  2 uvicorn workers, V1 and V2 protocols of the same server;
- ``ray``: Ray Serve 2.60, one replica of one CPU with ``@serve.batch`` (64 records, 2 ms), the same
  ``/predict`` body as Tripod;
- ``pytriton``: PyTriton 0.7 (Triton 2.51's server through its Python binding), dynamic batching up to 64.

Every peer is checked to answer the in-process runtime's labels on the held-out check records, so the
comparison is of the same model.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PEERS_DIR = BENCH / "peers"
if str(ROOT) not in sys.path:  # run as a script: make harness/ importable
    sys.path.insert(0, str(ROOT))
if str(PEERS_DIR) not in sys.path:
    sys.path.insert(0, str(PEERS_DIR))

from serving_report import Variant  # noqa: E402
from wire import WIRES, Wire  # noqa: E402

from harness.server import RunningServer, free_port, running_command  # noqa: E402


@dataclass(frozen=True)
class Peer:
    """One peer variant: which environment and program serve it, and how it is reached."""

    name: str
    label: str
    env: str
    """``peers/requirements/<env>.txt``: the environment it runs in."""
    app: str
    """The program in ``peers/`` that starts it."""
    args: tuple[str, ...]
    route: str
    """The inference path; ``{model}`` is the model's name."""
    ready: str
    """A GET path that answers 200 once the model answers."""
    wire: str
    """How its protocol carries records (``peers/wire.py``)."""
    onnx: bool = True
    """Serves the ONNX stages (so the MiniLM model too); False: the fitted scikit-learn pipeline."""


PEERS: dict[str, Peer] = {
    peer.name: peer
    for peer in (
        Peer(
            "mlserver_sklearn",
            "MLServer, scikit-learn runtime (2 workers, adaptive batching)",
            "mlserver",
            "mlserver_app.py",
            ("--runtime", "sklearn"),
            "/v2/models/{model}/infer",
            "/v2/models/{model}/ready",
            "v2_pandas",
            onnx=False,
        ),
        Peer(
            "mlserver_onnx",
            "MLServer, custom ONNX runtime (2 workers, adaptive batching)",
            "mlserver",
            "mlserver_app.py",
            ("--runtime", "onnx"),
            "/v2/models/{model}/infer",
            "/v2/models/{model}/ready",
            "v2",
        ),
        Peer(
            "kserve_v1",
            "KServe model server, V1 (2 workers)",
            "kserve",
            "kserve_app.py",
            (),
            "/v1/models/{model}:predict",
            "/v1/models/{model}",
            "v1",
        ),
        Peer(
            "kserve_v2",
            "KServe model server, V2 (2 workers)",
            "kserve",
            "kserve_app.py",
            (),
            "/v2/models/{model}/infer",
            "/v2/models/{model}/ready",
            "v2",
        ),
        Peer(
            "ray",
            "Ray Serve, @serve.batch (1 replica)",
            "ray",
            "ray_app.py",
            (),
            "/predict",
            "/readyz",
            "records",
        ),
        Peer(
            "pytriton",
            "PyTriton (Triton server), dynamic batching",
            "pytriton",
            "pytriton_app.py",
            (),
            "/v2/models/{model}/infer",
            "/v2/models/{model}/ready",
            "v2",
        ),
    )
}


def requirements(env: str) -> Path:
    return PEERS_DIR / "requirements" / f"{env}.txt"


def ensure_env(env: str, root: Path) -> Path:
    """The python of the peer environment ``env`` under ``root``, (re)built when its requirements changed."""
    pinned = requirements(env)
    digest = hashlib.sha256(pinned.read_bytes()).hexdigest()
    directory = root / env
    marker = directory / "requirements.sha256"
    python = directory / "bin" / "python"
    if marker.is_file() and marker.read_text().strip() == digest and python.exists():
        return python
    if directory.exists():
        shutil.rmtree(directory)
    print(f"creating the {env} environment under {directory} (pinned: {pinned.name})", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True)
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(pinned)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"installing {pinned} failed:\n{done.stderr[-3000:]}")
    marker.write_text(digest + "\n")
    return python


def environment_mib(env: str, root: Path) -> float:
    """Disk size of a peer's environment (what installing it costs)."""
    total = sum(
        path.stat().st_size for path in (root / env).rglob("*") if path.is_file() and not path.is_symlink()
    )
    return total / 2**20


@contextmanager
def running_peer(
    peer: Peer,
    python: Path,
    model_dir: Path,
    model_name: str,
    work: Path,
    log: Path,
    sklearn_pickle: Path | None,
) -> Iterator[RunningServer]:
    """Start a peer on a free loopback port and wait until its model answers."""
    port = free_port()
    command = [str(python), str(PEERS_DIR / peer.app), "--model-dir", str(model_dir), "--port", str(port)]
    command += list(peer.args)
    if peer.app == "mlserver_app.py":
        repo = work / f"mlserver-{peer.name}"
        command += ["--repo", str(repo)]
        if not peer.onnx:
            assert sklearn_pickle is not None
            command += ["--sklearn-pickle", str(sklearn_pickle)]
    env = {"RAY_USAGE_STATS_ENABLED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    ready = peer.ready.format(model=model_name)
    with running_command(command, port, env=env, log_path=log, ready_path=ready) as server:
        yield server


def peer_variants(
    names: Sequence[str],
    *,
    model_dir: Path,
    model_name: str,
    work: Path,
    envs: Path,
    sklearn_pickle: Path | None,
    columns: Sequence[str],
    prefix: str = "",
) -> dict[str, Variant]:
    """The chosen peers as benchmark variants (environments built first under ``envs``, so start-up is not
    install time)."""
    root = envs
    variants = {}
    for name in names:
        peer = PEERS[name]
        if prefix and not peer.onnx:
            continue  # the MiniLM model exists only as ONNX stages
        python = ensure_env(peer.env, root)

        def start(log: Path, peer: Peer = peer, python: Path = python) -> object:
            return running_peer(peer, python, model_dir, model_name, work, log, sklearn_pickle)

        variant = Variant(prefix + peer.name, peer.label, start)
        variant.extra["peer"] = True
        variant.extra["route"] = peer.route.format(model=model_name)
        variant.extra["wire"] = peer.wire
        variant.extra["columns"] = list(columns)
        variant.extra["install_mib"] = round(environment_mib(peer.env, root))
        variants[variant.name] = variant
    return variants


def wire_of(variant: Variant) -> Wire:
    """The protocol envelope of a variant (Tripod's own ``records`` for Tripod's variants)."""
    return WIRES[variant.extra.get("wire", "records")]
