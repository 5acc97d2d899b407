"""The hub config (``leadhub.yaml``): database, process file, connections, in one typed tree.

::

    database: sqlite:///leadhub.db        # or postgresql://…
    process: process.yaml                 # omitted: the built-in default process
    secrets_file: secrets.env             # optional, KEY=value lines
    conflict_rules:                       # optional, see hub.conflicts
      "*": most_recent
      phone: prefer sales
    connections:
      marketing:
        connector: hubspot                # hub-level keys: connector, role, direction,
        role: marketing                   #   sync_every, enabled, statuses (the canonical
        statuses: [Lead, MQL, Nurture]    #   statuses handed off into this CRM)
        token: ${HUBSPOT_TOKEN}           # every other key: the connector's settings_model
        base_url: https://api.hubapi.com

``${VAR}`` and ``${VAR:-default}`` in string values come from the environment,
then from the secrets file (``:-`` also applies when the variable is empty);
``$${`` writes a literal ``${``. The secrets file is dotenv-style: ``KEY=value``
per line, ``#`` comments, optional ``export`` and quotes around the value.

Environment variables ``LEADHUB_<KEY>`` override the file, nested with ``__``:
``LEADHUB_DATABASE``, ``LEADHUB_CONNECTIONS__SALES__INSTANCE_URL``. Relative
``process`` and ``secrets_file`` paths are resolved from the config file's folder.

Loading reads files only: no network, no database. A secret (a value the
connector types as ``SecretStr``, anything from the secrets file, a database
password) never appears in a problem message or a repr.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretBytes,
    SecretStr,
    SerializeAsAny,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from hub.conflicts import FieldRule
from hub.connector import Connector, ConnectorSettings
from hub.errors import ConfigError, Problem
from hub.process import (
    DurationField,
    Process,
    default_process,
    is_warning,
    load_process,
    parse_duration,
    validate_process,
)
from hub.yamlsource import Loc, YamlSource, format_loc, hint, problems_from_error, read_yaml

__all__ = [
    "HUB_KEYS",
    "ConnectionConfig",
    "HubConfig",
    "load_config",
    "validate_config",
    "validate_files",
]

#: Connection keys the hub reads itself; all others belong to the connector's settings model.
HUB_KEYS = frozenset({"connector", "role", "direction", "sync_every", "enabled", "statuses"})
_MASK = "**********"
_PLACEHOLDER = re.compile(r"(\$?)\$\{([^}]*)\}")
_VARIABLE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
_DSN_PASSWORD = re.compile(r"(://[^:/@]*:)([^@]*)@")
_ENV_MERGED: ContextVar[bool] = ContextVar("leadhub_env_merged", default=False)


def _connection_name(name: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
        raise ValueError("a connection name is lower-case letters, digits, '-' and '_', starting with a "
                         "letter (it is part of LEADHUB_CONNECTIONS__<NAME>__… variables)")
    return name


ConnectionName = Annotated[str, AfterValidator(_connection_name)]


class ConnectionConfig(BaseModel):
    """One configured connection: the hub's keys plus the connector's validated ``settings``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    connector: str
    role: str | None = None  # free text: marketing, sales, delivery…
    direction: Literal["read", "write", "both"] = "both"
    sync_every: Annotated[DurationField, NoDecode] = Field(default_factory=lambda: parse_duration("5m"))
    enabled: bool = True
    statuses: tuple[str, ...] | None = None  # canonical statuses that flow into this connection
    settings: SerializeAsAny[ConnectorSettings]  # an instance of the connector's settings_model

    @property
    def reads(self) -> bool:
        return self.direction in ("read", "both")

    @property
    def writes(self) -> bool:
        return self.direction in ("write", "both")


class HubConfig(BaseSettings):
    """The whole hub config. Build it with :func:`load_config`.

    ``HubConfig()`` reads only ``LEADHUB_*`` variables and cannot build connections
    (their settings need the connector registry that :func:`load_config` takes).
    """

    model_config = SettingsConfigDict(env_prefix="LEADHUB_", env_nested_delimiter="__", extra="forbid",
                                      frozen=True)

    database: str = "sqlite:///leadhub.db"
    process: Path | None = None  # None: the built-in default process
    connections: dict[ConnectionName, ConnectionConfig] = Field(default_factory=dict)
    #: field -> rule (``most_recent``, ``prefer <connection>``, ``source <connection>``); ``"*"``: the rest
    conflict_rules: dict[str, FieldRule] = Field(default_factory=dict)
    secrets_file: Path | None = None

    @field_validator("connections", mode="before")
    @classmethod
    def _no_connections(cls, value: Any) -> Any:
        return {} if value is None else value  # every connection commented out

    @field_validator("database")
    @classmethod
    def _database(cls, url: str) -> str:
        # the message must not quote the URL: it may carry a password
        if not re.match(r"(sqlite|postgresql)(\+\w+)?://", url):
            raise ValueError("database must be a sqlite:/// or postgresql:// URL")
        return url

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_config merges the environment itself, to tell which values came from it;
        # pydantic runs __init__ (so the sources) even from model_validate
        return (init_settings,) if _ENV_MERGED.get() else (init_settings, env_settings)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for key, value in super().__repr_args__():
            yield key, _DSN_PASSWORD.sub(rf"\1{_MASK}@", value) if key == "database" else value

    def load_process(self) -> Process:
        """The process this hub runs: the configured file, or the built-in default."""
        return load_process(self.process) if self.process else default_process()


class _Source(YamlSource):
    """The config file merged with ``LEADHUB_*`` variables: a value from the environment is reported there."""

    __slots__ = ("env",)

    def __init__(self, source: YamlSource, env: dict[Loc, str]):
        super().__init__(source.file, source.data, source.lines)
        self.env = env

    def problem(self, loc: Loc, message: str) -> Problem:
        for n in range(len(loc), 0, -1):
            if loc[:n] in self.env:
                variable = self.env[loc[:n]]
                return Problem("<environment>", None, format_loc(loc), f"{message} (set by {variable})")
        return super().problem(loc, message)


def _read_secrets(path: Path) -> tuple[dict[str, str], list[Problem]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        return {}, [Problem(str(path), None, "", f"cannot read the secrets file: {reason}")]
    values: dict[str, str] = {}
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            # never echo the line: it holds a secret
            problems.append(Problem(str(path), number, "", "expected KEY=value"))
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values, problems


def _interpolate(data: Any, loc: Loc, secrets: Mapping[str, str], source: YamlSource,
                 problems: list[Problem], used: set[str]) -> Any:
    """``data`` with every ``${VAR}`` replaced; values taken from ``secrets`` are added to ``used``."""
    if isinstance(data, dict):
        return {k: _interpolate(v, loc + (k,), secrets, source, problems, used) for k, v in data.items()}
    if isinstance(data, list):
        return [_interpolate(v, loc + (i,), secrets, source, problems, used) for i, v in enumerate(data)]
    if not isinstance(data, str):
        return data

    def replace(match: re.Match[str]) -> str:
        if match[1]:
            return match[0][1:]
        var = _VARIABLE.fullmatch(match[2])
        if var is None:
            problems.append(source.problem(loc, f"cannot read ${{{match[2]}}}: "
                                                "write ${NAME} or ${NAME:-default}"))
            return ""
        name, default = var[1], var[2]
        for from_secrets, found in ((False, os.environ.get(name)), (True, secrets.get(name))):
            if found is not None and (found or default is None):
                if from_secrets:
                    used.add(found)
                return found
        if default is not None:
            return default
        problems.append(source.problem(loc, f"${{{name}}} is not set in the environment or the secrets file"))
        return ""

    return _PLACEHOLDER.sub(replace, data)


def _flatten(data: Any, loc: Loc = ()) -> Iterator[Loc]:
    if isinstance(data, dict) and data:
        for key, value in data.items():
            yield from _flatten(value, loc + (key,))
    else:
        yield loc


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in over.items()}}
    return over


def _secret_fields(model: type[BaseModel]) -> set[str]:
    return {name for name, f in model.model_fields.items()
            if {SecretStr, SecretBytes} & {f.annotation, *get_args(f.annotation)}}


def _load(path: Path | str, connectors: Mapping[str, type[Connector]]
          ) -> tuple[HubConfig | None, list[Problem], dict[str, Any]]:
    """Config, every problem (secrets masked) and the merged data (for :func:`validate_files`)."""
    read, problems = read_yaml(path)
    if read is None:
        return None, problems, {}
    if not isinstance(read.data, dict | None):
        problems.append(read.problem((), "a hub config is a mapping: database, process, connections…"))
        return None, problems, {}
    env_data = EnvSettingsSource(HubConfig)()
    source = _Source(read, {loc: "LEADHUB_" + "__".join(map(str, loc)).upper() for loc in _flatten(env_data)})
    folder = Path(path).absolute().parent  # absolute: callers must not resolve these again
    raw = read.data or {}

    secrets: dict[str, str] = {}
    secrets_path = env_data.get("secrets_file") or raw.get("secrets_file")
    if isinstance(secrets_path, str) and secrets_path:
        secrets_path = _interpolate(secrets_path, ("secrets_file",), {}, source, problems, set())
        secrets, more = _read_secrets(folder / secrets_path)
        problems += more
    used: set[str] = set()
    before = len(problems)
    data = _merge(_interpolate(raw, (), secrets, source, problems, used), env_data)
    unset = set(problems[before:])
    for key in ("process", "secrets_file"):
        if isinstance(data.get(key), str) and data[key]:
            data[key] = str(folder / data[key])
    if isinstance(data.get("process"), str) and not Path(data["process"]).is_file():
        problems.append(source.problem(("process",), f"process file {data['process']} not found"))

    unresolved = _connector_settings(data, connectors, source, problems, used)
    config = None
    token = _ENV_MERGED.set(True)
    try:
        config = HubConfig.model_validate(data)
    except ValidationError as exc:
        problems += [p for p in problems_from_error(exc, source, model=HubConfig)
                     if not any(p.field == f"connections.{n}.settings" for n in unresolved)]
    finally:
        _ENV_MERGED.reset(token)
    problems += _check_statuses(data, source)
    problems += _check_conflict_rules(data, source)
    if isinstance(data.get("database"), str):
        used |= {m[2] for m in _DSN_PASSWORD.finditer(data["database"]) if m[2]}
    # a value whose variable is unset is empty: what its validation says about that is noise
    unset_fields = {p.field for p in unset}
    problems = [p for p in problems if p in unset or p.field not in unset_fields]
    problems = list(dict.fromkeys(_masked(problems, used)))  # secrets_file is interpolated twice
    return config, sorted(problems, key=lambda p: p.line or 0), data


def _connector_settings(data: dict[str, Any], connectors: Mapping[str, type[Connector]], source: YamlSource,
                        problems: list[Problem], secrets: set[str]) -> set[str]:
    """Replace each connection's non-hub keys by its validated ``settings``; the names that failed.

    Values of the settings' ``SecretStr`` fields are added to ``secrets``.
    """
    failed: set[str] = set()
    connections = data.get("connections")
    for name, conn in connections.items() if isinstance(connections, dict) else ():
        if not isinstance(conn, dict):
            continue
        loc: Loc = ("connections", name)
        extra = {k: v for k, v in conn.items() if k not in HUB_KEYS}
        connections[name] = {k: v for k, v in conn.items() if k in HUB_KEYS}
        kind = conn.get("connector")
        cls = connectors.get(kind) if isinstance(kind, str) else None
        if cls is None:
            failed.add(name)
            if isinstance(kind, str):
                known = ", ".join(sorted(connectors)) or "none registered"
                problems.append(source.problem(loc + ("connector",), f"unknown connector {kind!r}"
                                               f"{hint(kind, connectors, show=False)}; known: {known}"))
            continue
        secrets |= {str(extra[k]) for k in _secret_fields(cls.settings_model) if extra.get(k)}
        try:
            connections[name]["settings"] = cls.settings_model.model_validate(extra)
        except ValidationError as exc:
            failed.add(name)
            problems += problems_from_error(exc, source, prefix=loc, model=cls.settings_model,
                                           also_known=tuple(HUB_KEYS))
    return failed


def _check_statuses(data: dict[str, Any], source: YamlSource) -> list[Problem]:
    """Statuses a connection receives must exist in the process (skipped if the process is broken)."""
    process_path = data.get("process")
    try:
        process = load_process(process_path) if isinstance(process_path, str) else default_process()
    except ConfigError:
        return []
    names = process.status_names
    connections = data.get("connections") if isinstance(data.get("connections"), dict) else {}
    return [source.problem(("connections", name, "statuses", i), f"unknown status {s!r}{hint(s, names)}")
            for name, conn in connections.items() if isinstance(conn, dict)
            for i, s in enumerate(conn.get("statuses") or []) if isinstance(s, str) and s not in names]


def _check_conflict_rules(data: dict[str, Any], source: YamlSource) -> list[Problem]:
    """A rule names a configured connection, and ``status`` follows transitions, not a rule."""
    rules = data.get("conflict_rules")
    connections = data.get("connections") if isinstance(data.get("connections"), dict) else {}
    problems = []
    for name, rule in rules.items() if isinstance(rules, dict) else ():
        if name == "status":
            problems.append(source.problem(("conflict_rules", name), "status takes no conflict rule: it moves "
                                           "only along the process's transitions (illegal moves become conflicts)"))
            continue
        try:
            parsed = FieldRule.model_validate(rule)
        except ValidationError:
            continue  # reported by the model's own validation
        if parsed.source and parsed.source not in connections:
            problems.append(source.problem(("conflict_rules", name), f"unknown connection {parsed.source!r}"
                                           f"{hint(parsed.source, connections)}"))
    return problems


def _masked(problems: list[Problem], secrets: set[str]) -> list[Problem]:
    ordered = sorted((s for s in secrets if s), key=len, reverse=True)
    out = []
    for p in problems:
        message = p.message
        for secret in ordered:
            message = message.replace(secret, _MASK)
        out.append(Problem(p.file, p.line, p.field, message))
    return out


def validate_config(path: Path | str, connectors: Mapping[str, type[Connector]]) -> list[Problem]:
    """Every problem in the hub config at ``path`` (not in the process file it names)."""
    return _load(path, connectors)[1]


def load_config(path: Path | str, connectors: Mapping[str, type[Connector]]) -> HubConfig:
    """Read, interpolate and validate the hub config; ``ConfigError`` listing every problem."""
    config, problems, _ = _load(path, connectors)
    if problems or config is None:
        raise ConfigError(problems)
    return config


def validate_files(config: Path | None, process: Path | None, connectors: Mapping[str, type[Connector]],
                   rules: Mapping[str, type] | None = None) -> list[Problem]:
    """What ``leadhub validate`` reports: the config, the process file it names, and ``process``.

    With ``rules`` (the registered rule classes, name → class) each process file's ``rules:``
    section is checked too, by the engine's own :func:`hub.engine.rule_problems`: unknown rules,
    invalid settings, failed cross-checks, decision tables that cannot be read. Files only: no
    database, no network.
    """
    problems: list[Problem] = []
    processes: list[Path] = []
    if config is not None:
        _, more, data = _load(config, connectors)
        problems += more
        named = data.get("process")
        if isinstance(named, str) and Path(named).is_file():  # a missing one is already a config problem
            processes.append(Path(named))
    if process is not None:
        processes.append(Path(process))
    seen: set[Path] = set()
    for path in processes:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            found = validate_process(path)
            if rules is not None and not any(not is_warning(p) for p in found):
                found = sorted(found + _rule_problems(path, rules), key=lambda p: p.line or 0)
            problems += found
    return problems


def _rule_problems(path: Path, rules: Mapping[str, type]) -> list[Problem]:
    """Problems in a valid process file's ``rules:`` section, as an engine start would find them."""
    from hub.engine import rule_problems  # the engine pulls in the store's models: only when asked

    source, _ = read_yaml(path)
    if source is None:
        return []  # already reported by validate_process
    try:
        process = Process.model_validate(source.data)
    except ValidationError:
        return []  # likewise
    return rule_problems(process, rules, source=source)
