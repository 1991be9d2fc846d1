"""Intent classification over the recognizer's text: weighted key phrases per intent.

Rules rather than a trained model: the domain is tiny, the rules read like the business's
own FAQ, and they degrade gracefully on recognition errors (one surviving key word is
enough). The weights were tuned on the corpus's *train* voices only (`talkover bench
intents --split train`); the held-out voices measure them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from engine.agents.receptionist.script import FALLBACK, INTENT_NAMES

# (regex over normalized text, weight): 3 = decisive on its own, 2 = strong, 1 = a hint.
RULES: dict[str, tuple[tuple[str, int], ...]] = {
    "hours": (
        (r"\bopen(ing)?\b", 2), (r"\bhours?\b", 3), (r"\bclos(e|ed|ing)\b", 2), (r"\bwhat time\b", 2),
        (r"\bhow late\b", 2), (r"\b(saturdays?|sundays?|weekends?)\b", 1), (r"\btonight\b", 1),
    ),
    "address": (
        (r"\baddress\b", 3), (r"\bwhere\b", 1), (r"\blocat(ed|ion)\b", 3), (r"\bdirections?\b", 3),
        (r"\bstreet\b", 2), (r"\bfind you\b", 3), (r"\bget (to|there)\b", 2), (r"\b(office|practice|clinic)\b", 1),
    ),
    "book": (
        (r"\bbook(ing)?\b", 1), (r"\bbook (an|a|me|in)\b", 2), (r"\bappointments?\b", 1), (r"\bmake an appointment\b", 2),
        (r"\bschedul(e|ed|ing)\b", 3), (r"\bfit me in\b", 3), (r"\bsee (the|a) dentist\b", 3),
        (r"\bfree appointments?\b", 2), (r"\b(checkup|check up|cleaning)\b", 1),
    ),
    "cancel": (
        (r"\bcancel(l?ed|l?ing)?\b", 3), (r"\breschedul", 4), (r"\bmove\b", 2), (r"\bchange\b", 2),
        (r"\bcan'?t make\b", 2), (r"\banother day\b", 2),
    ),
    "prices": (
        (r"\bhow much\b", 3), (r"\bcosts?\b", 3), (r"\bprices?\b", 3), (r"\bcharge\b", 3),
        (r"\bexpensive\b", 3), (r"\bpay\b", 2), (r"\bdollars?\b", 2),
    ),
    "insurance": (
        (r"\binsurance\b", 4), (r"\b(delta|cigna|aetna)\b", 3), (r"\bplans?\b", 2), (r"\bcover(ed|s)?\b", 2),
        (r"\bin network\b", 3),
    ),
    "parking": (
        (r"\bpark(ing)?\b", 4), (r"\bcar\b", 2), (r"\bcar park\b", 2),
    ),
    "emergency": (
        (r"\bemergency\b", 4), (r"\bpain\b", 3), (r"\bhurt(s|ing)?\b", 3), (r"\btoothache\b", 4),
        (r"\b(broke|chipped)\b", 2), (r"\bbroken\b", 1), (r"\bswollen\b", 3), (r"\burgent(ly)?\b", 3),
    ),
    "person": (
        (r"\b(person|human|somebody|someone|anybody|anyone)\b", 2), (r"\breceptionist\b", 3),
        (r"\bfront desk\b", 3), (r"\btransfer\b", 3), (r"\b(speak|talk) (to|with)\b", 3),
        (r"\bput me through\b", 3), (r"\breal person\b", 2),
    ),
    "goodbye": (
        (r"\b(good ?bye|bye)\b", 3), (r"\bthat'?s (all|everything)\b", 3), (r"\bthanks?\b", 1),
        (r"\bthank you\b", 1), (r"\bhave a (good|nice) day\b", 2),
    ),
    "repeat": (
        (r"\brepeat\b", 3), (r"\bagain\b", 1), (r"\b(say|said) (that|it) again\b", 2), (r"\bcome again\b", 3),
        (r"\bpardon\b", 3), (r"\bwhat did you say\b", 4), (r"\bwhat was that\b", 2), (r"\bcatch that\b", 3),
        (r"\bsorry\b", 1),
    ),
}

MIN_SCORE = 2  # below this the caller gets the fallback ("sorry, I can help with ...")

_COMPILED = {name: tuple((re.compile(p), w) for p, w in rules) for name, rules in RULES.items()}
assert set(_COMPILED) == set(INTENT_NAMES), "every intent needs rules"


@dataclass(slots=True)
class IntentMatch:
    intent: str
    score: int
    scores: dict[str, int] = field(default_factory=dict)


def normalize(text: str) -> str:
    text = text.lower().replace("’", "'")
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def classify(text: str) -> IntentMatch:
    """The best-scoring intent, or the fallback when nothing scores MIN_SCORE. Ties go to the
    intent listed first in script.INTENTS."""
    norm = normalize(text)
    scores = {name: sum(w for rx, w in rules if rx.search(norm)) for name, rules in _COMPILED.items()}
    best = max(INTENT_NAMES, key=lambda n: scores[n])  # max keeps the first of equals
    if scores[best] < MIN_SCORE:
        return IntentMatch(FALLBACK.name, scores[best], scores)
    return IntentMatch(best, scores[best], scores)
