"""Sentences with times, as FunASR's `sentence_info`: an offline ASR model's timed tokens, split where the
punctuation model put a mark. Pure functions over answers, run by the flows."""

from __future__ import annotations

from wire.views import Sentence

MARKS = frozenset("，。？！、；：,.?!;:")


def sentences(words: list[tuple[str, int, int]], punctuated: str | None) -> list[Sentence]:
    """Walk the punctuated text alongside the tokens: each mark closes a sentence. Without punctuation (or none
    in it) the tokens make one sentence. A token the punctuation model rewrote still counts by its length."""
    if not words:
        return []
    if not punctuated:
        return [sentence(" ".join(w for w, _, _ in words), words)]
    done: list[Sentence] = []
    timed: list[tuple[str, int, int]] = []
    text, index, used = "", 0, 0
    for char in punctuated:
        if char in MARKS:
            text += char
            if timed:
                done.append(sentence(text.strip(), timed))
                text, timed = "", []
            continue
        text += char
        if char.isspace() or index >= len(words):
            continue
        if used == 0:
            timed.append(words[index])
        used += 1
        if used >= len(words[index][0]):
            index, used = index + 1, 0
    timed += words[index + (used > 0):] if index < len(words) else []
    if timed:
        done.append(sentence(text.strip(), timed))
    return done


def sentence(text: str, words: list[tuple[str, int, int]]) -> Sentence:
    return Sentence(text=text, start=words[0][1], end=words[-1][2], timestamp=[[s, e] for _, s, e in words])


def shifted(words: list[tuple[str, int, int]], offset_ms: int) -> list[tuple[str, int, int]]:
    """A segment's token times, moved to the recording's clock."""
    return [(w, s + offset_ms, e + offset_ms) for w, s, e in words]
