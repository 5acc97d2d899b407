"""A stateful fake of Pipedrive's API (v1 leads, v2 persons, organizations and deals), served on loopback.

::

    sandbox = PipedriveSandbox(rate=40)          # the Growth plan's burst window
    sandbox.seed(5_000)
    with sandbox.serve() as served:
        httpx.get(served.url + "/v1/leads", headers={"x-api-token": sandbox.token})

Paths and shapes follow the official OpenAPI specs (``pipedrive-v1-openapi.yml``,
``pipedrive-v2-openapi.yml``), modules: :mod:`.catalog` (custom fields, labels, stages, token
costs), :mod:`.state` (records and write rules), :mod:`.routes` and :mod:`.search` (handlers),
:mod:`.canonical` (seeding and the conformance kit's view). What it emulates:

* v1 ``/v1/leads`` (also under ``/api/v1``): list with ``updated_since`` (``>=``, milliseconds),
  ``sort`` (``"update_time ASC"``), ``start``/``limit`` paging; get, create, edit, delete;
  ``/v1/leads/archived``; ``/v1/leadLabels`` (list, add); ``/v1/users``;
* v2 ``/api/v2/persons``, ``/organizations``, ``/deals``: lists with ``ids`` (≤ 100),
  ``updated_since``/``updated_until``, ``sort_by``/``sort_direction`` and keyset cursors (≤ 500); get,
  create (persons, organizations), edit, delete; deals' ``status`` filter (incl. ``deleted``) and
  ``include_fields=source_lead_id``; ``/stages``, ``/pipelines``;
* search: ``/api/v2/itemSearch``, ``/persons/search``, ``/organizations/search``, ``/leads/search``
  (``term``, ``fields``, ``exact_match``, ``item_types``);
* lead conversion: ``POST /api/v2/leads/{id}/convert/deal`` and its status job (``conversion_lag``
  seconds until done); the deal copies the lead's custom fields and keeps ``source_lead_id``; the
  lead is then deleted;
* validation with Pipedrive's error shape (``success``, ``error``, ``error_info``, ``data``,
  ``additional_data``; v2 adds ``code``): a lead needs a title and a person or organization, known
  owners, labels, persons, organizations and stages; ``value`` needs amount and currency; v2 email
  addresses must look like addresses; unknown v2 custom-field keys are refused;
* auth: the ``x-api-token`` header (401 ``unauthorized access`` otherwise; the legacy ``api_token``
  query parameter is not in the current specs and is not taken);
* limits: a rolling 2-second burst window of ``rate`` requests per token, and ``search_rate`` per 2 s
  for search (429 with ``Retry-After``); every answer carries ``x-ratelimit-limit``/``-remaining``/
  ``-reset``; a daily token budget charged per operation's ``x-token-cost`` (:data:`catalog.COSTS`),
  reported in ``x-daily-ratelimit-token-limit``/``-remaining``, 429 ``daily request budget exceeded``
  when spent.

* activities (v2, :mod:`.activities`): list with ``lead_id``/``deal_id``/``owner_id`` filters, get, create,
  update (``done: true`` closes one) and delete (a task is an activity of type ``task`` on the lead);

What it does not: webhooks, OAuth, products, notes, filters, field definitions' own
endpoints, Cloudflare's 403 for clients that ignore 429s, the 10-second penalty window after a 429.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.responses import Response

from hub.testing import fakedata
from hub.testing.sandbox import Call, Sandbox

from .activities import Activities
from .canonical import LABEL_STATUS, SOURCE_NAMES, STAGE_STATUS, CanonicalView
from .catalog import (
    COMPANY_SIZE,
    COSTS,
    COUNTRY,
    DEAL_FIELDS,
    ERROR_INFO,
    HUB_ID,
    INDUSTRY,
    JOB_TITLE,
    LOST_REASON,
    ORG_FIELDS,
    PERSON_FIELDS,
    PERSON_HUB_ID,
    SOURCE,
)
from .routes import Routes
from .search import SEARCH_ROUTES
from .state import CrmState

__all__ = ["COMPANY_SIZE", "COSTS", "COUNTRY", "DEAL_FIELDS", "HUB_ID", "INDUSTRY", "JOB_TITLE", "LABEL_STATUS",
           "LOST_REASON", "ORG_FIELDS", "PERSON_FIELDS", "PERSON_HUB_ID", "SOURCE", "SOURCE_NAMES", "STAGE_STATUS",
           "PipedriveSandbox"]

WINDOW = 2.0  # seconds: Pipedrive's rolling burst window


class PipedriveSandbox(Activities, Routes, CanonicalView, Sandbox):
    """Pipedrive as a stateful fake. See the module docstring.

    ``rate``: requests per rolling 2 s per token (None: unlimited; 40 is the Growth plan's API-token
    figure). ``search_rate``: searches per 2 s (default 10, or unlimited with ``rate=None``).
``daily``: the daily token budget (30,000 × plan
    multiplier 2 × 8 seats by default; None: unlimited). ``conversion_lag``: seconds a lead
    conversion job runs before its deal exists.
    """

    def __init__(self, token: str = "sandbox-api-token", rate: int | None = 40, search_rate: int | None = -1,
                 daily: int | None = 480_000, conversion_lag: float = 0.0):
        super().__init__()
        if search_rate == -1:  # Pipedrive's 10 per 2 s, or no limit when the sandbox has none
            search_rate = None if rate is None else 10
        self.token, self.rate, self.search_rate, self.daily = token, rate, search_rate, daily
        self.conversion_lag = conversion_lag
        self.state = CrmState()
        self.spent = 0  # tokens charged today
        self._day: Any = None
        self.add_users(fakedata.team(0))
        self._ensure_labels()

    @classmethod
    def standalone(cls, port: int = 8080, seed: int = 0, n: int = 2000, rate: int | None = 40,
                   host: str = "127.0.0.1", token: str = "sandbox-api-token") -> None:
        """Seed ``n`` leads and serve until Ctrl-C, printing the base URL and token."""
        sandbox = cls(token=token, rate=rate)
        sandbox.seed(n, seed)
        sandbox.serve_forever(port, host, ready=lambda url: print(
            f"Pipedrive sandbox on {url}  token: {token}  ({n} leads, seed {seed})", flush=True))

    # -- errors, auth and limits ------------------------------------------------------------------
    def error(self, status: int, message: str, **extra: Any) -> Response:
        body = {"success": False, "error": message, **({"errorCode": status} if status in (401, 429) else {}),
                "error_info": ERROR_INFO, "data": None, "additional_data": None, **extra}
        headers = None
        if status == 429:  # an injected 429 still says how long to wait, as Pipedrive's do
            wait = str(math.ceil(WINDOW))
            headers = {"Retry-After": wait, "x-ratelimit-limit": str(self.rate or 0), "x-ratelimit-remaining": "0",
                       "x-ratelimit-reset": wait}
        return self.json(body, status, headers)

    def _limited(self, headers: dict[str, str], message: str = "Request over limit") -> Response:
        response = self.error(429, message)
        response.headers.update({**headers, "Retry-After": headers["x-ratelimit-reset"]})
        return response

    def _window_headers(self, name: str, token: str, limit: int) -> tuple[bool, dict[str, str]]:
        window = self.window(name, token, limit, WINDOW)
        verdict = window.hit()
        reset = verdict.reset if not verdict.allowed else window.peek().reset if verdict.remaining == 0 else WINDOW
        return verdict.allowed, {"x-ratelimit-limit": str(limit), "x-ratelimit-remaining": str(verdict.remaining),
                                 "x-ratelimit-reset": str(max(1, math.ceil(reset)))}

    def admit(self, call: Call) -> Response | dict[str, str] | None:
        token = call.headers.get("x-api-token", "")
        if not token or token != self.token:
            return self.error(401, "unauthorized access")
        call.context["user"] = 1
        headers: dict[str, str] = {}
        if call.route in SEARCH_ROUTES and self.search_rate is not None:
            allowed, headers = self._window_headers("search", token, self.search_rate)
            if not allowed:
                return self._limited(headers)
        if self.rate is not None:
            allowed, burst = self._window_headers("burst", token, self.rate)
            headers = headers or burst
            if not allowed:
                return self._limited(burst)
        if self.daily is not None:
            now = self.clock.now()
            if now.date() != self._day:
                self._day, self.spent = now.date(), 0
            cost = COSTS.get(call.route.replace("/api/v1/", "/v1/"), 10)
            daily = {"x-daily-ratelimit-token-limit": str(self.daily)}
            if self.spent + cost > self.daily:
                midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
                headers = {**headers, **daily, "x-daily-ratelimit-token-remaining": str(self.daily - self.spent),
                           "x-ratelimit-reset": str(math.ceil((midnight - now).total_seconds()))}
                return self._limited(headers, "daily request budget exceeded")
            self.spent += cost
            headers.update(daily, **{"x-daily-ratelimit-token-remaining": str(self.daily - self.spent)})
        return headers or None
