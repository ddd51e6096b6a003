"""Candidate families, by name.  Adding a family = one module here plus one line in ``FAMILIES``."""

from __future__ import annotations

from training.automl.candidate import CandidateModel

FAMILIES: dict[str, type[CandidateModel]] = {}


def register(family: type[CandidateModel]) -> type[CandidateModel]:
    """Class decorator: make a family known to the search by its ``family`` name."""
    FAMILIES[family.family] = family
    return family
