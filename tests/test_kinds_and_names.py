"""Models are data: names and kinds in the config, which model a route picks, and sentences from timed tokens
(pure rules: no process is started here)."""

from __future__ import annotations

import pytest

from supervisor.catalog import pick_model
from supervisor.config import ConfigError, load_config
from wire.errors import SupervisorError
from supervisor.kinds import KINDS, SEED_MODELS
from supervisor.registry import Registry, decode_model_config
from flows.sentences import sentences


def config_of(tmp_path, text: str):
    path = tmp_path / "models.toml"
    path.write_text(text)
    return load_config(str(path))


def test_any_number_of_models_of_each_kind_with_the_seed_models_beside_them(tmp_path):
    config = config_of(tmp_path, '[models.punc-tenant-b]\nkind = "punctuation"\nsource = "generated:tiny"\n'
                                 '[models."paraformer-zh.v2"]\nkind = "asr"\nhotwords = "魔搭"\n')
    assert list(config.models) == [*SEED_MODELS, "punc-tenant-b", "paraformer-zh.v2"]
    assert config.models["punc-tenant-b"].kind == "punctuation"
    assert config.models["paraformer-zh.v2"].source == KINDS["asr"].default_source  # the kind's default
    assert config.models["streaming_asr"].kind == "streaming_asr"  # a seed model's name is its kind
    only = config_of(tmp_path, '[server]\nseed_models = false\n[models.mine]\nkind = "vad"\n')
    assert list(only.models) == ["mine"]


@pytest.mark.parametrize("toml, says", [
    ('[models.Upper]\nkind = "vad"\n', "lower-case"),
    (f'[models.{"x" * 65}]\nkind = "vad"\n', "1-64"),
    ('[models.all]\nkind = "vad"\n', "reserved"),
    ('[models.mine]\nsource = "/m"\n', "has no kind"),
    ('[models.mine]\nkind = "whisper"\n', "kind 'whisper' is unknown"),
    ('[models.mine]\nkind = "vad"\nhotwords = "x"\n', "takes none"),
    ('[models.mine]\nkind = "vad"\nquantize = "int8"\n', 'needs engine = "onnx"'),
    ('[server]\nseed_models = false\n', "no models"),
    ('[server]\napi_keys = {k = "root"}\n', "api_keys"),
])
def test_a_bad_name_kind_or_setting_says_which(tmp_path, toml, says):
    with pytest.raises(ConfigError, match=says):
        config_of(tmp_path, toml)


def test_a_route_picks_the_named_model_or_its_kinds_default():
    kinds = {"streaming_asr": "streaming_asr", "punc-a": "punctuation", "punctuation": "punctuation",
             "vad": "vad", "offline": "asr"}
    assert pick_model(kinds, ("punctuation",), None) == "punctuation"  # the seed's model of the kind
    assert pick_model(kinds, ("punctuation",), "punc-a") == "punc-a"
    assert pick_model(kinds, ("asr", "streaming_asr"), None) == "offline"  # the offline model when there is one
    assert pick_model({"streaming_asr": "streaming_asr"}, ("asr", "streaming_asr"), None) == "streaming_asr"
    with pytest.raises(SupervisorError) as wrong:
        pick_model(kinds, ("punctuation",), "vad")
    assert wrong.value.code == "INVALID_REQUEST" and "vad model" in wrong.value.details
    with pytest.raises(SupervisorError) as unknown:
        pick_model(kinds, ("punctuation",), "nope")
    assert unknown.value.code == "MODEL_NOT_FOUND" and unknown.value.context["available_models"] == ["punc-a",
                                                                                                    "punctuation"]
    with pytest.raises(SupervisorError) as none:
        pick_model({"vad": "vad"}, ("punctuation",), None)
    assert none.value.code == "MODEL_NOT_FOUND" and "no punctuation model" in none.value.details


def test_sentences_split_where_the_punctuation_model_put_a_mark():
    words = [("今", 0, 100), ("天", 100, 200), ("好", 200, 300), ("走", 400, 500), ("吧", 500, 600)]
    split = sentences(words, "今天好，走吧。")
    assert [(s.text, s.start, s.end) for s in split] == [("今天好，", 0, 300), ("走吧。", 400, 600)]
    assert split[1].timestamp == [[400, 500], [500, 600]]
    whole = sentences(words, None)
    assert len(whole) == 1 and (whole[0].start, whole[0].end) == (0, 600) and len(whole[0].timestamp) == 5
    english = sentences([("hello", 0, 300), ("world", 300, 600), ("again", 700, 900)], "Hello world. again")
    assert [(s.text, s.start, s.end) for s in english] == [("Hello world.", 0, 600), ("again", 700, 900)]
    assert sentences([], "。") == []


def test_the_registry_is_kept_atomically_and_skips_what_no_longer_validates(tmp_path):
    registry = Registry(tmp_path)
    registry.put("punc-b", decode_model_config("punc-b", '{"kind": "punctuation", "source": "generated:tiny"}'))
    again = Registry(tmp_path).read()
    assert list(again) == ["punc-b"] and again["punc-b"].kind == "punctuation"
    assert not list(tmp_path.glob(".registry-*"))  # nothing staged left beside it
    (tmp_path / "registry.json").write_text('{"good": {"kind": "vad"}, "bad": {"kind": "whisper"}}')
    assert list(Registry(tmp_path).read()) == ["good"]
    with pytest.raises(ConfigError, match="not JSON"):
        decode_model_config("x", "{kind")
    with pytest.raises(ConfigError, match="threads"):
        decode_model_config("x", '{"kind": "vad", "threads": 0}')


def test_sensevoice_tags_come_apart_from_its_text():
    from model_procs.offline_asr import joined, sensevoice_tags

    assert sensevoice_tags("<|zh|><|NEUTRAL|><|Speech|><|woitn|>欢迎大家来体验") == (
        "欢迎大家来体验", {"language": "zh", "emotion": "NEUTRAL", "event": "Speech"})
    assert sensevoice_tags("<|en|><|HAPPY|><|BGM|><|withitn|>Hello.<|en|>") == (
        "Hello.", {"language": "en", "emotion": "HAPPY", "event": "BGM"})
    assert sensevoice_tags("no tags") == ("no tags", {})
    assert joined(["欢", "迎", "hello", "world", "你"]) == "欢迎hello world你"
