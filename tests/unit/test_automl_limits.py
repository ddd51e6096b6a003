"""Serving limits in the AutoML choice (``training/automl/limits.py``): a candidate over ``--max-latency-ms`` or
``--max-model-mb`` is never chosen, alone or as an ensemble member, and the leaderboard says why."""

from __future__ import annotations

from training.automl.ensemble import choose_members
from training.automl.leaderboard import leaderboard_frame
from training.automl.limits import MIB, ServingLimits
from training.automl.objectives import resolve_objective
from training.automl.search import TrialRecord, best_record

MACRO_F1 = resolve_objective("macro_f1", "multiclass")


def _record(number: int, family: str, validation: float, latency_ms: float, mib: float) -> TrialRecord:
    return TrialRecord(
        number=number,
        family=family,
        params={},
        state="complete",
        validation=validation,
        latency_ms=latency_ms,
        model_bytes=int(mib * MIB),
    )


RECORDS = [
    _record(0, "minilm", 0.74, latency_ms=21.0, mib=87.0),  # the best score, far too slow for the SLO
    _record(1, "tfidf_linear", 0.71, latency_ms=0.4, mib=3.0),
    _record(2, "gbdt", 0.72, latency_ms=1.9, mib=12.0),
    _record(3, "fasttext", 0.70, latency_ms=0.9, mib=40.0),
]


def test_the_best_candidate_within_the_limits_is_chosen_over_a_better_one_outside() -> None:
    def chosen(limits: ServingLimits) -> int | None:
        record = best_record(RECORDS, MACRO_F1, limits)
        return None if record is None else record.number

    assert chosen(ServingLimits()) == 0
    assert chosen(ServingLimits(max_latency_ms=5)) == 2
    assert chosen(ServingLimits(max_latency_ms=5, max_model_mb=10)) == 1
    assert best_record(RECORDS, MACRO_F1, ServingLimits(max_latency_ms=0.1)) is None


def test_an_unmeasured_candidate_is_not_chosen_under_a_limit() -> None:
    unmeasured = TrialRecord(number=9, family="gbdt", params={}, state="complete", validation=0.9)
    assert best_record([unmeasured], MACRO_F1) is unmeasured
    assert ServingLimits(max_latency_ms=5).violation(unmeasured) == "its latency was not measured"
    assert best_record([unmeasured], MACRO_F1, ServingLimits(max_model_mb=5)) is None


def test_ensemble_members_are_only_candidates_within_the_limits() -> None:
    members = choose_members(RECORDS, MACRO_F1, limits=ServingLimits(max_latency_ms=5))
    assert [m.number for m in members] == [2, 1, 3]


def test_the_leaderboard_marks_the_choice_and_says_why_the_others_were_not_chosen() -> None:
    limits = ServingLimits(max_latency_ms=5, max_model_mb=30)
    frame = leaderboard_frame(RECORDS, MACRO_F1, limits, chosen=2).set_index("trial")
    assert frame.loc[2, "chosen"] and not frame.loc[0, "chosen"]
    assert frame.loc[0, "not_chosen_because"] == "single-review p99 21.00 ms is over --max-latency-ms 5"
    assert frame.loc[3, "not_chosen_because"] == "model 40.00 MiB is over --max-model-mb 30"
    assert frame.loc[1, "not_chosen_because"] == "" and frame.loc[2, "not_chosen_because"] == ""
    assert limits.describe() == "single-review p99 <= 5 ms, model <= 30 MiB"


def test_the_family_report_keeps_each_familys_best_with_its_costs() -> None:
    from dataclasses import replace

    from training.automl.leaderboard import family_summary

    records = [*RECORDS, _record(4, "tfidf_linear", 0.69, latency_ms=0.3, mib=2.0)]
    records[1] = replace(records[1], test={"macro_f1": 0.70})
    summary = family_summary(leaderboard_frame(records, MACRO_F1), MACRO_F1).set_index("family")
    assert list(summary.index) == ["minilm", "gbdt", "tfidf_linear", "fasttext"]  # best family first
    assert summary.loc["tfidf_linear", "trial"] == 1 and summary.loc["tfidf_linear", "candidates"] == 2
    assert summary.loc["tfidf_linear", "test_macro_f1"] == 0.70
    assert summary.loc["minilm", "latency_p99_ms"] == 21.0 and summary.loc["fasttext", "model_mb"] == 40.0
    # install size: this environment's files of what only the family needs; torch makes the text networks big
    assert 0 < summary.loc["tfidf_linear", "install_mb"] < summary.loc["gbdt", "install_mb"]
    assert summary.loc["fasttext", "install_mb"] < summary.loc["minilm", "install_mb"]
