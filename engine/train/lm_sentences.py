"""What the agent says, for training and measuring the unit LM: the receptionist's own replies
and sentences drawn from a small grammar of its domain (times, days, prices, names, visits).

Sentences whose text `engine.train.data.is_heldout_text` marks (one in four, by a hash of the
text) are never trained on; `talkover bench model` speaks held-out ones.
"""

from __future__ import annotations

import random

from engine.agents.receptionist.script import FALLBACK, GENERAL_SENTENCES, INTENTS, WELCOME
from engine.train.data import is_heldout_text

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
TIMES = ("eight", "nine", "ten", "eleven", "twelve", "one", "two", "three", "four", "five", "half past nine",
         "a quarter past ten", "half past two", "a quarter to four", "noon")
PARTS = ("in the morning", "in the afternoon", "in the evening")
PRICES = ("forty", "fifty five", "sixty", "seventy five", "eighty", "ninety five", "one hundred and twenty",
          "one hundred and fifty", "two hundred", "two hundred and fifty", "three hundred")
NAMES = ("Doctor Miller", "Doctor Patel", "Doctor Chen", "Doctor Garcia", "our hygienist Sarah",
         "Doctor Brown", "our nurse Emma", "Doctor Novak")
VISITS = ("a checkup", "a cleaning", "a filling", "a crown", "a root canal", "a whitening session",
          "an x-ray", "a consultation", "a follow-up visit", "an emergency visit", "a children's checkup")
THINGS = ("your insurance card", "a list of your medicines", "your old x-rays", "a photo ID",
          "the referral letter", "your appointment card")
PLACES = ("the post office", "the library", "the bakery", "the bus stop", "the bank", "the train station",
          "the pharmacy", "the park")
WEEKS = ("this week", "next week", "tomorrow", "the day after tomorrow", "next month")

TEMPLATES = (
    "Your appointment is on {day} at {time} {part}.",
    "I have a free slot on {day} at {time} {part}.",
    "{name} can see you on {day} at {time}.",
    "{name} is not working on {day}.",
    "{visit} costs {price} dollars.",
    "The price for {visit} is {price} dollars.",
    "Please bring {thing} to your visit.",
    "Could you bring {thing} on {day}?",
    "We are next to {place}.",
    "Our office is across the road from {place}.",
    "I can book {visit} for you {week}.",
    "Would {day} at {time} {part} suit you?",
    "Sorry, {day} is fully booked. How about {day2}?",
    "We will send you a text message on {day}.",
    "Your {visit2} with {name} is confirmed.",
    "{name} will call you back {week}.",
    "Please arrive ten minutes before {time} {part}.",
    "We close at {time} on {day}.",
    "On {day} we open at {time} {part}.",
    "Is {visit} with {name} on {day} all right?",
    "I have moved your appointment to {day} at {time}.",
    "Your insurance covers {visit}, but not {visit3}.",
    "That will be {price} dollars, and you can pay by card.",
    "Let me check the calendar for {week}.",
    "The next free time for {visit} is {day} {part}.",
    "Thank you. I have written that down for {day}.",
    "I am sorry, {name} is with a patient right now.",
    "Parking is free behind the building, near {place}.",
)


def _fill(template: str, rng: random.Random) -> str:
    days = rng.sample(DAYS, 2)
    visit, visit3 = rng.sample(VISITS, 2)
    text = template.format(day=days[0], day2=days[1], time=rng.choice(TIMES), part=rng.choice(PARTS),
                           price=rng.choice(PRICES), name=rng.choice(NAMES), visit=visit,
                           visit2=visit.split(" ", 1)[1], visit3=visit3, thing=rng.choice(THINGS),
                           place=rng.choice(PLACES), week=rng.choice(WEEKS))
    return text[0].upper() + text[1:]


def domain_sentences(count: int, seed: int = 0) -> list[str]:
    """`count` distinct grammar sentences (train and held-out mixed; split them with is_heldout_text)."""
    rng, seen, out = random.Random(seed), set(), []
    for _ in range(count * 50):
        if len(out) >= count:
            break
        text = _fill(rng.choice(TEMPLATES), rng)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def script_sentences() -> list[str]:
    """The receptionist's replies, the callers' phrasings and the general sentences."""
    texts = [WELCOME, FALLBACK.reply] + [i.reply for i in INTENTS if i.reply]
    texts += [p for i in INTENTS for p in i.phrasings] + list(GENERAL_SENTENCES)
    return list(dict.fromkeys(texts))


def training_texts(count: int, seed: int = 0) -> list[str]:
    """Utterances to synthesize for training: every non-held-out script sentence, then grammar
    sentences, some joined in twos (multi-sentence replies), none of them held out."""
    out = [t for t in script_sentences() if not is_heldout_text(t)]
    rest = [t for t in domain_sentences(count * 2, seed) if not is_heldout_text(t)]
    rng = random.Random(seed + 1)
    while rest and len(out) < count:
        if len(rest) >= 2 and rng.random() < 0.25:
            out.append(rest.pop() + " " + rest.pop())
        else:
            out.append(rest.pop())
    return out[:count]


def heldout_texts(count: int, seed: int = 0) -> list[str]:
    """Held-out domain sentences for the bench: the held-out replies first, then grammar sentences."""
    replies = [t for t in [WELCOME, FALLBACK.reply] + [i.reply for i in INTENTS if i.reply] if is_heldout_text(t)]
    grammar = [t for t in domain_sentences(count * 8, seed + 1000) if is_heldout_text(t)]
    return (replies + grammar)[:count]
