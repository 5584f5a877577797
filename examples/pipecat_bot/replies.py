"""The bot's scripted answers: a small keyword table, the same sentences the reference agent's
scripted LLM speaks (device/agent/engines/llm.py), copied so this example needs no tympan code.

The entry matching the most phrases wins (ties: the earlier entry); phrases match whole words
of the lower-cased transcript. A quiet phrase said on its own ("Stop.", "Hold on.") gets an
empty reply: the bot stays silent, as the conformance suite expects after "Stop."
"""

from __future__ import annotations

import re

QUIET_PHRASES = ("stop", "hold on", "never mind", "cancel", "wait a second")

REPLIES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("fifteen", "15", "make it"), "Okay, I changed the timer to fifteen minutes."),
    (("what time", "time"), "The time is two thirty in the afternoon."),
    (
        ("chicago", "weather", "tomorrow"),
        "Tomorrow in Chicago the weather will be windy and cool, around fifty degrees.",
    ),
    (
        ("weather", "tomorrow", "what about"),
        "The weather tomorrow will be cloudy, with a high of sixty degrees.",
    ),
    (("weather", "today"), "Today will be sunny, with a high of seventy two degrees."),
    (("timer", "ten minutes", "ten", "10"), "Okay, I set a timer for ten minutes."),
    (("timer", "twenty minutes", "twenty", "20"), "Okay, a timer for twenty minutes is running."),
    (("ounces", "pound"), "There are sixteen ounces in a pound."),
    (("grams", "ounces", "three ounces"), "Three ounces is about eighty five grams."),
    (("jazz", "play"), "Now playing some relaxing jazz music."),
    (("remind", "call", "mom"), "Sure, I will remind you to call mom at five o'clock."),
    (("romeo", "juliet", "wrote"), "Romeo and Juliet was written by William Shakespeare."),
    (
        ("moon", "how far"),
        "The moon is about three hundred eighty four thousand kilometers away from the Earth.",
    ),
    (("rain", "tomorrow"), "There is a small chance of rain tomorrow, so keep an umbrella handy."),
    (("capital", "france"), "The capital of France is Paris."),
    (("capital", "australia"), "The capital of Australia is Canberra."),
    (("miles", "convert", "kilometers"), "Five miles is about eight kilometers."),
    (("date", "today"), "Today is Friday, and the date is November twenty first."),
    (
        ("everest", "mount", "tall"),
        "Mount Everest is eight thousand eight hundred forty nine meters tall.",
    ),
    (("wake", "seven", "7", "morning"), "Okay, your alarm is set for seven tomorrow morning."),
    (
        ("weekend", "boston", "umbrella"),
        "This weekend in Boston looks mild, with showers on Saturday afternoon. "
        "Yes, bring an umbrella on Saturday.",
    ),
    (
        ("flour", "grams", "cups", "bread"),
        "Two hundred grams of flour is about one and a half cups. "
        "Spoon it into the cup and level it off for the best result.",
    ),
    (
        ("reminder", "dry cleaning", "eight", "cleaning"),
        "I set a reminder for tomorrow morning at eight to pick up your dry cleaning.",
    ),
    (
        ("snow", "temperature", "drive", "roads"),
        "Tomorrow morning the temperature will be around two degrees below freezing. "
        "Light snow is likely, so expect slippery roads.",
    ),
    (
        ("soft rock", "seventies", "relaxing", "rock"),
        "Now playing relaxing soft rock from the nineteen seventies. Enjoy your dinner.",
    ),
    (
        ("walk", "museum", "station"),
        "At five kilometers an hour, the walk from the station to the museum takes about "
        "twenty five minutes.",
    ),
    (
        ("sky", "blue", "sunset", "orange", "explain"),
        "Sunlight is made of many colors of light. When it passes through the air, the short "
        "blue waves scatter far more than the long red ones, so blue light reaches your eyes "
        "from every part of the sky. At sunset, the light travels through much more air before "
        "it reaches you. Most of the blue is scattered away on that long path, and the orange "
        "and red light is what is left. That is why the evening sky glows orange and red.",
    ),
    (
        ("celsius", "fahrenheit", "oven"),
        "Three hundred fifty degrees Fahrenheit is about one hundred seventy five degrees Celsius.",
    ),
    (("water", "plants"), "Okay, I will remind you to water the plants tonight."),
    (("beatles", "yesterday", "song"), "Now playing Yesterday by the Beatles."),
    (
        ("story", "long"),
        "Once upon a time, a lighthouse keeper lived alone on a small island. Every night he "
        "climbed the stairs, lit the lamp and watched the ships pass. One stormy evening, the "
        "lamp went out, and he carried a lantern to the top of the rocks. A fishing boat saw "
        "the small light and found its way home. The next morning, the whole village came to "
        "thank him. He smiled, and went back to polishing the great lamp.",
    ),
)
DEFAULT_REPLY = (
    "Sorry, I can help with the time, the weather, timers, music, reminders and simple facts."
)

_TOKEN_RE = re.compile(r"\s*[A-Za-z']+|\s*\d+|\s*[^\sA-Za-z'\d]")


def tokenize(text: str) -> list[str]:
    """LLM-like tokens: words with their leading space, digit runs, single punctuation."""
    return _TOKEN_RE.findall(text)


def scripted_reply(transcript: str) -> str:
    """The reply to `transcript`: the best-matching entry, "" for a lone quiet phrase, else
    the default."""
    words = " " + " ".join(re.sub(r"[^a-z0-9' ]", " ", transcript.lower()).split()) + " "
    best, best_score = DEFAULT_REPLY, 0
    for phrases, reply in REPLIES:
        score = sum(1 for p in phrases if f" {p} " in words)
        if score > best_score:
            best, best_score = reply, score
    if best_score == 0 and any(f" {p} " in words for p in QUIET_PHRASES):
        return ""
    return best
