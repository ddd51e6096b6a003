"""Fit the baseline text classifier and run the whole training verb.

The baseline is TF-IDF features (one vectorizer per text column, joined by a ``ColumnTransformer``) into a
multinomial logistic regression.  It is fast, strong on review text, and every piece of it converts to
standard ONNX operators, so the served model is the trained model (see :mod:`training.export`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from training.data import fingerprint, load_table, require_columns, split_frame, stratified_sample
from training.errors import DataError
from training.evaluate import evaluate, flat_metrics
from training.export import export_model, orphan_ngrams

logger = logging.getLogger(__name__)

# ASCII-only word tokens of two or more characters.  scikit-learn's default ``(?u)\b\w\w+\b`` is Unicode-aware
# while onnxruntime's re2 ``\w`` is ASCII-only, and ``\b`` differs too; this pattern tokenizes identically in
# Python ``re`` and re2, so the ONNX transformer reproduces the fitted vocabulary exactly (accented letters and
# emoji split words in both).
TOKEN_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_]+"


@dataclass(frozen=True)
class BaselineParams:
    """Hyperparameters of the TF-IDF + logistic-regression baseline.

    The ONNX TF-IDF stage emits a dense ``(n_samples, max_features)`` matrix, so its cost grows with the
    vocabulary while scikit-learn's sparse path barely notices.  On the bundled reviews (seed 42, 80/10/10)
    15,000 features gave the best validation macro-F1 of 5k–50k, and the ONNX path stays faster than
    ``predict_proba`` at batch 1, 64 and 2,000 (``benchmarks/baseline_throughput.py`` measures it).

    Attributes:
        max_features: Vocabulary size per text column (the ONNX feature width grows with it).
        ngram_range: Smallest and largest n-gram length.
        min_df: Minimum number of training documents a term must appear in.
        sublinear_tf: Use ``1 + log(tf)`` instead of raw term counts.  Off: skl2onnx cannot export it
            faithfully (see ``training/export.py``).
        token_pattern: Regex for tokens; must behave the same in Python ``re`` and re2 (see ``TOKEN_PATTERN``).
        C: Inverse regularization strength of the logistic regression.
        class_weight: ``"balanced"`` reweights classes inversely to their frequency (helps macro-F1), or None.
        max_iter: Solver iteration cap.
        seed: Seed for the solver (and, in :func:`run_training`, for sampling and splitting).
    """

    max_features: int = 15000
    ngram_range: tuple[int, int] = (1, 2)
    min_df: int = 2
    sublinear_tf: bool = False
    token_pattern: str = TOKEN_PATTERN
    C: float = 0.5
    class_weight: str | None = "balanced"
    max_iter: int = 2000
    seed: int = 42

    def as_params(self) -> dict[str, str | int | float | bool | None | list[int]]:
        """JSON-friendly form for the manifest's candidate record."""
        params = asdict(self)
        params["ngram_range"] = list(self.ngram_range)
        return params


class TextBaseline(ClassifierMixin, BaseEstimator):
    """TF-IDF per text column → logistic regression on label-encoded targets.

    Follows scikit-learn's conventions: the constructor only stores arguments, :meth:`fit` returns ``self``,
    and learned state ends in ``_``.

    Args:
        text_columns: The input columns, each vectorized separately (its own vocabulary).
        params: Hyperparameters.

    Attributes:
        transformer_: Fitted ``ColumnTransformer`` mapping a frame to ``(n_samples, n_features)``.
        classifier_: Fitted ``LogisticRegression`` over those features, classes ``0..n_classes-1``.
        label_encoder_: Maps label strings to class indices; ``classes_`` is sorted.
    """

    def __init__(self, text_columns: Sequence[str], params: BaselineParams | None = None) -> None:
        self.text_columns = text_columns
        self.params = params

    def text_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The text columns as plain strings, missing values as ``""`` (what serving sends for a blank)."""
        return _text_frame(frame, getattr(self, "text_columns_", self.text_columns))

    def fit(self, frame: pd.DataFrame, y: Sequence[str] | pd.Series) -> TextBaseline:
        """Fit vectorizers, label encoder and classifier on ``frame[text_columns]`` and labels ``y``."""
        params = self.params or BaselineParams()
        self.text_columns_ = list(self.text_columns)
        if not self.text_columns_:
            raise DataError("at least one text column is needed")
        self.params_ = params
        labels = np.asarray(y, dtype=str)
        self.label_encoder_ = LabelEncoder().fit(labels)
        if len(self.label_encoder_.classes_) < 2:
            raise DataError(f"need at least two classes to train, found {list(self.label_encoder_.classes_)}")
        texts = self.text_frame(frame)
        self.transformer_ = _column_transformer(self.text_columns_, params).fit(texts)
        if pruned := _onnx_faithful_vocabularies(self.transformer_, params):
            self.transformer_ = _column_transformer(self.text_columns_, params, pruned).fit(texts)
        features = self.transformer_.transform(texts)
        self.classifier_ = LogisticRegression(
            C=params.C, class_weight=params.class_weight, max_iter=params.max_iter, random_state=params.seed
        ).fit(features, self.label_encoder_.transform(labels))
        self.classes_ = self.label_encoder_.classes_
        return self

    @property
    def labels_(self) -> list[str]:
        """Label strings in class-index order (sorted), as the manifest records them."""
        check_is_fitted(self, "label_encoder_")
        return [str(label) for label in self.label_encoder_.classes_]

    @property
    def n_features_(self) -> int:
        """Width of the feature matrix, the ``F`` of the ONNX ``features`` tensor."""
        check_is_fitted(self, "classifier_")
        return int(self.classifier_.n_features_in_)

    def transform(self, frame: pd.DataFrame) -> sparse.csr_matrix:
        """TF-IDF features, a sparse ``(n_samples, n_features)`` matrix."""
        check_is_fitted(self, "transformer_")
        return self.transformer_.transform(self.text_frame(frame))

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Class probabilities, ``(n_samples, n_classes)`` in label order."""
        check_is_fitted(self, "classifier_")
        return self.classifier_.predict_proba(self.transform(frame))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Predicted label strings, ``(n_samples,)``."""
        return self.label_encoder_.inverse_transform(self.predict_proba(frame).argmax(axis=1))


def _vectorizer(params: BaselineParams, vocabulary: dict[str, int] | None = None) -> TfidfVectorizer:
    # float32 matches the ONNX graph's precision, so parity differences are rounding, not dtype.
    return TfidfVectorizer(
        lowercase=True,
        token_pattern=params.token_pattern,
        ngram_range=params.ngram_range,
        min_df=params.min_df,
        max_features=params.max_features,
        sublinear_tf=params.sublinear_tf,
        vocabulary=vocabulary,
        dtype=np.float32,
    )


def _column_transformer(
    columns: Sequence[str], params: BaselineParams, vocabularies: dict[str, dict[str, int]] | None = None
) -> ColumnTransformer:
    vocabularies = vocabularies or {}
    return ColumnTransformer(
        [(f"tfidf_{column}", _vectorizer(params, vocabularies.get(column)), column) for column in columns],
        remainder="drop",
        sparse_threshold=1.0,  # keep the TF-IDF matrix sparse on the scikit-learn side
    )


def _onnx_faithful_vocabularies(transformer: ColumnTransformer, params: BaselineParams) -> dict[str, dict[str, int]]:
    """Per text column, the fitted vocabulary without orphan n-grams (empty when nothing had to go)."""
    pruned = {}
    for name, vectorizer, column in transformer.transformers_:
        if not isinstance(vectorizer, TfidfVectorizer):
            continue
        terms = vectorizer.get_feature_names_out().tolist()
        orphans = set(orphan_ngrams(terms))
        if orphans:
            logger.info("%s: dropping %d n-grams whose words are not in the vocabulary", name, len(orphans))
            kept = [term for term in terms if term not in orphans]
            pruned[column] = {term: index for index, term in enumerate(kept)}
    return pruned


def _text_frame(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        available = ", ".join(repr(str(c)) for c in frame.columns)
        raise DataError(
            f"text column(s) {', '.join(map(repr, missing))} not found; available columns: {available}"
        )
    return pd.DataFrame(
        {
            c: frame[c].astype(object).where(frame[c].notna(), "").astype(str).to_numpy(dtype=object)
            for c in columns
        }
    )


def run_training(
    data: Path | str,
    target: str,
    text_columns: Sequence[str],
    out: Path | str,
    *,
    seed: int = 42,
    sample: int | None = None,
    params: BaselineParams | None = None,
    progress: bool = True,
) -> Path:
    """``tripod train``: load → split → fit → evaluate → export with parity → ``out/v<N>``.

    Args:
        data: Training table (CSV, CSV.gz or Parquet), e.g. the output of ``tripod prepare``.
        target: Label column.
        text_columns: Free-text input columns; each becomes a string input of the transformer stage.
        out: Model root ``models/<name>``; the version goes to ``out/v<N>`` and ``out/latest`` points at it.
        seed: Seed of the sample, the split and the solver (overrides ``params.seed``).
        sample: Train on a stratified sample of this many rows (fast experiments and tests).
        params: Hyperparameters; the defaults when None.
        progress: Show a progress bar on stderr.

    Returns:
        The new version directory.

    Raises:
        DataError: The table cannot be read or lacks a column.
        training.errors.ParityError: The ONNX export does not reproduce the fitted model.
    """
    text_columns = [text_columns] if isinstance(text_columns, str) else list(text_columns)
    params = replace(params or BaselineParams(), seed=seed)
    steps = ["load", "split", "fit", "evaluate", "export"]
    with tqdm(total=len(steps), desc="train", unit="step", disable=not progress) as bar:

        def step(name: str, detail: str) -> None:
            bar.set_description(f"train: {name}")
            logger.info("%s: %s", name, detail)

        step("load", str(data))
        frame = load_table(data)
        require_columns(frame, [target, *text_columns])
        if target in text_columns:
            raise DataError(f"the target {target!r} cannot also be a text input column")
        unlabeled = frame[target].isna()
        if unlabeled.any():
            logger.info("dropping %d rows without a %r label", int(unlabeled.sum()), target)
            frame = frame.loc[~unlabeled]
        frame = frame.assign(**{target: frame[target].astype(str)})
        if sample is not None:
            frame = stratified_sample(frame, target, sample, seed=seed)
        data_fingerprint = fingerprint(frame, [*text_columns, target])
        bar.update()

        step("split", f"{len(frame)} rows, seed {seed}")
        split = split_frame(frame, target, seed=seed)
        bar.update()

        step("fit", f"{len(split.train)} training rows")
        model = TextBaseline(text_columns, params).fit(split.train, split.train[target])
        bar.update()

        step("evaluate", f"{len(split.validation)} validation and {len(split.test)} test rows")
        reports = {}
        for name, part in (("validation", split.validation), ("test", split.test)):
            if len(part):
                proba = model.predict_proba(part)
                predicted = np.asarray(model.labels_)[proba.argmax(axis=1)]
                reports[name] = evaluate(part[target], predicted, model.labels_, proba)
        metrics = flat_metrics(reports["test"])
        if "validation" in reports:
            metrics |= flat_metrics(reports["validation"], prefix="validation_")
        logger.info("test accuracy %.4f, macro-F1 %.4f", metrics["accuracy"], metrics["macro_f1"])
        bar.update()

        step("export", f"ONNX stages to {out}")
        report = {
            "labels": model.labels_,
            "rows": {"train": len(split.train), "validation": len(split.validation), "test": len(split.test)},
            "n_features": model.n_features_,
            **reports,
        }
        version_dir = export_model(
            model,
            model_root=Path(out),
            target=target,
            parity_frame=split.test,
            data_fingerprint=data_fingerprint,
            metrics=metrics,
            metrics_report=report,
        )
        bar.update()
    logger.info("model written to %s", version_dir)
    return version_dir
