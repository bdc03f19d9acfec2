"""Loading rule files: safe YAML with line numbers, pydantic validation, one error per line.

Every error is ``file:line: message``; the line is that of the YAML node pydantic's
error location points at (or its nearest parent), and the message names the rule.
All errors of all files are collected, never only the first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hjepa_watch.rules.schema import Rule, RuleFile

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class RuleError:
    """One problem in a rule file."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"


class RuleLoadError(Exception):
    """Rule files that do not load; ``errors`` lists every problem."""

    def __init__(self, errors: list[RuleError]) -> None:
        super().__init__("\n".join(map(str, errors)))
        self.errors = errors


@dataclass(frozen=True)
class LoadedRule:
    """A validated rule and where it came from."""

    rule: Rule
    file: str
    line: int


class PositionedYaml:
    """YAML -> Python objects, remembering the line of every node by its path."""

    def __init__(self, text: str, file: str) -> None:
        self.file = file
        self.lines: dict[tuple, int] = {}
        self.errors: list[RuleError] = []
        self._loader = yaml.SafeLoader(text)

    def load(self) -> Any:
        try:
            node = self._loader.get_single_node()
            return None if node is None else self._build(node, ())
        finally:
            self._loader.dispose()

    def _build(self, node: yaml.Node, path: tuple) -> Any:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            self._loader.flatten_mapping(node)
            out: dict = {}
            for k, v in node.value:
                key = self._loader.construct_object(k, deep=True)
                if not isinstance(key, str | int | float | bool) or key is None:
                    self.errors.append(RuleError(self.file, k.start_mark.line + 1, f"unsupported key {key!r}"))
                    continue
                if key in out:
                    self.errors.append(RuleError(self.file, k.start_mark.line + 1, f"duplicate key {key!r}"))
                    continue
                out[key] = self._build(v, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self._build(v, (*path, i)) for i, v in enumerate(node.value)]
        return self._loader.construct_object(node, deep=True)

    def line_of(self, loc: tuple) -> int:
        for n in range(len(loc), -1, -1):
            if loc[:n] in self.lines:
                return self.lines[loc[:n]]
        return 1


def yaml_error(path: str, e: yaml.YAMLError) -> RuleError:
    """A YAML syntax error as one line, at the line where the parser noticed it."""
    mark = getattr(e, "problem_mark", None)
    line = mark.line + 1 if mark is not None else 1
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return RuleError(path, line, f"YAML syntax error: {problem}")


def expand_paths(paths: list[str]) -> list[str]:
    """Files as given; directories as their ``*.yaml`` / ``*.yml`` files (not recursive), sorted."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            out += sorted(str(f) for f in Path(p).iterdir() if f.suffix in YAML_SUFFIXES and f.is_file())
        else:
            out.append(p)
    return out


def error_message(err: dict, data: Any) -> tuple[tuple, str]:
    loc = tuple(err["loc"])
    field = ".".join(str(x) for x in loc[2:]) if len(loc) > 2 else ""
    field = field.replace("for_", "for")
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err["type"] == "extra_forbidden":
        msg = f"unknown key {loc[-1]!r}"
        field = ".".join(str(x) for x in loc[2:-1])
    elif err["type"] == "missing":
        msg = f"missing required key {loc[-1]!r}"
        field = ""
    elif err["type"] == "literal_error":
        msg = f"{msg.replace('Input should be', 'must be')}, not {err.get('input')!r}"
    if field and msg.startswith(field.split(".")[0] + " "):
        field = ""  # the message names the field itself
    prefix = ""
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rules = data.get("rules") if isinstance(data, dict) else None
        name = None
        if isinstance(rules, list) and loc[1] < len(rules) and isinstance(rules[loc[1]], dict):
            name = rules[loc[1]].get("name")
        prefix = f"rule {name!r}: " if isinstance(name, str) else f"rule #{loc[1] + 1}: "
    return loc, f"{prefix}{field + ': ' if field else ''}{msg}"


def load_file(path: str, _including: frozenset[str] = frozenset()) -> tuple[list[LoadedRule], list[RuleError]]:
    """Load one rule file (and what it includes); return its rules and every error found."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        return [], [RuleError(path, 0, f"cannot read: {e.strerror}")]
    except UnicodeDecodeError:
        return [], [RuleError(path, 0, "not UTF-8 text")]
    pos = PositionedYaml(text, path)
    try:
        data = pos.load()
    except yaml.YAMLError as e:
        return [], [yaml_error(path, e)]
    errors = list(pos.errors)
    if not isinstance(data, dict):
        return [], [*errors, RuleError(path, 1, "a rule file is a mapping with a 'rules' list")]
    try:
        parsed = RuleFile.model_validate(data)
    except ValidationError as e:
        for err in e.errors():
            loc, msg = error_message(err, data)
            errors.append(RuleError(path, pos.line_of(loc), msg))
        return [], errors
    own = [LoadedRule(r, path, pos.line_of(("rules", i))) for i, r in enumerate(parsed.rules)]
    if not parsed.include:
        if parsed.disable:
            errors.append(RuleError(path, pos.line_of(("disable",)), "disable: needs an include to disable from"))
        return own, errors
    included: list[LoadedRule] = []
    stack = _including | {os.path.abspath(path)}
    for i, inc in enumerate(parsed.include):
        target = _resolve_include(inc, path)
        if os.path.abspath(target) in stack:
            errors.append(RuleError(path, pos.line_of(("include", i)), f"include: {inc!r} includes itself"))
            continue
        got, errs = load_file(target, stack)
        included += got
        errors += errs
    names = {r.rule.name for r in included}
    for i, name in enumerate(parsed.disable):
        if name not in names:
            errors.append(RuleError(path, pos.line_of(("disable", i)), f"disable: no included rule named {name!r}"))
    replaced = {r.rule.name for r in own}
    keep = [r for r in included if r.rule.name not in replaced and r.rule.name not in parsed.disable]
    return keep + own, errors


def _resolve_include(name: str, path: str) -> str:
    if name == "default":
        from hjepa_watch.rules.pack import default_pack

        return default_pack()
    return str(Path(path).parent / name)


def load_rules(paths: list[str]) -> list[LoadedRule]:
    """Load and validate rule files (and directories of them) as one set.

    ``default`` stands for the bundled pack.

    Raises:
        RuleLoadError: with every error of every file, including rule names used twice.
    """
    rules: list[LoadedRule] = []
    errors: list[RuleError] = []
    files = expand_paths(paths)
    if not files:
        raise RuleLoadError([RuleError(p, 0, "no rule files (*.yaml, *.yml) here") for p in paths])
    for f in files:
        if f == "default":
            from hjepa_watch.rules.pack import default_pack

            f = default_pack()
        if not os.path.exists(f):
            errors.append(RuleError(f, 0, "no such file"))
            continue
        got, errs = load_file(f)
        rules += got
        errors += errs
    seen: dict[str, LoadedRule] = {}
    for r in rules:
        first = seen.setdefault(r.rule.name, r)
        if first is not r:
            errors.append(
                RuleError(r.file, r.line, f"rule {r.rule.name!r}: duplicate name (first at {first.file}:{first.line})")
            )
    if errors:
        raise RuleLoadError(errors)
    return rules
