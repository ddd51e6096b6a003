"""Shared fixtures: the bundled data, prepared once, and one small model trained from it.

Test models are trained here on a stratified sample of the bundled reviews; nothing is downloaded.  The
session-scoped ``trained_model_dir`` is the model every service test serves.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_REVIEWS = ROOT / "data" / "womens_clothing_ecommerce_reviews.csv.gz"
TARGET = "sentiment"
TEXT_COLUMN = "review_body"
SAMPLE_ROWS = 2000


@pytest.fixture(scope="session")
def prepared_reviews() -> pd.DataFrame:
    """The bundled reviews with sentiment labels (22,641 rows); treat as read-only."""
    from training.data import load_table, prepare_reviews

    return prepare_reviews(load_table(BUNDLED_REVIEWS))


@pytest.fixture(scope="session")
def prepared_reviews_path(prepared_reviews: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The prepared reviews as Parquet, what ``tripod prepare`` writes."""
    path = tmp_path_factory.mktemp("data") / "reviews.parquet"
    prepared_reviews.to_parquet(path, index=False)
    return path


@pytest.fixture(scope="session")
def trained_model_dir(prepared_reviews_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model version directory (``.../reviews/v1``) trained on 2,000 reviews and exported with parity."""
    from training.train import run_training

    root = tmp_path_factory.mktemp("models") / "reviews"
    return run_training(
        prepared_reviews_path, TARGET, [TEXT_COLUMN], root, seed=42, sample=SAMPLE_ROWS, progress=False
    )
