"""Balancing: down-sample a table so that every class (or facet × class cell) has as many rows as the smallest."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from training.bias.specs import BiasError, FacetSpec, facet_groups, plain_number
from training.data import require_columns

BalanceBy = Literal["class", "facet-class"]


def balance(
    frame: pd.DataFrame,
    label: str,
    *,
    by: BalanceBy = "class",
    facet: FacetSpec | None = None,
    seed: int = 42,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Down-sample so that every class (or every facet × class cell) has as many rows as the smallest one.

    Rows with a missing label (or, by facet × class, a missing facet) are dropped and counted.  The kept rows
    keep their original order and index.

    Returns:
        ``(balanced frame, {"by", "rows_before", "rows_after", "dropped_missing", "cells_before", "cells_after"})``.

    Raises:
        BiasError: facet × class without a facet, an empty cell, or a label with one class.
    """
    if by not in ("class", "facet-class"):
        raise BiasError(f"--by must be class or facet-class, not {by!r}")
    require_columns(frame, [label] + ([facet.name] if facet else []))
    if len(frame) == 0:
        raise BiasError("the table has no rows")
    keys = pd.DataFrame({"label": frame[label].astype(object)}, index=frame.index)
    if by == "facet-class":
        if facet is None:
            raise BiasError("--by facet-class needs a --facet")
        groups = facet_groups(frame[facet.name], facet, max_values=10_000)
        if facet.threshold is not None:
            names = np.array([f"<= {plain_number(facet.threshold)}", groups.names[0]], dtype=object)
        else:
            names = np.array(groups.names, dtype=object)
        keys["facet"] = np.where(groups.codes >= 0, names[np.clip(groups.codes, 0, None)], None)
    usable = keys.notna().all(axis=1)
    keys = keys[usable]
    cells = keys.value_counts()
    if by == "class" and len(cells) < 2:
        raise BiasError(f"label {label!r} has {len(cells)} class(es); balancing needs at least two")
    if by == "facet-class":
        full = pd.MultiIndex.from_product(
            [sorted(keys["label"].unique(), key=str), sorted(keys["facet"].unique(), key=str)],
            names=["label", "facet"],
        )
        cells = keys.value_counts().reindex(full, fill_value=0)
        empty = cells[cells == 0]
        if len(empty):
            assert facet is not None  # facet × class without a facet was refused above
            cls, value = empty.index[0]
            raise BiasError(
                f"no rows with {label}={cls!r} and {facet.name}={value!r} (and {len(empty) - 1} more empty "
                "cell(s)); facet × class balancing needs every combination"
            )
    smallest = int(cells.min())
    columns = list(keys.columns)
    kept = (
        keys.groupby(columns, sort=False, dropna=False, group_keys=False)
        .sample(n=smallest, random_state=seed)
        .index
    )
    balanced = frame.loc[frame.index.isin(kept)]
    after = keys.loc[keys.index.isin(kept)].value_counts()

    def cell_records(series: pd.Series) -> list[dict[str, Any]]:
        return [
            dict(zip(columns, (k if isinstance(k, tuple) else (k,)), strict=True), rows=int(v))
            for k, v in series.sort_index().items()
        ]

    summary = {
        "by": by,
        "label": label,
        "facet": facet.name if facet else None,
        "seed": seed,
        "rows_before": len(frame),
        "rows_after": len(balanced),
        "dropped_missing": int((~usable).sum()),
        "rows_per_cell": smallest,
        "cells_before": cell_records(cells),
        "cells_after": cell_records(after),
    }
    return balanced, summary
