"""Model-agnostic explanations: Shapley values of a record's parts, estimated through the model's own stages.

The players are the words of each text column (:data:`~.tokens.WORD`) and each categorical or numeric field.
A part is *absent* when its word is removed from the text (the spaces and punctuation around it stay), its
categorical value is empty (an unknown value: the one-hot encoder gives zeros) or its number is missing (the
transformer's imputer fills it in) — the same "absent" baseline as the linear explainer's.

Estimate: antithetic permutation sampling.  Each sampled order of the players is walked from the empty record
to the full one, adding one player at a time; each player is credited with the change in the model's output
when it joined.  Every order is used with its reverse, which cancels most of the sampling noise for models
that are nearly additive.  One order costs ``players - 1`` evaluations (the empty record is shared, the full
one is the prediction itself), so a budget of ``B`` evaluations allows ``2 * floor((B - 1) / (2 (G - 1)))``
orders of ``G`` players; when a record has more players than one pair of orders can afford, neighbouring words
are grouped into contiguous spans (``G ≤ (B + 1) / 2``).  Whatever the budget, each explanation adds up
exactly: the contributions of a class sum to its output for the record minus its output for the empty record
(every walk telescopes).  When every coalition of the players fits in the budget (``2^G - 1`` evaluations:
up to 6 players at the default 64), the Shapley values are computed exactly from all of them instead.  Orders come from ``numpy.random.default_rng(seed)`` per record, so the same record,
seed and budget give the same answer, in any batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.artifacts import InputColumn
from services.errors import InvalidInput
from services.runtime.explain.explanation import Explanation, Part
from services.runtime.explain.options import ExplainOptions
from services.runtime.explain.tokens import Span, remove_spans, words


@dataclass(frozen=True, slots=True)
class _Player:
    part: Part
    column: int
    removed: tuple[Span, ...]
    """Spans taken out of the column's text when the player is absent (empty for a whole field)."""


@dataclass(frozen=True)
class SamplingPlan:
    """The evaluations one record needs: run :attr:`rows` through the model, then :meth:`finish`."""

    players: Sequence[_Player]
    orders: np.ndarray
    """``(n_orders, n_players)`` player indices in the order they join."""
    rows: np.ndarray
    """``(n_evaluations, n_inputs)``: the empty record, then each order's records with 1..G-1 players."""
    details: dict[str, int]
    output: str
    exact: bool = False
    """:attr:`rows` are every coalition but the full one, by bit mask (player ``i`` is bit ``i``)."""

    def finish(self, outputs: np.ndarray, full: np.ndarray) -> Explanation:
        """The explanation from the outputs of :attr:`rows` ``(n_evaluations, n_outputs)`` and of the record
        itself ``(n_outputs,)``."""
        outputs = np.asarray(outputs, dtype=np.float64)
        full = np.asarray(full, dtype=np.float64)
        count = len(self.players)
        empty = outputs[0] if len(outputs) else full
        contributions = np.zeros((len(full), count))
        if self.exact:
            contributions = _exact_shapley(np.vstack([outputs, full]), count)
        elif count:
            steps = outputs[1:].reshape(len(self.orders), count - 1, len(full))
            for order, walk in zip(self.orders, steps, strict=True):
                chain = np.vstack([empty, walk, full])  # outputs after 0..G players joined
                contributions[:, order] += np.diff(chain, axis=0).T
            contributions /= len(self.orders)
        return Explanation(
            method="sampling",
            output=self.output,
            parts=[player.part for player in self.players],
            contributions=contributions,
            base_values=empty,
            values=full,
            details=dict(self.details),
        )


def _shares(words_per_text: Sequence[int], slots: int) -> list[int]:
    """Players per text column: every word its own player when they fit in ``slots``; otherwise one group
    each, and the remaining slots shared in proportion to the words beyond the first."""
    if sum(words_per_text) <= slots:
        return list(words_per_text)
    spare = slots - len(words_per_text)
    beyond = [count - 1 for count in words_per_text]
    total = sum(beyond) or 1
    return [1 + min(extra, spare * extra // total) for extra in beyond]


def _exact_shapley(values: np.ndarray, count: int) -> np.ndarray:
    """Shapley values ``(n_outputs, count)`` from the outputs of every coalition ``(2^count, n_outputs)``,
    indexed by bit mask: player ``i`` gets ``Σ |S|! (G-|S|-1)! / G! · (v(S ∪ i) - v(S))`` over ``S ∌ i``."""
    masks = np.arange(1 << count)
    sizes = np.array([bin(mask).count("1") for mask in masks.tolist()])
    weights = np.array(
        [math.factorial(size) * math.factorial(count - size - 1) for size in range(count)], dtype=np.float64
    ) / math.factorial(count)
    contributions = np.zeros((values.shape[1], count))
    for player in range(count):
        without = masks[(masks >> player) & 1 == 0]
        gains = values[without | (1 << player)] - values[without]
        contributions[:, player] = (weights[sizes[without]][:, None] * gains).sum(axis=0)
    return contributions


class SamplingExplainer:
    """Plans the evaluations of records of one model (its input columns and roles)."""

    method = "sampling"

    def __init__(self, inputs: Sequence[InputColumn], *, regression: bool) -> None:
        self.inputs = list(inputs)
        self.output = "value" if regression else "probability"

    def plan(self, row: np.ndarray, options: ExplainOptions) -> SamplingPlan:
        """Raises:
        InvalidInput: the record has more fields than the budget can give a player each.
        """
        budget = options.budget
        players = self._players(row, budget)
        count = len(players)
        if count and (1 << count) - 1 <= budget:
            masks = np.arange((1 << count) - 1)
            every = (masks[:, None] >> np.arange(count)) & 1
            exact_rows = [self._masked(row, players, present.astype(bool)) for present in every]
            details = {"budget": budget, "evaluations": len(exact_rows), "players": count}
            return SamplingPlan(
                players,
                np.zeros((0, count), dtype=np.int64),
                np.array(exact_rows, dtype=object).reshape(len(exact_rows), len(self.inputs)),
                {**details, "exact": True, "seed": options.seed},
                self.output,
                exact=True,
            )
        pairs = (budget - 1) // (2 * (count - 1)) if count > 1 else 0
        rng = np.random.default_rng(options.seed)
        halves = [rng.permutation(count) for _ in range(pairs)]
        orders = (
            np.array([order for half in halves for order in (half, half[::-1])], dtype=np.int64)
            if halves
            else np.zeros((1, count), dtype=np.int64)
            if count == 1
            else np.zeros((0, count), dtype=np.int64)
        )
        coalitions = [np.zeros(count, dtype=bool)] if count else []
        for order in orders:
            present = np.zeros(count, dtype=bool)
            for player in order[:-1]:
                present[player] = True
                coalitions.append(present.copy())
        rows = np.array([self._masked(row, players, present) for present in coalitions], dtype=object)
        rows = rows.reshape(len(coalitions), len(self.inputs))
        details = {
            "budget": budget,
            "evaluations": len(coalitions),
            "players": count,
            "exact": False,
            "orders": len(orders),
            "seed": options.seed,
        }
        return SamplingPlan(players, orders, rows, details, self.output)

    def _players(self, row: np.ndarray, budget: int) -> list[_Player]:
        """The record's players, words grouped into contiguous spans when one antithetic pair of orders over
        every word would cost more than ``budget``."""
        most = (budget - 1) // 2 + 1
        fields: list[_Player] = []
        texts: list[tuple[int, str, list[Span]]] = []
        for index, column in enumerate(self.inputs):
            value = row[index]
            if column.role == "text":
                found = [(token.start, token.end) for token in words(str(value))]
                if found:
                    texts.append((index, str(value), found))
            elif column.dtype == "string" and value != "":
                fields.append(_Player(Part(column.name, str(value)), index, ()))
            elif column.dtype == "float" and not np.isnan(float(value)):
                fields.append(_Player(Part(column.name, repr(float(value))), index, ()))
        if len(fields) + len(texts) > most:
            raise InvalidInput(
                f"a budget of {budget} evaluations cannot give each of {len(fields)} fields and "
                f"{len(texts)} texts a share; ask for a budget of at least {2 * (len(fields) + len(texts)) - 1}"
            )
        shares = _shares([len(spans) for _, _, spans in texts], most - len(fields))
        players: list[_Player] = []
        for (index, text, spans), share in zip(texts, shares, strict=True):
            for group in np.array_split(np.arange(len(spans)), share):
                members = tuple(spans[i] for i in group.tolist())
                start, end = members[0][0], members[-1][1]
                part = Part(self.inputs[index].name, text[start:end], ((start, end),))
                players.append(_Player(part, index, members))
        return players + fields

    def _masked(self, row: np.ndarray, players: Sequence[_Player], present: np.ndarray) -> list[object]:
        values = list(row)
        removed: dict[int, list[Span]] = {}
        for player, here in zip(players, present.tolist(), strict=True):
            if here:
                continue
            if player.removed:
                removed.setdefault(player.column, []).extend(player.removed)
            else:
                values[player.column] = "" if self.inputs[player.column].dtype == "string" else float("nan")
        for column, spans in removed.items():
            values[column] = remove_spans(str(row[column]), sorted(spans))
        return values
