"""Salesforce's default field, status and stage maps. An install overrides them in its config
(``field_map:``, ``status_map:``, ``stage_map:``, ``deal_stages:`` under the connection).

The Lead Status values are the default org's four (``Open - Not Contacted``,
``Working - Contacted``, ``Closed - Converted``, ``Closed - Not Converted``) plus
five an admin adds for the hub's funnel; an org with other values maps them in
``status_map``. Once a lead is converted its status follows its Opportunity:
closed deals by ``IsWon``, open ones by stage (``STAGE_MAP``); names with a
``ConvertedOpportunity.`` prefix are the deal's fields.
"""

from __future__ import annotations

from hub.connector import StatusMap, ValueMap

__all__ = [
           "DEAL",
           "DEAL_FIELDS",
           "DEAL_STAGES",
           "FIELD_MAP",
           "PERCENT_FIELDS",
           "STAGE_MAP",
           "STATUS_MAP",
           "VALUE_MAPS",
]

#: the relationship from a converted Lead to its Opportunity
DEAL = "ConvertedOpportunity"

#: canonical field -> Lead field (or the converted lead's Opportunity field)
FIELD_MAP: dict[str, str] = {
    "first_name": "FirstName",
    "last_name": "LastName",
    "email": "Email",
    "phone": "Phone",
    "company": "Company",
    "title": "Title",
    "domain": "Website",
    "country": "Country",
    "source": "LeadSource",
    "industry": "Industry",
    "loss_reason": "Loss_Reason__c",
    "value": f"{DEAL}.Amount",
    "probability": f"{DEAL}.Probability",
    "expected_close": f"{DEAL}.CloseDate",
}

#: Lead fields that live on the deal once a lead is converted (Setup's "Map Lead Fields")
DEAL_FIELDS: dict[str, str] = {"Loss_Reason__c": "Loss_Reason__c"}

#: remote fields holding a percentage (0-100) where the hub keeps a fraction (0-1)
PERCENT_FIELDS = frozenset({f"{DEAL}.Probability"})

#: Lead Source picklist <-> canonical sources (the first option per source is the one written)
VALUE_MAPS: dict[str, ValueMap] = {
    "source": ValueMap(read={
        "Advertisement": "paid", "Web": "organic", "External Referral": "referral", "Partner": "partner",
        "Trade Show": "event", "Free Trial": "self-serve", "Outbound Prospecting": "outbound",
        "Social Media": "social", "Email Campaign": "email", "Employee Referral": "referral",
        "Word of mouth": "referral", "Partner Referral": "partner", "Seminar - Internal": "event",
        "Seminar - Partner": "event", "Phone Inquiry": "self-serve", "Purchased List": "outbound"}),
}

#: canonical status -> the Lead Status the hub writes (and reads back)
STATUS_MAP = StatusMap(write={
    "Lead": {"Status": "Open - Not Contacted"},
    "MQL": {"Status": "Marketing Qualified"},
    "SAL": {"Status": "Working - Contacted"},
    "SQL": {"Status": "Sales Qualified"},
    "Opportunity": {"Status": "Opportunity Identified"},
    "Negotiation": {"Status": "In Negotiation"},
    "Closed Won": {"Status": "Closed - Converted"},  # converted without an opportunity
    "Closed Lost": {"Status": "Closed - Not Converted"},
    "Nurture": {"Status": "Nurturing"},
})

#: open Opportunity stage -> canonical status (closed stages go by IsWon; an unknown open stage is Opportunity)
STAGE_MAP: dict[str, str] = {
    "Prospecting": "Opportunity",
    "Qualification": "Opportunity",
    "Needs Analysis": "Opportunity",
    "Value Proposition": "Opportunity",
    "Id. Decision Makers": "Opportunity",
    "Perception Analysis": "Opportunity",
    "Proposal/Price Quote": "Negotiation",
    "Negotiation/Review": "Negotiation",
}

#: canonical status -> the stage the hub writes on a converted lead's Opportunity
DEAL_STAGES: dict[str, str] = {
    "Opportunity": "Qualification",
    "Negotiation": "Negotiation/Review",
    "Closed Won": "Closed Won",
    "Closed Lost": "Closed Lost",
}
