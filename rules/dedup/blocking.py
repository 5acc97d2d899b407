"""Blocking: which pairs of leads are worth comparing at all.

Comparing every lead with every other grows with the square of their number.
Instead each lead gets a few *blocking keys*, and only leads sharing a key are
compared; with keys this selective the work grows near-linearly:

* ``e:<email>`` — the normalised email;
* ``p:<e164>`` — the phone in E.164;
* ``dl:<domain>|<last>`` and ``df:<domain>|<first>`` — the company domain with
  the folded last, or first, name (so a typo in one name still meets);
* ``di:<domain>|<initials>`` — the domain with both initials (typos in both
  names; typos rarely hit the first letter);
* ``ci:<company>|<initials>`` — the company name without legal form, with the
  initials, for leads whose domain is unknown or free mail.

A key shared by more than ``max_block`` leads (a switchboard number, a shared
``info@`` mailbox) is too common to mean anything: it is skipped, and counted.
The same keys are stored per lead in the ``dedup_keys`` table so a new lead is
matched against the store with one indexed query (:mod:`rules.dedup.incremental`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from hub.normalise import Identity

__all__ = ["KEY_KINDS", "blocking_keys", "BlockStats", "candidate_pairs"]

MAX_KEY_LENGTH = 255


def _email(w: Identity) -> str | None:
    return f"e:{w.email}" if w.email else None


def _phone(w: Identity) -> str | None:
    return f"p:{w.phone}" if w.phone else None


def _domain_last(w: Identity) -> str | None:
    return f"dl:{w.domain}|{w.last}" if w.domain and w.last else None


def _domain_first(w: Identity) -> str | None:
    return f"df:{w.domain}|{w.first}" if w.domain and w.first else None


def _domain_initials(w: Identity) -> str | None:
    return f"di:{w.domain}|{w.first[:1]}{w.last[:1]}" if w.domain and w.first and w.last else None


def _company_initials(w: Identity) -> str | None:
    return f"ci:{w.company}|{w.first[:1]}{w.last[:1]}" if w.company and w.first and w.last else None


_KEYS = {"e": _email, "p": _phone, "dl": _domain_last, "df": _domain_first, "di": _domain_initials,
         "ci": _company_initials}
KEY_KINDS = tuple(_KEYS)


def blocking_keys(who: Identity) -> list[str]:
    """The blocking keys of one identity (see the module docstring), each at most 255 characters."""
    return [k[:MAX_KEY_LENGTH] for f in _KEYS.values() if (k := f(who))]


@dataclass(slots=True)
class BlockStats:
    """What blocking did: keys seen, blocks skipped as too common, pairs produced."""

    keys: int = 0
    skipped_blocks: int = 0
    skipped_leads: int = 0
    pairs: int = 0


def candidate_pairs(identities: Sequence[Identity], *, max_block: int = 100,
                    stats: BlockStats | None = None) -> Iterator[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, of identities sharing a blocking key; each pair once.

    One key kind at a time, so memory holds one kind's blocks, not all of them.
    """
    stats = stats if stats is not None else BlockStats()
    seen: set[tuple[int, int]] = set()
    for kind in KEY_KINDS:
        key_of = _KEYS[kind]
        blocks: dict[str, list[int]] = defaultdict(list)
        for i, who in enumerate(identities):
            if key := key_of(who):
                blocks[key[:MAX_KEY_LENGTH]].append(i)
        stats.keys += len(blocks)
        for members in blocks.values():
            if len(members) < 2:
                continue
            if len(members) > max_block:
                stats.skipped_blocks += 1
                stats.skipped_leads += len(members)
                continue
            for pair in _pairs(members):
                if pair not in seen:
                    seen.add(pair)
                    stats.pairs += 1
                    yield pair
        del blocks


def _pairs(members: Iterable[int]) -> Iterator[tuple[int, int]]:
    ordered = sorted(members)
    for n, i in enumerate(ordered):
        for j in ordered[n + 1:]:
            yield i, j
