"""monday.com's default maps. A board has no fixed schema: remote names here are column TITLES,
resolved to the board's column ids when the connector first reads the board. An install
overrides them under the connection (``field_map:`` canonical → title, ``status_map:``), or
pins a title to a column id (``columns:``).

``First name`` / ``Last name`` are parts of the item name unless the board has columns with
those titles; the delivery board's item name is the company.
"""

from __future__ import annotations

from hub.connector import StatusMap, ValueMap

__all__ = ["FIELD_MAP", "NAME_PARTS", "VALUE_MAPS", "STATUS_MAP", "OWNER", "HUB_ID",
           "DELIVERY_FIELD_MAP", "DELIVERY_NAME_PARTS", "DELIVERY_STATUS_MAP"]

OWNER = "Owner"  # a people column
HUB_ID = "LeadHub ID"  # a text column holding the hub's lead id

#: canonical field -> column title on a Leads board
FIELD_MAP: dict[str, str] = {
    "first_name": "First name",
    "last_name": "Last name",
    "email": "Email",
    "phone": "Phone",
    "company": "Company",
    "title": "Job title",
    "country": "Country",
    "source": "Source",
    "value": "Deal value",
    "expected_close": "Expected close",
    "loss_reason": "Loss reason",
}
NAME_PARTS = ("First name", "Last name")

#: the Source dropdown's labels <-> canonical sources
VALUE_MAPS: dict[str, ValueMap] = {
    "source": ValueMap(read={"Paid": "paid", "Organic": "organic", "Referral": "referral", "Partner": "partner",
                             "Event": "event", "Website": "self-serve", "Outbound": "outbound", "Social": "social",
                             "Email": "email"}),
}

#: canonical status -> the Status column's label. A blank status is a new Lead; the
#: Sales CRM template's "Attempted to contact" / "Contacted" mean accepted by sales.
STATUS_MAP = StatusMap(
    write={
        "Lead": {"Status": "New Lead"},
        "MQL": {"Status": "Marketing Qualified"},
        "SAL": {"Status": "Sales Accepted"},
        "SQL": {"Status": "Sales Qualified"},
        "Opportunity": {"Status": "Opportunity"},
        "Negotiation": {"Status": "Negotiation"},
        "Closed Won": {"Status": "Won"},
        "Closed Lost": {"Status": "Lost"},
        "Nurture": {"Status": "Nurture"},
    },
    read=[
        ({"Status": ""}, "Lead"),
        ({"Status": "Attempted to contact"}, "SAL"),
        ({"Status": "Contacted"}, "SAL"),
        ({"Status": "Qualified"}, "SQL"),
        ({"Status": "Unqualified"}, "Closed Lost"),
    ],
)

#: the delivery board: a kickoff item per won deal, named after the company
DELIVERY_FIELD_MAP: dict[str, str] = {"company": "Company", "value": "Deal value"}
DELIVERY_NAME_PARTS = ("Company",)
DELIVERY_STATUS_MAP = StatusMap(
    write={"Closed Won": {"Status": "Kickoff"}},
    read=[({"Status": label}, "Closed Won") for label in ("", "Working on it", "Done", "Stuck")],
)
