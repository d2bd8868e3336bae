"""Typed values back from an export: msgspec types built from the JSON Schemas nodes registered.

:func:`schema_types` turns a JSON Schema into a type for :func:`msgspec.convert`;
:func:`load_rows` reads a sealed export (with payloads) and decodes one node's
payloads with it: ``row.source_data`` for a source, ``node_state.output_data`` (and
``input_data`` when the node registered an ``input_schema``) for any other node.

How schemas map to types:

* ``string`` -> ``str``; ``format`` ``date-time``/``date``/``time``/``duration``/``uuid``/
  ``decimal`` -> ``datetime``/``date``/``time``/``timedelta``/``UUID``/``Decimal``; other
  formats (``email``, ``uri``, ...) are annotations and stay ``str``. (msgspec writes a plain
  ``datetime`` field, which may be naive, as a bare string: use ``Annotated[datetime,
  Meta(tz=True)]`` to get ``date-time``. Canonical JSON stores datetimes in UTC.)
* Decimal: ``msgspec.json.schema`` emits ``{"type": "string", "format": "decimal"}`` (checked
  with msgspec 0.22). pydantic's ``anyOf: [{"type": "number"}, {"type": "string"}]`` (also as
  ``type: ["number", "string"]``) is read as ``Decimal`` too, since the recorder writes
  Decimals as strings; any other union (``integer | string``, ...) stays a union.
* bytes: ``contentEncoding: base64`` strings, and the object shape canonical JSON gives bytes,
  ``{"__bytes__": "<base64>"}``; such objects in the data are turned back into bytes.
* ``integer``/``number``/``boolean``/``null``; bounds, ``multipleOf``, string lengths and
  ``pattern``, ``minItems``/``maxItems`` become :class:`msgspec.Meta` constraints (checked).
* ``array`` -> ``list[T]``; ``prefixItems`` (or a list ``items``) of fixed length -> ``tuple``.
* ``object`` with ``properties`` -> a frozen Struct named after its ``title``, ``$defs`` key or
  path; optional properties default to their ``default``, else to :data:`msgspec.UNSET` (absent
  stays distinct from null); unknown fields are an error, never dropped. ``object`` with only
  ``additionalProperties`` -> ``dict[str, T]``.
* ``enum``/``const`` -> ``Literal`` (``[true, false]`` -> ``bool``); ``anyOf``/``oneOf``/type
  lists -> unions msgspec can decode (Structs tagged by a ``discriminator`` included);
  ``nullable``; local ``$ref`` (recursion through objects); one-schema ``allOf``.
* ``{}``/``true`` and open ``items``/``additionalProperties`` -> ``Any``: the schema itself
  says "any value", which is kept as decoded JSON.

Anything else (``not``, ``if``, ``patternProperties``, ``uniqueItems``, remote refs, unknown
keywords, a union msgspec cannot tell apart, a property name msgspec cannot encode -- with
``"``, ``\\`` or a control character, ...) raises :class:`UnsupportedSchemaError` naming the
JSON path in the schema (``#/properties/tags/items``): never a silent ``Any``. An object that
is exactly ``{"__bytes__": "<base64>"}`` always means bytes (canonical JSON reserves it).
"""

from __future__ import annotations

import base64
import binascii
import copy
import decimal
import keyword
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import msgspec

from ..errors import ReconstructionError
from .schemaleaves import constrained, numeric_type, string_type
from .schemaleaves import pointer as _pointer
from .schemaleaves import schema_error as _error

__all__ = ["camel_name", "decode_typed", "schema_types"]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_ANNOTATIONS: Final = _words(
    "title description default examples example $comment deprecated readOnly writeOnly "
    "$schema $id $defs definitions contentMediaType"
)
_TYPE_KEYWORDS: Final = {
    "string": _words("minLength maxLength pattern format contentEncoding"),
    "number": _words("minimum maximum exclusiveMinimum exclusiveMaximum multipleOf"),
    "array": _words("items prefixItems additionalItems minItems maxItems uniqueItems"),
    "object": _words("properties required additionalProperties minProperties maxProperties"),
}
_COMBINATORS: Final = _words("type enum const $ref anyOf oneOf allOf nullable discriminator")
_KNOWN: Final = _ANNOTATIONS | _COMBINATORS | frozenset().union(*_TYPE_KEYWORDS.values())
_JSON_TYPES: Final = ("null", "boolean", "integer", "number", "string", "array", "object")
_NONE: Final = type(None)
_BAD_NAME: Final = re.compile(r'["\\\x00-\x1f]')


def schema_types(json_schema: Mapping[str, Any] | bool, *, name: str = "Root") -> Any:
    """A type for :func:`msgspec.convert` that reproduces values valid under ``json_schema``.

    ``name`` names the root Struct when the schema gives none. Raises
    :class:`UnsupportedSchemaError` (with the JSON path) for constructs with no
    faithful typed form.
    """
    return _Compiler(json_schema, name).build()


def decode_typed(value: Any, type_: Any) -> Any:
    """Convert decoded canonical JSON (``{"__bytes__": ...}`` included) into ``type_``.

    Raises :class:`ReconstructionError` when the value does not fit the type.
    """
    try:
        return msgspec.convert(_revive_bytes(value), type_, strict=True)
    except msgspec.ValidationError as exc:
        raise ReconstructionError(str(exc)) from None


# -- schema -> type ---------------------------------------------------------------------


class _Default:
    """Default factory for a property with a schema ``default``, converted to its type."""

    def __init__(self, value: Any, path: str) -> None:
        self.value, self.path, self.type = value, path, Any

    def __call__(self) -> Any:
        return msgspec.convert(_revive_bytes(copy.deepcopy(self.value)), self.type, strict=True)


@dataclass
class _Pending:
    """A Struct made before its field types are known, so ``$ref`` cycles can point at it."""

    cls: Any
    path: str
    props: dict[str, Any]
    fields: list[tuple[str, str, _Default | None, bool]]  # attr, property, default, UNSET?


class _Compiler:
    """One schema document -> one type; Structs get their field types in a second phase."""

    def __init__(self, root: Mapping[str, Any] | bool, name: str) -> None:
        self.root, self.root_name = root, name
        self.refs: dict[str, Any] = {}
        self.resolving: set[str] = set()
        self.names: set[str] = set()
        self.queue: list[_Pending] = []
        self.defaults: list[_Default] = []
        self.tags: dict[int, tuple[str, str]] = {}  # id(object schema) -> (tag field, tag)

    def build(self) -> Any:
        self._find_tags(self.root, "#")
        result = self.compile(self.root, "#", self.root_name)
        while self.queue:
            self._fill(self.queue.pop())
        try:  # resolves every Struct's field types, all final now
            msgspec.json.Decoder(result)
        except TypeError as exc:
            raise _error("#", f"msgspec cannot decode the resulting type: {exc}") from None
        for default in self.defaults:
            try:
                default()
            except (msgspec.ValidationError, TypeError) as exc:
                raise _error(default.path, f"default does not fit the type: {exc}") from None
        return result

    def compile(self, schema: Any, path: str, hint: str) -> Any:
        if schema is True:
            return Any
        if not isinstance(schema, dict):
            raise _error(path, f"{schema!r} is not a schema that admits values")
        for key in schema:
            if key not in _KNOWN and not key.startswith("x-"):
                raise _error(_pointer(path, key), f"keyword {key!r} is not supported")
        if "$id" in schema and path != "#":
            raise _error(_pointer(path, "$id"), "$id below the root (a new base URI)")
        if type(schema.get("nullable", False)) is not bool:
            raise _error(_pointer(path, "nullable"), "nullable must be true or false")
        handlers = (
            ("$ref", self._ref),
            ("allOf", self._all_of),
            ("anyOf", self._union),
            ("oneOf", self._union),
            ("enum", self._literal),
            ("const", self._literal),
        )
        handler = next((h for key, h in handlers if key in schema), self._typed)
        result = handler(schema, path, hint)
        return self._join([result, _NONE], path) if schema.get("nullable") else result

    @staticmethod
    def _only(schema: dict[str, Any], path: str, *allowed: str) -> None:
        for key in schema.keys() - _ANNOTATIONS - {"nullable", *allowed}:
            if not key.startswith("x-"):
                raise _error(_pointer(path, key), f"{key!r} beside {allowed[0]!r}")

    # -- references and combinators -----------------------------------------------------

    def _ref(self, schema: dict[str, Any], path: str, hint: str) -> Any:
        self._only(schema, path, "$ref")
        ref, where = schema["$ref"], _pointer(path, "$ref")
        if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
            raise _error(where, f"only local references (#/...) are supported, not {ref!r}")
        if ref not in self.refs:
            if ref in self.resolving:
                raise _error(where, f"{ref} refers to itself without passing through an object")
            self.resolving.add(ref)
            name = ref.rsplit("/", 1)[-1].lstrip("#") or self.root_name
            self.refs[ref] = self.compile(self._resolve(ref, where), ref, name)
            self.resolving.discard(ref)
        return self.refs[ref]

    def _resolve(self, ref: str, path: str) -> Any:
        node: Any = self.root
        for raw in ref.split("/")[1:]:
            part = raw.replace("~1", "/").replace("~0", "~")
            try:
                node = node[int(part) if isinstance(node, list) and part.isdigit() else part]
            except (KeyError, IndexError, TypeError):
                raise _error(path, f"reference {ref} points at nothing") from None
        return node

    def _all_of(self, schema: dict[str, Any], path: str, hint: str) -> Any:
        self._only(schema, path, "allOf")
        branches = schema["allOf"]
        if not isinstance(branches, list) or len(branches) != 1:
            raise _error(_pointer(path, "allOf"), "allOf is supported with exactly one schema")
        return self.compile(branches[0], _pointer(path, "allOf", 0), hint)

    def _union(self, schema: dict[str, Any], path: str, hint: str) -> Any:
        key = "anyOf" if "anyOf" in schema else "oneOf"
        self._only(schema, path, key, "discriminator")
        branches, where = schema[key], _pointer(path, key)
        if not isinstance(branches, list) or not branches:
            raise _error(where, f"{key} must be a non-empty list of schemas")
        decimal_form = self._decimal([_bare_type(b) for b in branches], path)
        if decimal_form is not None:
            return decimal_form
        members = [self.compile(b, _pointer(where, i), hint) for i, b in enumerate(branches)]
        return self._join(members, where)

    def _decimal(self, kinds: list[str | None], path: str) -> Any:
        """number + string (+ null) is a Decimal (pydantic's form; msgspec's is a string)."""
        if sorted(str(k) for k in kinds if k != "null") != ["number", "string"]:
            return None
        return self._join([decimal.Decimal, _NONE], path) if "null" in kinds else decimal.Decimal

    def _join(self, members: list[Any], path: str) -> Any:
        """The union of ``members`` if msgspec can decode it (checked on stand-ins: the
        Structs here may not have their field types yet)."""
        flat: list[Any] = []
        for t in (t for member in members for t in _union_args(member)):
            if t not in flat:
                flat.append(t)
        if Any in flat or len(flat) == 1:
            return Any if Any in flat else flat[0]
        try:
            msgspec.json.Decoder(typing.Union.__getitem__(tuple(_stand_in(t) for t in flat)))
        except TypeError as exc:
            raise _error(path, f"this union has no typed form: {exc}") from None
        return typing.Union.__getitem__(tuple(flat))

    def _literal(self, schema: dict[str, Any], path: str, hint: str) -> Any:
        self._only(schema, path, "enum", "const", "type")
        key = "const" if "const" in schema else "enum"
        values, where = [schema["const"]] if key == "const" else schema["enum"], _pointer(path, key)
        if not isinstance(values, list) or not values:
            raise _error(where, "enum must be a non-empty list")
        declared = schema.get("type")
        if declared is not None:
            allowed = {declared} if isinstance(declared, str) else set(declared)
            allowed |= {"integer"} if "number" in allowed else set()
            if any(_JSON_TYPE.get(type(v)) not in allowed for v in values):
                raise _error(where, f"a value is not of the declared type {declared!r}")
        if all(type(v) is bool for v in values):
            if set(values) != {True, False}:
                raise _error(where, "a boolean enum other than [true, false] has no typed form")
            return bool
        bad = [v for v in values if v is not None and type(v) not in (str, int)]
        if bad:
            raise _error(where, f"Literal values are str, int or null, not {bad[0]!r}")
        return Literal.__getitem__(tuple(dict.fromkeys(values)))

    # -- one JSON type each ---------------------------------------------------------------

    def _typed(self, schema: dict[str, Any], path: str, hint: str) -> Any:
        declared = schema.get("type")
        if declared is None:
            kinds = [k for k, words in _TYPE_KEYWORDS.items() if words & schema.keys()]
            if len(kinds) > 1:
                raise _error(path, f"keywords of several types ({', '.join(kinds)}); add 'type'")
            if not kinds:
                return Any  # annotations only: the schema admits any value
            declared = kinds[0]
        names = [declared] if isinstance(declared, str) else declared
        if not (
            isinstance(names, list)
            and names
            and all(n in _JSON_TYPES for n in names)
            and len(set(names)) == len(names)
        ):
            raise _error(_pointer(path, "type"), f"invalid type {declared!r}")
        decimal_form = self._decimal(names, path)
        if decimal_form is not None:
            return decimal_form
        return self._join([self._single(n, schema, path, hint) for n in names], path)

    def _single(self, name: str, schema: dict[str, Any], path: str, hint: str) -> Any:
        if name == "array":
            return self._array(schema, path, hint)
        if name == "object":
            return self._object(schema, path, hint)
        if name == "string":
            return string_type(schema, path)
        if name == "number" and schema.get("format") == "decimal":
            return decimal.Decimal
        if name in ("integer", "number"):
            return numeric_type(int if name == "integer" else float, schema, path)
        return bool if name == "boolean" else _NONE

    def _array(self, schema: dict[str, Any], path: str, hint: str) -> Any:
        if schema.get("uniqueItems", False) is not False:
            raise _error(_pointer(path, "uniqueItems"), "uniqueItems cannot be checked on a list")
        prefix, rest, rest_key = schema.get("prefixItems"), schema.get("items", True), "items"
        if isinstance(rest, list):  # drafts 4-2019: items as a list, then additionalItems
            prefix, rest, rest_key = rest, schema.get("additionalItems", True), "additionalItems"
        low, high = schema.get("minItems", 0), schema.get("maxItems")
        if prefix is None:
            item = self.compile(rest, _pointer(path, rest_key), hint + "Item")
            return constrained(list[item], path, min_length=low or None, max_length=high)  # type: ignore[valid-type]
        where = _pointer(path, "prefixItems" if rest_key == "items" else "items")
        if not isinstance(prefix, list):
            raise _error(where, "must be a list of schemas")
        if low != len(prefix) or (rest is not False and high != len(prefix)):
            raise _error(where, "a tuple with optional or further items has no typed form")
        items = [self.compile(s, _pointer(where, i), hint) for i, s in enumerate(prefix)]
        return tuple.__class_getitem__(tuple(items))

    def _object(self, schema: dict[str, Any], path: str, hint: str) -> Any:
        if _is_bytes_object(schema):
            return bytes
        props, extra = schema.get("properties"), schema.get("additionalProperties", True)
        required = schema.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise _error(_pointer(path, "required"), "required must be a list of names")
        if props is None and extra is not False:
            if required:
                raise _error(_pointer(path, "required"), "required names need 'properties'")
            value = self.compile(extra, _pointer(path, "additionalProperties"), hint + "Value")
            low, high = schema.get("minProperties"), schema.get("maxProperties")
            return constrained(dict[str, value], path, min_length=low, max_length=high)  # type: ignore[valid-type]
        props = {} if props is None else props
        if not isinstance(props, dict):
            raise _error(_pointer(path, "properties"), "properties must be an object")
        if extra not in (True, False, {}):
            where = _pointer(path, "additionalProperties")
            raise _error(where, "a schema for further properties has no Struct form")
        for word in ("minProperties", "maxProperties"):
            if word in schema:
                raise _error(_pointer(path, word), f"{word} beside 'properties'")
        missing = [r for r in required if r not in props]
        if missing:
            raise _error(_pointer(path, "required"), f"required {missing} not in properties")
        return self._struct(schema, props, set(required), path, hint)

    def _struct(
        self,
        schema: dict[str, Any],
        props: dict[str, Any],
        required: set[str],
        path: str,
        hint: str,
    ) -> Any:
        tag_field, tag = self.tags.get(id(schema), (None, None))
        pending = _Pending(None, path, props, [])
        used: set[str] = set()
        spec: list[Any] = []
        for prop, sub in props.items():
            if prop == tag_field:
                continue
            if _BAD_NAME.search(prop):  # msgspec cannot encode such a field name
                where = _pointer(path, "properties", prop)
                raise _error(where, "a property name with '\"', '\\' or a control character")
            attr, default = _field_name(prop, used), None
            if prop in required:
                spec.append((attr, Any))
            elif isinstance(sub, dict) and "default" in sub:
                default = _Default(sub["default"], _pointer(path, "properties", prop, "default"))
                self.defaults.append(default)
                spec.append((attr, Any, msgspec.field(default_factory=default)))
            else:
                spec.append((attr, Any, msgspec.UNSET))
            pending.fields.append((attr, prop, default, prop not in required and not default))
        title = schema.get("title")
        pending.cls = msgspec.defstruct(
            self._name(title if isinstance(title, str) else hint),
            spec,
            rename={attr: prop for attr, prop, _, _ in pending.fields},
            kw_only=True,
            frozen=True,
            forbid_unknown_fields=True,
            tag_field=tag_field,
            tag=tag,
        )
        self.queue.append(pending)
        return pending.cls

    def _fill(self, pending: _Pending) -> None:
        types: dict[str, Any] = {}
        for attr, prop, default, unset in pending.fields:
            where = _pointer(pending.path, "properties", prop)
            t = self.compile(pending.props[prop], where, camel_name(prop))
            if default is not None:
                default.type = t
            types[attr] = typing.Union.__getitem__((t, msgspec.UnsetType)) if unset else t
        # msgspec reads field types from __annotations__ on first use, which is after this
        pending.cls.__annotations__.update(types)

    def _name(self, hint: str) -> str:
        base = camel_name(hint) or "Object"
        name, n = base, 1
        while name in self.names:
            n += 1
            name = f"{base}{n}"
        self.names.add(name)
        return name

    def _find_tags(self, node: Any, path: str) -> None:
        """Struct tags from each ``discriminator`` (msgspec's tagged unions, OpenAPI's)."""
        if isinstance(node, list):
            for i, item in enumerate(node):
                self._find_tags(item, _pointer(path, i))
        elif isinstance(node, dict):
            if "discriminator" in node and ("anyOf" in node or "oneOf" in node):
                self._tag_branches(node, _pointer(path, "discriminator"))
            for key, value in node.items():
                if key not in ("enum", "const", "default", "examples"):
                    self._find_tags(value, _pointer(path, key))

    def _tag_branches(self, node: dict[str, Any], path: str) -> None:
        spec = node["discriminator"]
        field = spec.get("propertyName") if isinstance(spec, dict) else None
        if not isinstance(field, str):
            raise _error(path, "a discriminator needs a propertyName")
        for branch in node.get("anyOf") or node.get("oneOf") or []:
            target = branch
            for _ in range(64):  # follow $ref chains (a cycle of bare refs is caught later)
                if not (isinstance(target, dict) and isinstance(target.get("$ref"), str)):
                    break
                target = self._resolve(target["$ref"], path)
            props = target.get("properties") if isinstance(target, dict) else None
            tag = _tag_value(props.get(field) if isinstance(props, dict) else None)
            if tag is None:
                raise _error(path, f"every branch needs one string value for {field!r}")
            if self.tags.setdefault(id(target), (field, tag)) != (field, tag):
                raise _error(path, "an object is tagged differently by two discriminators")


# -- helpers ----------------------------------------------------------------------------

_JSON_TYPE: Final[dict[type, str]] = {
    type(None): "null",
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


def _stand_in(t: Any) -> Any:
    """What decides ``t``'s place in a msgspec union, usable before Structs are complete."""
    origin = typing.get_origin(t)
    if origin is Annotated:
        return _stand_in(typing.get_args(t)[0])
    if origin in (list, tuple, dict):
        return origin
    if isinstance(t, type) and issubclass(t, msgspec.Struct):
        config = t.__struct_config__
        return msgspec.defstruct(t.__name__, [], tag_field=config.tag_field, tag=config.tag)
    return t


def _is_bytes_object(schema: dict[str, Any]) -> bool:
    """The shape canonical JSON gives bytes: ``{"__bytes__": "<base64>"}``, nothing more."""
    props, inner = schema.get("properties"), None
    if isinstance(props, dict) and set(props) == {"__bytes__"}:
        inner = props["__bytes__"]
    return (
        isinstance(inner, dict)
        and inner.get("type") == "string"
        and inner.get("contentEncoding", "base64") == "base64"
        and not inner.keys() - _ANNOTATIONS - {"type", "contentEncoding"}
        and not schema.keys()
        - _ANNOTATIONS
        - {"type", "properties", "required", "additionalProperties"}
        and schema.get("additionalProperties", False) is False
        and schema.get("required", []) in ([], ["__bytes__"])
    )


def _bare_type(schema: Any) -> str | None:
    """``number``/``string``/``null`` for a branch that is just that (for the Decimal form)."""
    if not isinstance(schema, dict) or not isinstance(schema.get("type"), str):
        return None
    kind: str = schema["type"]
    extra = schema.keys() - _ANNOTATIONS - {"type"}
    if kind == "string":  # pydantic may add a pattern; msgspec's own form has format decimal
        extra -= {"pattern"} | ({"format"} if schema.get("format") == "decimal" else set())
    return None if extra else kind


def _tag_value(schema: Any) -> str | None:
    if not isinstance(schema, dict):
        return None
    values = [schema["const"]] if "const" in schema else schema.get("enum")
    ok = isinstance(values, list) and len(values) == 1 and type(values[0]) is str
    return values[0] if ok else None  # type: ignore[index]


def _union_args(t: Any) -> tuple[Any, ...]:
    return typing.get_args(t) if typing.get_origin(t) is typing.Union else (t,)


def camel_name(text: str) -> str:
    name = "".join(w[:1].upper() + w[1:] for w in re.findall(r"[A-Za-z0-9]+", text))
    return f"T{name}" if name[:1].isdigit() else name


def _field_name(prop: str, used: set[str]) -> str:
    """A Python attribute for a property (the JSON name is kept through ``rename``)."""
    name = prop
    if not name.isidentifier() or name.startswith("__"):
        name = "".join(c if f"x{c}".isidentifier() else "_" for c in name).strip("_")
        name = name if name.isidentifier() else f"f_{name}".rstrip("_")
    name = f"{name}_" if keyword.iskeyword(name) else name
    base, n = name, 1
    while name in used:
        n += 1
        name = f"{base}_{n}"
    used.add(name)
    return name


def _revive_bytes(value: Any) -> Any:
    """Turn every ``{"__bytes__": "<base64>"}`` (canonical JSON's bytes) back into bytes."""
    t = type(value)
    if t is dict:
        if len(value) == 1 and type(value.get("__bytes__")) is str:
            try:
                return base64.b64decode(value["__bytes__"], validate=True)
            except binascii.Error:
                return value
        return {k: _revive_bytes(v) for k, v in value.items()}
    if t is list:
        return [_revive_bytes(v) for v in value]
    return value
