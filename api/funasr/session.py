"""FunASR's runtime WebSocket protocol (online, offline, 2pass) on a live session of managed models.

As FunASR's clients speak it (docs/clients.md): a text frame sets the session (`mode`,
`chunk_size`, `hotwords`, `wav_name`, `wav_format`, `audio_fs`, ...; later ones update it), binary frames of any
size are audio, `{"is_speaking": false}` (or `is_finished`) ends the input. Answers always carry `mode`,
`wav_name`, `text`, `is_final`, `timestamp` (a JSON *string* of `[[start_ms, end_ms], ...]`, where the model
gave token times) and `stamp_sents`:

- `online` / `2pass-online`: the streaming model's new text (a delta) as audio comes;
- `offline` / `2pass-offline`: per VAD segment, the offline model's text (an `asr` model when configured, else the
  streaming model on the segment), punctuated, with its tokens' times;
- exactly one `is_final: true`, after the end (the last segment's answer, or an empty one), as FunASR's C++ 2pass
  server does; then the connection may start a new session.

PCM is re-buffered by bytes into `chunk_size[1]` × 60 ms steps, whatever the frame size, and resampled from
`audio_fs`. A `wav_format` naming a file (`mp3`, `wav`, ...), or audio that starts with a RIFF header (FunASR's
HTML5 page), is kept whole and decoded at the end, as FunASR's offline server does. Errors are a message with
`error: {code, message, details}` and `is_final: true`, then a close code; never a silent drop.
"""

from __future__ import annotations

import asyncio
import json
import logging

import msgspec

from api.common.decode import LiveAudio, decode_audio
from api.common.live_pump import CLOSE_IDLE, CLOSE_UNSUPPORTED, LivePump
from api.common.replies import best_text
from api.common.deps import Deps
from wire.errors import ErrorCode, SupervisorError
from flows.live import LiveOptions, LiveSession, PartialText, SegmentClosed, SegmentText
from flows.sentences import MARKS

log = logging.getLogger(__name__)

MODES = ("online", "offline", "2pass")
PCM_FORMATS = ("pcm", "")


class ClientMessage(msgspec.Struct, frozen=True):
    """A text frame: every field optional, so a later frame updates only what it names."""

    mode: str | None = None
    chunk_size: list[int] | str | None = None
    chunk_interval: int | None = None
    encoder_chunk_look_back: int | None = None   # the streaming model's own look-backs are kept (see docs/clients.md)
    decoder_chunk_look_back: int | None = None
    hotwords: str | dict[str, float] | None = None
    itn: bool | None = None
    wav_name: str | None = None
    wav_format: str | None = None
    audio_fs: int | None = None
    is_speaking: bool | None = None
    is_finished: bool | None = None
    is_end: bool | None = None


client_messages = msgspec.json.Decoder(ClientMessage)


class SessionSettings(msgspec.Struct, frozen=True):
    mode: str = "2pass"
    step_ms: int = 600
    hotwords: str = ""
    wav_name: str = "microphone"
    wav_format: str = "pcm"
    audio_fs: int = 16000
    is_end: bool = False


class StampSent(msgspec.Struct, frozen=True):
    text_seg: str
    punc: str
    start: int
    end: int
    ts_list: list[list[int]]


class ErrorInfo(msgspec.Struct, frozen=True):
    code: str
    message: str
    details: str


class Answer(msgspec.Struct, frozen=True, omit_defaults=True):
    mode: str
    wav_name: str
    text: str
    is_final: bool
    timestamp: str | None = None   # JSON text of per-token times; absent without them (FunASR's servers)
    stamp_sents: list[StampSent] = []
    is_end: bool = False
    error: ErrorInfo | None = None


encode = msgspec.json.Encoder().encode


def hotword_list(value: str | dict | None) -> str:
    """FunASR's hotwords (a JSON `{"word": weight}` string, or words separated by commas or spaces) as the
    space-separated words the offline model takes."""
    if isinstance(value, dict):
        return " ".join(value)
    if not value:
        return ""
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    words = list(parsed) if isinstance(parsed, dict) else value.replace(",", " ").split()
    return " ".join(str(w) for w in words)


def chunk_step_ms(chunk_size: list[int] | str) -> int:
    """`chunk_size` is `[past, current, future]` in 60 ms units (or the string "5,10,5"): a step is `current`."""
    parts = chunk_size.split(",") if isinstance(chunk_size, str) else chunk_size
    try:
        current = int(parts[1])
    except (IndexError, ValueError, TypeError):
        raise bad_message(f"chunk_size {chunk_size!r} is not [past, current, future]") from None
    if not 1 <= current <= 100:
        raise bad_message(f"chunk_size's current part must be 1-100 (60 ms units), got {current}")
    return current * 60


def bad_message(details: str) -> SupervisorError:
    return SupervisorError(ErrorCode.INVALID_REQUEST, "Bad session message", details)


def merged(settings: SessionSettings, message: ClientMessage) -> SessionSettings:
    if message.mode is not None and message.mode not in MODES:
        raise bad_message(f"unknown mode '{message.mode[:40]}': use online, offline or 2pass")
    if message.audio_fs is not None and not 8000 <= message.audio_fs <= 192000:
        raise bad_message(f"audio_fs {message.audio_fs} Hz is not a sample rate this server takes (8000-192000)")
    changes = {k: v for k, v in (("mode", message.mode), ("wav_name", message.wav_name),
                                 ("audio_fs", message.audio_fs), ("is_end", message.is_end)) if v is not None}
    if message.chunk_size is not None:
        changes["step_ms"] = chunk_step_ms(message.chunk_size)
    if message.hotwords is not None:
        changes["hotwords"] = hotword_list(message.hotwords)
    if message.wav_format is not None:
        changes["wav_format"] = message.wav_format.lower().lstrip(".")
    return msgspec.structs.replace(settings, **changes)


def stamp_sents(text: SegmentText) -> list[StampSent]:
    sents = []
    for sentence in text.sentence_info:
        punc = sentence.text[-1] if sentence.text and sentence.text[-1] in MARKS else ""
        sents.append(StampSent(text_seg=" ".join(sentence.text[:len(sentence.text) - len(punc)].split()),
                               punc=punc, start=sentence.start, end=sentence.end, ts_list=sentence.timestamp))
    return sents


class FunasrSession(LivePump):
    """One connection: sessions one after another, each ended by `is_speaking: false`."""

    def __init__(self, ws, deps: Deps) -> None:
        super().__init__(ws, deps)
        self.session = SessionSettings()
        self.audio = LiveAudio("pcm16", self.session.audio_fs)   # each session's own is made at its start
        self.file: bytearray | None = None    # a named file format, kept whole until the end
        self.started = False

    async def run(self) -> None:
        await self.pumping()

    async def receive(self) -> None:
        async for message in self.messages():
            if isinstance(message, bytes):
                await self.todo.put(message)
                continue
            try:
                update = client_messages.decode(message)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                await self.fail(bad_message(f"not a FunASR session message: {exc}"), CLOSE_UNSUPPORTED)
                return
            await self.todo.put(update)

    # -- the processor -----------------------------------------------------------------------------------------
    async def step(self, item) -> None:
        if isinstance(item, bytes):
            await self.audio_in(item)
            return
        fixed = msgspec.structs.replace(item, mode=None, chunk_size=None, audio_fs=None, wav_format=None)
        self.session = merged(self.session, fixed if self.started else item)  # fixed once audio came
        if item.is_speaking is False or item.is_finished:
            await self.end_of_input()

    async def audio_in(self, data: bytes) -> None:
        if not self.started:
            self.start(riff=data[:4] == b"RIFF")
        if self.file is not None:
            if len(self.file) + len(data) > self.limits.audio_bytes:
                raise SupervisorError(ErrorCode.PAYLOAD_TOO_LARGE, "Audio file too large",
                                      f"a file is limited to max_audio_mb={self.settings.max_audio_mb:g}")
            self.file += data
            return
        await self.heard(await self.current.push(await self.pcm16k(self.audio, data)))

    def start(self, riff: bool) -> None:
        """The session's first audio: its settings are fixed from here to its end. Audio that starts with a WAV
        header is a file, whatever `wav_format` says (FunASR's HTML5 page sends files so, as "PCM")."""
        mode = self.session.mode
        self.started = True
        self.begin(LiveSession(self.flows, LiveOptions(
            online=mode != "offline", offline=mode != "online", vad=mode != "online", hotwords=self.session.hotwords,
            step_ms=self.session.step_ms, max_audio_s=self.settings.ws_session_max_s)))
        self.audio = LiveAudio("pcm16", self.session.audio_fs)
        self.file = bytearray() if riff or self.session.wav_format not in PCM_FORMATS else None

    async def end_of_input(self) -> None:
        """Flush everything; the last segment's answer (or an empty one) is the session's one final message."""
        if not self.started:
            await self.send(Answer(mode=self.label(offline=True), wav_name=self.session.wav_name, text="",
                                   is_final=True, is_end=self.session.is_end))
            return
        if self.file is not None:
            pcm = await asyncio.to_thread(decode_audio, bytes(self.file), self.limits.audio_s, self.limits.decodes)
            self.file = None
            await self.heard(await self.current.push(pcm))
        else:
            await self.heard(await self.current.push(self.audio.flush()))
        # the online model's last call is not sent in 2pass (as FunASR's servers do): the offline pass answers it
        events = await self.current.cut(self.session.mode == "online")
        last = next((e for e in reversed(events) if isinstance(e, SegmentClosed) and e.answer), None)
        await self.heard([e for e in events if e is not last])
        await self.finish_later(last, ("final", self.session))
        await self.retire()
        self.started = False   # the next audio starts a new session on this connection
        self.session = msgspec.structs.replace(self.session, is_end=False)

    async def heard(self, events) -> None:
        for event in events:
            match event:
                case PartialText() if self.session.mode != "offline" and event.text:
                    await self.send(Answer(mode=self.label(offline=False), wav_name=self.session.wav_name,
                                           text=event.text, is_final=False))
                case SegmentClosed() if event.answer is not None:
                    await self.finish_later(event, ("segment", self.session))

    # -- the completer -----------------------------------------------------------------------------------------
    async def completed(self, tag, text: SegmentText | None) -> None:
        kind, session = tag
        await self.send(Answer(
            mode="2pass-offline" if session.mode == "2pass" else session.mode, wav_name=session.wav_name,
            text=best_text(text.text, text.punctuated_text) if text else "",
            is_final=kind == "final",
            timestamp=json.dumps(text.timestamp, separators=(",", ":")) if text and text.timestamp else None,
            stamp_sents=stamp_sents(text) if text else [], is_end=kind == "final" and session.is_end))

    async def segment_failed(self, tag, exc: SupervisorError) -> None:
        kind, session = tag
        await self.send(Answer(mode=self.label(offline=True), wav_name=session.wav_name, text="",
                               is_final=kind == "final", error=ErrorInfo(exc.code, exc.message, exc.details)))

    async def idle(self) -> None:
        """Between sessions (a client that keeps its connection after the final answer) idling ends it quietly."""
        if self.started:
            await super().idle()
        else:
            await self.ws.close(CLOSE_IDLE, "idle")

    # -- sending -------------------------------------------------------------------------------------------------
    def label(self, offline: bool) -> str:
        mode = self.session.mode
        return (f"2pass-{'offline' if offline else 'online'}" if mode == "2pass" else mode)

    async def send(self, answer: Answer) -> None:
        await self.ws.send(encode(answer).decode())

    async def fail(self, exc: SupervisorError, close_code: int) -> None:
        log.warning("funasr websocket %s: %s %s", self.session.wav_name, exc.code, exc.message)
        await self.send(Answer(mode=self.label(offline=True), wav_name=self.session.wav_name, text="", is_final=True,
                               error=ErrorInfo(exc.code, exc.message, exc.details)))
        await self.ws.close(close_code, exc.message[:120])
