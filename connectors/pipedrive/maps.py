"""Pipedrive's default field, value and status maps. An install overrides them in its config
(``field_map:`` / ``status_map:`` under the connection) and names its own custom-field keys.

A canonical lead is a Pipedrive lead (or, once converted, its deal) plus its person and
organization, flattened by the connector into one dict of remote properties:

* ``person.first_name``, ``person.last_name``, ``person.email`` (primary), ``person.phone``
  (primary), ``person.<key>`` (a person custom field);
* ``org.name``, ``org.<key>`` (an organization custom field);
* ``value``, ``currency``, ``expected_close_date``, ``probability`` (a fraction; deals only),
  ``lost_reason``, ``owner_id``, and ``<key>`` for lead/deal custom fields (leads inherit the deal
  custom-field schema, and a conversion copies the values to the deal);
* the status fields: ``lead_label`` (the name of the lead's status label), ``is_archived``
  (``"true"`` or empty), ``deal_status`` (``open``/``won``/``lost``, deals only) and ``deal_stage``
  (the stage's name).

Custom-field keys are 40-character hashes that differ per account; the defaults here are the
sandbox's (:mod:`connectors.pipedrive.sandbox`).
"""

from __future__ import annotations

from hub.connector import StatusMap, ValueMap

__all__ = [
           "COMPANY_SIZE_KEY",
           "COUNTRY_KEY",
           "FIELD_MAP",
           "HUB_ID_KEY",
           "INDUSTRY_KEY",
           "JOB_TITLE_KEY",
           "LOST_REASON_KEY",
           "PERSON_HUB_ID_KEY",
           "SOURCE_KEY",
           "STATUS_FIELDS",
           "STATUS_MAP",
           "VALUE_MAPS",
]

HUB_ID_KEY = "7b4e89fe9168c93e86f861a737d4182bf3484205"  # deal/lead field "LeadHub ID" (text)
PERSON_HUB_ID_KEY = "b673907311e598f9fb93de672710a1bda278ceee"  # person field "LeadHub ID" (text)
LOST_REASON_KEY = "08bfb672551a4819642e2308730726bc25639124"  # deal/lead field "Lost reason" (text)
SOURCE_KEY = "c911b7f1881a34f766e68bdac4639abb2fe28284"  # deal/lead field "Lead source" (text)
JOB_TITLE_KEY = "93b2aef0f1d74ff6cd83c3201156d4f98d8ad96a"  # person field "Job title" (text)
COUNTRY_KEY = "a3c9d232f3c819cd9a464b8f7c9c9313602ee632"  # person field "Country" (text)
INDUSTRY_KEY = "166391b96bdc68dd78ea26110b17400622426df4"  # organization field "Industry" (text)
COMPANY_SIZE_KEY = "6f058100a2321de986ba8a608ee19267d6968008"  # organization field "Company size" (text)

#: canonical field -> flattened Pipedrive property (see the module docstring)
FIELD_MAP: dict[str, str] = {
    "first_name": "person.first_name",
    "last_name": "person.last_name",
    "email": "person.email",
    "phone": "person.phone",
    "title": f"person.{JOB_TITLE_KEY}",
    "country": f"person.{COUNTRY_KEY}",
    "company": "org.name",
    "industry": f"org.{INDUSTRY_KEY}",
    "company_size": f"org.{COMPANY_SIZE_KEY}",
    "source": SOURCE_KEY,
    "value": "value",  # in the record's own currency (a new value without one: settings.currency)
    "probability": "probability",
    "expected_close": "expected_close_date",
    "loss_reason": "lost_reason",
}

#: the "Lead source" field's wording <-> canonical sources
VALUE_MAPS: dict[str, ValueMap] = {
    "source": ValueMap(read={"Paid Ads": "paid", "Organic Search": "organic", "Referral": "referral",
                             "Partner": "partner", "Event": "event", "Website": "self-serve",
                             "Cold Outreach": "outbound", "Social Media": "social", "Email Campaign": "email"}),
}

STATUS_FIELDS = ("lead_label", "is_archived", "deal_status", "deal_stage")

#: canonical status -> what the hub writes. Lead-phase statuses are lead labels (Pipedrive's own
#: Hot/Warm/Cold plus MQL, SAL and Nurture, resolved to label ids by name at run time); from
#: Opportunity on the lead is converted to a deal and the deal's status and stage carry it. Reads
#: also accept an unlabelled lead (Lead), Warm (MQL), an "SQL" label, an archived lead (Closed Lost:
#: how Pipedrive drops a lead) and the pipeline's other stages.
STATUS_MAP = StatusMap(
    write={
        "Lead": {"lead_label": "Cold"},
        "MQL": {"lead_label": "MQL"},
        "SAL": {"lead_label": "SAL"},
        "SQL": {"lead_label": "Hot"},
        "Opportunity": {"deal_status": "open", "deal_stage": "Qualified"},
        "Negotiation": {"deal_status": "open", "deal_stage": "Negotiations Started"},
        "Closed Won": {"deal_status": "won"},
        "Closed Lost": {"deal_status": "lost"},
        "Nurture": {"lead_label": "Nurture"},
    },
    read=[  # most specific first among equals: StatusMap keeps this order within one length
        ({"is_archived": "true", "deal_status": ""}, "Closed Lost"),
        ({"lead_label": "", "deal_status": ""}, "Lead"),
        ({"deal_status": "open", "deal_stage": "Contact Made"}, "Opportunity"),
        ({"deal_status": "open", "deal_stage": "Demo Scheduled"}, "Opportunity"),
        ({"deal_status": "open", "deal_stage": "Proposal Made"}, "Negotiation"),
        ({"deal_status": "open"}, "Opportunity"),  # a stage of another pipeline
        ({"lead_label": "Warm"}, "MQL"),
        ({"lead_label": "SQL"}, "SQL"),
    ],
)
