"""Write the contract files: JSON Schema per event type and the report, plus AsyncAPI.

`python -m services.cli.schemafiles` (or `make schemas`) rewrites them; a test fails when the
committed files differ from what the models produce.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import schemas
from schemas.events import EVENT_MODELS
from schemas.report import EncounterReport

# The contract files live beside the models in schemas/.
HERE = Path(schemas.__file__).parent


def _dump(doc: object) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def json_schemas() -> dict[str, str]:
    out = {"json/encounter-report.v1.json": _dump(EncounterReport.model_json_schema())}
    # One file per type at the version written today; older versions' files stay committed
    # beside them (they describe events already stored, which readers upcast).
    for name, model in sorted(EVENT_MODELS.items()):
        version = model.model_fields["schema_version"].default
        out[f"json/{name}.v{version}.json"] = _dump(model.model_json_schema())
    return out


def asyncapi() -> dict[str, str]:
    import secrets

    from faststream.specification import AsyncAPI
    from pydantic import SecretStr

    from services.domain.directory import load_directory
    from services.notifier.main import build_broker as notifier_broker
    from services.router.main import build_broker as router_broker
    from services.router.rules import load_rules
    from services.runtime.settings import EXAMPLE_CONFIG_DIR, Settings

    # Only the subscribers' shapes are read; a throwaway key lets the notifier be built.
    settings = Settings(
        nats_url="nats://localhost:4222",
        secret_keys=[SecretStr(secrets.token_urlsafe(48))],
    )
    directory = load_directory(EXAMPLE_CONFIG_DIR)
    spec = AsyncAPI(
        router_broker(settings, rules=load_rules(EXAMPLE_CONFIG_DIR), directory=directory),
        notifier_broker(settings, directory=directory),
        title="dooralert",
        version="1",
        description="Event subjects consumed by the router and notifier (payloads: json/).",
    )
    return {"asyncapi.json": _dump(json.loads(spec.to_specification().to_json()))}


def generate() -> dict[str, str]:
    return {**json_schemas(), **asyncapi()}


def main() -> int:
    for rel, text in generate().items():
        path = HERE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
