"""Deterministic, realistic and messy B2B people for seeding sandboxes.

``people(n, seed)`` gives canonical lead dicts (the keys of :data:`KEYS`, every
key always present, ``None`` when unknown); ``team(seed)`` gives the sales and
marketing people who own them. The same ``(n, seed)`` always gives the same
people, whatever the date or machine: dates are relative to
:data:`REFERENCE_DATE` unless ``today`` is passed.

What makes the data messy, on purpose:

* ~3 % are duplicates of an earlier person: the email's case changed or
  plus-addressed (``anna.weber+events@…``), the phone in another format
  (national ``030 1234567`` vs ``+49 30 1234567``), the name with or without
  accents (``Jürgen Müller`` / ``Jurgen Muller``); see :func:`generate` for
  which index duplicates which.
* ~5 % miss a phone or a company; ~2 % have no email at all (phone only).
* ~0.5 % have a malformed email (``jan.kowalski@``, ``jan.kowalski.acme.pl``,
  ``jan.kowalski@acme``) that a real CRM rejects on write.
* names and phone numbers fit the country (DE AT CH FR GB US NL PL ES IT SE).

``status`` follows a realistic funnel over the nine canonical statuses;
``value`` (a float), ``probability`` (a fraction in [0, 1]) and
``expected_close`` (a ``date``) are set from Opportunity on, ``loss_reason``
for Closed Lost. ``owner`` is the email of a :func:`team` member, or ``None``
for some fresh leads nobody has picked up yet. ``company_size`` is an
employee-count band such as ``"51-200"``.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

__all__ = ["KEYS", "STATUSES", "SOURCES", "REFERENCE_DATE", "Crowd", "generate", "people", "team"]

KEYS = ("first_name", "last_name", "email", "phone", "company", "domain", "title", "country", "source",
        "status", "owner", "value", "probability", "expected_close", "loss_reason", "industry", "company_size")
STATUSES = ("Lead", "MQL", "SAL", "SQL", "Opportunity", "Negotiation", "Closed Won", "Closed Lost", "Nurture")
_STATUS_WEIGHTS = (30, 18, 8, 7, 6, 3, 5, 10, 13)
SOURCES = ("paid", "organic", "referral", "partner", "event", "self-serve", "outbound", "social", "email")
_SOURCE_WEIGHTS = (20, 25, 10, 8, 10, 12, 7, 5, 3)
REFERENCE_DATE = date(2026, 1, 15)
TEAM_DOMAIN = "northwind-sales.example"

# country: (weight, calling code, trunk prefix, area codes, subscriber digits, TLD, legal forms)
_COUNTRIES: dict[str, tuple[int, str, str, tuple[str, ...], int, str, tuple[str, ...]]] = {
    "DE": (20, "49", "0", ("30", "40", "89", "69", "221", "711", "151", "160", "170"), 7, "de",
           ("GmbH", "AG", "GmbH & Co. KG", "SE")),
    "AT": (5, "43", "0", ("1", "316", "512", "662", "664", "676"), 7, "at", ("GmbH", "AG")),
    "CH": (5, "41", "0", ("44", "31", "61", "22", "79", "76"), 7, "ch", ("AG", "GmbH", "SA")),
    "FR": (10, "33", "0", ("1", "4", "6", "7", "2", "3"), 8, "fr", ("SAS", "SA", "SARL")),
    "GB": (12, "44", "0", ("161", "121", "131", "113", "114", "117"), 7, "co.uk", ("Ltd", "PLC")),
    "US": (18, "1", "", ("212", "312", "415", "512", "617", "646", "206"), 7, "com", ("Inc.", "LLC", "Corp.")),
    "NL": (7, "31", "0", ("20", "10", "30", "70", "61", "62", "65"), 7, "nl", ("B.V.", "N.V.")),
    "PL": (6, "48", "", ("22", "12", "61", "71", "50", "60", "79"), 7, "pl", ("sp. z o.o.", "S.A.")),
    "ES": (6, "34", "", ("91", "93", "96", "95", "61", "65", "68"), 7, "es", ("S.L.", "S.A.")),
    "IT": (6, "39", "", ("02", "06", "011", "055", "347", "333"), 7, "it", ("S.r.l.", "S.p.A.")),
    "SE": (5, "46", "0", ("8", "31", "40", "70", "73"), 7, "se", ("AB",)),
}
_NAMES: dict[str, tuple[str, str]] = {  # first names | last names
    "DE": ("Jürgen Anna Lukas Sophie Maximilian Lea Jörg Katrin Stefan Jana Björn Müge Felix Sören",
           "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schäfer Koch Bauer Richter Groß Köhler"),
    "AT": ("Lukas Johanna Florian Theresa Matthias Katharina Jürgen Sarah Tobias Lena",
           "Gruber Huber Wagner Pichler Moser Steiner Hofer Leitner Berger Fuchs Mayr Wimmer"),
    "CH": ("Luca Laura Noah Mia Reto Nicole Urs Chantal Beat Céline Rémy Corinne",
           "Müller Meier Schmid Keller Weber Huber Brunner Baumann Frei Zürcher Gerber Bühler"),
    "FR": ("Camille Louis Léa Hugo Chloé Théo Inès Jérôme Hélène Benoît Amélie François Zoé",
           "Martin Bernard Dubois Thomas Robert Richard Petit Durand Lefèvre Moreau Girard Lemaître"),
    "GB": ("Oliver Amelia Harry Isla George Emily Jack Sophie Charlie Grace Thomas Chloe",
           "Smith Jones Taylor Brown Williams Wilson Johnson Davies Evans Thomas Roberts Walker"),
    "US": ("James Olivia Michael Emma Robert Ava David Mia William Madison Ethan Abigail",
           "Johnson Williams Brown Garcia Miller Davis Rodriguez Martinez Anderson Moore Clark Lewis"),
    "NL": ("Daan Emma Sem Julia Lucas Tess Bram Fleur Joost Sanne Ruud Anouk",
           "de Jong Jansen de Vries van den Berg van Dijk Bakker Visser Smit Meijer de Boer Mulder Bos"),
    "PL": ("Jan Zofia Piotr Anna Krzysztof Małgorzata Łukasz Agnieszka Paweł Katarzyna Michał Żaneta",
           "Kowalski Nowak Wiśniewski Wójcik Kowalczyk Kamiński Lewandowski Zieliński Szymański Dąbrowski"),
    "ES": ("Alejandro Lucía Pablo María Javier Sofía Álvaro Paula Sergio Inés José Nuria",
           "García Fernández González Rodríguez López Martínez Sánchez Pérez Gómez Jiménez Muñoz Núñez"),
    "IT": ("Marco Giulia Luca Francesca Matteo Chiara Alessandro Sara Niccolò Martina Davide Elena",
           "Rossi Russo Ferrari Esposito Bianchi Romano Colombo Ricci Marino Greco Bruno Galli"),
    "SE": ("Erik Elsa Lars Maja Anders Astrid Johan Ebba Björn Linnéa Oskar Sofia",
           "Andersson Johansson Karlsson Nilsson Eriksson Larsson Olsson Persson Svensson Gustafsson Åberg"),
}
_NL_PARTICLES = ("de ", "van den ", "van ")
_PREFIX = ("Nord", "Alpen", "Blue", "Bright", "Stern", "Delta", "Nova", "Vertex", "Atlas", "Helix", "Polar",
           "Summit", "Rhein", "Orbit", "Quanta", "Silver", "Green", "Iron", "Lumen", "Pixel", "Cedar", "Falcon")
_SUFFIX = ("wind", "tech", "soft", "data", "works", "logic", "line", "point", "bridge", "stream", "forge",
           "path", "labs", "ware", "net", "scale", "gate", "field", "mark", "wave")
_SECOND = ("Systems", "Solutions", "Group", "Partners", "Digital", "Analytics", "Services", "Holding")
_INDUSTRIES = {"Software": "Systems", "Manufacturing": "Industries", "Financial Services": "Capital",
               "Healthcare": "Medical", "Retail": "Retail", "Logistics": "Logistics", "Energy": "Energy",
               "Telecommunications": "Telecom", "Education": "Learning", "Professional Services": "Consulting",
               "Construction": "Bau", "Media": "Media"}
_SIZES = ("1-10", "11-50", "51-200", "201-500", "501-1000", "1001-5000", "5000+")
_SIZE_WEIGHTS = (10, 25, 28, 16, 9, 8, 4)
_TITLES = ("CEO", "CTO", "CFO", "Head of Marketing", "Marketing Manager", "VP Sales", "Sales Manager",
           "Head of Operations", "IT Manager", "Procurement Lead", "Software Engineer", "Product Manager",
           "Office Manager", "Managing Director", "Business Analyst", "Head of IT", "Founder")
_LOSS_REASONS = ("Price", "Missing features", "No decision", "Competitor", "Timing", "Budget cut", "No response")
_TRANSLIT = str.maketrans({"ß": "ss", "ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "æ": "ae", "đ": "d"})


@lru_cache(maxsize=4096)
def _fold(text: str) -> str:
    """``Jürgen Łukasz`` → ``Jurgen Lukasz``: the same name typed without accents."""
    text = unicodedata.normalize("NFKD", text.translate(_TRANSLIT))
    return "".join(c for c in text if not unicodedata.combining(c))


@lru_cache(maxsize=4096)
def _slug(text: str) -> str:
    return "".join(c for c in _fold(text).lower() if c.isalnum())


def _split_names(country: str) -> tuple[list[str], list[str]]:
    first, last = _NAMES[country]
    if country == "NL":  # keep "van den Berg" together
        lasts, words = [], last.split()
        i = 0
        while i < len(words):
            take = 3 if words[i] == "van" and words[i + 1] == "den" else 2 if words[i] in ("de", "van") else 1
            lasts.append(" ".join(words[i:i + take]))
            i += take
        return first.split(), lasts
    return first.split(), last.split()


_NAME_LISTS = {c: _split_names(c) for c in _COUNTRIES}
_COUNTRY_CODES = tuple(_COUNTRIES)
_COUNTRY_WEIGHTS = tuple(v[0] for v in _COUNTRIES.values())


def _formats(country: str, area: str, sub: str) -> tuple[str, str, str]:
    """One number as (international, national, compact E.164)."""
    _, cc, trunk, _, _, _, _ = _COUNTRIES[country]
    if country == "US":
        return f"+1 {area}-{sub[:3]}-{sub[3:]}", f"({area}) {sub[:3]}-{sub[3:]}", f"+1{area}{sub}"
    grouped = (" ".join(sub[i:i + 2] for i in range(0, len(sub), 2)) if len(sub) == 8
               else f"{sub[:3]} {sub[3:5]} {sub[5:]}" if country in ("CH", "PL", "SE") else f"{sub[:3]} {sub[3:]}")
    return f"+{cc} {area} {grouped}", f"{trunk}{area} {sub}", f"+{cc}{area}{sub}"


def _phone(rng: random.Random, country: str) -> tuple[str, str, str]:
    areas, digits = _COUNTRIES[country][3], _COUNTRIES[country][4]
    area = areas[int(rng.random() * len(areas))]
    first = 2 + int(rng.random() * 8)  # no subscriber number starts with 0 or 1
    return _formats(country, area, f"{first}{int(rng.random() * 10 ** (digits - 1)):0{digits - 1}d}")


def _reformat(phone: str, country: str) -> tuple[str, str, str]:
    """The formats of a number written in any of them."""
    _, cc, trunk, _, digits, _, _ = _COUNTRIES[country]
    number = "".join(c for c in phone if c.isdigit())
    number = number[len(cc):] if phone.startswith("+") else number[len(trunk):]
    area = number[:len(number) - digits]
    return _formats(country, area, number[len(area):])


@dataclass(frozen=True, slots=True)
class Crowd:
    """Generated people and the truth about them: ``duplicates`` maps a duplicate's index to its original's."""

    people: list[dict[str, Any]]
    duplicates: dict[int, int]


def team(seed: int = 0) -> list[dict[str, str]]:
    """The people who own leads: first_name, last_name, name, email, role, country.

    Roles: ``marketing`` (2), ``sdr`` (2), ``rep`` (3), ``manager`` (1).
    """
    rng = random.Random(f"team:{seed}")
    roles = ("marketing", "marketing", "sdr", "sdr", "rep", "rep", "rep", "manager")
    countries = ("DE", "GB", "DE", "FR", "DE", "US", "NL", "DE")
    members, seen = [], set()
    for role, country in zip(roles, countries):
        firsts, lasts = _NAME_LISTS[country]
        while True:
            first, last = rng.choice(firsts), rng.choice(lasts)
            email = f"{_slug(first)}.{_slug(last)}@{TEAM_DOMAIN}"
            if email not in seen:
                break
        seen.add(email)
        members.append({"first_name": first, "last_name": last, "name": f"{first} {last}", "email": email,
                         "role": role, "country": country})
    return members


def _companies(rng: random.Random, count: int) -> list[tuple[str, str, str, str, str]]:
    """(name, domain, country, industry, size) for ``count`` companies, domains unique."""
    countries = rng.choices(_COUNTRY_CODES, _COUNTRY_WEIGHTS, k=count)
    industries = rng.choices(tuple(_INDUSTRIES), k=count)
    sizes = rng.choices(_SIZES, _SIZE_WEIGHTS, k=count)
    out, domains = [], set()
    for country, industry, size in zip(countries, industries, sizes):
        tld, forms = _COUNTRIES[country][5], _COUNTRIES[country][6]
        base = _PREFIX[int(rng.random() * len(_PREFIX))] + _SUFFIX[int(rng.random() * len(_SUFFIX))]
        pick = rng.random()
        sector = _INDUSTRIES[industry] if pick < 0.4 else _SECOND[int(pick * 80) % 8] if pick < 0.7 else ""
        name = f"{base} {sector} {forms[int(rng.random() * len(forms))]}".replace("  ", " ")
        stem = _slug(base + sector)
        domain, k = f"{stem}.{tld}", 1
        while domain in domains:
            k += 1
            domain = f"{stem}{k}.{tld}"
        domains.add(domain)
        out.append((name, domain, country, industry, size))
    return out


def generate(n: int, seed: int = 0, *, today: date | None = None) -> Crowd:
    """``n`` people and which of them duplicate whom. See the module docstring."""
    rng = random.Random(seed)
    today = today or REFERENCE_DATE
    members = team(seed)
    by_role: dict[str, list[str]] = {}
    for m in members:
        by_role.setdefault(m["role"], []).append(m["email"])
    early, mid, late = by_role["marketing"] + by_role["sdr"], by_role["sdr"] + by_role["rep"], by_role["rep"]
    companies = _companies(rng, max(1, n // 4))
    statuses = rng.choices(STATUSES, _STATUS_WEIGHTS, k=n)
    sources = rng.choices(SOURCES, _SOURCE_WEIGHTS, k=n)
    titles = rng.choices(_TITLES, k=n)
    rolls = [rng.random() for _ in range(n)]
    out: list[dict[str, Any]] = []
    duplicates: dict[int, int] = {}
    emails: set[str] = set()
    rand = rng.random
    for i in range(n):
        status, roll = statuses[i], rolls[i]
        if status in ("Lead", "MQL", "Nurture"):
            owner = None if status == "Lead" and rand() < 0.4 else early[int(rand() * len(early))]
        elif status in ("SAL", "SQL"):
            owner = mid[int(rand() * len(mid))]
        else:
            owner = late[int(rand() * len(late))] if rand() > 0.1 else by_role["manager"][0]
        if i >= 20 and roll < 0.03:
            j = int(rand() * i)
            while j in duplicates:
                j = duplicates[j]
            person = _duplicate(rng, out[j])
            duplicates[i] = j
        else:
            person = _person(rng, companies[int(rand() * len(companies))], titles[i], emails, roll)
        person["source"], person["status"], person["owner"] = sources[i], status, owner
        _stage(rng, person, status, today)
        out.append(person)
    return Crowd(out, duplicates)


def people(n: int, seed: int = 0, *, today: date | None = None) -> list[dict[str, Any]]:
    """``n`` canonical lead dicts, deterministic for ``(n, seed, today)``."""
    return generate(n, seed, today=today).people


def _person(rng: random.Random, company: tuple[str, str, str, str, str], title: str, emails: set[str],
            roll: float) -> dict[str, Any]:
    name, domain, country, industry, size = company
    firsts, lasts = _NAME_LISTS[country]
    first, last = firsts[int(rng.random() * len(firsts))], lasts[int(rng.random() * len(lasts))]
    f, l_ = _slug(first), _slug(last)
    shape = rng.random()
    local = (f"{f}.{l_}" if shape < 0.6 else f"{f[0]}.{l_}" if shape < 0.75 else f"{f}{l_[0]}" if shape < 0.85
             else f if shape < 0.9 else f"{l_}.{f}")
    email: str | None = f"{local}@{domain}"
    k = 1
    while email in emails:
        k += 1
        email = f"{local}{k}@{domain}"
    emails.add(email)
    phone: str | None = _phone(rng, country)[0 if rng.random() < 0.7 else 1]
    company_name: str | None = name
    if 0.03 <= roll < 0.05:  # phone only, no email
        email = None
    elif 0.05 <= roll < 0.055:  # malformed, as typed into a form
        email = (f"{local}@", f"{local}.{domain}", f"{local}@{domain.split('.')[0]}")[int(rng.random() * 3)]
    elif 0.055 <= roll < 0.085:
        phone = None
    elif 0.085 <= roll < 0.105:
        company_name = None
    return {"first_name": first, "last_name": last, "email": email, "phone": phone, "company": company_name,
            "domain": domain, "title": title, "country": country, "source": None, "status": None,
            "owner": None, "value": None, "probability": None, "expected_close": None, "loss_reason": None,
            "industry": industry, "company_size": size}


def _duplicate(rng: random.Random, original: dict[str, Any]) -> dict[str, Any]:
    """The same person entered again, differently."""
    dup = dict(original)
    email = original["email"]
    if email and "@" in email and rng.random() < 0.8:
        local, _, domain = email.partition("@")
        if rng.random() < 0.5:
            dup["email"] = f"{local.capitalize()}@{domain.capitalize()}" if rng.random() < 0.5 else email.upper()
        else:
            dup["email"] = f"{local}+{('crm', 'events', 'news', 'work')[int(rng.random() * 4)]}@{domain}"
    if original["phone"] and rng.random() < 0.7:
        intl, national, compact = _reformat(original["phone"], original["country"])
        dup["phone"] = national if original["phone"] == intl else compact if rng.random() < 0.5 else intl
    if rng.random() < 0.6:
        first, last = original["first_name"], original["last_name"]
        folded = (_fold(first), _fold(last))
        if folded != (first, last):
            dup["first_name"], dup["last_name"] = folded
        elif rng.random() < 0.5:
            dup["first_name"] = first.lower()
    return dup


def _stage(rng: random.Random, person: dict[str, Any], status: str, today: date) -> None:
    person["value"] = person["probability"] = person["expected_close"] = person["loss_reason"] = None
    if status not in ("Opportunity", "Negotiation", "Closed Won", "Closed Lost"):
        return
    person["value"] = float(min(500_000, max(1_000, round(rng.lognormvariate(9.8, 0.9), -2))))
    if status == "Opportunity":
        person["probability"] = (0.2, 0.3, 0.4, 0.5)[int(rng.random() * 4)]
    elif status == "Negotiation":
        person["probability"] = (0.6, 0.7, 0.8, 0.9)[int(rng.random() * 4)]
    else:
        person["probability"] = 1.0 if status == "Closed Won" else 0.0
    ahead = status in ("Opportunity", "Negotiation")
    days = 7 + int(rng.random() * 173) if ahead else -(1 + int(rng.random() * 365))
    person["expected_close"] = today + timedelta(days=days)
    if status == "Closed Lost":
        person["loss_reason"] = _LOSS_REASONS[int(rng.random() * len(_LOSS_REASONS))]
