"""Dynamics 365 Sales default field, source and status maps. An install overrides them in its
config (``field_map:`` / ``status_map:`` under the connection).

Status: a Dynamics lead has ``statecode`` (0 Open, 1 Qualified, 2 Disqualified) and a
``statuscode`` (status reason) that belongs to one state; qualifying a lead creates an
opportunity (``qualifyingopportunityid``) whose own ``statecode`` (0 Open, 1 Won, 2 Lost),
``statuscode`` (1 In Progress, 2 On Hold | 3 Won | 4 Canceled, 5 Out-Sold) and ``salesstage``
(0 Qualify, 1 Develop, 2 Propose, 3 Close) carry the deal on. The connector reads the
opportunity alongside the lead under the Web API's navigation-path names
(``qualifyingopportunityid/statecode`` …), so the canonical status follows the deal: a won
opportunity reads as Closed Won whatever the lead's own status reason says.

Stock Dynamics has no status reason for MQL, SQL, Nurture, Negotiation or a won deal on the
lead itself, so the LeadHub solution (publisher ``LeadHub``, prefix ``leadhub``, option value
prefix 58230) adds these lead status reasons — the usual way a Dynamics admin extends the
lead funnel:

============  =========  ==========================  ==================
statecode     statuscode label                       canonical (write)
============  =========  ==========================  ==================
0 Open        1          New (stock)                 Lead
0 Open        2          Contacted (stock)           SAL
0 Open        582300000  Marketing Qualified         MQL
0 Open        582300001  Sales Qualified             SQL
0 Open        582300002  Nurture                     Nurture
1 Qualified   3          Qualified (stock)           Opportunity
1 Qualified   582300003  Negotiating                 Negotiation
1 Qualified   582300004  Won                         Closed Won
2 Disqual.    4          Lost (stock)                Closed Lost
2 Disqual.    5, 6, 7    Cannot Contact, No Longer   Closed Lost (read only)
                         Interested, Canceled
============  =========  ==========================  ==================

The same solution adds the text column ``leadhub_leadhubid`` (LeadHub ID, 100 chars) with the
alternate key ``leadhub_leadhubid_key`` on it: the hub's lead id, the key every create upserts
on. Values are strings because :class:`hub.connector.StatusMap` compares strings (and treats
a falsy ``0`` as blank); the connector converts to and from Dataverse's integers.
"""

from __future__ import annotations

from hub.connector import StatusMap, ValueMap

__all__ = [
    "DEAL",
    "DEAL_FIELDS",
    "FIELD_MAP",
    "HUB_ID_COLUMN",
    "OPTION_PREFIX",
    "STATUS_MAP",
    "VALUE_MAPS",
]

#: canonical field -> Dataverse lead column (logical name)
FIELD_MAP: dict[str, str] = {
    "first_name": "firstname",
    "last_name": "lastname",
    "email": "emailaddress1",
    "phone": "telephone1",
    "company": "companyname",
    "domain": "websiteurl",
    "title": "jobtitle",
    "country": "address1_country",
    "source": "leadsourcecode",
    "value": "estimatedamount",
    "expected_close": "estimatedclosedate",
}

#: the custom column (and alternate key) holding the hub's lead id
HUB_ID_COLUMN = "leadhub_leadhubid"
#: the LeadHub publisher's option value prefix: custom status reasons are 582300000 + n
OPTION_PREFIX = 58230

#: lead ``leadsourcecode`` options (stock Dynamics 365 Sales) <-> canonical sources
VALUE_MAPS: dict[str, ValueMap] = {
    "source": ValueMap(
        read={1: "paid", 2: "employee-referral", 3: "referral", 4: "partner", 5: "public-relations",
              6: "seminar", 7: "event", 8: "organic", 9: "word-of-mouth", 10: "other"},
        write={"self-serve": 8, "outbound": 10, "social": 10, "email": 10, "campaign": 1, "paid-social": 1,
               "direct": 8, "offline": 7},
    ),
}

#: how the qualifying opportunity's columns appear among a lead's props (Web API navigation path)
DEAL = "qualifyingopportunityid/"
#: opportunity columns read with each qualified lead; the canonical deal value and close date come
#: from the opportunity when it has them (the deal is the truth once a lead is qualified)
DEAL_FIELDS = ("statecode", "statuscode", "salesstage", "estimatedvalue", "estimatedclosedate")

_S, _R = "statecode", "statuscode"
_OS, _OR, _STAGE = DEAL + "statecode", DEAL + "statuscode", DEAL + "salesstage"


def _custom(n: int) -> str:
    return str(OPTION_PREFIX * 10_000 + n)


#: canonical status -> the lead's statecode/statuscode the hub writes; reads also follow the deal
STATUS_MAP = StatusMap(
    write={
        "Lead": {_S: "0", _R: "1"},
        "MQL": {_S: "0", _R: _custom(0)},
        "SAL": {_S: "0", _R: "2"},
        "SQL": {_S: "0", _R: _custom(1)},
        "Nurture": {_S: "0", _R: _custom(2)},
        "Opportunity": {_S: "1", _R: "3"},
        "Negotiation": {_S: "1", _R: _custom(3)},
        "Closed Won": {_S: "1", _R: _custom(4)},
        "Closed Lost": {_S: "2", _R: "4"},
    },
    read=[
        ({_S: "2", _R: "5"}, "Closed Lost"),
        ({_S: "2", _R: "6"}, "Closed Lost"),
        ({_S: "2", _R: "7"}, "Closed Lost"),
        # a qualified lead follows its opportunity: proposing or closing it is Negotiation ...
        ({_S: "1", _R: "3", _OS: "0", _STAGE: "2"}, "Negotiation"),
        ({_S: "1", _R: "3", _OS: "0", _STAGE: "3"}, "Negotiation"),
        # ... and a won or lost deal decides, whatever the lead's own status reason says
        ({_S: "1", _OS: "1", _OR: "3"}, "Closed Won"),
        ({_S: "1", _OS: "2", _OR: "4"}, "Closed Lost"),
        ({_S: "1", _OS: "2", _OR: "5"}, "Closed Lost"),
    ],
)
