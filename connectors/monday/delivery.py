"""The delivery board: Closed Won leads flow one way into it, as kickoff items.

Configure the connection with ``direction: write``; the board's ids come from
the same column discovery as the Leads board (titles in :mod:`.maps`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from hub.connector import ValueMap, WriteOp, WriteResult

from .maps import DELIVERY_FIELD_MAP, DELIVERY_NAME_PARTS, DELIVERY_STATUS_MAP

__all__ = ["DeliveryMixin"]


class DeliveryMixin:
    """Mixed into the monday connector as ``monday_delivery``.

    A Closed Won lead becomes one kickoff item (name = company; owner, deal value and
    hub id in their columns; status "Kickoff"), created idempotently by hub id. Other
    statuses are refused, and later updates carry owner and value only, so the
    delivery team's own status stays theirs.
    """

    name = "monday_delivery"
    title = "monday.com delivery board"
    field_map: ClassVar[dict[str, str]] = DELIVERY_FIELD_MAP
    value_maps: ClassVar[dict[str, ValueMap]] = {}
    status_map = DELIVERY_STATUS_MAP
    name_parts: ClassVar[tuple[str, ...]] = DELIVERY_NAME_PARTS

    def write(self, ops: Sequence[WriteOp]) -> list[WriteResult]:
        refused, eligible = [], []
        for op in ops:
            status = op.fields.get("status")
            if op.remote_id is not None:
                eligible.append(WriteOp(op.hub_id, {k: v for k, v in op.fields.items() if k != "status"},
                                        op.remote_id, op.object))
            elif status == "Closed Won":
                eligible.append(op)
            else:
                refused.append(WriteResult(op.hub_id, False, None, "not written: the delivery board takes "
                                                                   f"Closed Won leads only (status {status!r})"))
        return refused + super().write(eligible)  # type: ignore[misc]
