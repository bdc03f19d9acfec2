"""Daemon configuration: argument > environment (``HJEPA_WATCH_*``) > config file (YAML) > default.

Lists in the environment are comma-separated (``HJEPA_WATCH_LOGDIRS=/runs/a,/runs/b``)
or JSON. Every bad value is one clear line naming the setting and where it came from.
"""

from __future__ import annotations

import fnmatch
import json
import os
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

ENV_PREFIX = "HJEPA_WATCH_"


class ConfigError(Exception):
    """A configuration value is wrong; the message is one line for people."""


def _split(v: Any) -> Any:
    if isinstance(v, str):
        v = v.strip()
        if v.startswith("["):
            return json.loads(v)
        return [p.strip() for p in v.split(",") if p.strip()]
    return v


class RouteMatch(BaseModel):
    """What a route applies to; every given key must match."""

    model_config = ConfigDict(extra="forbid")

    severity: list[str] | None = None
    rule: str | None = None
    run: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("severity", mode="before")
    @classmethod
    def _severity(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    def matches(self, t: dict) -> bool:
        """Does a transition (DESIGN.md §4 object) match?"""
        if self.severity is not None and t["severity"] not in self.severity:
            return False
        if self.rule is not None and not fnmatch.fnmatchcase(t["rule"], self.rule):
            return False
        if self.run is not None and not fnmatch.fnmatchcase(t["run"], self.run):
            return False
        return all(t["labels"].get(k) == v for k, v in self.labels.items())


class Route(BaseModel):
    """Where matching alerts go (the first matching route wins, as in Alertmanager)."""

    model_config = ConfigDict(extra="forbid")

    match: RouteMatch = Field(default_factory=RouteMatch)
    channels: list[str] = Field(default_factory=list)
    send_resolved: bool | None = None


class Settings(BaseSettings):
    """Everything the daemon can be told.

    Attributes:
        logdirs: directories to watch.
        rules: rule files or directories (empty: the default pack).
        notify: apprise URLs to send notifications to.
        state: the state database (default: under the user's state directory).
        poll_interval: seconds between full polls (inotify fills the gaps).
        corrupt_grace: seconds a corrupt region is re-checked before it is skipped.
        dashboard: show the live dashboard (None: when stdout is a terminal).
        json_output: print transitions as JSON lines.
        inotify: wake on inotify events (False: polling only, e.g. for NFS).
        channels: named notification channels (name -> apprise URL).
        apprise_config: an apprise config file; each of its URLs is a channel (named by its tag).
        routes: severity/label routing to channels; unmatched alerts go to every channel.
        group_wait: seconds to gather alerts of one run into one message ("30s" works too).
        repeat_interval: seconds between reminders for an alert that stays firing.
        send_resolved: also notify when alerts resolve (routes may say otherwise).
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    logdirs: Annotated[list[str], NoDecode] = Field(default_factory=list)
    rules: Annotated[list[str], NoDecode] = Field(default_factory=list)
    notify: Annotated[list[str], NoDecode] = Field(default_factory=list)
    state: str | None = None
    poll_interval: float = Field(default=2.0, gt=0)
    corrupt_grace: float = Field(default=30.0, ge=0)
    dashboard: bool | None = None
    json_output: bool = False
    inotify: bool = True
    channels: dict[str, str] = Field(default_factory=dict)
    apprise_config: str | None = None
    routes: list[Route] = Field(default_factory=list)
    group_wait: float = Field(default=10.0, ge=0)
    repeat_interval: float = Field(default=4 * 3600.0, gt=0)
    send_resolved: bool = False

    @field_validator("group_wait", "repeat_interval", mode="before")
    @classmethod
    def _durations(cls, v: Any) -> Any:
        if isinstance(v, str) and not v.replace(".", "", 1).isdigit():
            from hjepa_watch.rules.schema import parse_duration

            return parse_duration(v)
        return v

    @field_validator("logdirs", "rules", "notify", mode="before")
    @classmethod
    def _lists(cls, v: Any) -> Any:
        return _split(v)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if _CONFIG_FILE:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=_CONFIG_FILE))
        return tuple(sources)


_CONFIG_FILE: str | None = None


def load_settings(arguments: dict[str, Any], config_file: str | None = None) -> Settings:
    """Merge the sources.

    Args:
        arguments: values given on the command line (None entries are ignored).
        config_file: YAML file (else ``$HJEPA_WATCH_CONFIG`` if set).

    Raises:
        ConfigError: a bad value, an unknown key, or an unreadable config file.
    """
    global _CONFIG_FILE
    path = config_file or os.environ.get(ENV_PREFIX + "CONFIG")
    if path and not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    _CONFIG_FILE = path
    given = {k: v for k, v in arguments.items() if v is not None and v != []}
    try:
        return Settings(**given)
    except ValidationError as e:
        err = e.errors()[0]
        name = ".".join(str(x) for x in err["loc"]) or "?"
        source = _source_of(name.split(".")[0], given, path)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown setting"
        raise ConfigError(f"bad setting {name!r} ({source}): {msg}") from None
    except Exception as e:  # YAML errors, JSON lists in the environment
        raise ConfigError(f"bad configuration: {str(e).splitlines()[0]}") from None
    finally:
        _CONFIG_FILE = None


def _source_of(name: str, given: dict, path: str | None) -> str:
    if name in given:
        return "command line"
    if ENV_PREFIX + name.upper() in os.environ:
        return f"environment {ENV_PREFIX + name.upper()}"
    return f"config file {path}" if path else "default"
