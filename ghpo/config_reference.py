"""Reference text generated from the pydantic models, so help, defaults and docs cannot drift from code.

What it is for: `ghpo run --help` (one line per config section), `ghpo run --print-config` (the whole
default config as TOML, each key with its description: valid input for `--config`), `ghpo serve SERVICE
--help` (every GHPO_<SERVICE>_* variable with its type, bounds, default and description, and the shared
GHPO_ALGORITHM_* block), and the generated part of docs/configuration.md (`python -m ghpo.config_reference
--write docs/configuration.md`; a test fails when the file is not current).

What it deliberately does not do: validate anything (the models do), or hold descriptions of its own
beyond one line for the two sections whose models belong to other layers ([ghpo], [optim]).
"""

from __future__ import annotations

import argparse
import importlib
import json
import textwrap
import typing
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ghpo.local.config import RunConfig
from ghpo.local.stack import toml_value
from ghpo.shared.algorithm.config import GHPOConfig, allowed_range
from ghpo.shared.algorithm.environment import env_name as algorithm_env_name

SERVICES = ("verifier", "broker", "inference", "rollout")
SECTION_HELP = {
    "ghpo": "The GHPO algorithm (hint ladder, cold start, loss, clipping), given to broker, rollout and "
    "trainer alike as GHPO_ALGORITHM_*.",
    "optim": "AdamW and the learning-rate schedule (warm-up, then constant, cosine or linear).",
}
BEGIN = "<!-- BEGIN GENERATED: python -m ghpo.config_reference --write docs/configuration.md -->"
END = "<!-- END GENERATED -->"


def section_help(name: str) -> str:
    model = RunConfig.model_fields[name].annotation
    doc = (getattr(model, "__doc__", None) or "").strip().splitlines()
    return SECTION_HELP.get(name) or (doc[0] if doc else "")


def _default(field: FieldInfo) -> Any:
    if field.default_factory is not None:
        return field.default_factory()  # type: ignore[call-arg]
    return None if field.default is PydanticUndefined else field.default


def type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is Literal:
        return " | ".join(json.dumps(a) for a in typing.get_args(annotation))
    args = typing.get_args(annotation)
    if args and type(None) in args:
        return " | ".join(type_name(a) for a in args if a is not type(None)) + " | none"
    if typing.get_origin(annotation) is typing.Union or type(annotation).__name__ == "UnionType":
        return " | ".join(type_name(a) for a in args)
    if args:
        return f"{typing.get_origin(annotation).__name__}[{', '.join(type_name(a) for a in args)}]"
    if getattr(annotation, "__name__", "") == "SecretStr":
        return "str (secret)"
    return getattr(annotation, "__name__", str(annotation))


def bounds(field: FieldInfo) -> str:
    """The field's declared bounds in words ("1..65535", "> 0.0, <= 1.0", "pattern ..."), or ""."""
    lower = upper = None
    ge = le = None
    pattern = ""
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            ge, lower = item.ge, f">= {item.ge}"
        elif isinstance(item, annotated_types.Gt):
            lower = f"> {item.gt}"
        elif isinstance(item, annotated_types.Le):
            le, upper = item.le, f"<= {item.le}"
        elif isinstance(item, annotated_types.Lt):
            upper = f"< {item.lt}"
        elif getattr(item, "pattern", None):
            pattern = f"pattern {item.pattern}"
    numeric = [f"{ge}..{le}"] if ge is not None and le is not None else [b for b in (lower, upper) if b]
    return ", ".join([*numeric, pattern] if pattern else numeric)


def _shown(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, BaseModel):
        return "(section)"
    return toml_value(list(value) if isinstance(value, tuple) else value)


# --- ghpo run


def run_sections_help() -> str:
    width = max(len(name) for name in RunConfig.model_fields) + 2
    lines = ["config file sections (TOML; every key is optional, a section is laid over the defaults):"]
    lines += [f"  [{name}]".ljust(width + 4) + section_help(name) for name in RunConfig.model_fields]
    lines += ["", "all keys with their defaults and meaning: ghpo run --print-config (docs/configuration.md)"]
    return "\n".join(lines)


def subsections(section: type[BaseModel]) -> list[tuple[str, type[BaseModel]]]:
    """(key, model) of a section's keys that are tables of their own and unset by default ([model.lora])."""
    found = []
    for key, field in section.model_fields.items():
        for arg in typing.get_args(field.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                found.append((key, arg))
    return found


def default_config_toml() -> str:
    """The full default run config as TOML, each key commented; feeding it back gives the same config."""
    config = RunConfig()
    lines = [
        "# The default `ghpo run` configuration (ghpo run --print-config): every section and key.",
        "# Feed a copy back with `ghpo run --config FILE`; keys left out keep these defaults.",
    ]
    for name in RunConfig.model_fields:
        section = getattr(config, name)
        lines += ["", f"[{name}]", f"# {section_help(name)}"]
        for key, field in type(section).model_fields.items():
            value = getattr(section, key)
            note = f"  # {field.description}" if field.description else ""
            if value is None:
                lines.append(f"# {key} = (unset){note}")
            else:
                lines.append(f"{key} = {_shown(value)}{note}")
        for key, table in subsections(type(section)):  # absent by default: shown commented out
            lines += ["", f"# [{name}.{key}]  # {table.__doc__.strip().splitlines()[0]}"]
            for sub, field in table.model_fields.items():
                lines.append(f"# {sub} = {_shown(_default(field))}  # {field.description}")
    return "\n".join(lines) + "\n"


# --- ghpo serve


def settings_class(service: str) -> type[BaseModel]:
    return importlib.import_module(f"ghpo.services.{service}.settings").Settings


def _setting_rows(service: str) -> list[tuple[str, str, str, str, str]]:
    """(variable, type, bounds, default, description) of a service's settings, GHPO_ALGORITHM_* last."""
    from ghpo.shared.settings import env_name

    cls = settings_class(service)
    rows = []
    for key, field in cls.model_fields.items():
        if key == "ghpo":
            continue
        secret = key == "token" or "token" in key
        default = "unset" if secret and _default(field) is None else _shown(_default(field))
        rows.append(
            (env_name(cls, key), type_name(field.annotation), bounds(field), default, field.description or "")
        )
    if "ghpo" in cls.model_fields:
        rows += algorithm_rows()
    return rows


def algorithm_rows() -> list[tuple[str, str, str, str, str]]:
    return [
        (
            algorithm_env_name(key),
            type_name(field.annotation),
            allowed_range(key) if key == "hint_ladder" else bounds(field),
            _shown(_default(field)),
            field.description or "",
        )
        for key, field in GHPOConfig.model_fields.items()
    ]


def settings_help(service: str) -> str:
    rows = _setting_rows(service)
    lines = ["settings (environment variables; values are JSON or bare strings):"]
    for var, kind, limits, default, description in rows:
        detail = ", ".join(part for part in (kind, limits, f"default {default}") if part)
        lines += [
            f"  {var}",
            textwrap.fill(
                f"{detail}. {description}".strip(), 110, initial_indent=" " * 6, subsequent_indent=" " * 6
            ),
        ]
    if any(var.startswith("GHPO_ALGORITHM_") for var, *_ in rows):
        lines += [
            "",
            "The GHPO_ALGORITHM_* variables are shared: broker, rollout server and trainer read the same.",
        ]
    return "\n".join(lines)


# --- docs/configuration.md


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", "\\n").replace("<", "&lt;")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


def configuration_markdown() -> str:
    """The generated part of docs/configuration.md: every run config key and every service variable."""
    config = RunConfig()
    lines = ["## `ghpo run` config file, every section and key", ""]
    for name in RunConfig.model_fields:
        section = getattr(config, name)
        lines += [f"### `[{name}]`", "", section_help(name), ""]
        rows = []
        for key, field in type(section).model_fields.items():
            limits = allowed_range(key) if (name, key) == ("ghpo", "hint_ladder") else bounds(field)
            rows.append(
                (
                    f"`{key}`",
                    type_name(field.annotation),
                    limits,
                    f"`{_shown(getattr(section, key))}`",
                    field.description or "",
                )
            )
        lines += [*_table(rows, ("key", "type", "allowed", "default", "meaning")), ""]
        for key, table in subsections(type(section)):
            rows = [
                (
                    f"`{sub}`",
                    type_name(f.annotation),
                    bounds(f),
                    f"`{_shown(_default(f))}`",
                    f.description or "",
                )
                for sub, f in table.model_fields.items()
            ]
            lines += [f"#### `[{name}.{key}]`", "", table.__doc__.strip(), ""]
            lines += [*_table(rows, ("key", "type", "allowed", "default", "meaning")), ""]
    lines += ["## Service settings (`ghpo serve SERVICE`, compose, Kubernetes)", ""]
    for service in SERVICES:
        rows = [
            (f"`{var}`", kind, limits, f"`{default}`", desc)
            for var, kind, limits, default, desc in _setting_rows(service)
        ]
        rows = [row for row in rows if not row[0].startswith("`GHPO_ALGORITHM_")]
        lines += [
            f"### {service}",
            "",
            *_table(rows, ("variable", "type", "allowed", "default", "meaning")),
            "",
        ]
    lines += ["### GHPO_ALGORITHM_* (broker, rollout server and trainer)", ""]
    rows = [
        (f"`{var}`", kind, limits, f"`{default}`", desc)
        for var, kind, limits, default, desc in algorithm_rows()
    ]
    lines += _table(rows, ("variable", "type", "allowed", "default", "meaning"))
    return "\n".join(lines) + "\n"


def with_generated(document: str) -> str:
    """`document` with the text between its BEGIN and END markers replaced by `configuration_markdown()`."""
    head, found, rest = document.partition(BEGIN)
    _, found_end, tail = rest.partition(END)
    if not (found and found_end):
        raise ValueError(f"the document has no {BEGIN} ... {END} block")
    return f"{head}{BEGIN}\n\n{configuration_markdown()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate the generated block of a configuration doc.")
    parser.add_argument("--write", type=Path, required=True, help="e.g. docs/configuration.md")
    args = parser.parse_args(argv)
    args.write.write_text(with_generated(args.write.read_text()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
