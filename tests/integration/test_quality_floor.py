"""Quality floor: a small eval on the dev questions that fails only when quality really drops.

The run is deterministic (same model, same data, same seeds), so a figure below its floor means
a change made newsbot worse, not bad luck. Each floor is the figure of this subset when the floor
was set minus a margin, and sits at or below the full dev run's figure (docs/benchmarks.md,
`newsbot eval samples/eval/multihop_dev.jsonl` and `.../rgb_dev.jsonl`), both written beside
it. Raise a floor when a change lifts quality for good; never lower one to make a test pass
without writing down why.
"""

from __future__ import annotations

from typing import Any

import pytest

from bot.evaluate import EvalReport, run_eval
from bot.settings import load_settings
from tests.conftest import EVAL

pytestmark = pytest.mark.slow


# Stratified by question type: 13 inference, 12 comparison, 9 temporal and 6 null questions.
MULTIHOP_QUESTIONS = 40
RGB_QUESTIONS = 10
MARGIN = 0.05  # absolute, on shares: a few of the subset's 34 answerable questions

# Set on 2026-11-25 from `newsbot eval` (onnx fp32, hybrid, extractive answerer; torch gives the
# same figures) on the dev sets (Hits@10 raised the same day, when parts began to vote as one
# list): "full" is the 200-question run in docs/benchmarks.md, "subset" is this test's 40
# questions. floor = min(full, subset) - margin, rounded down.
# metric path -> (floor, source). Higher is better for all of these.
MULTIHOP_FLOORS: dict[str, tuple[float, str]] = {
    "retrieval.hits_at_4": (
        0.80,
        "full 0.859, subset 0.855 when set; kept, not lowered, when parts began to vote as one "
        "list (subset 0.836, full unchanged)",
    ),
    "retrieval.hits_at_10": (0.89, "full 0.955, subset 0.946, minus 0.05"),
    "retrieval.any_at_4": (0.94, "full 0.994, subset 1.000, minus 0.05"),
    "retrieval.mrr_at_10": (0.88, "full 0.936, subset 0.966, minus 0.05"),
    "answers.evidence_cited_any": (0.94, "full 0.994, subset 1.000, minus 0.05"),
    "answers.evidence_cited_share": (0.68, "full 0.737, subset 0.765, minus 0.05"),
    "answers.accuracy": (0.58, "full 0.684 (57 q), subset 0.700 (10 q), minus one question"),
    "answers.refused_unanswerable": (0.82, "full 0.929 (28 q), subset 1.000 (6 q), minus 0.1"),
    "answers.sentences_cited": (0.95, "full 1.000, subset 1.000, minus 0.05"),
}
# metric path -> (ceiling, source). Lower is better.
MULTIHOP_CEILINGS: dict[str, tuple[float, str]] = {
    "answers.refused_answerable": (0.05, "full 0.000, subset 0.000, plus 0.05 (one question)"),
}
# RGB, first ten dev questions; the full run is the 40 dev questions.
RGB_FLOORS: dict[str, tuple[float, str]] = {
    "accuracy_by_noise.0.0": (0.7, "full 0.875, subset 0.8, minus one question"),
    "accuracy_by_noise.0.4": (0.6, "full 0.700, subset 0.7, minus one question"),
    "accuracy_by_noise.0.8": (0.2, "full 0.400, subset 0.3, minus one question"),
}


def figure(scores: Any, path: str) -> float:
    """The value at `path`: attribute names, then at most one dict key (which may hold dots)."""
    name, _, key = path.partition(".")
    value: Any = getattr(scores, name)
    if key:
        value = value[key] if isinstance(value, dict) else getattr(value, key)
    assert value is not None, f"{path} was not measured"
    return float(value)


def evaluate(tmp_path_factory: pytest.TempPathFactory, name: str, limit: int) -> EvalReport:
    questions = EVAL / name
    assert questions.is_file(), f"the bundled eval data are missing: {EVAL}"
    settings = load_settings(data_dir=tmp_path_factory.mktemp(questions.stem))
    return run_eval(questions, settings=settings, limit=limit)


@pytest.fixture(scope="module")
def multihop(tmp_path_factory: pytest.TempPathFactory) -> EvalReport:
    return evaluate(tmp_path_factory, "multihop_dev.jsonl", MULTIHOP_QUESTIONS)


@pytest.fixture(scope="module")
def rgb(tmp_path_factory: pytest.TempPathFactory) -> EvalReport:
    return evaluate(tmp_path_factory, "rgb_dev.jsonl", RGB_QUESTIONS)


def test_subset_is_the_stratified_forty(multihop: EvalReport) -> None:
    result = multihop.result("hybrid")
    assert multihop.questions == MULTIHOP_QUESTIONS
    assert result.retrieval.questions == 34
    assert result.answers.unanswerable == 6


@pytest.mark.parametrize("path", sorted(MULTIHOP_FLOORS))
def test_multihop_stays_above_its_floor(multihop: EvalReport, path: str) -> None:
    floor, source = MULTIHOP_FLOORS[path]
    value = figure(multihop.result("hybrid"), path)
    assert value >= floor, f"{path} = {value:.3f} fell below its floor {floor} ({source})"


@pytest.mark.parametrize("path", sorted(MULTIHOP_CEILINGS))
def test_multihop_stays_below_its_ceiling(multihop: EvalReport, path: str) -> None:
    ceiling, source = MULTIHOP_CEILINGS[path]
    value = figure(multihop.result("hybrid"), path)
    assert value <= ceiling, f"{path} = {value:.3f} rose above its ceiling {ceiling} ({source})"


def test_every_citation_is_verbatim(multihop: EvalReport, rgb: EvalReport) -> None:
    # Not a floor but a promise: a quote is the cited article's text at the cited offsets.
    answers = multihop.result("hybrid").answers
    assert answers.citations > 0
    assert answers.citations_verbatim == 1.0
    assert rgb.rgb is not None and rgb.rgb.citations_verbatim == 1.0


@pytest.mark.parametrize("path", sorted(RGB_FLOORS))
def test_rgb_stays_above_its_floor(rgb: EvalReport, path: str) -> None:
    floor, source = RGB_FLOORS[path]
    value = figure(rgb.rgb, path)
    assert value >= floor, f"rgb {path} = {value:.3f} fell below its floor {floor} ({source})"
