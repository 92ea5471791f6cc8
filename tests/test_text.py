"""The one analyser (index/text.py): name forms fold together, and retrieval, answering and
follow-ups see the same words for the same text."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import bot.answer
import bot.conversation
import bot.llm
import bot.retrieve
import bot.speakers
import index.text
from bot.answer import read_question, sentence_pool
from index.lexical import LexicalIndex
from index.text import fold_name, query_terms, terms
from tests.test_answer import answer, make_article, passages_of
from tests.test_lexical import chunk, ids


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("Qatar", "Qatari"),
        ("Qatar", "Qatar's"),
        ("Qatar", "Qataris"),
        ("Hamas", "Hamas's"),
        ("Hamas", "Hamas’s"),
        ("Egypt", "Egyptian"),
        ("Israel", "Israeli"),
        ("U.S.", "American"),
        ("U.S.", "US"),
        ("U.S.", "United States"),
        ("U.S.", "Americans"),
        ("USA", "America"),
        ("Emirati", "UAE"),
        ("Emirati", "United Arab Emirates"),
        ("U.K.", "British"),
        ("Türkiye", "Turkey"),
        ("negotiations", "negotiating"),
        ("talks", "talk"),
    ],
)
def test_name_forms_fold_together(one: str, other: str) -> None:
    assert terms(one) == terms(other)
    assert query_terms(one) == query_terms(other)


def test_names_fold_to_one_word() -> None:
    assert terms("U.S. and Emirati officials") == ["usa", "uae", fold_name("officials")]
    assert fold_name("Emirati") == fold_name("UAE") == "uae"
    assert fold_name("American") == fold_name("U.S.") == "usa"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # ASCII: the shortcut looks for the phrase's first word and ".X." first
        ("Talks in the UNITED   STATES and the U.S. went on.", ["talk", "usa", "usa", "went"]),
        ("Talks in the United\nStates and the U. S. went on.", ["talk", "usa", "u", "went"]),
        ("Talks in Kent and the USA went on.", ["talk", "kent", "usa", "went"]),
        # not ASCII: always substituted
        ("The united States and the U.K. — “quietly”.", ["usa", "britain", "quiet"]),
    ],
)
def test_phrases_and_abbreviations_fold_in_any_case(text: str, expected: list[str]) -> None:
    assert terms(text) == expected


def test_a_phrase_in_letters_lower_spells_otherwise_is_kept_as_written() -> None:
    # The phrase pattern ignores case as re does: dotless ı, dotted İ and long ſ match too.
    assert terms("The UNİTED STATES agreed.") == ["unit", "state", "agre"]
    assert terms("Unıted States") == ["unıt", "state"]
    assert query_terms("What did the United ſtates say?") == ["unit", "state"]


def test_the_pronoun_us_is_not_the_country() -> None:
    assert "usa" not in terms("tell us more")
    assert "usa" in terms("the US said")
    assert "usa" in terms("US's allies")


def test_questions_drop_the_words_about_reports() -> None:
    question = "What does the article from Wired report about chargers?"
    assert query_terms(question) == terms("Wired chargers")
    # An article's own words are all indexed: "said" is evidence of who spoke.
    assert terms("Qatar said") == ["qatar", "said"]
    assert query_terms("Qatar said") == ["qatar"]


def test_words_end_at_any_character_but_a_letter_digit_or_inner_apostrophe() -> None:
    assert terms("Don't stop: rock'n'roll_fans' 'quoted' 1,000 a--b") == [
        "dont",
        "stop",
        "rocknrol",
        "fan",
        "quot",
        "1",
        "000",
        "b",
    ]
    assert terms("Don’t stop") == terms("Don't stop")  # a curly apostrophe as a straight one


ASCII = st.text(st.sampled_from([*"ab Z9'_.,-"]) | st.characters(max_codepoint=127), max_size=60)


@given(ASCII)
def test_ascii_text_has_the_words_it_has_beside_any_other_text(text: str) -> None:
    """ASCII text is split without the word pattern (faster): the same words as when text
    beside it (a dash) makes the pattern read it all."""
    assert terms(f"{text} —") == terms(text)
    assert query_terms(f"— {text}") == query_terms(text)


def test_retrieval_answering_and_follow_ups_share_one_analyser() -> None:
    for module in (bot.retrieve, bot.answer, bot.conversation, bot.llm, bot.speakers):
        assert module.query_terms is index.text.query_terms
    assert bot.retrieve.terms is index.text.terms


def test_a_us_question_finds_and_quotes_the_american_sentence(tmp_path: Path) -> None:
    body = (
        "Emirati officials welcomed the truce on Monday. "
        "American diplomats said the truce would hold. "
        "A football match ended in a draw."
    )
    # Retrieval: BM25 over the article's terms finds it for "U.S." and for "UAE".
    lexical = LexicalIndex(tmp_path / "lexical", terms)
    with lexical.writer() as writer:
        writer.put_chunks(
            [chunk("truce#0", body), chunk("other#0", "The truce in the north was broken again.")]
        )
    us_question = "What did the U.S. say about the truce?"
    assert ids(lexical.search(query_terms(us_question), 5))[0] == "truce#0"
    assert ids(lexical.search(query_terms("UAE truce"), 5))[0] == "truce#0"

    # Answering: the question's speaker and the sentence's words are the same term.
    assert read_question(us_question).speaker == {"usa"}
    passages = passages_of(make_article(body))
    pool = sentence_pool(passages)
    assert "usa" in pool.sentences[1].words and "uae" in pool.sentences[0].words
    american, emirati = "American diplomats said the truce would hold.", body.split(". ")[0] + "."
    for question, quote in [
        ("How did the U.S. see the truce?", american),
        ("How did the United States see the truce?", american),
        ("How did the UAE see the truce?", emirati),
    ]:
        draft = answer(question, passages, max_sentences=1)
        assert not draft.refused
        assert [citation.quote for citation in draft.citations] == [quote]
