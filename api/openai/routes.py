"""OpenAI's audio API over HTTP (the Realtime API is on the WebSocket port): multipart in, errors as
`{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

from api.common.errors import ErrorShape
from api.common.routing import Adapter, Op, Route
from api.openai import formats as oa
from api.openai.audio import ModelsResource, TranscriptionsResource, TranslationsResource

OPENAI = Adapter("openai", [
    Route("/v1/audio/transcriptions", TranscriptionsResource, (
        Op("post", "OpenAI transcription (multipart: file, model, prompt, response_format, "
           "timestamp_granularities[], stream)", ("multipart/form-data",),
           {200: (oa.Transcription, oa.VerboseTranscription)},
           ("UNSUPPORTED_MEDIA", "INVALID_REQUEST", "MODEL_NOT_FOUND", "MODEL_NOT_READY", "MODEL_CRASHED",
            "INFERENCE_TIMEOUT", "LOAD_FAILED", "LOAD_TIMEOUT", "INSUFFICIENT_MEMORY", "PAYLOAD_TOO_LARGE",
            "INTERNAL")),)),
    Route("/v1/models", lambda d: ModelsResource(d.supervisor), (
        Op("get", "The speech models a transcription may name", responses={200: oa.ModelList}),)),
    Route("/v1/audio/translations", lambda d: TranslationsResource(), (
        Op("post", "Refused: FunASR's models do not translate", errors=("INVALID_REQUEST",)),)),
], ErrorShape("/v1", lambda status, code, message, details, context: oa.openai_error(status, code, message,
                                                                                       details), oa.OpenAIError))
