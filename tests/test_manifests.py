"""Every deployment manifest checked against a published schema: Kubernetes' own (kubernetes-validate), the
`kserve` SDK's models of its CRDs, and KEDA's CRD as typed models (cloudcoil-models-keda); and the server
configs they mount load as the server loads them."""

from __future__ import annotations

import kubernetes.client.models as k8s_models
import kserve.models as kserve_models
import kubernetes_validate
import yaml
from cloudcoil.models.keda.v1alpha1 import ScaledObject

from supervisor.config import load_config
from supervisor.metrics import GAUGES
from tests.helpers import REPO

PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": (int, float), "datetime": str}


def sdk_problems(value, type_name: str, where: str) -> list[str]:
    """Walk a manifest against the OpenAPI-generated SDK models (kserve's, and Kubernetes' for the types they
    embed): an unknown field, a wrong type or a missing required field is a problem."""
    if type_name.lower().startswith("list["):
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        return [p for i, item in enumerate(value) for p in sdk_problems(item, type_name[5:-1], f"{where}[{i}]")]
    if type_name.lower().startswith(("dict(", "dict[")):   # kserve writes dict(str, T), kubernetes Dict[str, T]
        inner = type_name[5:-1].split(", ", 1)[1]
        if not isinstance(value, dict):
            return [f"{where}: expected a mapping"]
        return [p for k, v in value.items() for p in sdk_problems(v, inner, f"{where}.{k}")]
    if type_name == "object":   # IntOrString and friends
        return []
    if type_name in PRIMITIVES:
        ok = isinstance(value, PRIMITIVES[type_name]) and not (type_name == "int" and isinstance(value, bool))
        return [] if ok else [f"{where}: expected {type_name}, got {value!r}"]
    model = getattr(kserve_models, type_name, None) or getattr(k8s_models, type_name)
    if not isinstance(value, dict):
        return [f"{where}: expected a {type_name} mapping"]
    by_json = {json_name: attr for attr, json_name in model.attribute_map.items()}
    problems = [f"{where}.{key}: no such field in {type_name}" for key in value if key not in by_json]
    try:   # the models' constructors refuse a missing required field (Kubernetes' are pydantic models)
        model(**{by_json[k]: v for k, v in value.items() if k in by_json})
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
    return problems + [p for key, v in value.items() if key in by_json
                       for p in sdk_problems(v, model.openapi_types[by_json[key]], f"{where}.{key}")]


def manifests(folder: str) -> list[dict]:
    return [doc for path in sorted((REPO / "deploy" / folder).glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text())]


KSERVE_KINDS = {"ServingRuntime": "V1alpha1ServingRuntime", "InferenceService": "V1beta1InferenceService"}


def test_the_schema_check_catches_what_it_should():
    runtime = next(d for d in manifests("kserve") if d["kind"] == "ServingRuntime")
    assert sdk_problems(runtime, "V1alpha1ServingRuntime", "runtime") == []
    runtime["spec"]["containers"][0]["imagee"] = "typo"
    runtime["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"
    del runtime["spec"]["containers"][0]["name"]
    problems = "\n".join(sdk_problems(runtime, "V1alpha1ServingRuntime", "runtime"))
    assert "imagee: no such field" in problems and "containerPort: expected int" in problems
    assert "V1Container\nname\n  Field required" in problems


def test_kserve_manifests_match_the_kserve_sdks_models_and_each_other(tmp_path):
    docs = {d["kind"]: d for d in manifests("kserve")}
    assert set(docs) == {"ServingRuntime", "InferenceService", "ConfigMap"}
    for kind, model in KSERVE_KINDS.items():
        assert sdk_problems(docs[kind], model, kind) == []
    kubernetes_validate.validate(docs["ConfigMap"], "1.37.0", strict=True)

    runtime, service = docs["ServingRuntime"]["spec"], docs["InferenceService"]["spec"]["predictor"]["model"]
    assert service["runtime"] == docs["ServingRuntime"]["metadata"]["name"] and "v2" in runtime["protocolVersions"]
    assert service["modelFormat"]["name"] in [f["name"] for f in runtime["supportedModelFormats"]]
    container = runtime["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert container["name"] == "kserve-container" and env["FUNASR_SUPERVISOR_PORT"] == "8080"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert runtime["volumes"][0]["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    config_file = tmp_path / "models.toml"
    config_file.write_text(docs["ConfigMap"]["data"]["models.toml"])
    config = load_config(str(config_file))
    assert config.models["streaming_asr"].source.startswith("/mnt/models/")   # where storageUri lands


def test_keda_scaledobject_matches_kedas_crd_and_scales_the_deployment():
    (doc,) = manifests("keda")
    parsed = ScaledObject.model_validate(doc)
    assert parsed.model_dump(by_alias=True, exclude_unset=True, mode="json") == doc  # no field dropped as unknown
    deployment = next(d for d in manifests("kubernetes") if d["kind"] == "Deployment")
    target = doc["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    trigger = doc["spec"]["triggers"][0]
    assert trigger["type"] == "prometheus" and float(trigger["metadata"]["activationThreshold"]) > 0
    served = {f"funasr_model_{name}" for name, _ in GAUGES}   # the metrics the server exports
    for metric in ("funasr_model_queued_requests", "funasr_model_in_flight_requests"):
        assert metric in served and metric in trigger["metadata"]["query"]


def test_the_kubernetes_configmap_loads_as_the_server_loads_it(tmp_path):
    configmap = next(d for d in manifests("kubernetes") if d["kind"] == "ConfigMap")
    config_file = tmp_path / "models.toml"
    config_file.write_text(configmap["data"]["models.toml"])
    assert load_config(str(config_file)).models["streaming_asr"].required
