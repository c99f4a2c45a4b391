"""Falcon responders for using the models: punctuation, live ASR and VAD streams, whole recordings."""

from __future__ import annotations

import falcon

from api.common.audio import read_pcm
from wire.bodies import (PunctuateRequest, PunctuateResponse, StreamClosedResponse, StreamOpenRequest,
                         StreamOpenResponse, StreamTextResponse, TranscribeResponse, VadResponse, VadStreamResponse,
                         answer)
from api.common.deps import Deps, ModelWork
from api.common.replies import mark_cold_start, model_param, server_timing
from api.common.media import read_body
from supervisor.kinds import Kind
from wire.views import StreamText


class PunctuationResource(ModelWork):

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        request = read_body(req, PunctuateRequest, limit=self.limits.text_bytes)
        model = self.supervisor.model_for(("punctuation",), model_param(req))
        with self.gate.admit():
            result = self.flows.punctuate(request.text, model)
        resp.media = PunctuateResponse(success=True, text=result.text, model_type=model,
                                       processing_ms=result.processing_ms, cold_start=result.cold_start)
        mark_cold_start(resp, result.cold_start)
        server_timing(resp, result.model_ms)


class StreamsResource(ModelWork):
    """Open a stream of a model of `kind` (text streams take `{"punctuate": true}`; VAD streams no body)."""

    def __init__(self, deps: Deps, kind: Kind) -> None:
        super().__init__(deps)
        self.kind = kind

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        texts = self.kind.answers == "transcript"
        punctuate = read_body(req, StreamOpenRequest, optional=True).punctuate if texts else False
        with self.gate.admit():  # it may be a cold start
            opened = self.flows.open_stream(punctuate, model_param(req), kind=self.kind.name)
        resp.status = 201
        resp.media = answer(StreamOpenResponse, opened)
        mark_cold_start(resp, opened.cold_start)


def stream_text(stream_id: str, result: StreamText) -> StreamTextResponse:
    return StreamTextResponse(success=True, stream_id=stream_id, text=result.text, partial_text=result.partial_text,
                              processing_ms=result.processing_ms, punctuated_text=result.punctuated_text,
                              warnings=result.warnings)


def stream_segments(stream_id: str, result: StreamText) -> VadStreamResponse:
    return VadStreamResponse(success=True, stream_id=stream_id, segments=result.segments,
                             processing_ms=result.processing_ms)


class StreamFeedResource(ModelWork):
    """Audio for a stream (`finish`: its end). The answer is text for ASR streams, segments for VAD ones."""

    def __init__(self, deps: Deps, kind: Kind, finish: bool = False) -> None:
        super().__init__(deps)
        self.kind, self.finish = kind, finish
        self.answer = stream_segments if kind.answers == "segments" else stream_text

    def on_post(self, req: falcon.Request, resp: falcon.Response, stream_id: str) -> None:
        pcm = b"" if self.finish else read_pcm(req, self.limits.audio_bytes, allow_wav=True,  # a chunk may be a
                                                max_audio_s=self.limits.audio_s,       # whole file
                                                max_decodes=self.limits.decodes)
        with self.gate.admit():
            result = self.flows.feed(stream_id, pcm, is_final=self.finish, model_id=model_param(req),
                                          kind=self.kind.name)
        resp.media = self.answer(stream_id, result)
        server_timing(resp, result.model_ms)


class StreamResource:
    def __init__(self, deps: Deps, kind: Kind) -> None:
        self.flows, self.kind = deps.flows, kind

    def on_delete(self, req: falcon.Request, resp: falcon.Response, stream_id: str) -> None:
        self.flows.abort(stream_id, model_param(req), kind=self.kind.name)
        resp.media = StreamClosedResponse(success=True, stream_id=stream_id, message="Stream aborted")


class TranscribeResource(ModelWork):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        punctuate = req.get_param_as_bool("punctuate", default=True)
        vad = req.get_param_as_bool("vad")  # None: split when the VAD is loaded
        hotwords = req.get_param("hotwords") or ""
        pcm = read_pcm(req, self.limits.audio_bytes, allow_wav=True, max_audio_s=self.limits.audio_s,
                       max_decodes=self.limits.decodes)
        with self.gate.admit():
            result = self.flows.transcribe(pcm, punctuate, vad, model_param(req), hotwords)
        resp.media = answer(TranscribeResponse, result)
        mark_cold_start(resp, result.cold_start)
        server_timing(resp, result.model_ms)


class VadResource(ModelWork):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        pcm = read_pcm(req, self.limits.audio_bytes, allow_wav=True, max_audio_s=self.limits.audio_s,
                       max_decodes=self.limits.decodes)
        with self.gate.admit():
            result = self.flows.detect_speech(pcm, model_param(req))
        resp.media = answer(VadResponse, result)
        mark_cold_start(resp, result.cold_start)
        server_timing(resp, result.model_ms)
