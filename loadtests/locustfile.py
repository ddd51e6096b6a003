"""Locust scenarios against a running Tripod service: users sending real held-out reviews.

Each simulated user picks one of these tasks at random by weight, sends it, and checks the answer (status 200,
one prediction per record, the protocol's shape); anything else is a Locust failure, which the SLO check
(``loadtests/slo.py``) counts:

| task (Locust name) | request |
|---|---|
| ``/predict [1]`` | one review, Tripod's JSON records |
| ``/predict [N]`` | N reviews in one request |
| ``/invocations csv [N]`` | N reviews as SageMaker CSV, JSON answer |
| ``/v2 infer [N]`` | N reviews as an Open Inference Protocol ``BYTES`` tensor |
| ``/explain [M]`` | M reviews, each answer with its explanation (skipped when a server has no ``/explain`` route, checked in ``/docs.json``) |

Settings are Locust options, each also read from its environment variable (``locust --help`` lists them):

- ``TRIPOD_LOAD_SAMPLE``: JSON Lines of records keyed by the model's input columns (required;
  ``loadtests/run.py`` writes it from the held-out split);
- ``TRIPOD_LOAD_BATCH`` (N, 32) and ``TRIPOD_LOAD_EXPLAIN_BATCH`` (M, 1): records per request;
- ``TRIPOD_LOAD_WEIGHT_PREDICT`` / ``_PREDICT_BATCH`` / ``_INVOCATIONS`` / ``_OIP`` / ``_EXPLAIN``: task
  weights, 4 / 2 / 2 / 1 / 1; 0 turns a task off;
- ``TRIPOD_LOAD_MODEL``: the model name in ``/v2/models/{name}/infer`` (``reviews``);
- ``TRIPOD_LOAD_WAIT_MIN_S`` / ``_MAX_S``: think time between one user's requests (0.1 / 0.5 s);
- ``TRIPOD_LOAD_MAX_REQUESTS``: the run stops after this many requests (100,000), whatever ``--run-time``;
- ``TRIPOD_LOAD_INJECT_ERRORS``: the weight of a task whose request the server must refuse (0), to prove the
  SLO check fails.

Only loopback hosts are accepted.  Run it with ``make loadtest`` (``python -m loadtests.run``), or by hand::

    locust -f loadtests/locustfile.py --headless --host http://127.0.0.1:3000 -u 4 -r 4 -t 60s
"""

from __future__ import annotations

import csv
import io
import json
import random
import urllib.request
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

from locust import FastHttpUser, between, events

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
TASK_NAMES = ("predict", "predict_batch", "invocations", "oip", "explain")
DEFAULT_WEIGHTS = {"predict": 4, "predict_batch": 2, "invocations": 2, "oip": 1, "explain": 1}


@events.init_command_line_parser.add_listener
def _options(parser) -> None:  # type: ignore[no-untyped-def]
    group = parser.add_argument_group("Tripod load")
    group.add_argument(
        "--tripod-sample",
        env_var="TRIPOD_LOAD_SAMPLE",
        default="",
        help="JSON Lines of held-out records (keys: the model's input columns)",
    )
    group.add_argument(
        "--tripod-batch",
        env_var="TRIPOD_LOAD_BATCH",
        type=int,
        default=32,
        help="records per batched /predict, /invocations and /v2 request",
    )
    group.add_argument("--tripod-explain-batch", env_var="TRIPOD_LOAD_EXPLAIN_BATCH", type=int, default=1)
    group.add_argument(
        "--tripod-model",
        env_var="TRIPOD_LOAD_MODEL",
        default="reviews",
        help="model name in /v2/models/{name}/infer",
    )
    for name in TASK_NAMES:
        group.add_argument(
            f"--tripod-weight-{name.replace('_', '-')}",
            env_var=f"TRIPOD_LOAD_WEIGHT_{name.upper()}",
            type=int,
            default=DEFAULT_WEIGHTS[name],
            help=f"weight of the {name} task (0: off)",
        )
    group.add_argument("--tripod-wait-min-s", env_var="TRIPOD_LOAD_WAIT_MIN_S", type=float, default=0.1)
    group.add_argument("--tripod-wait-max-s", env_var="TRIPOD_LOAD_WAIT_MAX_S", type=float, default=0.5)
    group.add_argument(
        "--tripod-max-requests",
        env_var="TRIPOD_LOAD_MAX_REQUESTS",
        type=int,
        default=100_000,
        help="stop the run after this many requests",
    )
    group.add_argument(
        "--tripod-inject-errors",
        env_var="TRIPOD_LOAD_INJECT_ERRORS",
        type=int,
        default=0,
        help="weight of a task sending a request the server must refuse (tests the SLO check)",
    )


def _require_loopback(host: str) -> None:
    name = urlsplit(host).hostname or ""
    if name not in LOOPBACK_HOSTS and not name.startswith("127."):
        raise SystemExit(f"locustfile: refusing to load {name!r}: loopback addresses only")


def _has_route(host: str, route: str) -> bool:
    try:
        with urllib.request.urlopen(f"{host.rstrip('/')}/docs.json", timeout=10) as response:
            return route in json.load(response).get("paths", {})
    except (OSError, ValueError):
        return False


def _read_sample(path: str) -> list[dict[str, str]]:
    if not path:
        raise SystemExit(
            "locustfile: set TRIPOD_LOAD_SAMPLE (or --tripod-sample) to a JSON Lines file of records"
        )
    records = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    if not records:
        raise SystemExit(f"locustfile: {path} holds no records")
    return records


class Load:
    """What every user shares, set once when Locust starts (``_configure``)."""

    records: ClassVar[list[dict[str, str]]] = []
    columns: ClassVar[list[str]] = []
    batch = 32
    explain_batch = 1
    model = "reviews"
    max_requests = 100_000
    sent = 0


@events.init.add_listener
def _configure(environment, **_kwargs) -> None:  # type: ignore[no-untyped-def]
    options = environment.parsed_options
    if options is None:  # imported by a tool, not run by Locust
        return
    if environment.host:
        _require_loopback(environment.host)
    Load.records = _read_sample(options.tripod_sample)
    Load.columns = list(Load.records[0])
    Load.batch, Load.explain_batch = options.tripod_batch, options.tripod_explain_batch
    Load.model, Load.max_requests = options.tripod_model, options.tripod_max_requests
    weights = {name: getattr(options, f"tripod_weight_{name}") for name in TASK_NAMES}
    if weights["explain"] and not (environment.host and _has_route(environment.host, "/explain")):
        weights["explain"] = 0  # the service has no /explain (yet): leave it out rather than fail
    tasks = {getattr(TripodUser, name): weight for name, weight in weights.items() if weight > 0}
    if options.tripod_inject_errors > 0:
        tasks[TripodUser.injected_error] = options.tripod_inject_errors
    if not tasks:
        raise SystemExit("locustfile: every task weight is 0")
    TripodUser.tasks = [task for task, weight in tasks.items() for _ in range(weight)]
    low, high = options.tripod_wait_min_s, max(options.tripod_wait_min_s, options.tripod_wait_max_s)
    TripodUser.wait_time = between(low, high)


@events.request.add_listener
def _count(**_kwargs) -> None:  # type: ignore[no-untyped-def]
    Load.sent += 1


class TripodUser(FastHttpUser):
    """One client of the service; tasks and weights are set by ``_configure`` from the options."""

    wait_time = between(0.1, 0.5)

    def on_start(self) -> None:
        self.rng = random.Random()

    def _records(self, n: int) -> list[dict[str, str]]:
        start = self.rng.randrange(len(Load.records))
        return [Load.records[(start + i) % len(Load.records)] for i in range(n)]

    def _stop_when_done(self) -> None:
        if Load.sent >= Load.max_requests and self.environment.runner is not None:
            self.environment.runner.quit()

    def _post_json(self, path: str, name: str, body: object, n: int, answers) -> None:  # type: ignore[no-untyped-def]
        self._stop_when_done()
        with self.client.post(path, json=body, name=name, catch_response=True) as response:
            _check(response, n, answers)

    def predict(self) -> None:
        self._post_json("/predict", "/predict [1]", {"records": self._records(1)}, 1, lambda body: body)

    def predict_batch(self) -> None:
        n = Load.batch
        self._post_json("/predict", f"/predict [{n}]", {"records": self._records(n)}, n, lambda body: body)

    def invocations(self) -> None:
        self._stop_when_done()
        n = Load.batch
        rows = io.StringIO()
        csv.writer(rows, lineterminator="\n").writerows(
            [r[c] for c in Load.columns] for r in self._records(n)
        )
        with self.client.post(
            "/invocations",
            data=rows.getvalue(),
            name=f"/invocations csv [{n}]",
            headers={"content-type": "text/csv", "accept": "application/json"},
            catch_response=True,
        ) as response:
            _check(response, n, lambda body: body["predictions"])

    def oip(self) -> None:
        n = Load.batch
        records = self._records(n)
        inputs = [
            {"name": c, "shape": [n], "datatype": "BYTES", "data": [r[c] for r in records]}
            for c in Load.columns
        ]
        self._post_json(
            f"/v2/models/{Load.model}/infer",
            f"/v2 infer [{n}]",
            {"inputs": inputs},
            n,
            lambda body: next(o["data"] for o in body["outputs"] if o["name"] == "predicted_label"),
        )

    def explain(self) -> None:
        n = Load.explain_batch
        self._post_json("/explain", f"/explain [{n}]", {"records": self._records(n)}, n, _explanations)

    def injected_error(self) -> None:
        """A record without the model's field: the server must answer 422, which this task counts as a
        failure, so that a run with it proves the SLO check catches errors end to end."""
        self._post_json(
            "/predict",
            "/predict [injected error]",
            {"records": [{"no_such_field": "x"}]},
            1,
            lambda body: body,
        )


def _explanations(body: object) -> list[object]:
    """``/explain``'s rows (or KServe's ``{"explanations": [...]}``), each of which must carry its explanation."""
    rows = body if isinstance(body, list) else body["explanations"]  # type: ignore[index]
    for row in rows:
        if not row["explanation"]["classes"]:
            raise ValueError("an answer explains no class")
    return rows


def _check(response, n: int, answers) -> None:  # type: ignore[no-untyped-def]
    if response.status_code != 200:
        response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
        return
    try:
        got = answers(response.json())
    except (ValueError, KeyError, TypeError, StopIteration) as exc:
        response.failure(f"unexpected answer shape ({type(exc).__name__}: {exc})")
        return
    if len(got) != n:
        response.failure(f"expected {n} answers, got {len(got)}")
    else:
        response.success()
