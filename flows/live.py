"""A live audio session across managed models: what FunASR's 2pass protocol and OpenAI's Realtime transcription do.

Audio comes in pieces of any size. Each step (600 ms by default) goes at once to the session's VAD stream and to
its online (streaming ASR) stream: the VAD says where speech starts and ends, the online model gives partial text.
Each speech segment the VAD closes is cut from the audio kept since the previous one and queued whole on the
offline model (an `asr` model when one is configured, else the streaming model), then punctuated. Audio before a
closed segment's end is dropped, so a session holds at most one open segment's audio; the online stream restarts
at each segment's end and the VAD stream when it has run long, so no stream grows with the session.

Every call is an ordinary request: it queues, cold-starts and is counted like any other, and the session holds
no model loaded. The methods are coroutines of the adapter's event loop: they hand orders to the facade and await
the arbiter's Futures, so no thread is held while models work. An adapter runs `push`/`cut`/`clear`/`close` in
one task, `completed` (which only waits) in another.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from typing import Union

import msgspec

from flows.requests import Requests
from flows.sentences import sentences, shifted
from flows.transcription import TRANSCRIBERS
from supervisor.orders import Abort, Feed, LiveSessions, OpenStream
from supervisor.work import WorkResult
from wire.audio import BYTES_PER_MS
from wire.errors import ErrorCode, SupervisorError
from wire.views import Sentence


class LiveOptions(msgspec.Struct, frozen=True):
    online: bool = True                # partial text from a streaming model
    offline: bool = True               # a final text for each segment
    vad: bool = True                   # segments from the VAD (else only where the client cuts: commit, end)
    punctuate: bool = True             # where a punctuation model is configured
    hotwords: str = ""
    online_model: str | None = None    # a model name; None: the kind's default
    offline_model: str | None = None
    step_ms: int = 600
    max_audio_s: float = 3600.0


class SpeechStarted(msgspec.Struct, frozen=True):
    start_ms: int                      # from the session's start


class PartialText(msgspec.Struct, frozen=True):
    text: str                          # new online text since the last one
    final: bool = False                # the online stream's flush at the end of input


class SegmentClosed(msgspec.Struct, frozen=True):
    index: int
    start_ms: int
    end_ms: int
    audio: bytes                       # the segment's own audio: what its offline pass hears
    answer: Future | None              # its offline recognition, queued (None: no offline pass)


class SegmentText(msgspec.Struct, frozen=True):
    index: int
    start_ms: int
    end_ms: int
    text: str
    punctuated_text: str | None
    timestamp: list[tuple[int, int]]   # per token, ms from the session's start (asr models; else empty)
    sentence_info: list[Sentence]
    warnings: list[str]


LiveEvent = Union[SpeechStarted, PartialText, SegmentClosed]


def stage_models(flows: Requests, options: LiveOptions) -> tuple[str | None, str | None, str | None]:
    """(online, offline, VAD) model of a session with these options; a model that does not exist is the error."""
    sup = flows.sup
    return (sup.model_for(("streaming_asr",), options.online_model) if options.online else None,
            sup.model_for(TRANSCRIBERS, options.offline_model) if options.offline else None,
            sup.model_for(("vad",)) if options.vad and sup.has_model("vad") else None)


class LiveSession:
    def __init__(self, flows: Requests, options: LiveOptions) -> None:
        self.flows, self.sup, self.options = flows, flows.sup, options
        self.online_model, self.offline_model, self.vad_model = stage_models(flows, options)
        self.punctuate = options.punctuate and self.sup.has_model("punctuation")
        self.inbox = bytearray()       # audio not stepped yet
        self.kept = bytearray()        # stepped audio since the last segment's end
        self.kept_from_ms = 0
        self.heard_ms = 0              # audio stepped (or cleared) since the session began
        self.vad_stream: str | None = None
        self.vad_from_ms = 0           # where the VAD stream began: its times count from there
        self.online_stream: str | None = None
        self.speaking_from = -1        # start of the speech announced and not yet closed
        self.segments = 0
        self.online_restarts = False   # a segment closed in this step: the online stream restarts after it
        self.models = [m for m in dict.fromkeys((self.vad_model, self.online_model, self.offline_model)) if m]
        self.closed = False            # set at once by close(): no new stream or request after it
        self.registered = True
        self.lock = asyncio.Lock()     # a step and close() never interleave
        self.sup.submit(LiveSessions(self.models, 1))

    # -- audio in ------------------------------------------------------------------------------------
    async def push(self, pcm: bytes) -> list[LiveEvent]:
        """Take audio (16 kHz mono 16-bit); step every whole `step_ms` of it at once (a slow model is caught up
        in one step, not many)."""
        if (self.heard_ms + (len(self.inbox) + len(pcm)) // BYTES_PER_MS) > self.options.max_audio_s * 1000:
            raise SupervisorError(ErrorCode.PAYLOAD_TOO_LARGE, "Session too long",
                                  f"a session takes at most ws_session_max_s={self.options.max_audio_s:g} s of audio "
                                  "([server] in the config); start a new one")
        async with self.lock:
            self.inbox += pcm
            step = self.options.step_ms * BYTES_PER_MS
            usable = len(self.inbox) // step * step
            if not usable or self.closed:
                return []
            piece = bytes(self.inbox[:usable])
            del self.inbox[:usable]
            return await self._step(piece, is_final=False)

    async def cut(self, final: bool = False) -> list[LiveEvent]:
        """Close what has been heard: the VAD's open speech ends here (without a VAD, everything since the last
        cut is a segment). `final`: the end of input, the online stream flushed too."""
        async with self.lock:
            if self.closed:
                return []
            piece, self.inbox = bytes(self.inbox), bytearray()
            events = await self._step(piece, is_final=True, online_final=final)
            if not self.vad_model and self.kept:
                events.append(self._close(self.kept_from_ms, self.heard_ms))
            return events

    async def clear(self) -> None:
        """Forget the audio not yet in a closed segment; streams start afresh after it."""
        async with self.lock:
            self.heard_ms += len(self.inbox) // BYTES_PER_MS
            self.inbox.clear()
            self.kept.clear()
            self.kept_from_ms = self.heard_ms
            self.speaking_from = -1
            self.drop_streams()

    async def close(self) -> None:
        """The session is over: its streams are dropped at once (a client that vanished frees them now, not at
        expiry) and /model/info stops counting it. A step in flight finishes its wait first. Safe to call twice."""
        self.closed = True
        async with self.lock:
            self.drop_streams()
            if self.registered:
                self.registered = False
                self.sup.submit(LiveSessions(self.models, -1))

    def drop_streams(self) -> None:
        """Abort the session's open streams, without waiting: one that already expired or was lost with its
        process has nothing left to free, so the answer does not matter."""
        self.sup.submit(*[Abort(model_id, stream) for model_id, stream in ((self.vad_model, self.vad_stream),
                                                                           (self.online_model, self.online_stream))
                          if model_id and stream is not None])
        self.vad_stream = self.online_stream = None

    # -- one step ------------------------------------------------------------------------------------
    async def _step(self, piece: bytes, is_final: bool, online_final: bool = False) -> list[LiveEvent]:
        """One hand-off queues the piece on the VAD and the online model together; then both answers are read."""
        stages = [(vad, final) for vad, final, model in ((True, is_final, self.vad_model),
                                                         (False, online_final, self.online_model))
                  if model and self._feeds(piece, final, vad)]
        await self._open_streams([vad for vad, _ in stages])
        feeds = [self._feed(piece, final, vad) for vad, final in stages]
        answers = dict(zip((vad for vad, _ in stages), self.sup.submit(*feeds) if feeds else []))
        vad, online = answers.get(True), answers.get(False)
        self.kept += piece
        self.heard_ms += len(piece) // BYTES_PER_MS
        # the VAD's answer first: a segment it closes goes to the offline model before the online answer is read
        waiter = self.flows.waiter
        events = self._heard_speech(await waiter.answer(vad, len(piece)), is_final) if vad is not None else []
        if online is not None:
            result = await waiter.answer(online, len(piece))
            if result.text:
                events.append(PartialText(text=result.text, final=online_final))
            if online_final:
                self.online_stream = None
        self._restart_online()
        return events

    def _feeds(self, piece: bytes, is_final: bool, vad: bool) -> bool:
        """Whether this step has anything for the stage: audio, or the end of a stream it has open."""
        stream = self.vad_stream if vad else self.online_stream
        return not self.closed and bool(piece or stream is not None and is_final)

    async def _open_streams(self, stages: list[bool]) -> None:
        """Open the streams this step starts (the session's first step, or after a segment), in one hand-off."""
        opening = [vad for vad in stages if (self.vad_stream if vad else self.online_stream) is None]
        if not opening:
            return
        futures = self.sup.submit(*[OpenStream(self._model(vad)) for vad in opening])
        for vad, future in zip(opening, futures):
            stream = (await self.flows.waiter.answer(future)).stream.stream_id
            if vad:
                self.vad_stream, self.vad_from_ms = stream, self.heard_ms
            else:
                self.online_stream = stream

    def _feed(self, piece: bytes, is_final: bool, vad: bool) -> Feed:
        stream = self.vad_stream if vad else self.online_stream
        assert stream is not None   # opened by _open_streams first
        return Feed(self._model(vad), stream, piece, is_final)

    def _model(self, vad: bool) -> str:
        """The stage's model: a stage is stepped only where the session has one."""
        model_id = self.vad_model if vad else self.online_model
        assert model_id is not None
        return model_id

    def _heard_speech(self, result: WorkResult, is_final: bool) -> list[LiveEvent]:
        events: list[LiveEvent] = []
        for start, end in result.segments:
            if self.speaking_from < 0:
                events.append(SpeechStarted(start_ms=self.vad_from_ms + start))
            self.speaking_from = -1
            events.append(self._close(self.vad_from_ms + start, self.vad_from_ms + end))
        if result.speech_from_ms >= 0 and self.speaking_from < 0:
            self.speaking_from = self.vad_from_ms + result.speech_from_ms
            events.append(SpeechStarted(start_ms=self.speaking_from))
        if is_final:
            self.vad_stream = None
        elif self.speaking_from < 0 and self.heard_ms - self.vad_from_ms > self.sup.settings.max_stream_s * 500:
            self.close_vad_stream()  # silence after a long stream: the next step starts a fresh one
        return events

    def _restart_online(self) -> None:
        """After a segment the VAD closed, the online stream starts afresh (once this step's answer is read)."""
        if self.online_restarts and self.online_stream is not None:
            self.sup.submit(Abort(self._model(vad=False), self.online_stream))
            self.online_stream = None
        self.online_restarts = False

    def close_vad_stream(self) -> None:
        if self.vad_stream is not None:
            self.sup.submit(Abort(self._model(vad=True), self.vad_stream))
            self.vad_stream = None

    def _close(self, start_ms: int, end_ms: int) -> SegmentClosed:
        """A segment [start_ms, end_ms] is final: its audio goes to the offline model, audio before its end is
        dropped, and the online stream starts afresh for the next one."""
        start_ms = max(start_ms, self.kept_from_ms)
        end_ms = max(min(end_ms, self.heard_ms), start_ms)
        audio = bytes(self.kept[(start_ms - self.kept_from_ms) * BYTES_PER_MS:(end_ms - self.kept_from_ms)
                                * BYTES_PER_MS])
        del self.kept[:(end_ms - self.kept_from_ms) * BYTES_PER_MS]
        self.kept_from_ms = end_ms
        answer = self.flows.recognising(self.offline_model, audio, self.options.hotwords) \
            if self.offline_model and audio and not self.closed else None
        self.online_restarts = bool(self.vad_model)
        self.segments += 1
        return SegmentClosed(index=self.segments - 1, start_ms=start_ms, end_ms=end_ms, audio=audio, answer=answer)

    # -- a segment's final text --------------------------------------------------------------------------
    async def completed(self, segment: SegmentClosed) -> SegmentText:
        """Await a closed segment's offline pass and punctuate it (its errors are raised here)."""
        warnings: list[str] = []
        result = await self.flows.waiter.answer(segment.answer, len(segment.audio)) if segment.answer else None
        text = result.text if result else ""
        punctuated = (await self.flows.punctuated_or_warn_async(text, warnings)
                      if self.punctuate and not self.closed else None)
        words = shifted(result.words, segment.start_ms) if result else []
        return SegmentText(index=segment.index, start_ms=segment.start_ms, end_ms=segment.end_ms, text=text,
                           punctuated_text=punctuated.text if punctuated else None,
                           timestamp=[(s, e) for _, s, e in words],
                           sentence_info=sentences(words, punctuated.text if punctuated else None),
                           warnings=warnings)
