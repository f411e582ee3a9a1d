"""Helpers shared by the CLI modules: ``key=value`` option parsing and sub-command groups."""
from __future__ import annotations

import typer

from relook.errors import ConfigError


def parse_kv(pairs: list[str], flag: str) -> dict:
    """``["k=v", ...]`` -> ``{k: v}`` with values parsed as YAML scalars (numbers, booleans, null, lists)."""
    import yaml

    out = {}
    for item in pairs:
        if "=" not in item:
            raise ConfigError(f"{flag} expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def subgroup(app: typer.Typer, name: str, help: str) -> typer.Typer:
    """The sub-command group ``name`` of ``app``, created when missing (several modules add to one group)."""
    for g in app.registered_groups:
        if g.name == name:
            return g.typer_instance
    sub = typer.Typer(no_args_is_help=True, help=help)
    app.add_typer(sub, name=name)
    return sub
