"""The hub config: connections and their connector settings, interpolation, secrets, exact lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, field_validator

from hub.config import ConnectionConfig, HubConfig, load_config, validate_config, validate_files
from hub.connector import Connector, ConnectorSettings
from hub.errors import ConfigError
from hub.process import Duration, default_process, is_warning

TOKEN = "pat-na1-s3cr3t-t0ken"


class DemoSettings(ConnectorSettings):
    token: SecretStr
    unique_property: str = "leadhub_id"

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        # deliberately careless: quotes the secret, to prove the hub masks it anyway
        if len(value.get_secret_value()) < 12:
            raise ValueError(f"token {value.get_secret_value()} is too short")
        return value


class DemoConnector(Connector):
    name = "demo"
    settings_model = DemoSettings


class OtherConnector(Connector):
    name = "other"


CONNECTORS = {"demo": DemoConnector, "other": OtherConnector}

BASE = """\
database: sqlite:///leadhub.db
connections:
  marketing:
    connector: demo
    role: marketing
    sync_every: 10m
    base_url: https://api.example.test
    token: ${DEMO_TOKEN}
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith(("LEADHUB_", "DEMO_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DEMO_TOKEN", TOKEN)


def line_of(text: str, snippet: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if snippet in line)


def write(tmp_path: Path, text: str, name: str = "leadhub.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def check(tmp_path: Path, text: str) -> list[tuple[int | None, str, str]]:
    return [(p.line, p.field, p.message) for p in validate_config(write(tmp_path, text), CONNECTORS)]


def edit(old: str, new: str, text: str = BASE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def only(problems):
    assert len(problems) == 1, problems
    return problems[0]


def test_load_a_valid_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(write(tmp_path, BASE), CONNECTORS)
    conn = config.connections["marketing"]
    assert isinstance(conn, ConnectionConfig) and isinstance(conn.settings, DemoSettings)
    assert conn.settings.token.get_secret_value() == TOKEN
    assert conn.settings.unique_property == "leadhub_id" and conn.settings.base_url == "https://api.example.test"
    assert (conn.direction, conn.enabled, conn.statuses) == ("both", True, None)
    assert conn.sync_every == Duration(10, "m")
    assert conn.reads and conn.writes
    assert config.database == "sqlite:///leadhub.db" and config.process is None
    assert config.load_process() is default_process()
    assert not (tmp_path / "leadhub.db").exists()  # loading touches no database


def test_defaults_and_empty_file(tmp_path):
    config = load_config(write(tmp_path, ""), CONNECTORS)
    assert config.database == "sqlite:///leadhub.db" and config.connections == {}
    assert load_config(write(tmp_path, "connections:\n  # none yet\n"), CONNECTORS).connections == {}
    text = BASE.replace("    sync_every: 10m\n", "")
    conn = load_config(write(tmp_path, text), CONNECTORS).connections["marketing"]
    assert conn.sync_every == Duration(5, "m")


def test_interpolation(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMO_URL", "https://sandbox.test")
    monkeypatch.setenv("DEMO_EMPTY", "")
    text = edit("base_url: https://api.example.test", "base_url: ${DEMO_URL}/v3")
    text = edit("role: marketing", "role: ${DEMO_ROLE:-mkt}-${DEMO_EMPTY:-x}-$${LITERAL}", text)
    conn = load_config(write(tmp_path, text), CONNECTORS).connections["marketing"]
    assert conn.settings.base_url == "https://sandbox.test/v3"
    assert conn.role == "mkt-x-${LITERAL}"


def test_unset_variable_is_a_problem_at_its_line(tmp_path, monkeypatch):
    monkeypatch.delenv("DEMO_TOKEN")
    problems = check(tmp_path, BASE)
    assert problems[0] == (line_of(BASE, "token:"), "connections.marketing.token",
                           "${DEMO_TOKEN} is not set in the environment or the secrets file")
    text = edit("role: marketing", "role: ${ bad name }")
    assert (line_of(text, "role:"), "connections.marketing.role",
            "cannot read ${ bad name }: write ${NAME} or ${NAME:-default}") in check(tmp_path, text)


def test_two_unset_variables_in_one_value(tmp_path):
    text = edit("role: marketing", "role: ${DEMO_A}-${DEMO_B}")
    assert [p[2] for p in check(tmp_path, text)] == [
        "${DEMO_A} is not set in the environment or the secrets file",
        "${DEMO_B} is not set in the environment or the secrets file",
    ]


def test_secrets_file(tmp_path, monkeypatch):
    monkeypatch.delenv("DEMO_TOKEN")
    (tmp_path / "secrets.env").write_text(f"# secrets\nexport DEMO_TOKEN='{TOKEN}'\nDEMO_URL = https://s.test\n")
    text = "secrets_file: secrets.env\n" + edit("https://api.example.test", "${DEMO_URL}")
    conn = load_config(write(tmp_path, text), CONNECTORS).connections["marketing"]
    assert conn.settings.token.get_secret_value() == TOKEN and conn.settings.base_url == "https://s.test"
    monkeypatch.setenv("DEMO_URL", "https://env.test")  # the environment comes first
    assert load_config(write(tmp_path, text), CONNECTORS).connections["marketing"].settings.base_url \
        == "https://env.test"


def test_bad_and_missing_secrets_file(tmp_path):
    (tmp_path / "secrets.env").write_text(f"OK=1\n{TOKEN} no equals sign\n")
    problems = validate_config(write(tmp_path, "secrets_file: secrets.env\n" + BASE), CONNECTORS)
    assert [(p.file, p.line, p.message) for p in problems] == [(str(tmp_path / "secrets.env"), 2,
                                                                "expected KEY=value")]
    problems = validate_config(write(tmp_path, "secrets_file: gone.env\n" + BASE), CONNECTORS)
    assert len(problems) == 1 and "cannot read the secrets file" in problems[0].message


def test_secrets_never_in_messages_or_repr(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMO_TOKEN", "x9k2p")  # the connector's validator quotes it
    (tmp_path / "secrets.env").write_text(f"PGPASS={TOKEN}\n")
    text = "secrets_file: secrets.env\n" + edit("sqlite:///leadhub.db", "postgresql://lh:${PGPASS}@db/lh")
    problems = validate_config(write(tmp_path, text), CONNECTORS)
    assert only([(p.field, p.message) for p in problems]) == ("connections.marketing.token",
                                                             "token ********** is too short")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), CONNECTORS)
    assert "x9k2p" not in str(caught.value)
    monkeypatch.setenv("DEMO_TOKEN", TOKEN)
    config = load_config(write(tmp_path, text), CONNECTORS)
    assert config.database == f"postgresql://lh:{TOKEN}@db/lh"
    assert TOKEN not in repr(config) and TOKEN not in str(config) and "lh:**********@db" in repr(config)
    assert TOKEN not in repr(config.connections["marketing"])


def test_unknown_connector_lists_the_known_ones(tmp_path):
    text = edit("connector: demo", "connector: hubspt")
    assert only(check(tmp_path, text)) == (line_of(text, "hubspt"), "connections.marketing.connector",
                                           "unknown connector 'hubspt'; known: demo, other")


def test_connector_settings_errors_at_their_lines(tmp_path):
    text = edit("    token:", "    timeout: soon\n    unique_propery: x\n    sync_evry: 1m\n    token:")
    problems = check(tmp_path, text)
    assert problems == [
        (line_of(text, "timeout"), "connections.marketing.timeout",
         "Input should be a valid number, unable to parse string as a number"),
        (line_of(text, "unique_propery"), "connections.marketing.unique_propery",
         "unknown key 'unique_propery' (did you mean 'unique_property'?)"),
        (line_of(text, "sync_evry"), "connections.marketing.sync_evry",
         "unknown key 'sync_evry' (did you mean 'sync_every'?)"),
    ]
    text = edit("    base_url: https://api.example.test\n", "")
    assert only(check(tmp_path, text)) == (line_of(text, "marketing:"), "connections.marketing.base_url",
                                           "missing required key 'base_url'")


@pytest.mark.parametrize("old,new,field,words", [
    ("database: sqlite:///leadhub.db", "databse: sqlite:///x.db", "databse", "did you mean 'database'?"),
    ("sqlite:///leadhub.db", "mysql://u:pw@h/db", "database", "sqlite:/// or postgresql://"),
    ("sync_every: 10m", "sync_every: 10 minutes", "connections.marketing.sync_every", "cannot read"),
    ("role: marketing", "direction: sideways", "connections.marketing.direction", "'write' or 'both'"),
    ("  marketing:", "  Marketing Team:", "connections.Marketing Team", "lower-case letters"),
    ("    connector: demo\n", "", "connections.marketing.connector", "missing required key 'connector'"),
])
def test_hub_level_errors(tmp_path, old, new, field, words):
    text = edit(old, new)
    line, got_field, message = only(check(tmp_path, text))
    assert got_field == field and words in message and "pw" not in message
    assert line == line_of(text, new.strip().splitlines()[0]) if new else line == line_of(text, "marketing:")


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("LEADHUB_DATABASE", "postgresql://db/leadhub")
    monkeypatch.setenv("LEADHUB_CONNECTIONS__MARKETING__SYNC_EVERY", "1m")
    monkeypatch.setenv("LEADHUB_CONNECTIONS__MARKETING__TIMEOUT", "5")
    config = load_config(write(tmp_path, BASE), CONNECTORS)
    conn = config.connections["marketing"]
    assert config.database == "postgresql://db/leadhub"
    assert conn.sync_every == Duration(1, "m") and conn.settings.timeout == 5.0
    monkeypatch.setenv("LEADHUB_CONNECTIONS__MARKETING__TIMEOUT", "soon")
    problem = only(validate_config(write(tmp_path, BASE), CONNECTORS))
    assert (problem.file, problem.line) == ("<environment>", None)
    assert problem.field == "connections.marketing.timeout"
    assert problem.message.endswith("(set by LEADHUB_CONNECTIONS__MARKETING__TIMEOUT)")


def test_process_path_and_connection_statuses(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "process.yaml").write_text(
        "roles: [a]\nstatuses:\n  - {name: New, owner: a}\n  - {name: Done, owner: a, final: true}\n"
        "transitions:\n  - {from: New, to: Done}\n")
    text = "process: process.yaml\n" + edit("role: marketing", "statuses: [New, Dne]")
    path = write(tmp_path / "conf", text)
    assert only(validate_config(path, CONNECTORS)).field == "connections.marketing.statuses[1]"
    config = load_config(write(tmp_path / "conf", text.replace("Dne", "Done")), CONNECTORS)
    assert config.process == tmp_path / "conf" / "process.yaml"
    assert config.load_process().status_names == ("New", "Done")
    text = "process: missing.yaml\n" + BASE
    assert only(check(tmp_path, text))[:2] == (1, "process")


def test_relative_config_path_gives_absolute_paths(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "secrets.env").write_text(f"DEMO_TOKEN={TOKEN}\n")
    (tmp_path / "conf" / "process.yaml").write_text(
        (Path(__file__).resolve().parents[2] / "hub" / "default_process.yaml").read_text())
    write(tmp_path / "conf", "process: process.yaml\nsecrets_file: secrets.env\n" + BASE)
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("conf/leadhub.yaml"), CONNECTORS)
    assert config.process == tmp_path / "conf" / "process.yaml" and config.process.is_absolute()
    assert config.secrets_file == tmp_path / "conf" / "secrets.env"


def test_several_problems_at_once(tmp_path, monkeypatch):
    monkeypatch.delenv("DEMO_TOKEN")
    text = BASE + "  sales:\n    connector: nope\n"
    text += "  delivery:\n    connector: other\n    base_url: 42x\n    board: 7\n"
    text = edit("sync_every: 10m", "sync_every: -1m", text)
    problems = check(tmp_path, text)
    assert [p[:2] for p in problems] == [
        (line_of(text, "sync_every"), "connections.marketing.sync_every"),
        (line_of(text, "token"), "connections.marketing.token"),
        (line_of(text, "nope"), "connections.sales.connector"),
        (line_of(text, "board"), "connections.delivery.board"),
    ]
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), CONNECTORS)
    assert len(caught.value.problems) == 4


def test_validate_files(tmp_path):
    process_text = (Path(__file__).resolve().parents[2] / "hub" / "default_process.yaml").read_text()
    write(tmp_path, process_text.replace("{from: SQL, to: Opportunity}", "{from: SQL, to: Oportunity}"),
          "process.yaml")
    config = write(tmp_path, "process: process.yaml\n" + edit("connector: demo", "connector: demoo"))
    problems = validate_files(config, None, CONNECTORS)
    assert [(Path(p.file).name, p.field) for p in problems] == [
        ("leadhub.yaml", "connections.marketing.connector"),
        # warnings: Opportunity, Negotiation and Closed Won are now unreachable
        ("process.yaml", "statuses[4].name"), ("process.yaml", "statuses[5].name"),
        ("process.yaml", "statuses[6].name"), ("process.yaml", "transitions[10].to"),
    ]
    assert validate_files(config, tmp_path / "process.yaml", CONNECTORS) == problems  # not reported twice
    assert validate_files(None, tmp_path / "process.yaml", CONNECTORS) == problems[1:]
    assert validate_files(None, None, CONNECTORS) == []


def test_validate_files_checks_the_rules_settings_when_given_the_rules(tmp_path):
    from rules import builtin_rules

    rules = {cls.name: cls for cls in builtin_rules()}
    text = (Path(__file__).resolve().parents[2] / "hub" / "default_process.yaml").read_text()
    path = write(tmp_path, text.replace("requalify_to: SAL ", "requalify_to: SALL"), "process.yaml")
    config = write(tmp_path, "process: process.yaml\n" + BASE)
    (problem,) = validate_files(config, None, CONNECTORS, rules)
    assert (problem.line, problem.field, problem.message) == (
        line_of(path.read_text(), "SALL"), "rules.stale.requalify_to", "unknown status 'SALL'")
    assert validate_files(None, path, CONNECTORS) == []  # without the rules: the process file alone
    # a process file that is itself broken is not built into rules (its own problems come first)
    write(tmp_path, path.read_text().replace("to: Opportunity}", "to: Oportunity}", 1), "process.yaml")
    assert [p.field for p in validate_files(None, path, CONNECTORS, rules) if not is_warning(p)] == [
        "transitions[10].to"]


def test_yaml_error_in_config(tmp_path):
    text = BASE + "  sales: [unclosed\n"
    line, _, message = only(check(tmp_path, text))
    assert message.startswith("YAML syntax error") and line >= line_of(text, "unclosed")


def test_hub_config_from_environment_alone(monkeypatch):
    monkeypatch.setenv("LEADHUB_DATABASE", "postgresql://db/x")
    assert HubConfig().database == "postgresql://db/x"


def test_conflict_rules_are_read_and_checked_against_the_connections(tmp_path, monkeypatch):
    from hub.conflicts import FieldRule

    good = BASE + 'conflict_rules:\n  "*": most_recent\n  phone: prefer marketing\n  owner: source marketing\n'
    config = load_config(write(tmp_path, good), CONNECTORS)
    assert config.conflict_rules["phone"] == FieldRule(rule="prefer", source="marketing")
    assert str(config.conflict_rules["owner"]) == "source marketing"
    text = BASE + "conflict_rules:\n  phone: prefer sales\n  status: most_recent\n  title: newest wins\n"
    problems = check(tmp_path, text)
    assert (line_of(text, "phone: prefer sales"), "conflict_rules.phone") == problems[0][:2]
    assert "unknown connection 'sales'" in problems[0][2]
    assert any(f == "conflict_rules.status" and "transitions" in m for _, f, m in problems)
    assert any(f.startswith("conflict_rules.title") and "cannot read rule 'newest wins'" in m
               for _, f, m in problems)
