"""From scored pairs to people: clusters with a confidence, and which values survive a merge.

A pair at or above the ``link`` probability joins its two leads into one
cluster (union–find, strongest pairs first), unless the two clusters hold a
pair known to be two different people; a cluster's confidence is its weakest
joining pair, so a chain is never surer than its least sure link. A pair between
``review`` and ``link`` whose leads did not end up in one cluster, and a sure
pair refused for a conflict, go to the review queue.

Survivorship (:func:`survive`) picks the lead that lives on — the oldest, whose
hub id the CRMs already carry — and, per field, the value to keep: from the
field's source of truth (a connection named in ``source_of_truth``) when a
member living there has it, else the most recently updated non-blank value.
``status`` and ``owner`` travel together from the member furthest along the
funnel, so a fresh form fill never pulls an Opportunity back to Lead.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from rules.dedup.scoring import Score

__all__ = ["Cluster", "Clustering", "cluster", "Member", "survive", "SKIP_FIELDS"]


@dataclass(frozen=True, slots=True)
class Cluster:
    """Leads judged to be one person; ``confidence`` is the weakest joining pair's probability."""

    lead_ids: tuple[str, ...]
    confidence: float
    pairs: tuple[Score, ...] = ()


@dataclass(slots=True)
class Clustering:
    clusters: list[Cluster] = field(default_factory=list)
    review: list[Score] = field(default_factory=list)


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        parent = self.parent
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def cluster(scores: Iterable[Score], *, link: float = 0.99, review: float = 0.8,
            conflicts: Collection[tuple[str, str]] = ()) -> Clustering:
    """Group pairs at or above ``link`` into clusters; pairs from ``review`` up go to review.

    Pairs join strongest first. ``conflicts`` are pairs known to be two people (scored below
    0.5): two clusters holding such a pair are never joined, and the pair that would have
    joined them goes to review — so a bare record ("D. Clark at Deltaware", no email or phone)
    cannot chain two colleagues of that name into one person.
    """
    uf = _UnionFind()
    members: dict[str, list[str]] = {}
    linked: list[Score] = []
    maybe: list[Score] = []
    for s in sorted(scores, key=lambda x: (-x.weight, x.a, x.b)):
        p = s.probability
        if p < link:
            if p >= review:
                maybe.append(s)
            continue
        ra, rb = uf.find(s.a), uf.find(s.b)
        if ra != rb:
            left, right = members.get(ra, [s.a]), members.get(rb, [s.b])
            if conflicts and any((x, y) in conflicts or (y, x) in conflicts for x in left for y in right):
                maybe.append(s)
                continue
            uf.union(ra, rb)
            members[uf.find(ra)] = left + right
        linked.append(s)
    groups: dict[str, list[Score]] = {}
    for s in linked:
        groups.setdefault(uf.find(s.a), []).append(s)
    out = Clustering()
    for pairs in groups.values():
        ids = sorted({i for s in pairs for i in (s.a, s.b)})
        out.clusters.append(Cluster(tuple(ids), min(s.probability for s in pairs), tuple(pairs)))
    out.review = [s for s in maybe if uf.find(s.a) != uf.find(s.b)]
    return out


@dataclass(frozen=True, slots=True)
class Member:
    """One lead of a cluster, as survivorship needs it."""

    lead_id: str
    fields: Mapping[str, Any]
    created_at: datetime | None = None
    updated_at: datetime | None = None
    connections: frozenset[str] = frozenset()


#: Fields survivorship never takes per field: identity, and the status/owner pair (see the docstring).
SKIP_FIELDS = frozenset({"id", "status", "status_since", "owner"})
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip()) or v == {}


def survive(members: Sequence[Member], *, source_of_truth: Mapping[str, Sequence[str]] | None = None,
            funnel: Sequence[str] = ()) -> tuple[str, dict[str, Any], dict[str, str]]:
    """The surviving lead id, its merged fields, and per field which lead the value came from."""
    if not members:
        raise ValueError("survive() needs at least one member")
    source_of_truth = source_of_truth or {}
    oldest = min(members, key=lambda m: (m.created_at or _EPOCH, m.lead_id))
    newest_first = sorted(members, key=lambda m: (m.updated_at or _EPOCH, m.lead_id), reverse=True)
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    names = sorted({k for m in members for k in m.fields} - SKIP_FIELDS)
    for name in names:
        if name == "custom":
            continue
        pick = _pick(name, newest_first, source_of_truth.get(name, ()))
        if pick is not None:
            merged[name], origin[name] = pick.fields[name], pick.lead_id
    custom_keys = sorted({k for m in members for k in (m.fields.get("custom") or {})})
    if custom_keys:
        custom: dict[str, Any] = {}
        for key in custom_keys:
            for m in newest_first:
                value = (m.fields.get("custom") or {}).get(key)
                if not _blank(value):
                    custom[key], origin[f"custom.{key}"] = value, m.lead_id
                    break
        merged["custom"] = custom
    rank = {s: i for i, s in enumerate(funnel)}
    furthest = max(members, key=lambda m: (rank.get(m.fields.get("status"), -1), m is oldest))
    for name in ("status", "owner"):
        if name in furthest.fields:
            merged[name], origin[name] = furthest.fields[name], furthest.lead_id
    return oldest.lead_id, merged, origin


def _pick(name: str, newest_first: Sequence[Member], sources: Sequence[str]) -> Member | None:
    for connection in sources:
        for m in newest_first:
            if connection in m.connections and not _blank(m.fields.get(name)):
                return m
    return next((m for m in newest_first if not _blank(m.fields.get(name))), None)
