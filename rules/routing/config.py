"""The ``rules: routing:`` section of the process file, validated.

Example (``examples/process.yaml`` style)::

    rules:
      routing:
        fallback: {owner: sofia.brandt@brightfield.example, queue: unrouted}
        territories:
          DACH: {countries: [DE, AT, CH]}
          Berlin: {postcodes: [{country: DE, from: "10", to: "14"}]}
        pools:
          dach:
            members: [jonas.keller@brightfield.example, {email: lena@…, weight: 2, caps: {day: 10}}]
            caps: {day: 60}            # the whole pool
            member_caps: {hour: 5}     # each member, unless their own says otherwise
            catch_up: none             # none | limited | full (see rules.routing.rotation)
            max_catch_up: 3
            working_hours_only: false
        rules:
          - {name: existing account, strategy: account_match}
          - name: enterprise DACH
            when: 'lead.country in ["DE", "AT", "CH"] && lead.company_size in ["1001-5000", "5000+"]'
            strategy: round_robin
            pool: dach
          - {name: by territory, strategy: territory}
          - {name: routing table, table: routing_table.json}   # a ZEN decision table → pool/owner
          - {name: everyone else, strategy: least_loaded, pool: dach}

Strategies: ``account_match`` (the owner of the lead's company domain),
``territory`` (people whose ``territories`` fit the lead, most specific first,
rotated by ``pick``), ``round_robin`` / ``least_loaded`` (within ``pool``),
``owner`` (one person). ``when`` (CEL) narrows any rule; a ``table`` rule lets
a ZEN decision table choose ``pool``/``owner``/``strategy`` per lead.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hub.conditions import Condition
from rules.routing.eligibility import TerritoryDef
from rules.routing.rotation import CatchUp

__all__ = ["Caps", "MemberDef", "PoolDef", "PostcodeRange", "TerritoryConfig", "RouteRuleDef", "Fallback",
           "RoutingSettings", "STRATEGIES"]

STRATEGIES = ("account_match", "territory", "round_robin", "least_loaded", "owner")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Caps(_Strict):
    """Most leads per window (calendar hour, day, week in the person's time zone); unset: no cap."""

    hour: int | None = Field(default=None, ge=0)
    day: int | None = Field(default=None, ge=0)
    week: int | None = Field(default=None, ge=0)

    def merged(self, over: Caps | None) -> Caps:
        """These caps with ``over``'s set values taking precedence."""
        if over is None:
            return self
        return Caps(**{**self.model_dump(), **over.model_dump(exclude_none=True)})

    def as_dict(self) -> dict[str, int | None]:
        return self.model_dump()


class MemberDef(_Strict):
    email: str
    weight: int = Field(default=1, ge=1)
    caps: Caps | None = None

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()


class PoolDef(_Strict):
    members: tuple[MemberDef, ...] = Field(min_length=1)
    caps: Caps = Caps()
    member_caps: Caps = Caps()
    catch_up: CatchUp = CatchUp.NONE
    max_catch_up: int = Field(default=3, ge=0)
    working_hours_only: bool = False

    @field_validator("members", mode="before")
    @classmethod
    def _plain_emails(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [{"email": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _unique(self) -> PoolDef:
        emails = [m.email for m in self.members]
        twice = sorted({e for e in emails if emails.count(e) > 1})
        if twice:
            raise ValueError(f"member(s) listed twice: {', '.join(twice)}")
        return self


class PostcodeRange(_Strict):
    country: str
    start: str = Field(alias="from")
    end: str = Field(alias="to")

    @field_validator("start", "end", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str:
        return str(value)


class TerritoryConfig(_Strict):
    countries: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    postcodes: tuple[PostcodeRange, ...] = ()

    def to_def(self, name: str) -> TerritoryDef:
        return TerritoryDef(name.upper(), frozenset(c.upper() for c in self.countries),
                            frozenset(r.upper() for r in self.regions),
                            tuple((p.country.upper(), p.start, p.end) for p in self.postcodes))


class RouteRuleDef(_Strict):
    """One routing rule; rules are tried in order and the first that finds an owner wins."""

    name: str = Field(min_length=1)
    when: Condition | None = None
    table: str | dict[str, Any] | None = None  # a ZEN (JDM) decision graph: a file path or inline
    strategy: Literal["account_match", "territory", "round_robin", "least_loaded", "owner"] | None = None
    pool: str | None = None
    owner: str | None = None
    pick: Literal["round_robin", "least_loaded"] = "round_robin"  # how territory candidates are ordered
    roles: tuple[str, ...] = ()  # territory without a pool, account match: only people with these roles

    @field_validator("owner")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return value.strip().lower() if value else value

    @model_validator(mode="after")
    def _complete(self) -> RouteRuleDef:
        if self.table is None:
            if self.strategy is None:
                raise ValueError("a routing rule needs a strategy (or a decision table)")
            if self.strategy in ("round_robin", "least_loaded") and not self.pool:
                raise ValueError(f"strategy {self.strategy} needs a pool")
            if self.strategy == "owner" and not self.owner:
                raise ValueError("strategy owner needs an owner")
        return self


class Fallback(_Strict):
    """Where a lead goes when no rule finds an owner: a person, else a named queue."""

    owner: str | None = None
    queue: str | None = "unrouted"

    @field_validator("owner")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return value.strip().lower() if value else value

    @model_validator(mode="after")
    def _somewhere(self) -> Fallback:
        if not self.owner and not self.queue:
            raise ValueError("the fallback needs an owner or a queue: no lead is left unassigned silently")
        return self


class RoutingSettings(_Strict):
    """Everything the router needs from ``rules.routing`` (the rule's Config extends it)."""

    rules: tuple[RouteRuleDef, ...] = ()
    pools: dict[str, PoolDef] = Field(default_factory=dict)
    territories: dict[str, TerritoryConfig] = Field(default_factory=dict)
    fallback: Fallback = Fallback()
    person_caps: Caps = Caps()  # every person, in every rule; a pool's member caps override per window
    respect_capacity: bool = True  # a person at their ``capacity`` of open leads is skipped
    default_capacity: int = Field(default=50, ge=1)  # least-loaded's yardstick for people without one

    @model_validator(mode="after")
    def _references(self) -> RoutingSettings:
        names = [r.name for r in self.rules]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"routing rule name(s) used twice: {', '.join(twice)}")
        for r in self.rules:
            if r.pool and r.pool not in self.pools:
                raise ValueError(f"rule {r.name!r} names pool {r.pool!r}, which is not defined under pools")
        return self

    def territory_defs(self) -> list[TerritoryDef]:
        return [t.to_def(name) for name, t in self.territories.items()]
