"""OpenAI's Realtime transcription (`/v1/realtime?intent=transcription`) on a live session of managed models.

One item per speech segment: server VAD from our `vad` model (`speech_started`, `speech_stopped`, `committed`),
partial text as `...input_audio_transcription.delta` from the streaming model while speech is open, and the
segment's final text as `...completed` from the offline model with punctuation (`flows.live`). With
`turn_detection: null` the client commits: everything since the last commit is one item. Audio arrives as base64
PCM16 at 24 kHz (or G.711 at 8 kHz) and is resampled to 16 kHz. A bad event is answered with an `error` event and
the connection stays open, as OpenAI does; a failed model stage is an `error` event and a close (1011).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import logging
import uuid

import msgspec

from api.openai import realtime_events as ev
from api.common.decode import LiveAudio
from api.common.errors import HTTP_STATUS
from api.common.live_pump import LivePump
from api.openai.audio import DEFAULT_MODELS
from api.common.replies import best_text
from api.common.deps import Deps
from wire.errors import ErrorCode, SupervisorError
from flows.live import (LiveOptions, LiveSession, PartialText, SegmentClosed, SegmentText, SpeechStarted,
                             stage_models)

log = logging.getLogger(__name__)

FORMATS = {"audio/pcm": "pcm16", "pcm16": "pcm16", "audio/pcmu": "g711_ulaw", "g711_ulaw": "g711_ulaw",
           "audio/pcma": "g711_alaw", "g711_alaw": "g711_alaw"}
G711_RATE = 8000


def wire_error(exc: SupervisorError, event_id: str | None = None) -> ev.ErrorDetail:
    server_side = HTTP_STATUS.get(exc.code, 500) >= 500
    return ev.ErrorDetail(type="server_error" if server_side else "invalid_request_error", code=exc.code.lower(),
                          message=f"{exc.message}: {exc.details}" if exc.details else exc.message, event_id=event_id)


def audio_input(session: ev.Session) -> tuple[ev.AudioInput, ev.AudioFormat]:
    """A session this server keeps is whole (`settings_of` makes it so), where a client's update may leave parts
    out: its audio input and that input's format."""
    audio = session.audio.input if session.audio else None
    if audio is None or audio.format is None:
        raise ValueError("a kept session always has its audio input and format")
    return audio, audio.format


class RealtimeTranscription(LivePump):
    def __init__(self, ws, deps: Deps, model: str | None) -> None:
        super().__init__(ws, deps)
        self.beta = False
        self.session = ev.Session(audio=ev.Audio(input=ev.AudioInput(
            format=ev.AudioFormat(), transcription=ev.Transcription(model=model), turn_detection=ev.TurnDetection())))
        self.audio = LiveAudio("pcm16", 24000)
        self.offset_ms = 0                       # audio of earlier live sessions (before an update or a clear)
        self.ids = itertools.count()
        self.prefix = uuid.uuid4().hex[:12]
        self.item: str | None = None             # the item speech is open in (or, committing by hand, filling)
        self.previous: str | None = None

    # -- the connection -------------------------------------------------------------------------------------
    async def run(self) -> None:
        await self.send(ev.SessionEvent(event_id=self.event_id(), session=self.session_shown()))
        await self.pumping()

    async def receive(self) -> None:
        async for message in self.messages():
            try:
                event = ev.client_events.decode(message)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                await self.send_error(SupervisorError(ErrorCode.INVALID_REQUEST, "Unknown or malformed event",
                                                      f"{exc}; this server takes session.update, "
                                                      "transcription_session.update and input_audio_buffer.*"))
                continue
            await self.take(event)

    async def take(self, event) -> None:
        match event:
            case ev.Append():
                try:
                    await self.todo.put(await self.pcm16k(self.audio, base64.b64decode(event.audio, validate=True)))
                except (binascii.Error, ValueError) as exc:
                    await self.send_error(SupervisorError(ErrorCode.INVALID_REQUEST, "Audio is not base64", str(exc)),
                                          event.event_id)
            case ev.SessionUpdate() | ev.TranscriptionSessionUpdate():
                await self.todo.put(event)
            case ev.Commit() | ev.Clear():
                await self.todo.put(event)

    # -- the processor ----------------------------------------------------------------------------------------
    async def step(self, item) -> None:
        match item:
            case bytes():
                await self.heard(await self.session_now().push(item))
            case ev.Commit():
                events = await self.session_now().cut() if self.live else []
                if not any(isinstance(e, SegmentClosed) and e.audio for e in events):
                    await self.send_error(SupervisorError(ErrorCode.INVALID_REQUEST, "Nothing to commit",
                                                          "the input audio buffer holds no speech"), item.event_id)
                await self.heard(events)
            case ev.Clear():
                if self.live is not None:
                    await self.live.clear()
                self.item = None
                await self.send(ev.Cleared(event_id=self.event_id()))
            case _:
                await self.update(item)

    async def update(self, event) -> None:
        """New settings apply from here on: what was heard before is committed first."""
        try:
            session, beta = self.settings_of(event)
            self.options_of(session)
        except SupervisorError as exc:
            await self.send_error(exc, event.event_id)
            return
        if self.live is not None:
            await self.heard(await self.live.cut())
            self.offset_ms += self.live.heard_ms
            await self.retire()
        self.session, self.beta = session, beta
        _, audio_format = audio_input(session)
        encoding = FORMATS[audio_format.type]
        self.audio = LiveAudio(encoding, audio_format.rate if encoding == "pcm16" else G711_RATE)
        shown = self.session_shown()
        await self.send(ev.TranscriptionSessionUpdated(event_id=self.event_id(), session=shown) if beta
                        else ev.SessionUpdated(event_id=self.event_id(), session=shown))

    def settings_of(self, event) -> tuple[ev.Session, bool]:
        """The session as GA settings, whichever dialect set it; unset fields keep their values."""
        old, old_format = audio_input(self.session)
        if isinstance(event, ev.TranscriptionSessionUpdate):
            beta = event.session
            audio_format = ev.AudioFormat(type=beta.input_audio_format, rate=24000) if beta.input_audio_format \
                else old_format
            new = ev.AudioInput(format=audio_format, transcription=beta.input_audio_transcription,
                                turn_detection=beta.turn_detection)
        else:
            new = event.session.audio.input if event.session.audio and event.session.audio.input else ev.AudioInput()
        chosen = new.format or old_format
        merged = ev.AudioInput(
            format=chosen, transcription=new.transcription or old.transcription,
            turn_detection=old.turn_detection if new.turn_detection is msgspec.UNSET else new.turn_detection,
            noise_reduction=new.noise_reduction)
        if chosen.type not in FORMATS:
            raise SupervisorError(ErrorCode.INVALID_REQUEST, f"Unsupported audio format '{chosen.type}'",
                                  "use audio/pcm (pcm16), audio/pcmu (g711_ulaw) or audio/pcma (g711_alaw)")
        if not 8000 <= chosen.rate <= 192000:
            raise SupervisorError(ErrorCode.INVALID_REQUEST, "Unsupported sample rate", f"{chosen.rate} Hz")
        return ev.Session(audio=ev.Audio(input=merged)), isinstance(event, ev.TranscriptionSessionUpdate)

    def options_of(self, session: ev.Session) -> LiveOptions:
        audio, _ = audio_input(session)
        model = audio.transcription.model if audio.transcription else None
        options = LiveOptions(online=self.flows.sup.has_model("streaming_asr"), vad=audio.turn_detection is not None,
                              hotwords=(audio.transcription.prompt or "") if audio.transcription else "",
                              offline_model=None if model in (None, *DEFAULT_MODELS) else model,
                              max_audio_s=self.settings.ws_session_max_s)
        if options.vad and not self.flows.sup.has_model("vad"):
            raise SupervisorError(ErrorCode.INVALID_REQUEST, "No VAD model for server_vad",
                                  "configure a model of kind vad, or set turn_detection to null and commit")
        stage_models(self.flows, options)  # names the models now: a wrong one is this update's error
        return options

    def session_now(self) -> LiveSession:
        return self.live or self.begin(LiveSession(self.flows, self.options_of(self.session)))

    async def heard(self, events) -> None:
        vad = self.live is not None and self.live.vad_model is not None
        for event in events:
            match event:
                case SpeechStarted():
                    self.item = self.new_item()
                    await self.send(ev.SpeechStartedEvent(event_id=self.event_id(), item_id=self.item,
                                                          audio_start_ms=self.offset_ms + event.start_ms))
                case PartialText() if self.item or not vad:
                    self.item = self.item or self.new_item()
                    await self.send(ev.Delta(event_id=self.event_id(), item_id=self.item, content_index=0,
                                             delta=event.text))
                case SegmentClosed() if event.audio:
                    item, self.item = self.item or self.new_item(), None
                    if vad:
                        await self.send(ev.SpeechStoppedEvent(event_id=self.event_id(), item_id=item,
                                                              audio_end_ms=self.offset_ms + event.end_ms))
                    await self.send(ev.Committed(event_id=self.event_id(), item_id=item,
                                                 previous_item_id=self.previous))
                    self.previous = item
                    await self.finish_later(event, item)

    # -- the completer -----------------------------------------------------------------------------------------
    async def completed(self, item: str, text: SegmentText | None) -> None:
        if text is None:   # a marker: this protocol queues none
            return
        await self.send(ev.Completed(event_id=self.event_id(), item_id=item, content_index=0,
                                     transcript=best_text(text.text, text.punctuated_text),
                                     usage=ev.Usage(seconds=round((text.end_ms - text.start_ms) / 1000, 3))))

    async def segment_failed(self, item: str, exc: SupervisorError) -> None:
        await self.send(ev.Failed(event_id=self.event_id(), item_id=item, content_index=0, error=wire_error(exc)))

    # -- sending -------------------------------------------------------------------------------------------------
    def session_shown(self):
        if not self.beta:
            return self.session
        audio = self.session.audio.input
        return ev.BetaSession(input_audio_format=FORMATS[audio.format.type],
                              input_audio_transcription=audio.transcription, turn_detection=audio.turn_detection)

    def event_id(self) -> str:
        return f"event_{self.prefix}{next(self.ids):06d}"

    def new_item(self) -> str:
        return f"item_{self.prefix}{next(self.ids):06d}"

    async def send(self, event: ev.Event) -> None:
        await self.ws.send(ev.encode(event).decode())

    async def send_error(self, exc: SupervisorError, event_id: str | None = None) -> None:
        await self.send(ev.ErrorEvent(event_id=self.event_id(), error=wire_error(exc, event_id)))

    async def fail(self, exc: SupervisorError, close_code: int) -> None:
        log.warning("realtime %s: %s %s", self.prefix, exc.code, exc.message)
        await self.send_error(exc)
        await self.ws.close(close_code, exc.message[:120])
