"""MkDocs hook: the configuration reference, generated from the pydantic models.

A page that contains the line ``<!-- config-reference -->`` gets it replaced by one
section per TOML table: every key with its type, default, constraints and description,
the rules checked across keys (the messages of the models' validators), and a complete
file holding every default. It walks ``KioskConfig.model_fields`` recursively, so it
does not care which module a section class lives in; it imports ``kiosk.config`` only
(pydantic and platformdirs: no models, no Qt).
"""

from __future__ import annotations

import ast
import inspect
import json
import logging
import sys
import textwrap
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

MARKER = "<!-- config-reference -->"
log = logging.getLogger("mkdocs.hooks.config_reference")


def on_config(config: Any) -> Any:
    """Import the package of the tree being documented, not an installed copy."""
    root = str(Path(config.config_file_path).resolve().parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER not in markdown:
        return markdown
    from kiosk.config import KioskConfig

    return markdown.replace(MARKER, render(KioskConfig))


# ---------------------------------------------------------------------------- rendering


def render(root: type[BaseModel]) -> str:
    out: list[str] = []
    for path, model in sections(root):
        out += section(path, model)
    out += example(root)
    return "\n".join(out) + "\n"


def sections(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """Every nested model below ``model``, depth first, as (dotted TOML path, class)."""
    found = []
    for name, field in model.model_fields.items():
        sub = submodel(field.annotation)
        if sub is not None:
            path = (*prefix, name)
            found.append((".".join(path), sub))
            found += sections(sub, path)
    return found


def submodel(annotation: Any) -> type[BaseModel] | None:
    """The section class of a field: ``Section``, or ``Section | None`` (an optional
    table, absent by default, such as ``[site]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        found = [submodel(a) for a in typing.get_args(annotation) if a is not type(None)]
        if len(found) == 1:
            return found[0]
    return None


def optional_table(model: type[BaseModel]) -> bool:
    """A table whose defaults do not make a section (it has required keys)."""
    return any(field.is_required() for field in model.model_fields.values())


def section(path: str, model: type[BaseModel]) -> list[str]:
    out = [f"## `[{path}]`", ""]
    doc = inspect.getdoc(model)
    if doc and model.__doc__:  # the class's own docstring, not an inherited one
        out += [text(doc), ""]
    out += ["| key | type | default | allowed | description |", "|---|---|---|---|---|"]
    plain = 0
    for name, field in model.model_fields.items():
        if submodel(field.annotation) is not None:
            continue
        plain += 1
        cells = [
            f"`{name}`",
            type_name(field.annotation),
            default_cell(field),
            allowed(field),
            text(field.description or ""),
        ]
        out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    if not plain:
        out = [*out[:2], f"Only the tables below `[{path}]`.", ""]
    out.append("")
    rules = validator_messages(model)
    if rules:
        out += [
            "Checked across keys when the file is loaded; a file that breaks a rule "
            "is refused with this message:",
            "",
        ]
        out += [f"- {text(rule)}" for rule in rules]
        out.append("")
    return out


def example(root: type[BaseModel]) -> list[str]:
    """A complete file with every default; checked to load back into the same config."""
    lines: list[str] = []
    for path, model in sections(root):
        keys = [(n, f) for n, f in model.model_fields.items() if submodel(f.annotation) is None]
        if not keys:
            continue
        if optional_table(model):  # absent by default: shown commented out
            lines.append(f"# [{path}]  (absent by default)")
            for name, field in keys:
                value = "(required)" if field.is_required() else default_cell(field).strip("`")
                lines.append(f"# {name} = {value}")
            lines.append("")
            continue
        lines.append(f"[{path}]")
        defaults = model()
        for name, _field in keys:
            value = getattr(defaults, name)
            if value is None:
                lines.append(f"# {name} = (unset by default)")
            else:
                lines.append(f"{name} = {toml_value(value)}")
        lines.append("")
    body = "\n".join(lines).rstrip() + "\n"
    try:
        if root.model_validate(tomllib.loads(body)) != root():
            log.warning("config reference: the generated example does not equal the defaults")
    except Exception as error:  # a formatter bug must not pass --strict silently
        log.warning(f"config reference: the generated example does not load: {error}")
    return [
        "## Every key at its default",
        "",
        "Generated like the tables above, and checked to load back into the default "
        "configuration. Keys that are unset by default are commented out.",
        "",
        "```toml",
        body.rstrip(),
        "```",
        "",
    ]


# ------------------------------------------------------------------------------ pieces


def type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        names = [type_name(a) for a in args if a is not type(None)]
        name = " or ".join(names)
        return f"{name} (optional)" if type(None) in args else name
    if origin is typing.Literal:
        kinds = {type(a) for a in args}
        return type_name(kinds.pop()) if len(kinds) == 1 else "value"
    if origin in (list, tuple, set, frozenset):
        items = [a for a in args if a is not Ellipsis]
        return f"array of {type_name(items[0])}" if len(set(map(repr, items))) == 1 else "array"
    return {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        Path: "path",
    }.get(annotation, getattr(annotation, "__name__", str(annotation)))


def allowed(field: Any) -> str:
    parts = []
    choices = literal_choices(field.annotation)
    if choices:
        parts.append("one of " + ", ".join(f"`{json.dumps(c)}`" for c in choices))
    for item in field.metadata:
        for attr, template in (
            ("ge", "≥ {}"),
            ("gt", "> {}"),
            ("le", "≤ {}"),
            ("lt", "< {}"),
            ("multiple_of", "a multiple of {}"),
            ("min_length", "length ≥ {}"),
            ("max_length", "length ≤ {}"),
            ("pattern", "matches `{}`"),
        ):
            value = getattr(item, attr, None)
            if value is not None:
                parts.append(template.format(value))
    return ", ".join(parts)


def literal_choices(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    choices: list[Any] = []
    for arg in typing.get_args(annotation):
        choices += literal_choices(arg)
    return choices


def default_cell(field: Any) -> str:
    if field.is_required():
        return "*required*"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "*unset*"
    return f"`{toml_value(value)}`"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, list | tuple | set | frozenset):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def validator_messages(model: type[BaseModel]) -> list[str]:
    """The messages of the ValueErrors a model's own validators raise, read from their
    source: the rules that no single field's constraint expresses."""
    decorators = model.__pydantic_decorators__
    messages: list[str] = []
    for kind in ("field_validators", "model_validators"):
        for decorator in getattr(decorators, kind).values():
            if decorator.cls_ref.rsplit(":", 1)[0] != f"{model.__module__}.{model.__qualname__}":
                continue  # inherited: documented where it is defined
            fields = getattr(decorator.info, "fields", ())
            lead = ", ".join(f"`{f}`" for f in fields) + ": " if fields else ""
            messages += [f"{lead}“{m}”" for m in raised_messages(decorator.func)]
    return messages


def raised_messages(func: Any) -> list[str]:
    func = getattr(func, "__func__", func)
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError):
        return []
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Raise)
            and isinstance(node.exc, ast.Call)
            and getattr(node.exc.func, "id", "") == "ValueError"
            and node.exc.args
        ):
            message = literal_text(node.exc.args[0])
            if message:
                found.append(message)
    return found


def literal_text(node: ast.AST) -> str:
    """A string literal, or an f-string with each interpolated value shown as ``…``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            else:
                parts.append("\0")
        return "".join(parts).replace("\0", "…")
    return ""


def text(value: str) -> str:
    """Markdown-safe prose: ``<`` and ``>`` escaped outside code spans."""
    pieces = value.split("`")
    for i in range(0, len(pieces), 2):
        pieces[i] = pieces[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(pieces).replace("\n", " ")
