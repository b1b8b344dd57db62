"""JSON Schema of the LoopSpec, for editor completion (`loopengt schema`)."""

from __future__ import annotations

from typing import Any

from loopengt.spec.models import LoopSpec

SCHEMA_ID = "https://loopengt.dev/schema/loopspec.json"


def loopspec_json_schema() -> dict[str, Any]:
    schema = LoopSpec.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}
