"""A small, real SOQL parser and evaluator: the subset a sync client sends, checked like Salesforce does.

Grammar served (keywords and names case-insensitive, one level of parent
relationship such as ``ConvertedOpportunity.StageName``)::

    SELECT field [, field]* FROM object
      [WHERE cond]                 cond: field op literal | field [NOT] IN (literal, ...)
                                         | field LIKE 'pattern' | NOT cond | (cond)
                                         | cond AND cond | cond OR cond
      [ORDER BY field [ASC|DESC] [NULLS FIRST|LAST] [, ...]]
      [LIMIT n]

Literals: ``'text'`` (with ``\\'`` escapes), numbers, ``true``/``false``/``null``,
dates ``2026-11-01`` and datetimes ``2026-11-01T09:00:00Z`` (or ``+01:00``), unquoted.
Errors are Salesforce's: ``MALFORMED_QUERY`` with the caret under the offending
token, ``INVALID_FIELD`` (unknown column, wrong literal type), ``INVALID_TYPE``
(unknown object). No python package parses SOQL and is maintained (python-soql-parser
last shipped 0.2.0 in 2023), so this is the fake CRM's own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .schema import SCHEMA, Field, full_id

__all__ = [
    "Query",
    "Resolver",
    "SoqlError",
    "bad_relationship",
    "compile_where",
    "duplicate_field",
    "no_such_column",
    "parse",
    "sort_key",
]

_TOKEN = re.compile(r"""\s*(?:
    (?P<str>'(?:[^'\\]|\\.)*')
  | (?P<dt>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})(?![\w:])
  | (?P<num>-?\d+(?:\.\d+)?)(?![\w.])
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),])
  | (?P<name>[A-Za-z_][\w.]*)
  | (?P<bad>\S)
)""", re.VERBOSE)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "'": "'", '"': '"', "\\": "\\"}
_KEYWORDS = {"select", "from", "where", "and", "or", "not", "in", "like", "order", "by", "asc", "desc", "nulls",
             "first", "last", "limit", "true", "false", "null"}


class SoqlError(Exception):
    """A query Salesforce would refuse: ``code`` is its errorCode, ``message`` its text."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class Query:
    text: str
    obj: str
    fields: list[str]  # canonical names, dotted for parent fields
    where: Any = None
    order: list[tuple[str, bool, bool]] = field(default_factory=list)  # (field, descending, nulls last)
    limit: int | None = None
    positions: dict[str, int] = field(default_factory=dict)  # where each selected/ordered name stands


@dataclass(slots=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokens(text: str) -> list[_Tok]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            break
        kind = m.lastgroup or "bad"
        out.append(_Tok(kind, m.group(kind), m.start(kind)))
        pos = m.end()
    out.append(_Tok("eof", "<EOF>", len(text.rstrip())))
    return out


def _at(text: str, pos: int, message: str) -> str:
    return f"\n{text}\n{' ' * pos}^\nERROR at Row:1:Column:{pos + 1}\n{message}"


class _Parser:
    def __init__(self, text: str):
        self.text, self.toks, self.i = text, _tokens(text), 0

    def peek(self, *words: str) -> bool:
        t = self.toks[self.i]
        return t.kind == "name" and t.text.lower() in words

    def next(self) -> _Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def fail(self, tok: _Tok | None = None) -> SoqlError:
        tok = tok or self.toks[self.i]
        return SoqlError("MALFORMED_QUERY", _at(self.text, tok.pos, f"unexpected token: '{tok.text}'"))

    def expect(self, *words: str) -> _Tok:
        if not self.peek(*words):
            raise self.fail()
        return self.next()

    def punct(self, ch: str) -> bool:
        t = self.toks[self.i]
        if t.kind == "punct" and t.text == ch:
            self.i += 1
            return True
        return False

    def name(self) -> _Tok:
        t = self.next()
        if t.kind != "name" or t.text.lower() in _KEYWORDS:
            raise self.fail(t)
        return t

    def query(self) -> tuple[list[_Tok], _Tok, Any, list[tuple[_Tok, bool, bool]], int | None]:
        self.expect("select")
        fields = [self.name()]
        while self.punct(","):
            fields.append(self.name())
        self.expect("from")
        obj = self.name()
        where = order = limit = None
        if self.peek("where"):
            self.next()
            where = self.disjunction()
        if self.peek("order"):
            self.next()
            self.expect("by")
            order = [self.order_item()]
            while self.punct(","):
                order.append(self.order_item())
        if self.peek("limit"):
            self.next()
            t = self.next()
            if t.kind != "num" or not t.text.isdigit():
                raise self.fail(t)
            limit = int(t.text)
        if self.toks[self.i].kind != "eof":
            raise self.fail()
        return fields, obj, where, order or [], limit

    def order_item(self) -> tuple[_Tok, bool, bool]:
        name = self.name()
        desc = False
        if self.peek("asc", "desc"):
            desc = self.next().text.lower() == "desc"
        nulls_last = desc
        if self.peek("nulls"):
            self.next()
            nulls_last = self.expect("first", "last").text.lower() == "last"
        return name, desc, nulls_last

    def disjunction(self) -> Any:
        terms = [self.conjunction()]
        while self.peek("or"):
            self.next()
            terms.append(self.conjunction())
        return terms[0] if len(terms) == 1 else ("or", terms)

    def conjunction(self) -> Any:
        terms = [self.factor()]
        while self.peek("and"):
            self.next()
            terms.append(self.factor())
        return terms[0] if len(terms) == 1 else ("and", terms)

    def factor(self) -> Any:
        if self.peek("not"):
            self.next()
            return ("not", self.factor())
        if self.punct("("):
            inner = self.disjunction()
            if not self.punct(")"):
                raise self.fail()
            return inner
        name = self.name()
        if self.peek("not", "in"):
            negated = self.next().text.lower() == "not"
            if negated:
                self.expect("in")
            if not self.punct("("):
                raise self.fail()
            values = [self.literal()]
            while self.punct(","):
                values.append(self.literal())
            if not self.punct(")"):
                raise self.fail()
            return ("in", name, negated, values)
        if self.peek("like"):
            self.next()
            value = self.literal()
            return ("like", name, value)
        op = self.next()
        if op.kind != "op":
            raise self.fail(op)
        return ("cmp", name, "!=" if op.text == "<>" else op.text, self.literal())

    def literal(self) -> tuple[str, Any, _Tok]:
        t = self.next()
        if t.kind == "str":
            return "string", re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), t.text[1:-1]), t
        if t.kind == "num":
            return "number", float(t.text), t
        if t.kind == "dt":
            stamp = datetime.fromisoformat(t.text)
            return "datetime", int(stamp.timestamp() * 1000), t
        if t.kind == "date":
            return "date", t.text, t
        if t.kind == "name" and t.text.lower() in ("true", "false"):
            return "boolean", t.text.lower() == "true", t
        if t.kind == "name" and t.text.lower() == "null":
            return "null", None, t
        raise self.fail(t)


#: resolves a field path (and its position in the text, for errors) to (its Field, a getter over a record)
Resolver = Callable[[str, int], tuple[Field, Callable[[dict[str, Any]], Any]]]

_KIND = {"datetime": "datetime", "date": "date", "boolean": "boolean", "double": "number", "currency": "number",
         "percent": "number", "int": "number"}
_TYPE_NAME = {"datetime": "dateTime", "date": "date", "boolean": "boolean", "number": "number"}


def parse(text: str) -> Query:
    """Parse, and check the object exists (fields are checked by the caller's :data:`Resolver`)."""
    fields, obj, where, order, limit = _Parser(text).query()
    canonical = {o.lower(): o for o in SCHEMA}
    if obj.text.lower() not in canonical:
        raise SoqlError("INVALID_TYPE", _at(text, obj.pos, f"sObject type '{obj.text}' is not supported. If you are "
                                        "attempting to use a custom object, be sure to append the '__c' after the "
                                        "entity name. Please reference your WSDL or the describe call for the "
                                        "appropriate names."))
    positions = {t.text: t.pos for t in fields} | {t.text: t.pos for t, _, _ in order}
    return Query(text, canonical[obj.text.lower()], [f.text for f in fields], where,
                 [(t.text, d, n) for t, d, n in order], limit, positions)


def no_such_column(text: str, tok_pos: int, name: str, obj: str) -> SoqlError:
    return SoqlError("INVALID_FIELD", _at(text, tok_pos, f"No such column '{name}' on entity '{obj}'. If you are "
                                      "attempting to use a custom field, be sure to append the '__c' after the "
                                      "custom field name. Please reference your WSDL or the describe call for the "
                                      "appropriate names."))


def bad_relationship(text: str, tok_pos: int, name: str) -> SoqlError:
    return SoqlError("INVALID_FIELD", _at(text, tok_pos, f"Didn't understand relationship '{name}' in field path. If "
                                      "you are attempting to use a custom relationship, be sure to append the '__r' "
                                      "after the custom relationship name. Please reference your WSDL or the describe "
                                      "call for the appropriate names."))


def duplicate_field(text: str, tok_pos: int, name: str) -> SoqlError:
    return SoqlError("MALFORMED_QUERY", _at(text, tok_pos, f"duplicate field selected: {name}"))


def _check(text: str, f: Field, kind: str, tok: _Tok, op: str) -> None:
    want = _KIND.get(f.type, "string")
    if kind == "null" and op in ("=", "!=", "in"):
        return
    if kind != want:
        quoted = "should be enclosed in quotes" if want == "string" else "should not be enclosed in quotes"
        raise SoqlError("INVALID_FIELD", _at(text, tok.pos, f"value of filter criterion for field '{f.name}' must be "
                                             f"of type {_TYPE_NAME.get(want, 'string')} and {quoted}"))


def _fold(v: Any) -> Any:
    return v.casefold() if isinstance(v, str) else v


def _normaliser(f: Field) -> Callable[[Any], Any]:
    """How values of ``f`` compare: ids exactly (15 or 18 characters alike), other text ignoring case."""
    if f.type in ("id", "reference"):
        return lambda v: (full_id(v) or v) if isinstance(v, str) else v
    return _fold


def compile_where(q: Query, node: Any, resolve: Resolver) -> Callable[[dict], bool]:
    """The WHERE tree as a predicate over records. String comparisons ignore case, as SOQL's do."""
    tag = node[0]
    if tag in ("and", "or"):
        parts = [compile_where(q, n, resolve) for n in node[1]]
        return (lambda r: all(p(r) for p in parts)) if tag == "and" else (lambda r: any(p(r) for p in parts))
    if tag == "not":
        inner = compile_where(q, node[1], resolve)
        return lambda r: not inner(r)
    f, get = resolve(node[1].text, node[1].pos)
    norm = _normaliser(f)
    if tag == "in":
        for kind, _, tok in node[3]:
            _check(q.text, f, kind, tok, "in")
        values = {norm(v) for _, v, _ in node[3]}
        negated = node[2]
        return lambda r: (norm(get(r)) in values) != negated
    if tag == "like":
        kind, pattern, tok = node[2]
        if kind != "string" or _KIND.get(f.type, "string") != "string":
            raise SoqlError("INVALID_FIELD", _at(q.text, tok.pos, f"invalid operator on {f.type} field: LIKE"))
        rx = re.compile("".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern),
                        re.IGNORECASE | re.DOTALL)
        return lambda r: isinstance(v := get(r), str) and rx.fullmatch(v) is not None
    _, _, op, (kind, value, tok) = node
    _check(q.text, f, kind, tok, op)
    value = norm(value)
    if op == "=":
        return lambda r: norm(get(r)) == value
    if op == "!=":
        return lambda r: norm(get(r)) != value
    if value is None:
        raise SoqlError("MALFORMED_QUERY", _at(q.text, tok.pos, f"invalid operator with null: {op}"))
    cmp = {"<": lambda a: a < value, "<=": lambda a: a <= value, ">": lambda a: a > value,
           ">=": lambda a: a >= value}[op]
    return lambda r: (v := norm(get(r))) is not None and cmp(v)


def sort_key(get: Callable[[dict], Any], descending: bool, nulls_last: bool) -> Callable[[dict], tuple[int, Any]]:
    """A key for one ORDER BY item, to sort with ``reverse=descending`` (items last to first, stable sorts)."""
    null_rank = 0 if (not nulls_last) != descending else 2

    def key(r: dict) -> tuple[int, Any]:
        v = _fold(get(r))
        return (null_rank, 0) if v is None else (1, v)
    return key
