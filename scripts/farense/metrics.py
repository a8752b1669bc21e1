"""Answer-quality and loss metrics: SQuAD's exact match and token F1, adapted to Portuguese, and
perplexity.

SQuAD normalises an answer by lower-casing it, dropping punctuation and the English articles and
collapsing spaces. Here: Unicode NFC first (a decomposed "é" equals a composed one), then lower
case; accents are kept ("é" and "e" differ, as they do in Portuguese: "e" is "and"), punctuation
is dropped except inside numbers and scores ("4-1", "1.ª", "1970/71" stay one token), and the
Portuguese articles (o, a, os, as, um, uma, uns, umas) are dropped.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter

ARTICLES = frozenset({"o", "a", "os", "as", "um", "uma", "uns", "umas"})
# Punctuation between two digits ("4-1", "1970/71", "2,5") is part of the number.
_INNER_NUMBER_PUNCT = re.compile(r"(?<=\d)[-/.,:](?=\d)")
_KEEP = "\u0000"


def normalize_answer(text: str) -> str:
    text = unicodedata.normalize("NFC", text).casefold()
    text = text.replace("ª", "a").replace("º", "o")
    text = _INNER_NUMBER_PUNCT.sub(lambda m: _KEEP + str(ord(m.group(0))) + _KEEP, text)
    text = "".join(" " if unicodedata.category(ch).startswith(("P", "S")) else ch for ch in text)
    text = re.sub(_KEEP + r"(\d+)" + _KEEP, lambda m: chr(int(m.group(1))), text)
    return " ".join(word for word in text.split() if word not in ARTICLES)


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not predicted or not expected:
        return float(predicted == expected)  # both empty: 1; one empty: 0 (as SQuAD)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def perplexity(mean_token_loss: float) -> float:
    """exp of the mean negative log-likelihood per token (natural log), as mlx_lm lora --test prints."""
    return math.exp(mean_token_loss)
