"""The Web API ``Merge`` action of the sandbox: ``POST /api/data/v9.2/Merge``, for leads.

An unbound action with four parameters (learn.microsoft.com, "Merge entity using Web API" and the
Merge Action reference): ``Target`` and ``Subordinate`` (each ``{"@odata.type":
"Microsoft.Dynamics.CRM.lead", "leadid": …}``), ``UpdateContent`` (optional, a lead whose columns are
set on the target) and ``PerformParentingChecks`` (required, boolean). Success is ``204 No Content``.

What it does, after the same page: "Merging moves any useful data from the Subordinate record to the
Target record. Any existing data in the Target record aren't overwritten. Then the Subordinate record
is deactivated." So every writable column empty on the target takes the subordinate's value (except
the ``leadhub_leadhubid`` alternate key, which stays unique on the subordinate); ``UpdateContent`` is
applied over that. The subordinate is then deactivated with ``merged = true`` and ``masterid`` set to
the target (Mark Carrington, "Identifying merged records", markcarrington.dev 2021: "its status is
changed to Inactive, the merged field is set to true, the masterid field is set to the ID of the
master record"). A lead's inactive state is Disqualified (statecode 2); the status reason the sandbox
gives it, Canceled (7), is its own choice (UNCONFIRMED). Both rows get a new row version, so change
tracking shows the target updated and the subordinate as an update carrying ``_masterid_value``.

Refusals follow the messages Dataverse gives (markcarrington.dev, "MSDyn365 Internals: Merge
Permissions"): the same record twice ("Merge cannot be performed on master and sub-entities that are
identical."), an inactive record ("master entity:lead-{id} is deactive" / "sub-entity:…"), a table
other than lead ("This type: {name} is not supported with merge operation"); their code is the
sandbox's ``0x80040203`` (invalid argument). A missing row is ``0x80040217``, 404.
Not emulated: PerformParentingChecks (accepted, not checked), reparenting related rows.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from hub.testing.sandbox import Call

from .tables import DataverseError, Table

__all__ = ["Merging"]

_LEAD = "Microsoft.Dynamics.CRM.lead"
_KEEP = frozenset({"statecode", "statuscode"})  # never moved from the subordinate
DISQUALIFIED, CANCELED = 2, 7


def _invalid(message: str) -> DataverseError:
    return DataverseError(400, "0x80040203", message)


class Merging:
    """Mixin for :class:`DynamicsSandbox`: the ``Merge`` action, and the same merge for tests."""

    tables: dict[str, Table]
    clock: Any

    def merge_routes(self) -> list[tuple[str, str, Any]]:
        return [("POST", "/api/data/{version}/Merge", self._merge_action)]

    def merge_leads(self, target_id: str, subordinate_id: str, update: dict[str, Any] | None = None) -> None:
        """Merge lead ``subordinate_id`` into ``target_id`` as a Dynamics user would (see the module)."""
        with self.lock:  # type: ignore[attr-defined]
            self._merge(target_id, subordinate_id, update or {})

    def remote_merge(self, survivor_id: str, loser_id: str) -> str:
        """The conformance kit's handle: merge ``loser_id`` into ``survivor_id``; returns the survivor."""
        self.merge_leads(survivor_id, loser_id)
        return survivor_id

    def _merge_action(self, call: Call) -> Response:
        body = call.json()
        if not isinstance(body, dict) or not isinstance(body.get("Target"), dict) \
                or not isinstance(body.get("Subordinate"), dict):
            raise _invalid("Required parameters 'Target' and 'Subordinate' are missing.")
        if not isinstance(body.get("PerformParentingChecks"), bool):
            raise _invalid("Required parameter 'PerformParentingChecks' is missing or not a boolean.")
        ids = []
        for name in ("Target", "Subordinate"):
            entity = body[name]
            kind = str(entity.get("@odata.type", ""))
            if kind != _LEAD:
                raise _invalid(f"This type: {kind.removeprefix('Microsoft.Dynamics.CRM.') or '(none)'} is not "
                               "supported with merge operation")
            ids.append(str(entity.get("leadid") or ""))
        update = body.get("UpdateContent") or {}
        if not isinstance(update, dict) or update.get("@odata.type", _LEAD) != _LEAD:
            raise _invalid("UpdateContent must be a lead.")
        self._merge(ids[0], ids[1], {k: v for k, v in update.items() if not k.startswith("@")})
        return Response(status_code=204, headers={"OData-Version": "4.0"})

    def _merge(self, target_id: str, subordinate_id: str, update: dict[str, Any]) -> None:
        leads = self.tables["leads"]
        target, sub = leads.find(target_id), leads.find(subordinate_id)
        for rid, row in ((target_id, target), (subordinate_id, sub)):
            if row is None:
                raise DataverseError(404, "0x80040217", f"lead With Id = {rid} Does Not Exist")
        assert target is not None and sub is not None
        if target["leadid"] == sub["leadid"]:
            raise _invalid("Merge cannot be performed on master and sub-entities that are identical.")
        for label, row in (("master entity", target), ("sub-entity", sub)):
            if row["statecode"] != 0:
                raise _invalid(f"{label}:lead-{row['leadid']} is deactive")
        moved = {name: sub[name] for name, col in leads.columns.items()
                 if col.writable and name not in _KEEP and name not in leads.alternate_keys
                 and target.get(name) is None and sub.get(name) is not None}
        clean = leads.check({**moved, **update}, target, target["leadid"])
        now = self.clock.now()
        self.write_row(leads, target["leadid"], clean, now)  # type: ignore[attr-defined]
        leads.write(sub["leadid"], {"statecode": DISQUALIFIED, "statuscode": CANCELED, "merged": True,
                                    "_masterid_value": target["leadid"]}, now)
