"""YAML with line numbers, and pydantic errors turned into :class:`hub.errors.Problem` rows.

Shared by :mod:`hub.process` and :mod:`hub.config`: every problem in a user's file
is reported with the file, the 1-based line and a field path such as
``transitions[3].to``. Scalars follow YAML 1.2 (only true/false are booleans, so
``NO`` stays Norway; ``9:00`` stays a string); duplicate keys are reported.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from hub.errors import Problem

__all__ = ["Loc", "YamlSource", "read_yaml", "problems_from_error", "format_loc", "hint"]

Loc = tuple[str | int, ...]


class _Loader(yaml.SafeLoader):
    """YAML 1.2 scalars: only true/false are booleans (``NO`` stays Norway), no base-60 ints (``9:00``)."""


_REPLACED = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int")
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _REPLACED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"),
                              list("-+0123456789"))


def format_loc(loc: Loc) -> str:
    """``("transitions", 3, "to")`` → ``"transitions[3].to"``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def hint(word: str, options: Iterable[object], *, show: bool = True) -> str:
    """A "did you mean" for a misspelt name, else (if ``show``) the known names."""
    options = sorted(str(o) for o in options)
    close = difflib.get_close_matches(word, options, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    if show and options:
        return f"; known: {', '.join(options)}" if len(options) <= 15 else ""
    return ""


@dataclass(slots=True)
class YamlSource:
    """A parsed YAML file and the 1-based line of each mapping key and sequence item."""

    file: str
    data: Any
    lines: dict[Loc, int]

    def line(self, loc: Loc) -> int | None:
        """The line of ``loc``, or of its nearest ancestor present in the file."""
        while loc and loc not in self.lines:
            loc = loc[:-1]
        return self.lines.get(loc)

    def problem(self, loc: Loc, message: str) -> Problem:
        return Problem(self.file, self.line(loc), format_loc(loc), message)


def read_yaml(path: Path | str) -> tuple[YamlSource | None, list[Problem]]:
    """Parse ``path``; ``None`` and the problem when it cannot be read or parsed.

    Duplicate keys, which plain YAML loaders silently collapse, are problems too.
    """
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        return None, [Problem(file, None, "", f"cannot read the file: {reason}")]
    lines: dict[Loc, int] = {(): 1}
    problems: list[Problem] = []
    loader = _Loader(text)
    active: set[int] = set()

    def build(node: yaml.Node, loc: Loc) -> Any:
        if id(node) in active:
            raise yaml.MarkedYAMLError(problem="an alias refers to itself", problem_mark=node.start_mark)
        if isinstance(node, yaml.MappingNode):
            active.add(id(node))
            own = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
            loader.flatten_mapping(node)  # "<<" merge keys: merged pairs come first, the node's own win
            first_own = len(node.value) - own
            out: dict[str, Any] = {}
            own_keys: set[str] = set()
            for index, (key_node, value_node) in enumerate(node.value):
                key = loader.construct_object(key_node, deep=True)
                key = key if isinstance(key, str) else str(key)  # a YAML key like 2026 names a thing too
                line = key_node.start_mark.line + 1
                if key in own_keys:
                    problems.append(Problem(file, line, format_loc(loc + (key,)),
                                            f"duplicate key {key!r} (first at line {lines[loc + (key,)]})"))
                else:
                    lines[loc + (key,)] = line
                if index >= first_own:
                    own_keys.add(key)
                out[key] = build(value_node, loc + (key,))
            active.discard(id(node))
            return out
        if isinstance(node, yaml.SequenceNode):
            active.add(id(node))
            items = []
            for i, item in enumerate(node.value):
                lines[loc + (i,)] = item.start_mark.line + 1
                items.append(build(item, loc + (i,)))
            active.discard(id(node))
            return items
        return loader.construct_object(node, deep=True)

    try:
        node = loader.get_single_node()
        data = build(node, ()) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        # context and problem only: the snippet of the source line could hold a secret
        mark = exc.problem_mark or exc.context_mark
        message = ", ".join(str(x) for x in (exc.context, exc.problem) if x)
        return None, [Problem(file, mark.line + 1 if mark else None, "", f"YAML syntax error: {message}")]
    except yaml.YAMLError as exc:
        return None, [Problem(file, None, "", f"YAML error: {type(exc).__name__}")]
    finally:
        loader.dispose()
    return YamlSource(file, data, lines), problems


def _unwrap(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, UnionType):
            tp = next((a for a in get_args(tp) if a is not NoneType), tp)
            if get_origin(tp) in (Union, UnionType):
                return tp
        else:
            return tp


def _keys_at(model: type[BaseModel] | None, loc: Loc) -> list[str]:
    """The keys the model allows at ``loc`` (for "did you mean" on unknown keys)."""
    tp: Any = model
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = next((f for n, f in tp.model_fields.items() if (f.alias or n) == part), None)
            tp = field.annotation if field else None
        else:
            args = [a for a in get_args(tp) if a is not Ellipsis]
            tp = args[-1] if args else None
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [f.alias or n for n, f in tp.model_fields.items()]
    return []


def problems_from_error(error: ValidationError, source: YamlSource, *, prefix: Loc = (),
                        model: type[BaseModel] | None = None,
                        also_known: tuple[str, ...] = ()) -> list[Problem]:
    """One :class:`Problem` per pydantic error, at the line of its key in ``source``.

    ``prefix`` is where the validated data sits in the file; ``model`` (the one
    validated) lets an unknown key suggest the right one, as do ``also_known``
    keys valid next to the model's (a connection's hub keys). Input values are never
    quoted, so a secret cannot leak into a message.
    """
    out = []
    for err in error.errors(include_url=False, include_input=False, include_context=False):
        loc = tuple(p for p in err["loc"] if p != "[key]")
        where, msg = prefix + loc, err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {loc[-1]!r}{hint(str(loc[-1]), [*_keys_at(model, loc[:-1]), *also_known])}"
        elif err["type"] == "missing":
            msg = f"missing required key {loc[-1]!r}"
        elif "[key]" in err["loc"]:
            msg = f"invalid key {loc[-1]!r}: {msg}"
        msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        out.append(source.problem(where, msg))
    return out
