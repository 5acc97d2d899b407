"""One identity per person across CRMs: the match keys a pulled record is looked up by.

A record pulled from a CRM belongs to the canonical lead it is linked to; failing
that, to the lead whose id it carries (the hub stamps it into every record it
knows); failing that, to a lead with the same **normalised email**, else the same
**phone** in E.164, else the same **company domain plus folded full name**. Each
key is stored on the lead row (``email_key``, ``phone_key``, ``name_key``, all
indexed) by :func:`hub.store.row_values`, so matching a page costs one query per
key kind, never one per record.

A lead is a candidate only if it has no live record in the pulling connection (a lead
whose record there was deleted is one: a record re-entered for that person takes over the
tombstoned link):
two records in one CRM are two records, whatever their email — telling whether
they are the same person is the dedup rule's job, with its confidence and review
queue. A lead merged into another (``lead_relations.merged_into``) is never a
candidate; its survivor is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from hub.normalise import company_domain, fold, normalise_email, normalise_phone

__all__ = ["MatchKeys", "match_keys", "find_matches", "KEY_KINDS"]

#: key kinds in the order they are tried
KEY_KINDS = ("email_key", "phone_key", "name_key")


@dataclass(frozen=True, slots=True)
class MatchKeys:
    email_key: str | None
    phone_key: str | None
    name_key: str | None

    def as_dict(self) -> dict[str, str | None]:
        return {"email_key": self.email_key, "phone_key": self.phone_key, "name_key": self.name_key}


def match_keys(fields: Mapping[str, Any]) -> MatchKeys:
    """The keys of a lead (or a pulled record's canonical fields)."""
    get = fields.get
    email = normalise_email(get("email"))
    domain = company_domain(email, get("domain"))
    first, last = fold(get("first_name")), fold(get("last_name"))
    name = f"{domain}|{first} {last}" if domain and first and last else None
    phone = normalise_phone(get("phone"), get("country")) if get("phone") else None
    return MatchKeys(email, phone, name)


def find_matches(s: Session, connection: str, object: str, wanted: Iterable[MatchKeys]) -> dict[tuple[str, str], str]:
    """``{(kind, key): lead_id}`` for leads without a live record in ``connection``/``object``.

    One query per key kind. When several leads share a key the oldest wins, so the
    answer is stable across runs.
    """
    from hub.actions import LeadRelation
    from hub.store import LeadRow, Link

    wanted = list(wanted)
    found: dict[tuple[str, str], str] = {}
    for kind in KEY_KINDS:
        keys = sorted({getattr(k, kind) for k in wanted if getattr(k, kind)})
        if not keys:
            continue
        col = getattr(LeadRow, kind)
        linked_here = sa.select(Link.lead_id).where(Link.connection == connection, Link.object == object,
                                                    Link.deleted_at.is_(None))
        merged = sa.select(LeadRelation.lead_id).where(LeadRelation.relation == "merged_into")
        for start in range(0, len(keys), 500):
            rows = s.execute(sa.select(col, LeadRow.id).where(
                col.in_(keys[start:start + 500]), LeadRow.id.not_in(linked_here), LeadRow.id.not_in(merged))
                .order_by(LeadRow.created_at, LeadRow.id)).all()
            for key, lead_id in rows:
                found.setdefault((kind, key), lead_id)
    return found
