"""Event types as data: their JSON Schemas, checked when an operator saves one and applied to
every event's data the events API receives.

Schemas are written by operators (the admin); the data they are applied to comes from API
clients. Both sides are bounded: a schema's size, the number of errors reported and each
error's length. References (`$ref`) resolve inside the schema only: nothing is fetched over the
network (jsonschema's default registry retrieves nothing), and an unresolvable one is an error
of the schema, reported on save.
"""

from __future__ import annotations

import json
from itertools import islice
from typing import Any

from jsonschema import exceptions as schema_exceptions
from jsonschema.validators import validator_for
from referencing.exceptions import Unresolvable

from notifications.models import EventType

# The largest schema (as compact JSON) an event type may carry: it is read on every event.
EVENT_SCHEMA_MAX_BYTES = 32 * 1024
# The largest sample payload (as compact JSON): the admin renders every template with it.
EVENT_SAMPLE_MAX_BYTES = 32 * 1024
# At most this many schema errors are reported for one payload (a 64 KiB list of wrong items
# would otherwise produce thousands), each message cut to EVENT_ERROR_MAX_CHARS.
EVENT_PAYLOAD_MAX_ERRORS = 20
EVENT_ERROR_MAX_CHARS = 300


def event_type_get(*, name: str) -> EventType | None:
    """The registered event type called `name`, or None."""
    return EventType.objects.filter(name=name).first()


def event_type_definition_errors(*, schema: Any, sample: Any) -> dict[str, list[str]]:
    """Field -> why an event type cannot be saved: its schema is not a valid JSON Schema (per
    the draft it names in `$schema`, 2020-12 by default) or too large, or its sample is not an
    object, too large, or does not satisfy the schema. Empty when the definition is fine."""
    errors: dict[str, list[str]] = {}
    if not isinstance(schema, dict):
        errors["payload_schema"] = ["The schema must be a JSON object ({} accepts any object)."]
    elif _json_size(schema) > EVENT_SCHEMA_MAX_BYTES:
        errors["payload_schema"] = [f"The schema is over {EVENT_SCHEMA_MAX_BYTES} bytes."]
    else:
        try:
            validator_for(schema).check_schema(schema)
        except schema_exceptions.SchemaError as exc:
            where = "/".join(str(part) for part in exc.path)
            errors["payload_schema"] = [_cut(f"Not a valid JSON Schema at '/{where}': {exc.message}")]
    if not isinstance(sample, dict):
        errors["sample_payload"] = ["The sample must be a JSON object."]
    elif _json_size(sample) > EVENT_SAMPLE_MAX_BYTES:
        errors["sample_payload"] = [f"The sample is over {EVENT_SAMPLE_MAX_BYTES} bytes."]
    if errors:
        return errors
    problems = event_payload_errors(schema=schema, payload=sample)
    if problems:
        errors["sample_payload"] = [f"The sample does not satisfy the schema: {p['path']}: {p['message']}" for p in problems]
    return errors


def event_payload_errors(*, schema: dict[str, Any], payload: Any) -> list[dict[str, str]]:
    """Why `payload` does not satisfy `schema`: at most EVENT_PAYLOAD_MAX_ERRORS entries of
    {"path": JSON Pointer to the offending value, "message": jsonschema's words, cut to
    EVENT_ERROR_MAX_CHARS}, in a stable order. Empty when it does. Call only with a schema that
    passed `event_type_definition_errors` (a saved event type's)."""
    cls = validator_for(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    try:
        found = list(islice(validator.iter_errors(payload), EVENT_PAYLOAD_MAX_ERRORS))
    except Unresolvable as exc:
        return [{"path": "", "message": _cut(f"The event type's schema has a reference that cannot be resolved: {exc}")}]
    found.sort(key=lambda error: (list(map(str, error.absolute_path)), error.message))
    return [{"path": _cut(_pointer(error.absolute_path)), "message": _cut(error.message)} for error in found]


def _pointer(path: Any) -> str:
    """A JSON Pointer (RFC 6901) to the value at `path`."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path) or "/"


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _cut(message: str) -> str:
    return message if len(message) <= EVENT_ERROR_MAX_CHARS else message[: EVENT_ERROR_MAX_CHARS - 1] + "…"
