"""The one route table: every HTTP adapter's routes. It makes the Falcon routes (`api/app.py`), the OpenAPI
document (`api/common/openapi.py`) and the fuzz test's operations."""

from __future__ import annotations

from api.common.routing import Adapter
from api.oip.routes import OIP
from api.openai.routes import OPENAI
from api.seed.routes import SEED

ADAPTERS: list[Adapter] = [SEED, OIP, OPENAI]
