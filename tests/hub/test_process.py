"""The process file: defaults agree with hub.model, every error kind at its exact line and path."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from hub.errors import ConfigError
from hub.model import (
    DEFAULT_TRANSITIONS,
    FINAL_STATUSES,
    REQUIRED_FIELDS,
    Lead,
    Status,
    Transition,
    check_transition,
)
from hub.process import (
    Duration,
    Process,
    default_process,
    is_warning,
    load_process,
    parse_duration,
    validate_process,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DEFAULT_FILE = Path(__file__).resolve().parents[2] / "hub" / "default_process.yaml"

BASE = """\
custom_fields: [segment]
roles: [marketing, sales]
statuses:
  - name: Lead
    owner: marketing
    sla: 24h
    required: [last_name, email|phone]
  - name: MQL
    owner: marketing
    sla: 48h
    required: [segment]
  - name: Won
    owner: sales
    final: true
  - name: Lost
    owner: sales
    final: true
    required: [loss_reason]
transitions:
  - {from: Lead, to: MQL}
  - {from: MQL, to: Won}
  - {from: MQL, to: Lost, requires: [loss_reason]}
  - {from: Lost, to: MQL, reopen: true}
team:
  - email: boss@acme.example
    role: sales
  - email: ann@acme.example
    role: sales
    manager: boss@acme.example
    calendar: dach
  - email: mo@acme.example
    role: marketing
    manager: boss@acme.example
calendars:
  dach:
    timezone: Europe/Berlin
    country: DE
"""


def line_of(text: str, snippet: str, nth: int = 0) -> int:
    """1-based line of the ``nth`` line containing ``snippet``."""
    return [n for n, line in enumerate(text.splitlines(), 1) if snippet in line][nth]


def check(tmp_path: Path, text: str) -> list[tuple[int | None, str, str]]:
    path = tmp_path / "process.yaml"
    path.write_text(text)
    return [(p.line, p.field, p.message) for p in validate_process(path)]


def edit(old: str, new: str, text: str = BASE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def only(problems: list[tuple[int | None, str, str]]) -> tuple[int | None, str, str]:
    assert len(problems) == 1, problems
    return problems[0]


# -- the default process --------------------------------------------------------------------

def test_default_process_agrees_with_model_defaults():
    p = default_process()
    assert p.transitions == DEFAULT_TRANSITIONS
    assert p.required == {str(k): v for k, v in REQUIRED_FIELDS.items()}
    assert p.status_names == tuple(s.value for s in Status)
    assert p.final_statuses == {str(s) for s in FINAL_STATUSES}


def test_default_process_slas_and_owners():
    p = default_process()
    due = {s.name: {k: str(v) for k, v in s.sla.items()} for s in p.statuses}
    assert due == {
        "Lead": {"due": "24h"}, "MQL": {"due": "48h"}, "SAL": {"due": "24h"}, "SQL": {"due": "5d"},
        "Opportunity": {"due": "7d"}, "Negotiation": {"remind": "5d", "escalate": "7d", "stall": "10d"},
        "Closed Won": {"due": "5d"}, "Closed Lost": {}, "Nurture": {"review": "60d", "requalify": "90d"},
    }
    assert p.status("Nurture").owner == "marketing" and p.status("SAL").owner == "sales"
    assert p.status("Negotiation").sla["escalate"].delta == timedelta(days=7)


def test_default_file_has_no_problems_not_even_warnings():
    assert validate_process(DEFAULT_FILE) == []


def test_transitions_work_with_check_transition():
    p = default_process()
    kw = {"transitions": p.transitions, "required": p.required}
    sal = Lead(status="SAL")
    assert not check_transition(sal, "MQL", **kw).allowed
    assert "rejection_reason" in check_transition(sal, "MQL", **kw).reason
    assert check_transition(Lead(status="SAL", rejection_reason="no budget"), "MQL", **kw).allowed
    lost = Lead(status="Closed Lost", loss_reason="price")
    assert not check_transition(lost, "MQL", **kw).allowed
    assert check_transition(lost, "MQL", reopen=True, **kw).allowed
    assert not check_transition(Lead(status="Lead"), "SQL", **kw).allowed


# -- the example file ------------------------------------------------------------------------

def test_example_process_is_clean_and_usable():
    assert validate_process(EXAMPLES / "process.yaml") == []
    p = load_process(EXAMPLES / "process.yaml")
    assert len(p.statuses) == 9 and len(p.team) == 6
    assert p.manager_of("JONAS.KELLER@brightfield.example").name == "Sofia Brandt"
    assert p.manager_of("sofia.brandt@brightfield.example") is None
    assert p.person("nobody@brightfield.example") is None
    jonas = p.person("jonas.keller@brightfield.example")
    assert jonas.territories == ("DACH",) and jonas.away_on(date(2026, 8, 5))
    assert not jonas.away_on(date(2026, 8, 15))
    assert p.calendar() is p.calendar("dach")
    assert p.status("SAL").business_hours and str(p.status("SAL").sla["due"]) == "8h"


def test_calendars():
    p = load_process(EXAMPLES / "process.yaml")
    dach, uk = p.calendar("dach"), p.calendar("uk")
    assert dach.is_working_day(date(2026, 12, 22))
    assert not dach.is_working_day(date(2026, 12, 24))  # extra closed date
    assert not dach.is_working_day(date(2026, 1, 6))  # Epiphany, a holiday in Bavaria
    assert not dach.is_working_day(date(2026, 12, 26))  # a Saturday
    assert not uk.is_working_day(date(2026, 12, 28))  # Boxing Day, observed on Monday
    assert uk.is_working_day(date(2026, 1, 6))
    assert str(uk.tz) == "Europe/London" and uk.hours[1].strftime("%H:%M") == "17:30"
    with pytest.raises(KeyError):
        p.calendar("mars")


# -- durations -------------------------------------------------------------------------------

@pytest.mark.parametrize("text,amount,unit,delta", [
    ("24h", 24, "h", timedelta(hours=24)), ("5d", 5, "d", timedelta(days=5)),
    ("90m", 90, "m", timedelta(minutes=90)), (" 7 d ", 7, "d", timedelta(days=7)),
])
def test_parse_duration(text, amount, unit, delta):
    d = parse_duration(text)
    assert d == Duration(amount, unit) and d.delta == delta and str(d) == f"{amount}{unit}"


@pytest.mark.parametrize("text,words", [
    ("-5d", "negative"), ("0h", "zero"), ("5 days", "cannot read"), ("1.5h", "cannot read"),
    ("24", "cannot read"), ("", "cannot read"), ("2w", "cannot read"), ("__import__('os')", "cannot read"),
])
def test_bad_durations(text, words):
    with pytest.raises(ValueError, match=words):
        parse_duration(text)


@pytest.mark.parametrize("value,words", [("-5d", "negative"), ("0h", "zero"), ("soon", "cannot read")])
def test_bad_duration_in_file(tmp_path, value, words):
    text = edit("sla: 48h", f"sla: {value}")
    line, field, message = only(check(tmp_path, text))
    assert (line, field) == (line_of(text, f"sla: {value}"), "statuses[1].sla") and words in message


def test_bad_duration_in_ladder(tmp_path):
    text = edit("sla: 48h", "sla: {remind: 5d, escalate: 0d}")
    assert only(check(tmp_path, text))[:2] == (line_of(text, "escalate: 0d"), "statuses[1].sla.escalate")


def test_ladder_order_and_unknown_step(tmp_path):
    text = edit("sla: 48h", "sla: {remind: 7d, escalate: 5d}")
    line, field, message = only(check(tmp_path, text))
    assert (line, field) == (line_of(text, "remind: 7d"), "statuses[1].sla")
    assert "later than remind" in message
    text = edit("sla: 48h", "sla:\n      remind: 1d\n      escalte: 2d")
    line, field, message = only(check(tmp_path, text))
    assert (line, field) == (line_of(text, "escalte"), "statuses[1].sla.escalte") and "'escalate'" in message


# -- one error kind at a time, exact line and path ----------------------------------------------

def test_base_is_valid(tmp_path):
    assert check(tmp_path, BASE) == []


def test_yaml_syntax_error_has_its_line(tmp_path):
    text = edit("  - {from: MQL, to: Won}", "  - {from: MQL, to: Won")
    line, field, message = only(check(tmp_path, text))
    assert message.startswith("YAML syntax error") and field == ""
    assert line in (line_of(text, "to: Won"), line_of(text, "to: Won") + 1)


def test_unknown_key_suggests_the_right_one(tmp_path):
    won = "owner: sales\n    final: true\n  - name: Lost"
    text = edit(won, won.replace("owner", "ownr"))
    line, field, message = only(check(tmp_path, text))
    assert (line, field) == (line_of(text, "ownr"), "statuses[2].ownr")
    assert message == "unknown key 'ownr' (did you mean 'owner'?)"
    text = edit("transitions:", "transitons:")
    problems = check(tmp_path, text)
    message = "unknown key 'transitons' (did you mean 'transitions'?)"
    assert (line_of(text, "transitons"), "transitons", message) in problems


def test_unknown_status_in_transition(tmp_path):
    text = edit("{from: Lost, to: MQL, reopen: true}", "{from: Lost, to: MQLL, reopen: true}")
    line, field, message = only(check(tmp_path, text))
    assert (line, field) == (line_of(text, "to: MQLL"), "transitions[3].to")
    assert message == "unknown status 'MQLL' (did you mean 'MQL'?)"


def test_duplicate_status(tmp_path):
    text = edit("  - name: Lost", "  - name: Won")
    message = "duplicate status 'Won' (first at statuses[2])"
    assert (line_of(text, "name: Won", 1), "statuses[3].name", message) in check(tmp_path, text)


def test_duplicate_yaml_key(tmp_path):
    text = edit("    sla: 48h\n", "    sla: 48h\n    sla: 12h\n")
    line, field, message = only(check(tmp_path, text))
    assert (line, field) == (line_of(text, "sla: 12h"), "statuses[1].sla")
    assert message == f"duplicate key 'sla' (first at line {line_of(text, 'sla: 48h')})"


def test_manager_not_in_team(tmp_path):
    text = edit("    manager: boss@acme.example\n    calendar", "    manager: bos@acme.example\n    calendar")
    assert only(check(tmp_path, text)) == (line_of(text, "bos@"), "team[1].manager",
                                           "manager 'bos@acme.example' is not in the team")


def test_manager_loop_and_self(tmp_path):
    text = edit("  - email: boss@acme.example\n    role: sales",
                "  - email: boss@acme.example\n    role: sales\n    manager: mo@acme.example")
    _, field, message = only(check(tmp_path, text))
    assert field.endswith(".manager") and "loops" in message
    text = edit("    manager: boss@acme.example\n    calendar", "    manager: ann@acme.example\n    calendar")
    assert only(check(tmp_path, text))[1:] == ("team[1].manager", "a person cannot be their own manager")


def test_person_role_not_declared(tmp_path):
    text = edit("    role: marketing\n", "    role: marketting\n")
    problems = check(tmp_path, text)
    message = "unknown role 'marketting' (did you mean 'marketing'?)"
    assert (line_of(text, "marketting"), "team[2].role", message) in problems
    # and now nobody holds marketing, which owns two statuses
    unheld = [p[1] for p in problems if "no one in the team" in p[2]]
    assert unheld == ["statuses[0].owner", "statuses[1].owner"]


def test_owner_role_not_declared(tmp_path):
    text = edit("roles: [marketing, sales]", "roles: [marketing, sales, delivery]")
    lost = "owner: sales\n    final: true\n    required"
    text = edit(lost, lost.replace("sales", "delivery"), text)
    assert only(check(tmp_path, text)) == (line_of(text, "owner: delivery"), "statuses[3].owner",
                                           "no one in the team has role 'delivery'")
    text = edit(lost, lost.replace("sales", "legal"))
    assert only(check(tmp_path, text))[:2] == (line_of(text, "owner: legal"), "statuses[3].owner")


def test_unknown_calendar(tmp_path):
    text = edit("calendar: dach", "calendar: dash")
    assert only(check(tmp_path, text)) == (line_of(text, "calendar: dash"), "team[1].calendar",
                                           "unknown calendar 'dash' (did you mean 'dach'?)")
    text = BASE + "default_calendar: uk\n"
    assert only(check(tmp_path, text))[:2] == (line_of(text, "default_calendar"), "default_calendar")


@pytest.mark.parametrize("snippet,field,words", [
    ("country: XX", "calendars.dach.country", "unknown country 'XX'"),
    ("country: DE\n    subdivision: QQ", "calendars.dach.subdivision", "unknown subdivision 'QQ' of DE"),
    ("country: DE\n    working_hours: 17:00-09:00", "calendars.dach.working_hours", "closing time"),
    ("country: DE\n    working_hours: 9-5", "calendars.dach.working_hours", "HH:MM-HH:MM"),
    ("country: DE\n    working_hours: 25:00-26:00", "calendars.dach.working_hours", "invalid working hours"),
    ("country: DE\n    working_days: [mon, funday]", "calendars.dach.working_days", "'funday'"),
    ("country: DE\n    timezone: Europe/Munich", "calendars.dach.timezone", "unknown time zone"),
])
def test_calendar_errors(tmp_path, snippet, field, words):
    text = BASE.replace("    timezone: Europe/Berlin\n", "") if "timezone" in snippet else BASE
    text = edit("country: DE", snippet, text)
    line, got_field, message = only(check(tmp_path, text))
    assert (line, got_field) == (line_of(text, snippet.splitlines()[-1].strip()), field) and words in message


def test_required_fields_must_be_lead_fields(tmp_path):
    text = edit("required: [segment]", "required: [segment, industry]")
    line, field, message = only(check(tmp_path, text))
    assert (line, field) == (line_of(text, "industry"), "statuses[1].required[1]")
    assert "'industry' is not a lead field" in message
    assert check(tmp_path, edit("custom_fields: [segment]", "custom_fields: [segment, industry]", text)) == []
    text = edit("requires: [loss_reason]", "requires: [loss_reasn]")
    assert only(check(tmp_path, text))[:2] == (line_of(text, "loss_reasn"), "transitions[2].requires[0]")
    text = edit("email|phone", "email | phne")
    message = "'phne' is not a lead field (did you mean 'phone'?); declare custom fields under custom_fields"
    assert only(check(tmp_path, text))[1:] == ("statuses[0].required[1]", message)


def test_unreachable_status_is_a_warning(tmp_path):
    text = edit("  - {from: MQL, to: Won}\n", "")
    problems = check(tmp_path, text)
    assert only(problems) == (line_of(text, "name: Won"), "statuses[2].name",
                              "warning: status 'Won' cannot be reached from 'Lead'")
    path = tmp_path / "process.yaml"
    assert load_process(path).status("Won").final  # a warning does not stop loading
    assert all(is_warning(p) for p in validate_process(path))


def test_final_and_reopen(tmp_path):
    text = edit("{from: Lost, to: MQL, reopen: true}", "{from: Lost, to: MQL}")
    assert only(check(tmp_path, text)) == (line_of(text, "from: Lost"), "transitions[3]",
                                           "'Lost' is final: a move out of it needs reopen: true")
    text = edit("{from: MQL, to: Won}", "{from: MQL, to: Won, reopen: true}")
    assert only(check(tmp_path, text))[:2] == (line_of(text, "to: Won, reopen"), "transitions[1].reopen")


def test_business_hours_need_a_calendar(tmp_path):
    text = edit("    sla: 48h\n", "    sla: 48h\n    business_hours: true\n", BASE.split("calendars:")[0])
    text = text.replace("    calendar: dach\n", "")
    assert only(check(tmp_path, text))[:2] == (line_of(text, "business_hours"), "statuses[1].business_hours")


def test_norway_stays_a_country(tmp_path):
    text = edit("    role: marketing\n", "    role: marketing\n    territories: [NO, de, ON]\n")
    assert check(tmp_path, text) == []
    assert load_process(tmp_path / "process.yaml").person("mo@acme.example").territories == ("NO", "DE", "ON")


def test_yaml_merge_keys_alias_loops_and_empty_sections(tmp_path):
    text = edit("  dach:\n    timezone: Europe/Berlin\n", "  dach: &cet\n    timezone: Europe/Berlin\n")
    text += "  uk:\n    <<: *cet\n    country: GB\n    timezone: Europe/London\nrules:\n  # none yet\n"
    assert check(tmp_path, text) == []
    process = load_process(tmp_path / "process.yaml")
    assert process.calendar("uk").country == "GB" and process.calendar("uk").timezone == "Europe/London"
    assert process.rules == {}
    line, field, message = only(check(tmp_path, "a: &x\n  b: *x\n"))
    assert (line, field) == (1, "") and "alias refers to itself" in message


def test_not_a_mapping_empty_and_missing(tmp_path):
    assert only(check(tmp_path, "- just\n- a list\n"))[0] == 1
    assert only(check(tmp_path, ""))[1:] == ("statuses", "missing required key 'statuses'")
    problems = validate_process(tmp_path / "nope.yaml")
    assert len(problems) == 1 and "cannot read" in problems[0].message


# -- many problems at once -------------------------------------------------------------------

def test_every_problem_at_once_in_line_order(tmp_path):
    text = BASE
    for old, new in [("sla: 24h", "sla: 24"), ("to: Won}", "to: Wonn}"), ("role: marketing\n", "role: mkt\n"),
                     ("country: DE", "country: DX"),
                     ("owner: marketing\n    sla: 48h", "ownr: marketing\n    sla: 48h")]:
        text = edit(old, new, text)
    problems = check(tmp_path, text)
    assert [p[:2] for p in problems] == [
        (line_of(text, "owner: marketing"), "statuses[0].owner"),  # mo was the only marketer
        (line_of(text, "sla: 24"), "statuses[0].sla"),
        (line_of(text, "ownr"), "statuses[1].ownr"),
        (line_of(text, "name: Won"), "statuses[2].name"),  # warning: now unreachable
        (line_of(text, "Wonn"), "transitions[1].to"),
        (line_of(text, "role: mkt"), "team[2].role"),
        (line_of(text, "country: DX"), "calendars.dach.country"),
    ]
    with pytest.raises(ConfigError) as caught:
        load_process(tmp_path / "process.yaml")
    assert len(caught.value.problems) == len(problems) - 1  # errors only
    assert f"process.yaml:{line_of(text, 'to: Wonn')}: transitions[1].to: unknown status" in str(caught.value)


def test_process_built_in_python_is_checked_too():
    with pytest.raises(ValidationError, match="unknown status 'Nowhere'"):
        Process.model_validate({"roles": ["a"], "statuses": [{"name": "Lead", "owner": "a"}],
                                "transitions": [{"from": "Lead", "to": "Nowhere"}]})


def test_process_is_frozen():
    p = default_process()
    with pytest.raises(ValidationError):
        p.roles = ()
    assert isinstance(p.transitions[0], Transition)
    with pytest.raises(KeyError):
        p.status("Stalled")
