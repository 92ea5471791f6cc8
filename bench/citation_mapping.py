"""How well an LLM claim's [n] is mapped to the sentence of passage n that says what it says.

    .venv/bin/python bench/citation_mapping.py

Claims written by hand as a model would paraphrase the sample articles (samples/articles and
samples/questions/articles), each citing the whole article as one passage: `supported` claims name
the sentence that says them, `unsupported` ones say something the article does not. The `dev`
set chose NEWSBOT_CITATION_MIN_SIMILARITY and the name tie-break; `held_out` (written at the same
time, not looked at while choosing) is the figure to report. Prints, per set: the share of
supported claims mapped to their sentence by word overlap (the mapping before embeddings) and by
the embedding model, and, per threshold, supported claims kept / unsupported claims dropped.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
CEASEFIRE = ROOT / "samples/articles/2024-02-07-ceasefire-talks.txt"
OWN = ROOT / "samples/questions/articles"
STRIKE = OWN / "2024-03-12-riverton-transit-strike.txt"
KESTREL = OWN / "2024-05-03-kestrel-probe-launch-delay.txt"
CYCLING = OWN / "2024-06-30-lakeshore-cycling-final.txt"
MEASLES = OWN / "2024-09-18-kenya-measles-campaign.txt"

# (article, claim, a phrase of the sentence that supports it, or None when none does)
DEV = [
    (CEASEFIRE, "Qatar's prime minister called Hamas's reply broadly positive.", "in general"),
    (
        CEASEFIRE,
        "Al Thani said he could not share details because the moment is sensitive.",
        "in general",
    ),
    (CEASEFIRE, "Hamas said it had looked at the plan positively.", "positive spirit"),
    (
        CEASEFIRE,
        "Hamas delivered its answer to the Paris framework in Qatar.",
        "entered into Qatar",
    ),
    (
        CEASEFIRE,
        "Netanyahu's office said officials were studying the details closely.",
        "thoroughly evaluated",
    ),
    (CEASEFIRE, "Israeli leaders read the militants' position as a no.", "rejection"),
    (CEASEFIRE, "The top US diplomat said a deal was achievable and necessary.", "essential"),
    (CEASEFIRE, "Blinken echoed the Qatari view.", "similar vein"),
    (CEASEFIRE, "Netanyahu vowed to fight on until victory.", "victory"),
    (CEASEFIRE, "Egypt and Qatar are working hard on a new truce.", "intensive contact"),
    (CEASEFIRE, "A ceasefire was signed in Cairo on Friday.", None),
    (CEASEFIRE, "Blinken announced new sanctions on Iran.", None),
    (CEASEFIRE, "The UN Security Council voted on a resolution.", None),
    (STRIKE, "The union wants a nine percent pay rise over two years.", "9 percent"),
    (STRIKE, "Okafor said drivers were offered less than the rate of inflation.", "inflation"),
    (STRIKE, "The mayor said the walkout was very disappointing.", "deeply disappointing"),
    (STRIKE, "Replacement buses will serve the three busiest lines.", "shuttle"),
    (STRIKE, "The previous strike, eight years earlier, lasted nine days.", "2016"),
    (STRIKE, "About 180,000 riders were left without buses and trams.", "180,000"),
    (STRIKE, "The drivers accepted the city's offer on Wednesday.", None),
    (STRIKE, "Riverton's airport was closed by the strike.", None),
    (KESTREL, "The probe's launch was pushed back to mid-September.", "September 14"),
    (KESTREL, "Havel said losing months on the ground beats losing the mission.", "rather lose"),
    (KESTREL, "JAXA said the science goals stay the same.", "science plan"),
    (KESTREL, "The spacecraft cost roughly 620 million euros.", "620 million"),
    (KESTREL, "The probe will now swing past Earth in 2025.", "flyby"),
    (KESTREL, "The rocket exploded on the launch pad.", None),
    (KESTREL, "NASA is building a rival comet mission.", None),
]
HELD_OUT = [
    (CYCLING, "Njoroge beat Verbeke by a very small margin.", "half a wheel"),
    (CYCLING, "She is the first rider from Africa to win the race.", "first African"),
    (CYCLING, "Njoroge said she felt she had nothing to lose near the end.", "nothing to lose"),
    (CYCLING, "Verbeke admitted her rival was quicker and made no excuses.", "no excuses"),
    (CYCLING, "The decisive moment came on the last climb.", "Harrow Hill"),
    (CYCLING, "Her manager called the victory a reward for patience.", "patience"),
    (CYCLING, "About forty thousand fans watched along the route.", "40,000"),
    (CYCLING, "Njoroge crashed in the final sprint.", None),
    (CYCLING, "The race will be moved to Spain next year.", None),
    (MEASLES, "Kenya started a two-week measles vaccination drive.", "two-week"),
    (MEASLES, "The campaign targets 3.5 million young children.", "3.5 million"),
    (MEASLES, "Barasa said no child should die of a preventable disease.", "No child"),
    (MEASLES, "The WHO said second-dose coverage had dropped to 65 percent.", "65 percent"),
    (MEASLES, "Diallo described the effort as a race against the rains.", "rainy season"),
    (MEASLES, "The doctors' union warned that northern clinics lack nurses.", "lacked nurses"),
    (MEASLES, "Twenty-one people have died since January.", "21 deaths"),
    (MEASLES, "The vaccine will cost parents 500 shillings.", None),
    (MEASLES, "Uganda closed its border with Kenya.", None),
]
THRESHOLDS = (0.25, 0.3, 0.35, 0.4, 0.45, 0.5)


def main() -> None:
    from bot.llm import SentenceMatcher
    from bot.retrieve import Passage
    from bot.settings import load_settings
    from index.embed import load_embedder
    from index.read import read_text
    from index.text import query_terms

    settings = load_settings()
    embedder = load_embedder(settings)

    def passage_of(path: Path) -> Passage:
        article = read_text(path.read_text(encoding="utf-8"), str(path))
        meta = {"article_id": article.id, "title": article.title, "chunk_start": 0}
        return Passage(chunk_id=article.id, text=article.body, metadata=meta, score=1.0)

    def lexical(claim: str, passage: Passage) -> str:
        from bot.answer import sentence_pool

        words = set(query_terms(claim))
        pool = sentence_pool([passage]).sentences
        return max(pool, key=lambda s: (len(s.words & words), -s.start)).text

    for name, claims in (("dev", DEV), ("held_out", HELD_OUT)):
        matcher = SentenceMatcher(embedder.embed, min_similarity=-1.0, allow_instructions=False)
        supported = [(c, p, passage_of(a)) for a, c, p in claims if p]
        unsupported = [(c, passage_of(a)) for a, c, p in claims if not p]
        started = time.perf_counter()
        right_lexical = sum(phrase in lexical(c, passage) for c, phrase, passage in supported)
        found = [(matcher.best(c, passage), phrase) for c, phrase, passage in supported]
        right = sum(bool(f and phrase in f[0].text) for f, phrase in found)
        similar = [f[1] for f, _ in found if f]
        other = [matcher.best(c, passage) for c, passage in unsupported]
        stray = [o[1] for o in other if o]
        seconds = time.perf_counter() - started
        print(f"{name}: {len(supported)} supported claims, {len(unsupported)} unsupported")
        print(
            f"  mapped to their sentence: words {right_lexical}/{len(supported)}, "
            f"meaning + word share {right}/{len(supported)} ({seconds:.2f} s for the set)"
        )
        print(
            f"  best support: supported median {statistics.median(similar):.2f} "
            f"min {min(similar):.2f}; unsupported median {statistics.median(stray):.2f} "
            f"max {max(stray):.2f}"
        )
        for threshold in THRESHOLDS:
            kept = sum(s >= threshold for s in similar)
            dropped = sum(s < threshold for s in stray)
            print(
                f"  threshold {threshold:.2f}: supported kept {kept}/{len(similar)}, "
                f"unsupported dropped {dropped}/{len(stray)}"
            )
        for (f, phrase), (claim, _, _) in zip(found, supported, strict=True):
            if not f or phrase not in f[0].text:
                print(f"  missed: {claim!r} -> {f[0].text[:70] if f else None!r}")


if __name__ == "__main__":
    main()
