"""Production variants in the entry service: route each request, name the variant in the answer, feed shadows.

:class:`VariantMiddleware` (outside every other Tripod middleware but the traffic metrics) chooses the variant
of an inference request (``services/monitoring/variants.py`` says how), stores it in
:data:`~services.monitoring.variants.REQUEST` for the request's task, and adds
``X-Amzn-Invoked-Production-Variant`` to the answer.  Every route reads its pipeline from there
(:class:`~services.http.state.ServingState`), so ``/predict``, ``/invocations``, OIP and the explanation
routes all follow the choice without knowing about variants.  An OIP path naming a version
(``/v2/models/{name}/versions/{version}/…``) pins the variant of that name (or the one variant serving that
model version).  A name that is not a variant is a JSON 400, as SageMaker answers an unknown
``TargetVariant``.

Shadows: while the request runs, :class:`ShadowInputs` (a pipeline observer of every answering variant) keeps
the validated columns of each call; once the answer has been sent, the middleware starts one task per shadow
that predicts the same columns.  Its answer goes to data capture (under the shadow's name, the request's
input, the predictions as ``/predict`` JSON) and to the metrics, never to the client; at most
``TRIPOD_SHADOW_MAX_IN_FLIGHT`` shadow calls run at once in a worker, more are dropped and counted
(``tripod_shadow_dropped_total``), so a slow shadow cannot pile up work behind the variants that answer.

Weights change at run time: :class:`VariantsWatcher` re-reads the variants file every
``TRIPOD_MODEL_POLL_S`` seconds and swaps the routing table (one assignment; requests in flight keep their
variant).  Every worker reads the same file, so all of them follow — a mounted ConfigMap on Kubernetes.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from services.codecs.answers import encode_json
from services.errors import TripodError, UnknownVariant
from services.http.errors import send_json_error
from services.http.swap import ModelSlot
from services.monitoring import capture
from services.monitoring.metrics import (
    INVOKED_VARIANT_HEADER,
    NOT_WORK,
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
)
from services.monitoring.variants import DEFAULT_VARIANT, REQUEST, Routed, VariantTable, read_variants
from services.runtime.pipeline import Call, Observer
from services.runtime.predictions import PredictionBatch

logger = logging.getLogger("tripod.variants")

TARGET_HEADERS = (b"x-amzn-sagemaker-target-variant", b"x-tripod-target-variant")
STICKY_HEADER = b"x-tripod-variant-key"
_VERSIONS = "/versions/"


@dataclass(eq=False)
class Variant:
    """One variant of this worker: its name and the slot holding its pipeline (swapped when its pointer
    moves, like a single model's)."""

    name: str
    slot: ModelSlot
    shadow: bool = False

    def __post_init__(self) -> None:
        self.header = (INVOKED_VARIANT_HEADER, self.name.encode("ascii"))
        """``X-Amzn-Invoked-Production-Variant`` naming this variant, encoded once."""


class Variants:
    """Every variant of a worker and the table that routes among them.

    Args:
        variants: answering variants first in file order, then shadows.
        weights: weight of each answering variant.
        seed: the random choice's seed (tests); None draws from the OS.
        shadow_limit: shadow calls running at once, at most.
        on_shadow_dropped: called with the shadow's name when a copy is dropped (metrics).
    """

    def __init__(
        self,
        variants: Sequence[Variant],
        weights: dict[str, float],
        *,
        seed: int | None = None,
        shadow_limit: int = 32,
        on_shadow_dropped: Callable[[str], None] = lambda _name: None,
    ) -> None:
        self.by_name = {variant.name: variant for variant in variants}
        self.shadows = [variant for variant in variants if variant.shadow]
        for shadow in self.shadows:  # a shadow predicts the columns an answering variant validated
            for variant in variants:
                if (
                    not variant.shadow
                    and variant.slot.pipeline.graphs.inputs != shadow.slot.pipeline.graphs.inputs
                ):
                    raise TripodError(
                        f"shadow variant {shadow.name!r} takes other input columns than {variant.name!r}: "
                        f"{shadow.slot.pipeline.input_names} vs {variant.slot.pipeline.input_names}"
                    )
        self.table = VariantTable.build(weights, [variant.name for variant in self.shadows])
        self.default = self.by_name[self.table.names[0]]
        """The variant read outside a request (start-up, the OIP repository index)."""
        self.shadow_limit = shadow_limit
        self.on_shadow_dropped = on_shadow_dropped
        self._random = random.Random(seed)
        self._shadow_calls = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def answering(self) -> list[Variant]:
        return [self.by_name[name] for name in self.table.names]

    def versions(self) -> list[str]:
        """The OIP versions of the model: the answering variants' names, or, for a server without a variants
        file (its one variant is :data:`DEFAULT_VARIANT`), the model's version as before variants existed."""
        if self.table.names == (DEFAULT_VARIANT,):
            return [self.default.slot.pipeline.manifest.version]
        return list(self.table.names)

    def set_weights(self, weights: dict[str, float]) -> None:
        """Replace the routing table; the set of variants cannot change while serving.

        Raises:
            TripodError: other variant names than the server started with, or no weight above 0.
        """
        if set(weights) != set(self.table.names):
            raise TripodError(
                f"the variants changed from {sorted(self.table.names)} to {sorted(weights)}: "
                "only weights change while serving, restart to change variants"
            )
        self.table = VariantTable.build(weights, self.table.shadows)

    def route(self, headers: Iterable[tuple[bytes, bytes]], path: str) -> Variant:
        """The variant of a request: named (header, or an OIP version in the path), sticky, else drawn.

        Raises:
            UnknownVariant: the request names no variant of this server, or a shadow.
        """
        table = self.table
        target = key = None
        for name, value in headers:  # ASGI header names are lower-case
            if name in TARGET_HEADERS:
                target = value.decode("latin-1")
            elif name == STICKY_HEADER:
                key = value.decode("latin-1")
        if target is not None:
            return self.by_name[table.pinned(target)]
        if _VERSIONS in path and (pinned := self._by_version(path)) is not None:
            return pinned
        if key is not None:
            return self.by_name[table.sticky(key)]
        return self.by_name[table.choose(self._random)]

    def _by_version(self, path: str) -> Variant | None:
        """The variant an OIP ``…/versions/{version}/…`` path names: a variant name, else the one answering
        variant serving that model version (None: the route answers 404 for an unknown version)."""
        version = path.split(_VERSIONS, 1)[1].split("/", 1)[0]
        if version in self.table.names:
            return self.by_name[version]
        serving = [v for v in self.answering if v.slot.pipeline.manifest.version == version]
        return serving[0] if len(serving) == 1 else None

    # -- shadows ----------------------------------------------------------------------------------------------

    def start_shadows(self, routed: Routed) -> None:
        """Start the shadows' copies of a request that has been answered (never awaited by the request)."""
        loop = asyncio.get_running_loop()
        for shadow in self.shadows:
            if self._shadow_calls >= self.shadow_limit:
                self.on_shadow_dropped(shadow.name)
                continue
            self._shadow_calls += 1
            task = loop.create_task(self._shadow(shadow, routed))
            self._tasks.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(self._tasks.discard)

    async def _shadow(self, shadow: Variant, routed: Routed) -> None:
        try:
            pipeline = shadow.slot.pipeline
            for route, columns in routed.inputs:
                batch = await pipeline.predict_columns_async(columns, Call(route))
                self._capture(shadow, routed, batch)
        except Exception:  # a shadow's failure is the shadow's: log it, never disturb serving
            logger.exception("shadow variant %s failed on a copy of a %s request", shadow.name, routed.name)
        finally:
            self._shadow_calls -= 1

    @staticmethod
    def _capture(shadow: Variant, routed: Routed, batch: PredictionBatch) -> None:
        writer, exchange = capture.WRITER, routed.exchange
        if writer is None or exchange is None:
            return
        answer = encode_json(batch.records())
        writer.offer(replace(exchange, variant=shadow.name, answer_type="application/json", answer=answer))

    async def drain_shadows(self) -> None:
        """Wait for the shadow calls running now (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class ShadowInputs(Observer):
    """Keeps each call's validated columns on the current request, for its shadows (an observer of every
    answering variant's pipeline when shadows exist).  It may run on a worker thread: the request's context
    travels there with ``asyncio.to_thread``."""

    def call_done(self, call: Call, batch: PredictionBatch) -> None:
        routed = REQUEST.get()
        if routed is not None and call.columns is not None:
            routed.inputs.append((call.route, call.columns))


VARIANTS: Variants | None = None
"""This worker's variants, set by the entry service."""


class VariantMiddleware:
    """Routes each inference request to a variant and names it in the answer (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        variants = VARIANTS
        if variants is None or scope["type"] != "http" or scope["path"] in NOT_WORK:
            await self.app(scope, receive, send)
            return
        try:
            variant = variants.route(scope["headers"], scope["path"])
        except UnknownVariant as exc:
            await send_json_error(send, exc.status_code, str(exc))
            return
        routed = Routed(variant.name, variant.slot.pipeline)
        named = variant.header

        async def send_named(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), named]
            await send(message)

        token = REQUEST.set(routed)
        try:
            await self.app(scope, receive, send_named)
        finally:
            REQUEST.reset(token)
        if routed.inputs and variants.shadows:
            variants.start_shadows(routed)


class VariantsWatcher:
    """A daemon thread that re-reads the variants file and applies new weights (see the module docstring).

    A file that no longer parses, or that changes the set of variants, is refused: the weights in use stay,
    and the log says why once per change of the file."""

    def __init__(
        self,
        variants: Variants,
        path: Path,
        *,
        interval_s: float,
        on_refused: Callable[[str], None] = lambda _reason: None,
    ) -> None:
        self.variants, self.path, self.interval_s = variants, path, interval_s
        self.on_refused = on_refused
        self._seen = self._stamp()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tripod-variants-watcher", daemon=True)

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def check(self) -> bool:
        """Re-read the file if it changed; returns whether new weights were applied."""
        stamp = self._stamp()
        if stamp == self._seen:
            return False
        self._seen = stamp
        try:
            weights = read_variants(self.path).weights
            table = self.variants.table
            before = {name: round(table.share(name), 4) for name in table.names}
            self.variants.set_weights(weights)
        except TripodError as exc:
            logger.warning("variant weights unchanged: %s", exc)
            self.on_refused(str(exc))
            return False
        logger.info("variant weights now %s (shares were %s)", weights, before)
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.check()
