"""Normalising what identifies a person: email, phone, company domain, names.

Every function here is pure and works offline. What each one promises:

* :func:`normalise_email` — case and surrounding whitespace never matter;
  ``+tag`` plus-addressing is dropped where configured (every domain, none, or
  a list of domains); Gmail's ignored dots are dropped for ``gmail.com`` and
  ``googlemail.com`` (one mailbox, two spellings). A value that is not an email
  address gives ``None``.
* :func:`normalise_phone` — E.164 via ``phonenumbers``; a national number is
  read in the lead's country (ISO code) and ``None`` comes back for anything
  that is not a possible number.
* :func:`company_domain` — the registrable domain (``mail.example.co.uk`` →
  ``example.co.uk``) from the public-suffix list bundled with ``tldextract``,
  never fetched from the network; a free-mail domain (:data:`FREE_MAIL`, any
  ``gmail``/``yahoo``/``hotmail``… TLD) is never a company key.
* :func:`fold` — a name for comparison: accents and case folded, ``ß`` → ``ss``,
  punctuation gone, whitespace collapsed (``Jürgen  Müller`` → ``jurgen muller``).
* :func:`company_key` — a company name without legal forms (``Nordwind GmbH &
  Co. KG`` → ``nordwind``).

:class:`Identity` bundles the normalised values of one lead; :func:`identity`
builds it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import phonenumbers
import tldextract

__all__ = [
    "FREE_MAIL",
    "FREE_MAIL_BRANDS",
    "EmailPolicy",
    "Identity",
    "normalise_email",
    "normalise_phone",
    "company_domain",
    "is_free_mail",
    "fold",
    "company_key",
    "identity",
]

#: Free-mail domains: an address there says nothing about the company.
FREE_MAIL = frozenset("""
gmail.com googlemail.com yahoo.com ymail.com rocketmail.com hotmail.com outlook.com live.com msn.com
aol.com icloud.com me.com mac.com proton.me protonmail.com pm.me zoho.com mail.com email.com gmx.com
gmx.net gmx.de gmx.at gmx.ch web.de t-online.de freenet.de arcor.de posteo.de mailbox.org orange.fr
free.fr laposte.net wanadoo.fr sfr.fr libero.it virgilio.it tiscali.it alice.it btinternet.com sky.com
virginmedia.com ntlworld.com talktalk.net bigpond.com shaw.ca rogers.com comcast.net verizon.net att.net
sbcglobal.net cox.net earthlink.net mail.ru yandex.ru yandex.com rambler.ru bk.ru list.ru inbox.ru
qq.com 163.com 126.com sina.com naver.com hanmail.net daum.net seznam.cz centrum.cz wp.pl o2.pl onet.pl
interia.pl op.pl bluewin.ch hispeed.ch telenet.be skynet.be ziggo.nl kpnmail.nl planet.nl xs4all.nl
telia.com bredband.net hey.com fastmail.com tutanota.com tuta.io duck.com rediffmail.com
""".split())
#: Brands whose every national domain is free mail (``yahoo.co.uk``, ``hotmail.fr``, ``gmx.li``…).
FREE_MAIL_BRANDS = frozenset({"gmail", "googlemail", "yahoo", "hotmail", "outlook", "live", "gmx", "yandex",
                              "aol", "icloud", "protonmail", "libero", "orange", "mail"})
_GMAIL = frozenset({"gmail.com", "googlemail.com"})

_EXTRACT = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, include_psl_private_domains=True)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")


@dataclass(frozen=True, slots=True)
class EmailPolicy:
    """How emails are normalised: ``plus_addressing`` is ``True`` (every domain), ``False``, or domains."""

    plus_addressing: bool | frozenset[str] = True
    gmail_dots: bool = True

    def strips_plus(self, domain: str) -> bool:
        if isinstance(self.plus_addressing, bool):
            return self.plus_addressing
        return domain in self.plus_addressing


_DEFAULT_POLICY = EmailPolicy()


def normalise_email(email: str | None, policy: EmailPolicy = _DEFAULT_POLICY) -> str | None:
    """``" Anna.Weber+events@Acme.DE "`` → ``"anna.weber@acme.de"``; ``None`` if not an address."""
    if not email:
        return None
    text = email.strip().lower()
    if not _EMAIL.fullmatch(text):
        return None
    local, _, domain = text.rpartition("@")
    domain = domain.rstrip(".")
    if domain == "googlemail.com":
        domain = "gmail.com"
    if policy.strips_plus(domain) and "+" in local:
        local = local.split("+", 1)[0] or local
    if policy.gmail_dots and domain in _GMAIL:
        local = local.replace(".", "")
    return f"{local}@{domain}"


@lru_cache(maxsize=65536)
def normalise_phone(phone: str | None, country: str | None = None) -> str | None:
    """E.164 (``"+49301234567"``) for a possible number, read in ``country`` when national."""
    if not phone or not phone.strip():
        return None
    text = phone.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    region = country.upper() if country and len(country) == 2 else None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if len(str(number.national_number)) < 6 or not phonenumbers.is_possible_number(number):
        return None  # short codes and extensions identify nobody
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _host(value: str) -> str:
    text = value.strip().lower()
    if "@" in text:
        text = text.rpartition("@")[2]
    text = re.sub(r"^[a-z][a-z0-9+.-]*://", "", text)
    return text.split("/", 1)[0].split("?", 1)[0].split(":", 1)[0].rstrip(".")


@lru_cache(maxsize=65536)
def _registrable(host: str) -> str | None:
    if not host or "." not in host:
        return None
    parts = _EXTRACT(host)
    if parts.suffix and parts.domain:
        return f"{parts.domain}.{parts.suffix}"
    if not parts.suffix:  # an unlisted TLD (.example, .internal): the last two labels
        labels = host.split(".")
        return ".".join(labels[-2:]) if all(labels[-2:]) else None
    return None  # the value is itself a public suffix ("co.uk")


def is_free_mail(domain: str | None, extra: frozenset[str] = frozenset()) -> bool:
    """Is ``domain`` (a registrable domain) a free-mail provider's?"""
    if not domain:
        return False
    return domain in FREE_MAIL or domain in extra or domain.split(".", 1)[0] in FREE_MAIL_BRANDS


def company_domain(email: str | None = None, website: str | None = None, *,
                   free_mail: frozenset[str] = frozenset()) -> str | None:
    """The company's registrable domain from its website, else from the email; never free mail."""
    for value in (website, email):
        if not value or (value is email and "@" not in value):
            continue
        domain = _registrable(_host(value))
        if domain and not is_free_mail(domain, free_mail):
            return domain
    return None


_TRANSLIT = str.maketrans({"ß": "ss", "ẞ": "ss", "ø": "o", "Ø": "o", "ł": "l", "Ł": "l", "æ": "ae", "Æ": "ae",
                           "œ": "oe", "Œ": "oe", "đ": "d", "Đ": "d", "þ": "th", "Þ": "th", "ı": "i"})
_NOT_WORD = re.compile(r"[^\w]+")


@lru_cache(maxsize=131072)
def fold(text: str | None) -> str:
    """A name for comparison: ``"Jürgen-Müller "`` → ``"jurgen muller"``; ``""`` for blank."""
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFKD", text.translate(_TRANSLIT))
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return " ".join(_NOT_WORD.sub(" ", plain).replace("_", " ").split())


_LEGAL_FORMS = frozenset("""
gmbh ag kg co ohg ug se sa sas sarl sasu sl slu srl spa sp z o oo bv nv ab as asa oy oyj aps ltd limited
plc llc inc incorporated corp corporation company lp llp pty pte kk kft zrt sro doo ev
""".split())


@lru_cache(maxsize=65536)
def company_key(name: str | None) -> str:
    """A company name without legal forms or punctuation: ``"Acme GmbH & Co. KG"`` → ``"acme"``."""
    words = [w for w in fold(name).split() if w not in _LEGAL_FORMS]
    return " ".join(words)


@dataclass(frozen=True, slots=True)
class Identity:
    """The normalised identifying values of one lead (blank values are ``""``/``None``)."""

    lead_id: str
    email: str | None
    phone: str | None
    domain: str | None
    first: str
    last: str
    company: str

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}".strip()


def identity(lead: Any, policy: EmailPolicy = _DEFAULT_POLICY, *,
             free_mail: frozenset[str] = frozenset()) -> Identity:
    """The :class:`Identity` of a :class:`hub.model.Lead` or a lead dict with the same keys."""
    get = lead.get if isinstance(lead, dict) else lambda k: getattr(lead, k, None)
    email = normalise_email(get("email"), policy)
    return Identity(
        lead_id=str(get("id") or ""),
        email=email,
        phone=normalise_phone(get("phone"), get("country")),
        domain=company_domain(email, get("domain"), free_mail=free_mail),
        first=fold(get("first_name")),
        last=fold(get("last_name")),
        company=company_key(get("company")),
    )
