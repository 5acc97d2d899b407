"""The custom rule in examples/ plugs in through the same hook as the built-ins, and runs."""

from __future__ import annotations

import importlib.util
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hub import plugins
from hub.engine import Engine
from hub.errors import ConfigError
from hub.model import Lead
from tests.rules.harness import EXAMPLE, JONAS, add, tasks

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def custom_rule():
    spec = importlib.util.spec_from_file_location("custom_rule", EXAMPLES / "custom_rule.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["custom_rule"] = module  # as an installed plugin would be: importable by name
    spec.loader.exec_module(module)
    return module


def registry_with_example() -> plugins.Registry:
    pm, infos = plugins._build()
    pm.register(custom_rule(), name="handover")
    return plugins.Registry(pm, infos)


def test_the_example_rule_registers_through_the_hook_and_creates_one_kickoff_task(db):
    reg = registry_with_example()
    assert reg.rules["handover"].__module__ == "custom_rule" and "sla" in reg.rules
    process = EXAMPLE.model_copy(update={"rules": {"handover": {"only_if": "lead.value >= 10000.0"}}})
    big = Lead(last_name="A", company="Nordwind", status="Closed Won", status_since=T0, owner=JONAS,
               value=25000.0, currency="EUR", probability=1.0)
    small = Lead(last_name="B", status="Closed Won", status_since=T0, owner=JONAS, value=900.0)
    add(db, big, small)
    engine = Engine.build(db, process, {"handover": reg.rules["handover"]})
    dry = engine.run(T0, dry_run=True)
    assert [(a.rule, a.lead_id) for a in dry.actions] == [("handover", big.id)] and tasks(db) == []
    engine.run(T0)
    (task,) = tasks(db)
    assert (task.kind, task.assignee, task.title) == ("handover", "max.huber@brightfield.example",
                                                     "Kickoff with Nordwind (25,000 EUR)")
    assert task.due_at == T0 + timedelta(days=2)
    assert engine.run(T0 + timedelta(hours=1), all_leads=True).applied == 0


def test_the_example_rules_config_is_validated_like_a_built_in():
    reg = registry_with_example()
    process = EXAMPLE.model_copy(update={"rules": {"handover": {"assignee_role": "delivery", "whithin": "1d"}}})
    with pytest.raises(ConfigError) as exc:
        Engine.build(None, process, reg.rules)
    text = str(exc.value)
    assert "rules.handover.whithin: unknown key 'whithin' (did you mean 'within'?)" in text
