"""Who said it: speakers named, described or pointed at, on sentence shapes of news style.

The sentences are made up for these tests (other names, other stories than the sample articles),
so that a rule passes only if it is general.
"""

from __future__ import annotations

import pytest

from bot.speakers import Attribution, attribute, is_statement, mention, speaker_terms

# (sentences before, the statement, how a question names the speaker, offsets of the neighbours
# that must be quoted with it)
SHAPES = [
    # named after the verb, titled in the sentence before
    (["Chilean Finance Minister Rosa Ibarra met investors in Santiago on Monday."],
     "The budget will be balanced by 2026, said Ibarra.", "the Chilean finance minister", (-1,)),
    # named before the verb
    ([], "Ibarra said the budget would be balanced by 2026.", "Rosa Ibarra", ()),
    # apposition after the name
    ([], '"We cannot wait another winter," said Tom Achebe, the federation\'s general secretary.',
     "the federation's general secretary", ()),
    ([], "Tom Achebe, the federation's general secretary, said the talks had failed.",
     "the general secretary", ()),
    # apposition before the name, "its" pointing at the organisation of the sentence before
    (["The port authority said in a statement that cranes would stop on Friday."],
     "Its director, Hana Berg, told reporters that ships would be diverted.",
     "the port authority's director", ()),
    # a description standing for a name introduced before ("head of ... diplomacy")
    (["Japanese Foreign Minister Aiko Sato met her Indian counterpart in Delhi.",
      "Sato spoke of a new chapter."],
     "Trade must grow, said the head of Japanese diplomacy.", "Sato", (-1,)),
    # an organisation described ("the militant group", "the company")
    (["The Northern Liberation Front (NLF) released two hostages on Sunday."],
     "We did this as a gesture of goodwill, the militant group said in a statement.",
     "the NLF", (-1,)),
    (["Shares of Volta Motors fell 4 percent after the recall."],
     "The company said the fault affected fewer than 900 cars.", "Volta Motors", (-1,)),
    # pronouns point at the last name, skipping sentences that name nobody
    (["Governor Luis Ortega visited the flooded towns.", "The water had risen overnight."],
     "He said the state would pay for the repairs.", "the governor", (-2,)),
    (["Nurse Amina Yusuf has worked at the clinic for ten years."],
     '"We are exhausted," she told the BBC.', "Amina Yusuf", (-1,)),
    # a role noun between demonym and name
    (["Brazilian striker Davi Lopes scored twice."],
     '"The team deserved it," Lopes said after the match.', "the Brazilian striker", ()),
    # "The mayor, who ..., said"
    (["Mayor Ines Kovac opened the new bridge."],
     "The mayor, who took office in March, said traffic would fall by a third.",
     "Ines Kovac", (-1,)),
    # a bare quotation, speaker in the next sentence
    ([], '"Nobody expected a surplus this year."', "Rosa Ibarra", (1,)),
    # titled name after the verb
    ([], '"It was a fair result," said Rovers manager Kai Lund.', "the Rovers manager", ()),
    # initials in the question name the organisation written out
    (["The International Energy Agency published its outlook on Tuesday."],
     "Its chief economist, Omar Haddad, said demand for oil would peak by 2030.",
     "the IEA chief economist", ()),
]  # fmt: skip


def speaker_match(named_as: str, found: Attribution) -> float:
    """Share of the words a question names the speaker with that describe the speaker found."""
    words = speaker_terms(named_as)
    return len(words & found.words) / len(words)


@pytest.mark.parametrize(("before", "statement", "named_as", "linked"), SHAPES)
def test_the_speaker_is_found_however_the_article_names_it(
    before: list[str], statement: str, named_as: str, linked: tuple[int, ...]
) -> None:
    after = "Said Rosa Ibarra, the finance minister." if statement.startswith('"Nobody') else None
    elsewhere = ["Rosa Ibarra took office in May."]  # the article names her in full elsewhere
    found = attribute(statement, before, after, elsewhere)
    assert is_statement(statement)
    assert speaker_match(named_as, found) >= 0.66, (sorted(found.words), named_as)
    for offset in linked:
        assert offset in found.linked


def test_a_speaker_of_one_sentence_is_not_credited_to_another_name() -> None:
    before = ["Officials from Egypt and Jordan attended the summit in Amman."]
    found = attribute("The militant group said it would answer within days.", before)
    assert speaker_match("Egypt", found) == 0.0
    found = attribute("Ortega said the vote was fair.", ["Senator Ana Ruiz criticised it."])
    assert speaker_match("Ana Ruiz", found) == 0.0


@pytest.mark.parametrize(
    ("text", "kind", "who"),
    [
        ("Prices will rise, said Peter Holm.", "named", "Peter Holm"),
        ("Peter Holm told Danish radio that prices would rise.", "named", "Peter Holm"),
        ("Prices will rise, according to Peter Holm.", "named", "Peter Holm"),
        ("The bank said prices would rise.", "described", "The bank"),
        ("Prices will rise, said the head of the central bank.", "described",
         "the head of the central bank"),
        ("She said prices would rise.", "pronoun", "she"),
        ("The minister, who spoke on Monday, said prices would rise.", "described", "The minister"),
        # a name after the apposition is not the speaker; a name as the apposition is
        ("The International Red Cross, which works with the Red Crescent, said the camps were "
         "full.", "named", "International Red Cross"),
        ("Its envoy in Lima, Dr. Rosa Quispe, said the camps were full.", "named",
         "Dr. Rosa Quispe"),
        ("Dock workers said the cranes had stopped.", "described", "Dock workers"),
    ],
)  # fmt: skip
def test_mention_shapes(text: str, kind: str, who: str) -> None:
    found = mention(text)
    assert found is not None and (found.kind, found.text) == (kind, who)


def test_days_and_months_are_not_speakers() -> None:
    found = mention("The council, which meets again in November, said the plan was dead.")
    assert found is not None and found.kind == "described"
    assert mention("Prices will rise, said Tuesday's report.") is None or (
        mention("Prices will rise, said Tuesday's report.").kind != "named"  # type: ignore[union-attr]
    )


@pytest.mark.parametrize(
    ("sentence", "statement"),
    [
        ("The minister SAID the talks would resume.", True),
        ("Talks resume on Monday, according to officials.", True),
        ("In a statement, the group welcomed the deal.", True),
        ("The deal, she argued, was fair.", True),
        ("Prices “rose sharply” in May.", True),
        ("The café’s owner said little.", True),  # not ASCII: searched as before
        ("An essay on the unsaid terms of the sayings.", False),
        ("The ceasefire held overnight.", False),
        ("Accordingly, too, the talks went on.", False),
    ],
)
def test_statements_are_told_by_speech_words_and_quotation_marks(
    sentence: str, statement: bool
) -> None:
    assert is_statement(sentence) is statement
