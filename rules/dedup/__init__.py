"""The dedup rule: each new or changed lead is matched against the store before anyone routes it.

Per lead the engine evaluates (order 10, before scoring and routing):

1. Its identity is normalised (:mod:`rules.dedup.normalise`) and its blocking
   keys looked up in the ``dedup_keys`` index (:mod:`rules.dedup.incremental`);
   the few candidates found are scored (:mod:`rules.dedup.scoring`).
2. At or above ``link`` (default 0.99) the lead is the same person as the best
   match: a ``merge`` action into that stored lead (the survivor keeps the links
   of both; the engine moves them in the same transaction and relates the merged
   lead ``merged_into`` it), a ``dedup_merge_requests`` row per connection the
   merged lead lives in (carried out in that CRM after its next push where it
   can merge, see :mod:`rules.dedup.remote`), and the merged lead's blocking
   keys move to the survivor so later arrivals find it.
   The merge action's ``fields`` carry per-field survivorship
   (:func:`rules.dedup.cluster.survive`: source of truth per field, else the
   most recent non-blank value); until :mod:`hub.apply` applies them, the
   engine's merge keeps the survivor's values and fills its blanks.
   Two sure matches that are themselves two people make the lead ambiguous:
   it goes to review instead.
3. Between ``review`` (0.8) and ``link``: a ``duplicate`` link to each such
   lead and a ``possible_duplicate`` flag — the review queue.
4. Otherwise (and after 3.) the lead's own keys are indexed.

Config (``rules: dedup:``): ``plus_addressing`` (``true``: drop ``+tag`` on
every domain; ``false``; or a list of domains), ``gmail_dots``,
``free_mail_domains`` (added to the built-in list), ``link``, ``review``,
``max_block``, ``weights`` (see :class:`rules.dedup.scoring.Weights`),
``source_of_truth`` (field → connections, most trusted first) and ``funnel``
(status order for survivorship of status and owner).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from pydantic import Field, field_validator, model_validator

from hub.actions import Action
from hub.context import RuleContext
from hub.engine import LeadChange, Rule, RuleConfig
from hub.model import Lead
from hub.normalise import (
    EmailPolicy,
    Identity,
    company_domain,
    company_key,
    fold,
    identity,
    is_free_mail,
    normalise_email,
    normalise_phone,
)
from hub.process import Loc
from hub.store import LeadRow, Link
from rules.dedup.batch import BatchResult, DedupSettings, dedupe
from rules.dedup.blocking import blocking_keys
from rules.dedup.cluster import Cluster, Clustering, Member, cluster, survive
from rules.dedup.incremental import find_matches, index_lead, request_crm_merges
from rules.dedup.scoring import Score, Weights, score
from rules.dedup.tables import DedupKey

__all__ = [
    "Dedup", "RULES", "DedupSettings", "dedupe", "BatchResult", "Cluster", "Clustering", "cluster", "Member",
    "survive", "EmailPolicy", "Identity", "identity", "normalise_email", "normalise_phone", "company_domain",
    "company_key", "fold", "is_free_mail", "Score", "Weights", "score",
]

DEFAULT_FUNNEL = ("Nurture", "Closed Lost", "Lead", "MQL", "SAL", "SQL", "Opportunity", "Negotiation",
                  "Closed Won")


class Dedup(Rule):
    name = "dedup"
    order = 10

    class Config(RuleConfig):
        plus_addressing: bool | tuple[str, ...] = True
        gmail_dots: bool = True
        free_mail_domains: tuple[str, ...] = ()
        link: float = Field(default=0.99, gt=0.5, le=1.0)
        review: float = Field(default=0.8, gt=0.0, le=1.0)
        max_block: int = Field(default=100, ge=2)
        weights: dict[str, float] = Field(default_factory=dict)
        source_of_truth: dict[str, tuple[str, ...]] = Field(default_factory=dict)
        funnel: tuple[str, ...] = DEFAULT_FUNNEL

        @field_validator("weights")
        @classmethod
        def _weights(cls, value: dict[str, float]) -> dict[str, float]:
            Weights.from_config(value)
            return value

        @model_validator(mode="after")
        def _ordered(self) -> Dedup.Config:
            if self.review > self.link:
                raise ValueError(f"review ({self.review}) must not be above link ({self.link})")
            return self

    config: Config

    def __init__(self, config: RuleConfig | None = None, process: Any = None):
        super().__init__(config, process)
        c = self.config
        plus = c.plus_addressing if isinstance(c.plus_addressing, bool) else frozenset(
            d.lower() for d in c.plus_addressing)
        self.settings = DedupSettings(EmailPolicy(plus, c.gmail_dots),
                                      frozenset(d.lower() for d in c.free_mail_domains),
                                      Weights.from_config(c.weights), c.link, c.review, c.max_block)

    def wants(self, change: LeadChange) -> bool:
        return change.new or change.changed or change.asked

    def evaluate(self, ctx: RuleContext, lead: Lead) -> Iterable[Action]:
        from rules.routing import session_of

        s = session_of(ctx)
        who, matches = find_matches(s, lead, self.settings)
        best = matches[0] if matches else None
        if best is not None and best[1].probability >= self.settings.link and not self._ambiguous(matches):
            survivor, result = best
            request_crm_merges(s, survivor_id=survivor.id, merged_id=lead.id, confidence=result.probability,
                               at=ctx.now)
            self._move_keys(s, lead.id, survivor.id, who)
            fields = self._survivorship(ctx, s, survivor, lead)
            yield Action("merge", f"same person as {survivor.id}: {result.explain()}",
                         {"into": survivor.id, "fields": fields}, {"levels": result.levels,
                                                                  "probability": result.probability})
            return
        index_lead(s, lead.id, who)
        for other, result in matches[:5]:
            yield Action.link(other.id, reason=f"possible duplicate of {other.id}: {result.explain()}",
                              inputs={"levels": result.levels, "probability": result.probability})
        if matches:
            yield Action.flag("possible_duplicate", reason=f"{len(matches)} possible duplicate(s) to review",
                              note=", ".join(o.id for o, _ in matches[:5]))

    def check(self) -> list[tuple[Loc, str]]:
        statuses = set(self.process.status_names)
        return [(("funnel", i), f"unknown status {name!r}") for i, name in enumerate(self.config.funnel)
                if name not in statuses and self.config.funnel != DEFAULT_FUNNEL]

    # -- helpers ---------------------------------------------------------------------------
    def _ambiguous(self, matches: list[tuple[Lead, Score]]) -> bool:
        """Two sure matches that are themselves two people: which one is the lead? A reviewer decides."""
        sure = [m for m, sc in matches if sc.probability >= self.settings.link]
        ids = [self.settings.identity(m) for m in sure[:5]]
        w = self.settings.weights
        return any(score(x, y, w).weight < 0 for k, x in enumerate(ids) for y in ids[k + 1:])

    @staticmethod
    def _move_keys(s: Any, merged_id: str, survivor_id: str, who: Identity) -> None:
        t = DedupKey.__table__
        s.execute(sa.delete(t).where(t.c.lead_id == merged_id))
        have = {r[0] for r in s.execute(sa.select(t.c.key).where(t.c.lead_id == survivor_id)).all()}
        new = sorted(set(blocking_keys(who)) - have)
        if new:
            s.execute(sa.insert(t), [{"key": k, "lead_id": survivor_id} for k in new])

    def _survivorship(self, ctx: RuleContext, s: Any, survivor: Lead, lead: Lead) -> dict[str, Any]:
        ids = [survivor.id, lead.id]
        t, ln = LeadRow.__table__, Link.__table__
        times = {r.id: (r.created_at, r.updated_at) for r in s.execute(
            sa.select(t.c.id, t.c.created_at, t.c.updated_at).where(t.c.id.in_(ids))).all()}
        conns: dict[str, set[str]] = {i: set() for i in ids}
        for r in s.execute(sa.select(ln.c.lead_id, ln.c.connection).where(
                ln.c.lead_id.in_(ids), ln.c.deleted_at.is_(None))).all():
            conns[r.lead_id].add(r.connection)
        members = [Member(one.id, one.model_dump(mode="json"), *times.get(one.id, (None, None)),
                          frozenset(conns[one.id])) for one in (survivor, lead)]
        _, fields, _ = survive(members, source_of_truth=self.config.source_of_truth,
                               funnel=self.config.funnel)
        return fields


RULES = (Dedup,)
