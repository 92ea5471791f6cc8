"""A deterministic stand-in for the embedding model, for unit tests of logic that needs vectors
but not their quality (Slack plumbing, the LangChain faces, the CLI's wiring): each word is hashed
into one of DIMENSION buckets, so texts sharing words are close. Loads in no time; tests of what
retrieval finds use the real model (tests/integration)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from index.embed import EmbeddingIdentity

DIMENSION = 256
_WORD = re.compile(r"\w+")


class HashingEmbedder:
    identity = EmbeddingIdentity("fake-hashing", DIMENSION, "fake", "fp32")
    max_tokens = 256

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
                vectors[row, int.from_bytes(digest, "little") % DIMENSION] += 1.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1.0, norms)
