"""The four tables the sandbox serves, with Dataverse's logical names, types and lengths.

``lead`` and ``opportunity`` are stock Dynamics 365 Sales tables (change tracking on), plus the
LeadHub solution's ``leadhub_leadhubid`` column and alternate key on ``lead`` and its lead status
reasons (see :mod:`connectors.dynamics.maps`); ``task`` is the stock activity (regarding a lead,
stock states and status reasons); ``systemuser`` holds the team and the
application user the connector signs in as.
"""

from __future__ import annotations

from .tables import LEAD_STATES, OPPORTUNITY_STATES, TASK_STATES, Column, Table, Versions

__all__ = ["HUB_ID", "LEAD_SOURCES", "SALES_STAGES", "make_tables"]

HUB_ID = "leadhub_leadhubid"
#: stock ``leadsourcecode`` options
LEAD_SOURCES = {1: "Advertisement", 2: "Employee Referral", 3: "External Referral", 4: "Partner",
                5: "Public Relations", 6: "Seminar", 7: "Trade Show", 8: "Web", 9: "Word of Mouth",
                10: "Other"}
#: stock opportunity ``salesstage`` options
SALES_STAGES = {0: "Qualify", 1: "Develop", 2: "Propose", 3: "Close"}


def _s(name: str, length: int, label: str = "") -> Column:
    return Column(name, "string", label, max_length=length)


def _ro(name: str, kind: str = "datetime") -> Column:
    return Column(name, kind, writable=False)


def _common(key: str) -> list[Column]:
    return [_ro(key, "guid"), _ro("createdon"), _ro("modifiedon"), _ro("versionnumber", "int"),
            Column("_ownerid_value", "lookup", target="systemusers")]


def make_tables(versions: Versions) -> dict[str, Table]:
    """Fresh, empty tables sharing one row version counter, by entity set name."""
    lead = [
        *_common("leadid"),
        _s("firstname", 50), _s("lastname", 50), _ro("fullname", "string"), _s("subject", 300),
        _s("emailaddress1", 100), _s("telephone1", 50), _s("mobilephone", 50), _s("companyname", 100),
        _s("websiteurl", 200), _s("jobtitle", 100), _s("address1_city", 80), _s("address1_country", 80),
        _s("description", 2000),
        Column("leadsourcecode", "picklist", options=frozenset(LEAD_SOURCES)),
        Column("industrycode", "picklist", options=frozenset(range(1, 34))),
        Column("numberofemployees", "int"),
        Column("estimatedamount", "money"), Column("estimatedclosedate", "date"),
        Column("statecode", "state"), Column("statuscode", "status"),
        _s(HUB_ID, 100, "LeadHub ID"),
        Column("_qualifyingopportunityid_value", "lookup", writable=False, target="opportunities"),
        # set by the Merge action on the subordinate lead: the master lead, and merged = true
        Column("_masterid_value", "lookup", writable=False, target="leads"), _ro("merged", "bool"),
    ]
    opportunity = [
        *_common("opportunityid"),
        _s("name", 300), _s("description", 2000),
        Column("statecode", "state"), Column("statuscode", "status"),
        Column("salesstage", "picklist", options=frozenset(SALES_STAGES)),
        Column("estimatedvalue", "money"), Column("estimatedclosedate", "date"),
        Column("closeprobability", "int"), Column("actualvalue", "money"), Column("actualclosedate", "date"),
        Column("_originatingleadid_value", "lookup", writable=False, target="leads"),
    ]
    task = [
        *_common("activityid"),
        _s("subject", 200), _s("description", 2000), Column("scheduledend", "datetime"),
        Column("prioritycode", "picklist", options=frozenset({0, 1, 2})),
        Column("statecode", "state"), Column("statuscode", "status"),
        Column("_regardingobjectid_value", "lookup", target="leads"),  # set by @odata.bind only
    ]
    systemuser = [
        _ro("systemuserid", "guid"), _ro("createdon"), _ro("modifiedon"), _ro("versionnumber", "int"),
        _s("firstname", 64), _s("lastname", 64), _ro("fullname", "string"), _s("internalemailaddress", 100),
        Column("isdisabled", "bool"), Column("accessmode", "int"), _ro("applicationid", "guid"),
    ]
    return {
        "leads": Table("lead", "leads", "leadid", {c.name: c for c in lead}, versions, LEAD_STATES,
                       (HUB_ID,)),
        "opportunities": Table("opportunity", "opportunities", "opportunityid",
                               {c.name: c for c in opportunity}, versions, OPPORTUNITY_STATES),
        "tasks": Table("task", "tasks", "activityid", {c.name: c for c in task}, versions, TASK_STATES),
        "systemusers": Table("systemuser", "systemusers", "systemuserid", {c.name: c for c in systemuser},
                             versions),
    }
