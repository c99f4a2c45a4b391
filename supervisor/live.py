"""A live audio session across managed models: what FunASR's 2pass protocol and OpenAI's Realtime transcription do.

Audio comes in pieces of any size. Each step (600 ms by default) goes at once to the session's VAD stream and to
its online (streaming ASR) stream: the VAD says where speech starts and ends, the online model gives partial text.
Each speech segment the VAD closes is cut from the audio kept since the previous one and queued whole on the
offline model (an `asr` model when one is configured, else the streaming model), then punctuated. Audio before a
closed segment's end is dropped, so a session holds at most one open segment's audio; the online stream restarts
at each segment's end and the VAD stream when it has run long, so no stream grows with the session.

Every call is an ordinary facade request: it queues, cold-starts and is counted like any other, and the session
holds no model loaded. The methods block; a protocol adapter runs them off its event loop, `push`/`cut`/`clear`/
`close` in one task, `completed` (which only waits) in another.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Union

import msgspec

from wire.errors import SupervisorError
from supervisor.pipelines import punctuated_or_warn
from supervisor.sentences import sentences, shifted
from wire.views import Sentence
from wire.audio import BYTES_PER_MS

if TYPE_CHECKING:
    from supervisor.core import Supervisor

TRANSCRIBERS = ("asr", "streaming_asr")


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


def stage_models(sup: Supervisor, options: LiveOptions) -> tuple[str | None, str | None, str | None]:
    """(online, offline, VAD) model of a session with these options; a model that does not exist is the error."""
    return (sup.model_for(("streaming_asr",), options.online_model) if options.online else None,
            sup.model_for(TRANSCRIBERS, options.offline_model) if options.offline else None,
            sup.model_for(("vad",)) if options.vad and sup.has_model("vad") else None)


class LiveSession:
    def __init__(self, sup: Supervisor, options: LiveOptions) -> None:
        self.sup, self.options = sup, options
        self.online_model, self.offline_model, self.vad_model = stage_models(sup, options)
        self.punctuate = options.punctuate and sup.has_model("punctuation")
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
        self.closed = False            # set at once by close(), from any thread: no new stream or request after it
        self.registered = True
        self.lock = threading.Lock()   # a step and close() never interleave
        sup.live_session(self.models, opened=True)

    # -- audio in ------------------------------------------------------------------------------------
    def push(self, pcm: bytes) -> list[LiveEvent]:
        """Take audio (16 kHz mono 16-bit); step every whole `step_ms` of it at once (a slow model is caught up
        in one step, not many)."""
        if (self.heard_ms + (len(self.inbox) + len(pcm)) // BYTES_PER_MS) > self.options.max_audio_s * 1000:
            raise SupervisorError("PAYLOAD_TOO_LARGE", "Session too long",
                                  f"a session takes at most ws_session_max_s={self.options.max_audio_s:g} s of audio "
                                  "([server] in the config); start a new one")
        with self.lock:
            self.inbox += pcm
            step = self.options.step_ms * BYTES_PER_MS
            usable = len(self.inbox) // step * step
            if not usable or self.closed:
                return []
            piece = bytes(self.inbox[:usable])
            del self.inbox[:usable]
            return self._step(piece, is_final=False)

    def cut(self, final: bool = False) -> list[LiveEvent]:
        """Close what has been heard: the VAD's open speech ends here (without a VAD, everything since the last
        cut is a segment). `final`: the end of input, the online stream flushed too."""
        with self.lock:
            if self.closed:
                return []
            piece, self.inbox = bytes(self.inbox), bytearray()
            events = self._step(piece, is_final=True, online_final=final)
            if not self.vad_model and self.kept:
                events.append(self._close(self.kept_from_ms, self.heard_ms))
            return events

    def clear(self) -> None:
        """Forget the audio not yet in a closed segment; streams start afresh after it."""
        with self.lock:
            self.heard_ms += len(self.inbox) // BYTES_PER_MS
            self.inbox.clear()
            self.kept.clear()
            self.kept_from_ms = self.heard_ms
            self.speaking_from = -1
            self.drop_streams()

    def close(self) -> None:
        """The session is over: its streams are dropped at once (a client that vanished frees them now, not at
        expiry) and /model/info stops counting it. A step in flight finishes its wait first. Safe to call twice."""
        self.closed = True
        with self.lock:
            self.drop_streams()
            if self.registered:
                self.registered = False
                self.sup.live_session(self.models, opened=False)

    def drop_streams(self) -> None:
        for model_id, stream in ((self.vad_model, self.vad_stream), (self.online_model, self.online_stream)):
            if stream is not None:
                try:
                    self.sup.abort(stream, model_id)
                except SupervisorError:  # already expired or lost with its process: nothing left to free
                    pass
        self.vad_stream = self.online_stream = None

    # -- one step ------------------------------------------------------------------------------------
    def _step(self, piece: bytes, is_final: bool, online_final: bool = False) -> list[LiveEvent]:
        """One hand-off queues the piece on the VAD and the online model together; then both answers are read."""
        stages = [(vad, final) for vad, final, model in ((True, is_final, self.vad_model),
                                                         (False, online_final, self.online_model))
                  if model and self._feeds(piece, final, vad)]
        futures = self.sup.feeding([self._feed(piece, final, vad) for vad, final in stages]) if stages else []
        answers = dict(zip((vad for vad, _ in stages), futures))
        vad, online = answers.get(True), answers.get(False)
        self.kept += piece
        self.heard_ms += len(piece) // BYTES_PER_MS
        # the VAD's answer first: a segment it closes goes to the offline model before the online answer is read
        events = self._heard_speech(self.sup.wait(vad, self.sup.backstop_s(piece)), is_final) if vad is not None else []
        if online is not None:
            result = self.sup.wait(online, self.sup.backstop_s(piece))
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

    def _feed(self, piece: bytes, is_final: bool, vad: bool) -> tuple[str, bytes, bool, str]:
        """The stage's feed, its stream opened first where the step starts one."""
        model_id = self.vad_model if vad else self.online_model
        stream = self.vad_stream if vad else self.online_stream
        if stream is None:
            stream = self.sup.open_stream(False, model_id).stream_id
            if vad:
                self.vad_stream, self.vad_from_ms = stream, self.heard_ms
            else:
                self.online_stream = stream
        return stream, piece, is_final, model_id

    def _heard_speech(self, result, is_final: bool) -> list[LiveEvent]:
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
            self.sup.abort(self.online_stream, self.online_model)
            self.online_stream = None
        self.online_restarts = False

    def close_vad_stream(self) -> None:
        if self.vad_stream is not None:
            self.sup.abort(self.vad_stream, self.vad_model)
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
        answer = self.sup.recognise(self.offline_model, audio, self.options.hotwords) \
            if self.offline_model and audio and not self.closed else None
        self.online_restarts = bool(self.vad_model)
        self.segments += 1
        return SegmentClosed(index=self.segments - 1, start_ms=start_ms, end_ms=end_ms, audio=audio, answer=answer)

    # -- a segment's final text --------------------------------------------------------------------------
    def completed(self, segment: SegmentClosed) -> SegmentText:
        """Wait for a closed segment's offline pass and punctuate it (its errors are raised here)."""
        warnings: list[str] = []
        result = self.sup.wait(segment.answer, self.sup.backstop_s(segment.audio)) if segment.answer else None
        text = result.text if result else ""
        punctuated = punctuated_or_warn(self.sup, text, warnings) if self.punctuate and not self.closed else None
        words = shifted(result.words, segment.start_ms) if result else []
        return SegmentText(index=segment.index, start_ms=segment.start_ms, end_ms=segment.end_ms, text=text,
                           punctuated_text=punctuated.text if punctuated else None,
                           timestamp=[(s, e) for _, s, e in words],
                           sentence_info=sentences(words, punctuated.text if punctuated else None),
                           warnings=warnings)
