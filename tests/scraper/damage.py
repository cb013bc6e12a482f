"""Damaged documents for the parsers' fuzz tests: what a changed or broken page looks like."""

from __future__ import annotations

import random

WRONG_VALUES: tuple[object, ...] = (None, "", 0, [], {}, "x", True, 7.5)


def damaged(doc: object, rng: random.Random, rate: float) -> object:
    """``doc`` with keys dropped, values nulled or swapped for the wrong type, at random."""
    if isinstance(doc, dict):
        out = {}
        for key, value in doc.items():
            roll = rng.random()
            if roll < rate / 3:
                continue
            if roll < rate * 2 / 3:
                out[key] = rng.choice(WRONG_VALUES)
            else:
                out[key] = damaged(value, rng, rate)
        return out
    if isinstance(doc, list):
        return [damaged(v, rng, rate) for v in doc if rng.random() >= rate / 3]
    return doc
