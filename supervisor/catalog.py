"""What each configured model is: its name, its kind, and the metadata the API shows (the kind's defaults,
overridden where the model's config sets them)."""

from __future__ import annotations

import msgspec

from wire.model_config import ModelConfig
from wire.errors import ErrorCode, SupervisorError, model_not_found, shown
from supervisor.kinds import KINDS, Kind


class CatalogEntry(msgspec.Struct, frozen=True):
    model_id: str
    kind: Kind
    display_name: str
    description: str
    provider: str
    language: str
    capabilities: tuple[str, ...]

    @property
    def estimated_load_ms(self) -> int:
        return self.kind.estimated_load_ms

    @property
    def estimated_memory_mb(self) -> int:
        return self.kind.estimated_memory_mb


def catalog_entry(name: str, config: ModelConfig) -> CatalogEntry:
    """The entry of a model whose config has been completed (`with_defaults`: its kind is set)."""
    kind = KINDS[config.kind]
    return CatalogEntry(model_id=name, kind=kind, display_name=config.display_name or kind.display_name,
                        description=config.description or kind.description, provider=kind.provider,
                        language=config.language or kind.language, capabilities=kind.capabilities)


def pick_model(kinds: dict[str, str], wanted: tuple[str, ...], requested: str | None) -> str:
    """The model a route uses: the one asked for (`?model=`), which must be of a kind the route takes; else the
    first of `wanted`'s kinds that has a model: its seed model (named as the kind), else its first configured.
    `kinds` maps each model's name to its kind, in config order."""
    if requested:
        if requested not in kinds:
            raise model_not_found(requested, [m for m, k in kinds.items() if k in wanted])
        if kinds[requested] not in wanted:
            raise SupervisorError(ErrorCode.INVALID_REQUEST, "Wrong kind of model",
                                  f"'{shown(requested)}' is a {kinds[requested]} model; this route takes a "
                                  f"{' or '.join(wanted)} model", available_models=[m for m, k in kinds.items()
                                                                                   if k in wanted])
        return requested
    for kind in wanted:
        if kind in kinds and kinds[kind] == kind:
            return kind
        of_kind = [m for m, k in kinds.items() if k == kind]
        if of_kind:
            return of_kind[0]
    raise SupervisorError(ErrorCode.MODEL_NOT_FOUND, "No model for this route",
                          f"no {' or '.join(wanted)} model is configured; add one under [models.<name>]",
                          available_models=[])


ALL = "all"


def resolve(model_type: str, known: list[str], allow_all: bool = True) -> list[str]:
    """The models a lifecycle call names: one, or `all` of them."""
    if model_type == ALL and allow_all:
        return list(known)
    if model_type not in known:
        raise model_not_found(model_type, list(known))
    return [model_type]
