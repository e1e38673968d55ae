"""What every API document shares: the error shape and its examples, schema component names, and
JSON schemas of the dataclasses some answers are (the stream views' answers, dumped by orjson)."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any

from apispec.ext.marshmallow.common import make_schema_key, resolve_schema_cls, resolve_schema_instance
from marshmallow import Schema, fields

from common.core import errors


class ErrorDetailSchema(Schema):
    code = fields.Str(required=True, metadata={"description": "machine-readable, e.g. `validation_error`"})
    message = fields.Str(required=True, metadata={"description": "for humans"})
    details = fields.Dict(
        required=True,
        metadata={"description": "per-field messages for `validation_error`, otherwise context (may be empty)"},
    )


class ErrorSchema(Schema):
    """Every error answer of the API (SPEC §3)."""

    error = fields.Nested(ErrorDetailSchema, required=True)


_STATUS_MEANING = {
    400: "invalid input: malformed JSON (`invalid_json`) or invalid fields (`validation_error`, per field)",
    401: "missing, invalid, expired or revoked token",
    403: "authenticated but not allowed",
    404: "not found, or not visible to the caller",
    409: "conflict",
    413: "request body too large",
    415: "the body is not sent as `application/json` (code `unsupported_media_type`)",
    429: "rate limited: retry after `Retry-After` seconds",
    502: "the service answered badly",
    503: "a dependency (database, Redis, the service) is unavailable; retry",
    504: "the service did not answer in time",
}


def _error_classes() -> dict[int, list[type[errors.AppError]]]:
    found: dict[int, list[type[errors.AppError]]] = {}
    pending = [errors.AppError]
    while pending:
        cls = pending.pop(0)
        pending.extend(cls.__subclasses__())
        if cls is not errors.AppError:
            found.setdefault(cls.status, []).append(cls)
    return found


_ERRORS = _error_classes()


def error_response(status: int, description: str = "") -> dict[str, Any]:
    """An error answer with its example body (from `common.core.errors`)."""
    classes = _ERRORS.get(status, [])
    codes = ", ".join(f"`{cls.code}`" for cls in classes)
    text = description
    if not text:
        text = _STATUS_MEANING.get(status, "error")
        if codes and "`" not in text:
            text += f" (code {codes})"
    response: dict[str, Any] = {
        "description": text,
        "content": {"application/json": {"schema": ErrorSchema}},
    }
    named = re.findall(r"`([a-z_]+)`", description)
    if named:
        response["content"]["application/json"]["example"] = errors.AppError(code=named[0]).to_body()
    elif classes:
        example = classes[0]()
        if status == 400:  # the usual one
            example = errors.ValidationFailed(details={"title": ["Missing data for required field."]})
        response["content"]["application/json"]["example"] = example.to_body()
    if status == 429:
        response["headers"] = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
    return response


def _schema_name(schema: Any) -> str:
    cls = resolve_schema_cls(schema)
    cls = cls[0] if isinstance(cls, list) else cls
    name = cls.__name__
    return name[:-6] if name.endswith("Schema") and len(name) > 6 else name


class SchemaNames:
    """Component names for schemas: the class name less `Schema`, qualified by the class's package when
    another class already took that name (two services may both have a `ProjectEventSchema`)."""

    def __init__(self) -> None:
        self.classes: dict[str, type] = {}
        self._by_key: dict[Any, str] = {}

    def __call__(self, schema: Any) -> str:
        instance = resolve_schema_instance(schema)
        key = make_schema_key(instance)
        if key in self._by_key:
            return self._by_key[key]
        cls = type(instance)
        taken = set(self._by_key.values())
        name = _schema_name(cls)
        if name in taken and self.classes.get(name) is not cls:
            name = f"{cls.__module__.partition('.')[0]}.{name}"
        while name in taken:  # the same class with other modifiers (only=, exclude=): another schema
            name += "_"
        self.classes[name] = cls
        self._by_key[key] = name
        return name


def describe_schemas(document: dict[str, Any], names: SchemaNames) -> None:
    """Use each schema class's own docstring as its description, and add its `json_schema` rules."""
    for name, component in document.get("components", {}).get("schemas", {}).items():
        cls = names.classes.get(name)
        component.update(getattr(cls, "json_schema", {}))
        text = cls.__dict__.get("__doc__") if cls is not None else None
        if text and "description" not in component:
            component["description"] = " ".join(text.split())


def dataclass_schema(cls: type, components: dict[str, dict[str, Any]], ref: str) -> dict[str, Any]:
    """A JSON schema of a dataclass answer (nested dataclasses become components, `ref` is their prefix)."""
    if cls.__name__ not in components:
        components[cls.__name__] = {}  # placeholder: recursion stops here
        hints = typing.get_type_hints(cls)
        properties = {f.name: _type_schema(hints[f.name], components, ref) for f in dataclasses.fields(cls)}
        components[cls.__name__] = {
            "type": "object",
            "properties": properties,
            "required": [f.name for f in dataclasses.fields(cls)],
        }
        if cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("):
            components[cls.__name__]["description"] = " ".join(cls.__doc__.split())
    return {"$ref": ref + cls.__name__}


def _type_schema(hint: Any, components: dict[str, dict[str, Any]], ref: str) -> dict[str, Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        kinds = [arg for arg in args if arg is not type(None)]
        inner = _type_schema(kinds[0], components, ref) if len(kinds) == 1 else {}
        if type(None) in args:
            return {"allOf": [inner], "nullable": True} if "$ref" in inner else {**inner, "nullable": True}
        return inner
    if origin is list:
        return {"type": "array", "items": _type_schema(args[0], components, ref)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type_schema(args[1], components, ref)}
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return dataclass_schema(hint, components, ref)
    simple = {str: {"type": "string"}, int: {"type": "integer"}, bool: {"type": "boolean"}, float: {"type": "number"}}
    return dict(simple.get(hint, {}))
