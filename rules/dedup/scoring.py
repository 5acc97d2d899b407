"""Comparing two normalised leads: a Fellegi–Sunter match weight, its probability and why.

Each field comparison falls into a level (exact, close, different, or absent
on either side), and each level carries a weight — the log2 of how much more
often that level occurs between records of one person than between records of
two people. Absent values weigh nothing: a missing phone is no evidence either
way. The weights add up with a prior (the log2 odds that two leads sharing a
blocking key are one person) to the match weight ``W``, and the match
probability is ``1 / (1 + 2**-W)``.

The defaults below are set so that

* one normalised email, or one phone, plus the same name, is a sure match;
* the same name at the same company with *different* emails at that company
  (``anna.weber@`` and ``anna.weber2@``) is two people: colleagues who share
  a name are common, a person with two mailboxes at one employer is not;
* the same name, different company and different email is never a match;
* the same name at the same company (name and web domain) with nothing against
  it is a match — a work and a personal (free-mail) address are nothing against;
  the same name and company name with nothing else to go on is a review.

``Weights`` can be overridden from the process file (``rules: dedup: weights:``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

from rapidfuzz.distance import JaroWinkler
from rapidfuzz.fuzz import token_set_ratio

from hub.normalise import Identity, is_free_mail

__all__ = ["Weights", "Score", "score", "probability", "weight_for"]


@dataclass(frozen=True, slots=True)
class Weights:
    """log2 Bayes factors per comparison level, the prior, and the fuzzy thresholds."""

    prior: float = -10.0
    email_exact: float = 14.0
    email_differs_same_domain: float = -6.0
    email_differs: float = -2.0
    email_differs_free_mail: float = 0.0  # a work and a personal address: people have both
    phone_exact: float = 12.0
    phone_differs: float = -3.0
    last_exact: float = 5.0
    last_close: float = 4.7
    last_differs: float = -5.0
    first_exact: float = 4.0
    first_close: float = 3.8
    first_differs: float = -4.0
    domain_exact: float = 4.5
    domain_differs: float = -2.0
    company_exact: float = 3.5
    company_close: float = 1.0
    company_differs: float = -1.0
    name_close: float = 0.9  # Jaro–Winkler similarity for "close"
    company_close_ratio: float = 90.0  # rapidfuzz token-set ratio for "close"

    @classmethod
    def from_config(cls, data: dict[str, Any] | None) -> Weights:
        """Defaults overridden by a mapping; unknown keys are a ``ValueError`` naming them."""
        data = data or {}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown dedup weight(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(known))}")
        return replace(cls(), **{k: float(v) for k, v in data.items()})


DEFAULT_WEIGHTS = Weights()


@dataclass(frozen=True, slots=True)
class Score:
    """The verdict on one pair: weight ``W``, its probability, and the levels that made it."""

    a: str
    b: str
    weight: float
    levels: dict[str, str] = field(default_factory=dict)

    @property
    def probability(self) -> float:
        return probability(self.weight)

    def explain(self) -> str:
        """One line: ``p=0.999 email exact, phone absent, last exact…``."""
        parts = ", ".join(f"{k} {v}" for k, v in self.levels.items())
        return f"p={self.probability:.3f} (W={self.weight:+.1f}): {parts}"


def probability(weight: float) -> float:
    """The match probability of a match weight (log2 odds)."""
    if weight > 60:
        return 1.0
    return 1.0 / (1.0 + math.pow(2.0, -weight))


def weight_for(p: float) -> float:
    """The match weight at which the probability reaches ``p`` (for thresholds)."""
    return math.log2(p / (1.0 - p))


def _name_level(x: str, y: str, w: Weights) -> str:
    if not x or not y:
        return "absent"
    if x == y:
        return "exact"
    if JaroWinkler.normalized_similarity(x, y) >= w.name_close:
        return "close"
    first_x, first_y = x.split()[0], y.split()[0]
    if (len(first_x) == 1 or len(first_y) == 1) and first_x[0] == first_y[0]:
        return "close"  # an initial: "a weber" / "anna weber"
    return "differs"


def score(x: Identity, y: Identity, w: Weights = DEFAULT_WEIGHTS) -> Score:
    """Compare two identities field by field; see the module docstring."""
    levels: dict[str, str] = {}
    total = w.prior
    if x.email and y.email:
        if x.email == y.email:
            levels["email"], total = "exact", total + w.email_exact
        elif x.email.rpartition("@")[2] == y.email.rpartition("@")[2]:
            levels["email"], total = "differs (same domain)", total + w.email_differs_same_domain
        elif is_free_mail(x.email.rpartition("@")[2]) or is_free_mail(y.email.rpartition("@")[2]):
            levels["email"], total = "differs (one is free mail)", total + w.email_differs_free_mail
        else:
            levels["email"], total = "differs", total + w.email_differs
    else:
        levels["email"] = "absent"
    if x.phone and y.phone:
        same = x.phone == y.phone
        levels["phone"] = "exact" if same else "differs"
        total += w.phone_exact if same else w.phone_differs
    else:
        levels["phone"] = "absent"
    for part, exact, close, differs in (("last", w.last_exact, w.last_close, w.last_differs),
                                        ("first", w.first_exact, w.first_close, w.first_differs)):
        level = _name_level(getattr(x, part), getattr(y, part), w)
        levels[part] = level
        total += {"exact": exact, "close": close, "differs": differs}.get(level, 0.0)
    if x.domain and y.domain:
        same = x.domain == y.domain
        levels["domain"] = "exact" if same else "differs"
        total += w.domain_exact if same else w.domain_differs
    else:
        levels["domain"] = "absent"
    if x.company and y.company:
        if x.company == y.company:
            levels["company"], total = "exact", total + w.company_exact
        elif token_set_ratio(x.company, y.company) >= w.company_close_ratio:
            levels["company"], total = "close", total + w.company_close
        else:
            levels["company"], total = "differs", total + w.company_differs
    else:
        levels["company"] = "absent"
    return Score(x.lead_id, y.lead_id, round(total, 6), levels)
