"""HubSpot's default field and status maps. An install overrides them in its config
(``field_map:`` / ``status_map:`` under the connection)."""

from __future__ import annotations

from hub.connector import StatusMap, ValueMap

__all__ = ["FIELD_MAP", "VALUE_MAPS", "STATUS_MAP"]

#: canonical field -> HubSpot contact property
FIELD_MAP: dict[str, str] = {
    "first_name": "firstname",
    "last_name": "lastname",
    "email": "email",
    "phone": "phone",
    "company": "company",
    "title": "jobtitle",
    "country": "country",
    "source": "hs_analytics_source",
    "value": "amount",
    "probability": "hs_deal_probability",
    "expected_close": "closedate",
    "loss_reason": "closed_lost_reason",
    "industry": "industry",
    "company_size": "company_size",
}

#: HubSpot's "Original source" options <-> canonical sources
VALUE_MAPS: dict[str, ValueMap] = {
    "source": ValueMap(
        read={"ORGANIC_SEARCH": "organic", "PAID_SEARCH": "paid", "PAID_SOCIAL": "paid-social",
              "REFERRALS": "referral", "OTHER_CAMPAIGNS": "campaign", "OFFLINE": "offline",
              "DIRECT_TRAFFIC": "direct", "SOCIAL_MEDIA": "social", "EMAIL_MARKETING": "email",
              "AI_REFERRALS": "ai-referral"},
        write={"partner": "OTHER_CAMPAIGNS", "event": "OFFLINE", "outbound": "OFFLINE",
               "self-serve": "DIRECT_TRAFFIC"},
    ),
}

#: canonical status -> the lifecyclestage / hs_lead_status pair the hub writes.
#: HubSpot's lifecycle has no SAL/SQL or Negotiation split, so hs_lead_status
#: carries the distinction; reads also accept HubSpot's other stages.
STATUS_MAP = StatusMap(
    write={
        "Lead": {"lifecyclestage": "lead", "hs_lead_status": "NEW"},
        "MQL": {"lifecyclestage": "marketingqualifiedlead"},
        "SAL": {"lifecyclestage": "salesqualifiedlead", "hs_lead_status": "OPEN"},
        "SQL": {"lifecyclestage": "salesqualifiedlead", "hs_lead_status": "IN_PROGRESS"},
        "Opportunity": {"lifecyclestage": "opportunity", "hs_lead_status": "OPEN_DEAL"},
        "Negotiation": {"lifecyclestage": "opportunity", "hs_lead_status": "CONNECTED"},
        "Closed Won": {"lifecyclestage": "customer"},
        "Closed Lost": {"lifecyclestage": "other", "hs_lead_status": "UNQUALIFIED"},
        "Nurture": {"lifecyclestage": "lead", "hs_lead_status": "BAD_TIMING"},
    },
    read=[
        ({"lifecyclestage": "subscriber"}, "Lead"),
        ({"lifecyclestage": "lead"}, "Lead"),
        ({"lifecyclestage": "salesqualifiedlead", "hs_lead_status": "ATTEMPTED_TO_CONTACT"}, "SAL"),
        ({"lifecyclestage": "salesqualifiedlead"}, "SAL"),
        ({"lifecyclestage": "opportunity"}, "Opportunity"),
        ({"lifecyclestage": "evangelist"}, "Closed Won"),
        ({"lifecyclestage": "other"}, "Closed Lost"),
    ],
)
