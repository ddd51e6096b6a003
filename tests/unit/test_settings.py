"""Serving settings come from TRIPOD_* variables, validated once."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.errors import TripodError
from services.settings import ServingSettings


def test_defaults_serve_the_latest_reviews_model() -> None:
    settings = ServingSettings.from_env({})
    assert settings.model_dir == Path("models/reviews/latest").absolute()
    assert settings.max_request_bytes == 6 * 1024 * 1024


def test_variables_override_fields_and_round_trip_through_environ() -> None:
    settings = ServingSettings.from_env({"TRIPOD_MAX_BATCH_SIZE": "32", "TRIPOD_MODEL_DIR": "/srv/model"})
    assert (settings.max_batch_size, settings.model_dir) == (32, Path("/srv/model"))
    assert ServingSettings.from_env(settings.environ()) == settings


@pytest.mark.parametrize("value", ["zero", "0", "-5"], ids=["not-a-number", "zero", "negative"])
def test_a_bad_value_names_the_variable(value: str) -> None:
    with pytest.raises(TripodError, match=r"^TRIPOD_MAX_RECORDS: "):
        ServingSettings.from_env({"TRIPOD_MAX_RECORDS": value})
