"""Deduplicating a whole set of leads in memory: normalise, block, score, cluster.

This is the batch path (a first import, the benchmark, an admin's audit); new
leads arriving one by one are matched against the store instead
(:mod:`rules.dedup.incremental`). Both use the same normalisation, keys and
scores, so they agree on what a duplicate is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hub.normalise import EmailPolicy, Identity, identity
from rules.dedup.blocking import BlockStats, candidate_pairs
from rules.dedup.cluster import Clustering, cluster
from rules.dedup.scoring import DEFAULT_WEIGHTS, Weights, score

__all__ = ["DedupSettings", "BatchResult", "dedupe"]


@dataclass(frozen=True, slots=True)
class DedupSettings:
    """Everything that decides what a duplicate is (the ``rules: dedup:`` section, validated)."""

    email: EmailPolicy = field(default_factory=EmailPolicy)
    free_mail: frozenset[str] = frozenset()
    weights: Weights = DEFAULT_WEIGHTS
    link: float = 0.99
    review: float = 0.8
    max_block: int = 100

    def identity(self, lead: Any) -> Identity:
        return identity(lead, self.email, free_mail=self.free_mail)


@dataclass(slots=True)
class BatchResult:
    clustering: Clustering
    blocking: BlockStats
    compared: int = 0
    identities: list[Identity] = field(default_factory=list)


def dedupe(leads: Sequence[Any], settings: DedupSettings | None = None, *,
           keep_identities: bool = False) -> BatchResult:
    """Clusters and review pairs among ``leads`` (``Lead`` objects or dicts with an ``id``)."""
    settings = settings or DedupSettings()
    people = [settings.identity(lead) for lead in leads]
    stats = BlockStats()
    weights = settings.weights
    scores, conflicts = [], set()
    compared = 0
    review = settings.review
    for i, j in candidate_pairs(people, max_block=settings.max_block, stats=stats):
        compared += 1
        s = score(people[i], people[j], weights)
        if s.probability >= review:
            scores.append(s)
        elif s.weight < 0:  # below even odds: two people
            conflicts.add((s.a, s.b))
    clustering = cluster(scores, link=settings.link, review=review, conflicts=conflicts)
    result = BatchResult(clustering, stats, compared)
    if keep_identities:
        result.identities = people
    return result
