"""Retrieval: text analysis, fusion and selection (pure), then hybrid search on the real model and
Chroma: rare names, date filters, outlets and multi-part questions, near-duplicates, and the
lexical index following ingests in this and other processes."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from bot.retrieve import (
    Candidate,
    Query,
    Ranked,
    RetrievalConfig,
    Retriever,
    by_coverage,
    fuse,
    select,
)
from index import store as store_module
from index.article import Article
from index.text import terms

# -- pure: fusion, selection ---------------------------------------------------------------------


def test_reciprocal_rank_fusion_rewards_agreement() -> None:
    fused = fuse([["a", "b", "c"], ["b", "c", "a"]], [1.0, 1.0], k=60)
    assert fused.ids == ["b", "a", "c"]
    assert fused.scores["b"] == pytest.approx(1 / 62 + 1 / 61)


# -- real model, real Chroma ---------------------------------------------------------------------


def article(
    article_id: str, title: str, body: str, *, source: str = "Wire", day: str = "2023-11-24"
) -> Article:
    return Article(
        id=article_id,
        title=title,
        body=body,
        source=source,
        url=f"https://example.com/{article_id}",
        published_at=datetime.fromisoformat(f"{day}T10:00:00+00:00"),
    )


REFEREE_ARTICLES = [
    article(
        "derby",
        "Derby ends level after late penalty",
        "The derby ended 1-1 after a late penalty. The referee was booed by both sets of fans. "
        "Supporters said the officiating had been poor all season.",
        day="2023-10-01",
    ),
    article(
        "cup",
        "Cup tie decided by VAR",
        "A cup tie was decided by a VAR review in stoppage time. The referee consulted the "
        "monitor for four minutes before awarding the goal.",
        day="2023-10-02",
    ),
    article(
        "league",
        "League leaders held",
        "The league leaders were held to a goalless draw. Match official Oyelaran-Kowalczyk "
        "sent off two players in the second half, and the home manager called the decisions "
        "baffling.",
        day="2023-10-03",
    ),
    article(
        "referees",
        "Referees' body defends standards",
        "The referees' body defended its officials after a weekend of controversial decisions, "
        "saying standards had improved.",
        day="2023-10-04",
    ),
]


def bot_holding(tmp_path_factory: pytest.TempPathFactory, name: str, articles: list):
    """A bot over a store of its own holding just these articles."""
    from bot import Bot

    bot = Bot.open(data_dir=tmp_path_factory.mktemp(name))
    bot.ingest(articles)
    return bot


@pytest.fixture(scope="module")
def referee_bot(tmp_path_factory: pytest.TempPathFactory):
    return bot_holding(tmp_path_factory, "referees", REFEREE_ARTICLES)


def ranked_articles(bot, question: str, mode: str = "hybrid", k: int = 4, **kwargs) -> list[str]:
    retriever = Retriever(bot.store, bot.embedder, mode=mode)  # type: ignore[arg-type]
    return [p.article_id for p in retriever.search(retriever.understand(question, **kwargs), k)]


@pytest.mark.slow
def test_hybrid_finds_an_article_by_a_rare_name(referee_bot) -> None:
    question = "Which players did Oyelaran-Kowalczyk send off?"
    assert ranked_articles(referee_bot, question, "lexical")[0] == "league"
    assert ranked_articles(referee_bot, question, "hybrid")[0] == "league"


@pytest.mark.slow
def test_since_and_until_exclude_articles_outside_the_range(referee_bot) -> None:
    retriever = referee_bot.retriever
    query = retriever.understand(
        "What did the referee do?",
        since=datetime(2023, 10, 2, tzinfo=UTC),
        until=datetime(2023, 10, 3, 23, 59, tzinfo=UTC),
    )
    found = {p.article_id for p in retriever.search(query, 4)}
    assert found == {"cup", "league"}
    assert query.filters["since"].startswith("2023-10-02")


@pytest.mark.slow
def test_a_date_named_in_the_question_ranks_that_days_reports_first(referee_bot) -> None:
    first = ranked_articles(
        referee_bot, "What did the report published on 4 October 2023 say about referees?"
    )
    assert first[0] == "referees"
    # Not a filter: the other articles still fill the remaining places.
    assert len(first) == 4


@pytest.mark.slow
def test_what_was_understood_is_in_the_filters(referee_bot) -> None:
    query = referee_bot.retriever.understand(
        "What did the Wire report on 2023-10-03?", today=date(2024, 1, 1)
    )
    assert query.filters["sources"] == ["Wire"]
    assert query.filters["since"] == query.filters["until"] == "2023-10-03"


BLACK_FRIDAY = [
    article(
        "verge-deals",
        "The best Black Friday deals on chargers",
        "Universal travel adapters are a smart buy this Black Friday. A 10,000mAh power bank "
        "keeps a phone going for two days.",
        source="The Verge",
        day="2023-11-24",
    ),
    article(
        "wired-deals",
        "Wired's Black Friday picks",
        "We recommend a 10,000mAh power bank for most people. Travel adapters with USB-C ports "
        "are also discounted.",
        source="Wired",
        day="2023-11-25",
    ),
    article(
        "verge-laptops",
        "Laptop deals for Black Friday",
        "MacBook Air prices dropped by 200 dollars on Black Friday.",
        source="The Verge",
        day="2023-11-24",
    ),
    article(
        "tc-deals",
        "Power banks and chargers on sale",
        "Power banks and chargers are on sale everywhere this Black Friday, and 10,000mAh models "
        "are the most popular.",
        source="TechCrunch",
        day="2023-11-24",
    ),
    article(
        "age-deals",
        "Black Friday in Australia",
        "Australian shoppers bought power banks and travel adapters in record numbers.",
        source="The Age",
        day="2023-11-24",
    ),
]


@pytest.fixture(scope="module")
def deals_bot(tmp_path_factory: pytest.TempPathFactory):
    return bot_holding(tmp_path_factory, "deals", BLACK_FRIDAY)


@pytest.mark.slow
def test_a_question_comparing_two_outlets_gets_passages_from_both(deals_bot) -> None:
    retriever = deals_bot.retriever
    query = retriever.understand(
        "Does the report from The Verge on 2023-11-24 agree with Wired's the next day about "
        "10,000mAh power banks?",
        today=date(2024, 1, 1),
    )
    assert [part["label"] for part in query.filters["parts"]] == [
        "The Verge, 2023-11-24",
        "Wired, 2023-11-25",
    ]
    passages = retriever.search(query, 2)
    assert {(p.article_id, p.part) for p in passages} == {("verge-deals", 0), ("wired-deals", 1)}


@pytest.mark.slow
def test_an_outlet_named_in_the_question_comes_first(deals_bot) -> None:
    found = ranked_articles(deals_bot, "According to The Age, what did shoppers buy?", k=3)
    assert found[0] == "age-deals"
    found = ranked_articles(deals_bot, "What did TechCrunch say about power banks?", k=3)
    assert found[0] == "tc-deals"


@pytest.mark.slow
def test_a_scoped_dense_search_finds_the_same_chunks_either_way(deals_bot) -> None:
    # Within an outlet: among the scope's own chunks (nearest_limit 0), or the store's nearest
    # chunks that the scope admits (any limit above the store's size).
    def search(nearest_limit: int) -> list[tuple[str, float]]:
        config = RetrievalConfig(nearest_limit=nearest_limit)
        retriever = Retriever(deals_bot.store, deals_bot.embedder, mode="dense", config=config)
        query = retriever.understand("What did TechCrunch say about power banks?")
        return [(p.article_id, p.dense_score or 0.0) for p in retriever.search(query, 3)]

    among, nearest = search(0), search(10**9)
    assert among[0][0] == "tc-deals"
    assert [article for article, _ in nearest] == [article for article, _ in among]
    assert [score for _, score in nearest] == pytest.approx([s for _, s in among], abs=1e-4)


@pytest.mark.slow
def test_a_scope_read_in_pages_ranks_as_one_read(deals_bot, monkeypatch) -> None:
    store = deals_bot.store
    ids = [chunk.id for chunk in store.iter_chunks()]
    vector = deals_bot.embedder.embed(["power banks on sale"])[0].tolist()
    whole = store.nearest(vector, 4, among=ids)
    monkeypatch.setattr(store_module, "EXACT_PAGE", 2)  # the best may be in any page
    paged = store.nearest(vector, 4, among=ids)
    assert len(ids) > 4 and [i for i, _ in paged] == [i for i, _ in whole]
    assert [s for _, s in paged] == pytest.approx([s for _, s in whole], abs=1e-6)


@pytest.mark.slow
def test_one_chunk_per_article_before_a_second(make_bot) -> None:
    bot = make_bot(chunk_tokens=32)
    long_body = " ".join(
        f"Power bank number {n} holds 10,000mAh and charges a phone twice." for n in range(12)
    )
    bot.ingest(
        [
            article("long", "Power banks, tested", long_body),
            article("short", "A power bank review", "This power bank holds 10,000mAh."),
        ]
    )
    passages = bot.retriever.search(bot.retriever.understand("10,000mAh power bank"), 3)
    assert [p.article_id for p in passages][:2].count("long") == 1
    assert {p.article_id for p in passages[:2]} == {"long", "short"}


@pytest.mark.slow
def test_near_identical_chunks_are_collapsed(make_bot) -> None:
    bot = make_bot()
    body = (
        "Qatar's prime minister said Hamas's response to the ceasefire proposal was in general "
        "positive, and that talks would continue in Cairo next week."
    )
    bot.ingest(
        [
            article("wire-a", "Qatar upbeat on talks", body, source="Wire A"),
            article(
                "wire-b",
                "Qatar upbeat on talks",
                body.replace("next week", "next week."),
                source="Wire B",
            ),
            article("other", "Weather", "It will rain in Doha tomorrow.", source="Wire C"),
        ]
    )
    passages = bot.retriever.search(bot.retriever.understand("What did Qatar say?"), 3)
    articles = [p.article_id for p in passages]
    assert sorted(articles) == sorted({articles[0], "other"})
    kept = passages[0]
    assert kept.duplicates == ({"wire-a": "wire-b", "wire-b": "wire-a"}[kept.article_id],)


@pytest.mark.slow
def test_the_lexical_index_follows_ingests(make_bot) -> None:
    bot = make_bot(chunk_tokens=32)
    retriever = bot.retriever
    bot.ingest([article("first", "Talks", "Negotiators met in Cairo on Monday.")])
    assert ranked_articles_of(retriever, "Cairo negotiators") == ["first"]

    bot.ingest([article("second", "Zanzibar", "A ferry to Zanzibar was delayed by storms.")])
    assert ranked_articles_of(retriever, "Zanzibar ferry")[0] == "second"

    # An update that leaves fewer chunks: the old chunks' words are gone from the index.
    long_body = " ".join(f"Sentence {n} mentions the pangolin sanctuary." for n in range(10))
    bot.ingest([article("third", "Sanctuary", long_body)])
    chunks_before = bot.store.lexical.chunk_count()
    bot.ingest([article("third", "Sanctuary", "The sanctuary closed.")])
    assert bot.store.lexical.chunk_count() < chunks_before
    assert bot.store.lexical.chunk_count() == bot.store.count()
    lexical = Retriever(bot.store, bot.embedder, mode="lexical")
    assert lexical.search(Query("pangolin"), 5) == []
    assert bot.store.lexical.search(terms("pangolin"), 5) == []


def ranked_articles_of(retriever: Retriever, question: str) -> list[str]:
    return [p.article_id for p in retriever.search(retriever.understand(question), 4)]


@pytest.mark.slow
def test_a_reader_sees_another_process_ingest_without_a_restart(make_bot) -> None:
    bot = make_bot()
    bot.retriever.config = RetrievalConfig(check_interval=0.0)
    bot.ingest([article("first", "Talks", "Negotiators met in Cairo on Monday.")])
    assert ranked_articles_of(bot.retriever, "Cairo") == ["first"]

    other = make_bot()  # another Store and Ingestor on the same path, as another process has
    assert other.store is not bot.store
    other.ingest([article("second", "Zanzibar", "A ferry to Zanzibar was delayed by storms.")])

    assert ranked_articles_of(bot.retriever, "Zanzibar ferry")[0] == "second"


@pytest.mark.slow
def test_searches_from_many_threads_during_an_ingest(make_bot) -> None:
    bot = make_bot()
    bot.ingest(BLACK_FRIDAY)
    errors: list[BaseException] = []
    results: list[list[str]] = []

    def ask() -> None:
        try:
            for _ in range(3):
                query = bot.retriever.understand("Which power bank did Wired recommend?")
                results.append([p.article_id for p in bot.retriever.search(query, 3)])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    bot.ingest(REFEREE_ARTICLES)
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(results) == 12 and all(found[0] == "wired-deals" for found in results)


@pytest.mark.slow
def test_as_retriever_is_a_base_retriever(deals_bot) -> None:
    from langchain_core.retrievers import BaseRetriever

    retriever = deals_bot.as_retriever(k=2)
    assert isinstance(retriever, BaseRetriever)
    documents = retriever.invoke("What did Wired recommend for Black Friday?")
    assert len(documents) == 2
    assert documents[0].metadata["source"] == "Wired"
    assert documents[0].page_content in BLACK_FRIDAY[1].body


def wire_candidates(texts: dict[str, str]) -> dict[str, Candidate]:
    """Candidates of one outlet, their article the chunk id's part before '#'."""
    return {
        chunk_id: Candidate(chunk_id, chunk_id.split("#")[0], text, {"source": "Wire"})
        for chunk_id, text in texts.items()
    }


def test_selection_takes_one_chunk_per_article_first_and_collapses_copies() -> None:
    """Selection is a pure function of candidate lists: no store, no model."""
    texts = {
        "a#0": "Qatar said the talks were positive.",
        "a#1": "Qatar also said a deal was near.",
        "b#0": "Qatar said the talks were positive.",  # a copy of a#0 in another article
        "c#0": "Egypt will host the next round in Cairo.",
    }
    candidates = wire_candidates(texts)
    whole = Ranked(["a#0", "a#1", "b#0", "c#0"], {"a#0": 4, "a#1": 3, "b#0": 2, "c#0": 1})
    config = RetrievalConfig(first_article_chunks=1, coverage_weight=0)
    chosen = select([], whole, 3, candidates, config)
    assert [chunk_id for chunk_id, _, _, _ in chosen] == ["a#0", "c#0", "a#1"]
    assert chosen[0][3] == ("b",)  # b's identical chunk is collapsed into a's


def test_a_dated_parts_list_is_read_on_only_where_selection_walks() -> None:
    """A dated part votes with its best chunk, so only that is read first; selection reads on
    when the part's best article is taken already, and through a chunk it takes from the fused
    list, to give it the part whose list ranks it (x#0 is gone from the store: not shown)."""
    texts = {
        "a#0": "Qatar said the talks were positive.",
        "a#1": "Qatar also said a deal was near.",
        "b#0": "Egypt will host the next round in Cairo.",
        "c#0": "Mediators flew to Doha on Monday.",
        "d#0": "Rain fell over the capital.",
    }
    candidates = wire_candidates(texts)
    first = Ranked(["a#0"], {}, part=0, votes=1, unread=["x#0", "c#0"])
    second = Ranked(["a#1"], {}, part=1, votes=1, unread=["b#0"])
    whole = Ranked(["d#0", "c#0"], {"d#0": 2.0, "c#0": 1.0})
    reads = []

    def more(part: Ranked, through: str | None) -> Ranked:
        reads.append((part.part, through))
        stop = len(part.unread) if through is None else part.unread.index(through) + 1
        shown = [chunk_id for chunk_id in part.unread[:stop] if chunk_id in candidates]
        return replace(part, ids=part.ids + shown, unread=part.unread[stop:])

    config = RetrievalConfig(coverage_weight=0)
    chosen = select([first, second], whole, 4, candidates, config, more=more)
    assert [(chunk_id, part) for chunk_id, _, part, _ in chosen] == [
        ("a#0", 0),
        ("b#0", 1),  # a#1's article is taken: the second part's next article
        ("d#0", None),
        ("c#0", 0),
    ]
    assert reads == [(1, None), (0, "c#0")]


def test_coverage_takes_the_report_of_another_question_word_then_keeps_score_order() -> None:
    texts = {
        "a#0": "Qatar hosted the talks.",
        "b#0": "Qatar hosted the talks again.",
        "c#0": "Egypt hosted the talks.",
        "d#0": "Rain fell.",
        "e#0": "Snow fell.",
        "f#0": "Qatar rested.",
    }
    candidates = wire_candidates(texts)
    scores = {"a#0": 5.0, "b#0": 4.0, "c#0": 3.0, "d#0": 2.0, "e#0": 2.0, "f#0": 1.0}
    merged = Ranked(list(scores), scores)
    question_terms = {term: 1.0 for term in terms("Qatar Egypt")}
    ordered = by_coverage(merged, [], 2, question_terms, candidates, RetrievalConfig())
    # Egypt's report before Qatar's second; then nothing is left to cover: by score, ties in
    # the order the list had them.
    assert ordered.ids == ["a#0", "c#0", "b#0", "d#0", "e#0", "f#0"]


@pytest.mark.slow
def test_latest_puts_the_newest_report_first(make_bot) -> None:
    bot = make_bot()
    bot.ingest(
        [
            article(
                "talks-1",
                "Ceasefire talks in Cairo",
                "Negotiators met in Cairo to discuss a ceasefire and the release of hostages.",
                day="2024-02-01",
            ),
            article(
                "talks-2",
                "Ceasefire talks resume",
                "Ceasefire negotiators met again in Cairo to discuss the hostages.",
                day="2024-02-07",
            ),
            article("weather", "Weather", "Rain is expected in Cairo.", day="2024-02-08"),
        ]
    )
    latest = ranked_articles(bot, "What is the latest on the Cairo ceasefire talks?", k=2)
    assert latest[0] == "talks-2"
    query = bot.retriever.understand("the most recent news on the Cairo ceasefire talks")
    assert query.filters["latest"] is True


# A question that names one outlet twice ("TechCrunch's first article ..., its second ...") and
# another once; six TechCrunch reports share its words.
TRIAL = [
    article(
        "tc-ellison",
        "Ellison testifies",
        "Caroline Ellison told the jury that Sam Bankman-Fried directed her to take billions in "
        "customer funds to repay Alameda's lenders.",
        source="TechCrunch",
        day="2023-10-11",
    ),
    article(
        "tc-greed",
        "Prosecutors close",
        "Prosecutors said Sam Bankman-Fried committed fraud for personal gain, wealth and power.",
        source="TechCrunch",
        day="2023-11-02",
    ),
    article(
        "tc-verdict",
        "FTX verdict",
        "A jury found Sam Bankman-Fried guilty on seven counts of fraud and conspiracy.",
        source="TechCrunch",
        day="2023-11-03",
    ),
    article(
        "tc-binance",
        "Binance settles",
        "Binance agreed to pay billions to settle charges; its founder stepped down.",
        source="TechCrunch",
        day="2023-11-21",
    ),
    article(
        "tc-crypto",
        "Crypto funds",
        "Crypto funds saw customer withdrawals as FTX collapsed and lenders took losses.",
        source="TechCrunch",
        day="2023-10-20",
    ),
    article(
        "tc-tokens",
        "FTT tokens",
        "FTX's own token lost most of its value in days, and Alameda's lenders were repaid late.",
        source="TechCrunch",
        day="2023-10-25",
    ),
    article(
        "verge-growth",
        "SBF on the stand",
        "Sam Bankman-Fried said he struggled to manage the rapid growth of FTX and Alameda "
        "Research.",
        source="The Verge",
        day="2023-10-28",
    ),
    article(
        "verge-judge",
        "The judge asks",
        "Only after the judge asked did Bankman-Fried admit he knew about the $8 billion hole in "
        "FTX's accounts.",
        source="The Verge",
        day="2023-10-31",
    ),
    article(
        "verge-phone",
        "A phone review",
        "The new phone has a brighter screen and a bigger battery.",
        source="The Verge",
        day="2023-10-30",
    ),
]


@pytest.mark.slow
def test_an_outlet_named_twice_leaves_room_for_the_other_outlets_reports(make_bot) -> None:
    bot = make_bot()
    bot.ingest(TRIAL)
    query = bot.retriever.understand(
        "Does TechCrunch's first article say Caroline Ellison took customer funds on Sam "
        "Bankman-Fried's instruction, while The Verge reports he struggled to manage FTX, and "
        "TechCrunch's second article says he acted for personal gain?",
        today=date(2024, 1, 1),
    )
    assert [part["label"] for part in query.filters["parts"]] == [
        "TechCrunch",
        "The Verge",
        "TechCrunch",
    ]
    found = [p.article_id for p in bot.retriever.search(query, 5)]
    # Both Verge reports on the trial, not a fourth and fifth TechCrunch one.
    assert {"tc-ellison", "tc-greed", "verge-growth", "verge-judge"} <= set(found)


@pytest.mark.slow
def test_a_report_pinned_to_a_day_does_not_bring_that_days_other_reports(make_bot) -> None:
    bot = make_bot()
    other_deals = [
        article(
            "verge-tv",
            "TV deals",
            "OLED televisions are cheaper than ever this Black Friday.",
            source="The Verge",
            day="2023-11-24",
        ),
        article(
            "verge-games",
            "Game deals",
            "Console games are half price this Black Friday weekend.",
            source="The Verge",
            day="2023-11-24",
        ),
        article(
            "wired-shoes",
            "Running shoe deals",
            "Running shoes are discounted this Black Friday.",
            source="Wired",
            day="2023-11-25",
        ),
        article(
            "age-chargers",
            "Chargers in Australia",
            "Australian shoppers bought 10,000mAh power banks and universal travel adapters in "
            "record numbers.",
            source="The Age",
            day="2023-11-20",
        ),
    ]
    bot.ingest([a for a in BLACK_FRIDAY if a.id in ("verge-deals", "wired-deals")] + other_deals)
    query = bot.retriever.understand(
        "Does the report from The Verge on 2023-11-24 agree with Wired's the next day about "
        "10,000mAh power banks and travel adapters?",
        today=date(2024, 1, 1),
    )
    found = [p.article_id for p in bot.retriever.search(query, 3)]
    assert set(found[:2]) == {"verge-deals", "wired-deals"}
    # The Age's report on the same chargers, not what else The Verge and Wired sold those days.
    assert found[2] == "age-chargers"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
def test_a_report_dated_a_day_off_is_still_found(deals_bot, mode: str) -> None:
    # Wired published nothing the day before: that part keeps its outlet only, and says so.
    retriever = Retriever(deals_bot.store, deals_bot.embedder, mode=mode)  # type: ignore[arg-type]
    query = retriever.understand(
        "Does the report from The Verge on 2023-11-24 agree with Wired's the day before about "
        "10,000mAh power banks?",
        today=date(2024, 1, 1),
    )
    passages = retriever.search(query, 2)
    assert query.filters["relaxed"] == ["Wired, 2023-11-23"]
    assert {(p.article_id, p.part) for p in passages} == {("verge-deals", 0), ("wired-deals", 1)}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
def test_a_question_is_embedded_once_and_not_for_a_lexical_search(deals_bot, mode: str) -> None:
    # Understanding starts the question's embedding, which its search then uses.
    embedded: list[str] = []

    class Counting:
        identity, max_tokens = deals_bot.embedder.identity, deals_bot.embedder.max_tokens

        def embed(self, texts: list[str]):  # type: ignore[no-untyped-def]
            embedded.extend(texts)
            return deals_bot.embedder.embed(texts)

    retriever = Retriever(deals_bot.store, Counting(), mode=mode)  # type: ignore[arg-type]
    question = "What did Wired say about power banks?"
    passages = retriever.search(retriever.understand(question), 2)
    assert embedded == ([] if mode == "lexical" else [question])
    assert passages and passages[0].article_id == "wired-deals"
    # A query whose text a caller changed is searched with the new text's vector.
    rewritten = "What did Wired say about chargers?"
    retriever.search(replace(retriever.understand(question), text=rewritten), 2)
    assert embedded[-1:] == ([] if mode == "lexical" else [rewritten])
