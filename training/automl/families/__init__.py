"""Candidate families by name, imported only when used (the torch families take seconds to import).

Adding a family = one module here plus one line in ``FAMILY_PATHS``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from training.automl.candidate import CandidateModel

FAMILY_PATHS: dict[str, str] = {
    "tfidf_linear": "training.automl.families.tfidf:TfidfLinear",
    "gbdt": "training.automl.families.gbdt:GradientBoostedTrees",
    "fasttext": "training.automl.families.fasttext:FastTextModel",
    "minilm": "training.automl.families.minilm:MiniLMModel",
    "mpnet": "training.automl.families.mpnet:MPNetFeatures",
}


def family_class(name: str) -> type[CandidateModel]:
    """The class of family ``name``.

    Raises:
        KeyError: an unknown family, with the known ones in the message.
    """
    if name not in FAMILY_PATHS:
        raise KeyError(f"unknown candidate family {name!r}; known: {sorted(FAMILY_PATHS)}")
    module, _, attribute = FAMILY_PATHS[name].partition(":")
    return getattr(importlib.import_module(module), attribute)
