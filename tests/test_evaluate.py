"""The eval metrics are pure functions: checked here on hand-made rankings and answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.errors import NewsbotError
from bot.evaluate import (
    answer_sentences,
    any_hit_at_k,
    cited_sentence_share,
    contains_phrase,
    detect_format,
    distinct,
    find_corpus,
    hits_at_k,
    is_yes_no,
    mean,
    quote_is_verbatim,
    read_jsonl,
    reciprocal_rank,
    rgb_answer_matches,
    rgb_setting,
    stratified_subset,
    yes_no_matches,
)
from tests.conftest import EVAL


def test_hits_count_distinct_articles_not_chunks() -> None:
    # Three chunks of article a fill the chunk ranking; at article level b is second.
    ranked = distinct(["a", "a", "a", "b", "c"])
    assert ranked == ["a", "b", "c"]
    assert hits_at_k(["a", "a", "b", "c"], {"b", "c"}, 2) == 0.5
    assert hits_at_k(["a", "a", "b", "c"], {"b", "c"}, 3) == 1.0


def test_hits_is_the_share_of_evidence_found() -> None:
    ranked = ["x", "e1", "y", "z", "e3"]
    evidence = ["e1", "e2", "e3"]
    assert hits_at_k(ranked, evidence, 1) == 0.0
    assert hits_at_k(ranked, evidence, 4) == pytest.approx(1 / 3)
    assert hits_at_k(ranked, evidence, 10) == pytest.approx(2 / 3)
    assert any_hit_at_k(ranked, evidence, 1) is False
    assert any_hit_at_k(ranked, evidence, 2) is True


def test_hits_needs_evidence() -> None:
    with pytest.raises(ValueError):
        hits_at_k(["a"], [], 4)


def test_reciprocal_rank_of_first_evidence_within_cutoff() -> None:
    assert reciprocal_rank(["e", "x"], {"e"}) == 1.0
    assert reciprocal_rank(["x", "x", "y", "e"], {"e"}) == pytest.approx(1 / 3)
    assert reciprocal_rank([f"x{i}" for i in range(10)] + ["e"], {"e"}) == 0.0
    assert reciprocal_rank(["x", "e"], {"e"}, k=1) == 0.0


def test_mean_of_nothing_is_none_not_zero() -> None:
    assert mean([]) is None
    assert mean([True, False, True, True]) == 0.75


def test_gold_phrases_compare_without_case_or_spacing() -> None:
    assert contains_phrase("Shares of  NVIDIA rose.", "nvidia")
    assert contains_phrase("It was Sam Bankman-Fried [1]", "Sam  Bankman-Fried.")
    assert not contains_phrase("Nothing here", "Nvidia")
    assert not contains_phrase("anything", "")


def test_yes_no_answers() -> None:
    assert is_yes_no("Yes") and is_yes_no("no.") and not is_yes_no("Nokia")
    assert yes_no_matches("Yes, both reports agree [1].", "yes")
    assert not yes_no_matches("No. The first says ...", "Yes")
    assert not yes_no_matches("Nobody knows", "no")


def test_rgb_gold_forms() -> None:
    assert rgb_answer_matches("It was held in Tampa, Florida [1].", "Tampa, Florida")
    dates = [["July 21 2017", "Jul 21, 2017", "21 July 2017"]]
    assert rgb_answer_matches("Released on 21 July 2017 [2].", dates)
    assert not rgb_answer_matches("Released in 2017.", dates)
    # Every part of a multi-part answer has to be there.
    assert not rgb_answer_matches("Simona Halep won.", [["Simona Halep"], ["Wimbledon"]])
    assert rgb_answer_matches("Simona Halep won Wimbledon.", [["Simona Halep"], ["Wimbledon"]])


def test_quote_is_verbatim_only_at_its_offsets() -> None:
    body = "Qatar said the response was positive. Israel disagreed."
    assert quote_is_verbatim(body, 0, 37, "Qatar said the response was positive.")
    assert not quote_is_verbatim(body, 1, 38, "Qatar said the response was positive.")
    assert not quote_is_verbatim(body, 0, 37, "Qatar said the answer was positive.")
    assert not quote_is_verbatim(None, 0, 5, "Qatar")
    assert not quote_is_verbatim(body, 50, 90, body[50:])


def test_citation_markers_stay_with_their_sentence() -> None:
    text = "Qatar called it positive. [1] Israel said it was studying it. [2] Talks go on."
    sentences = answer_sentences(text)
    assert sentences == [
        "Qatar called it positive. [1]",
        "Israel said it was studying it. [2]",
        "Talks go on.",
    ]
    assert cited_sentence_share(text) == pytest.approx(2 / 3)
    assert cited_sentence_share("Both agree [1][2]. It rained [3].") == 1.0
    assert cited_sentence_share("") is None
    # Saying that the articles are silent on one part is not a claim that needs a source.
    partial = "Reuters: the articles don't say.\nWired: prices fell [1]."
    assert cited_sentence_share(partial) == 1.0
    assert cited_sentence_share("The articles don't say.") is None


def test_stratified_subset_keeps_type_shares_and_file_order() -> None:
    rows = [{"id": i, "t": "a" if i % 4 else "b"} for i in range(40)]  # 30 a, 10 b
    subset = stratified_subset(rows, 8, "t")
    assert len(subset) == 8
    assert sum(row["t"] == "b" for row in subset) == 2
    assert [row["id"] for row in subset] == sorted(row["id"] for row in subset)
    assert stratified_subset(rows, 100, "t") == rows


def test_stratified_subset_of_dev_questions_covers_every_type() -> None:
    rows = read_jsonl(EVAL / "multihop_dev.jsonl")
    subset = stratified_subset(rows, 40, "question_type")
    counts: dict[str, int] = {}
    for row in subset:
        counts[row["question_type"]] = counts.get(row["question_type"], 0) + 1
    # DEV is 64 / 62 / 46 / 28 of 200: a fifth of each.
    assert counts == {
        "inference_query": 13,
        "comparison_query": 12,
        "temporal_query": 9,
        "null_query": 6,
    }


def test_noise_mix_has_the_asked_share_of_negatives_and_is_seeded() -> None:
    positive = [f"p{i}" for i in range(6)]
    negative = [f"n{i}" for i in range(6)]
    mixed = rgb_setting("q1", 0.4, positive, negative, 0.4)
    assert len(mixed) == 5
    assert sum(not is_positive for _, is_positive in mixed) == 2
    assert all(text.startswith("p") == is_positive for text, is_positive in mixed)
    assert mixed == rgb_setting("q1", 0.4, positive, negative, 0.4)
    only_noise = rgb_setting("q1", "noise-only", [], negative, 1.0)
    assert len(only_noise) == 5 and not any(flag for _, flag in only_noise)
    # A question with one positive passage gets one, not padding.
    assert len(rgb_setting("q2", 0.0, ["p"], negative, 0.0)) == 1


def test_formats_are_recognised_from_the_first_line(tmp_path: Path) -> None:
    assert detect_format(read_jsonl(EVAL / "multihop_dev.jsonl"), EVAL) == "multihop"
    assert detect_format(read_jsonl(EVAL / "rgb_dev.jsonl"), EVAL) == "rgb"
    with pytest.raises(NewsbotError, match="corpus of articles, not questions"):
        detect_format(read_jsonl(EVAL / "multihop_corpus.jsonl"), EVAL)
    with pytest.raises(NewsbotError, match="unknown dataset format"):
        detect_format([{"foo": 1}], tmp_path)
    with pytest.raises(NewsbotError, match="no questions"):
        detect_format([], tmp_path)


def test_bad_lines_and_missing_corpus_are_named(tmp_path: Path) -> None:
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "?", "evidence_ids": []}) + "\n{oops\n")
    with pytest.raises(NewsbotError, match=r"q\.jsonl:2: not a JSON line"):
        read_jsonl(questions)
    with pytest.raises(NewsbotError, match="multihop_corpus.jsonl does not exist") as error:
        find_corpus(questions, None)
    assert "--corpus" in str(error.value.hint)
    with pytest.raises(NewsbotError, match="cannot read"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_our_question_set_is_recognised_and_finds_its_articles() -> None:
    from bot.evaluate import question_set_corpus

    path = EVAL.parent / "questions" / "questions.jsonl"
    rows = read_jsonl(path)
    assert detect_format(rows, path) == "questions"
    assert len(rows) >= 60
    kinds = {row["kind"] for row in rows}
    assert {"speaker", "who", "when", "where", "refusal", "follow-up"} <= kinds
    # Every answerable question has a gold phrase; every refusal has none.
    assert all(bool(row["answer"]) != bool(row["refuse"]) for row in rows)
    corpus = question_set_corpus(path, None)
    assert all(Path(item).exists() for item in corpus)
    assert any(item.endswith("multihop_corpus.jsonl") for item in corpus)
