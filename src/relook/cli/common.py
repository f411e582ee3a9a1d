"""Helpers shared by the CLI modules: ``key=value`` option parsing, sub-command groups, and the options and
config handling of the config-driven stages (``--config``, ``--set``, ``--quiet``)."""

from __future__ import annotations

from pathlib import Path

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


# -- config-driven stages ----------------------------------------------------------------------------
CONFIG_OPT = typer.Option([], "--config", "-c", help="experiment YAML file(s); later ones override earlier")
SET_OPT = typer.Option([], "--set", "-s", help="override a config value: key.sub=value (YAML value)")
SHARD_OPT = typer.Option(
    None,
    "--shard",
    help="i/N: do only shard i of N (every N-th of the sorted ids) into a part; `relook merge` joins the parts",
)
QUIET_OPT = typer.Option(
    False, "--quiet", "-q", help="no progress bars and no 'wrote ...' lines (tables and errors still print)"
)


def say(quiet: bool, text: str) -> None:
    """Echo ``text`` unless the stage runs with ``--quiet``."""
    if not quiet:
        typer.echo(text)


def resolve_conf(
    config: list[Path],
    overrides: list[str],
    writes: bool = True,
    lock: bool | None = None,
    shared: bool = False,
    announce: str | None = None,
    labels: list[str] | None = None,
) -> dict:
    """The resolved config; for a command that ``writes``, its output folder is created (one-line error when
    it cannot be, before any work). ``config.yaml`` is saved by ``save_conf`` once the command succeeded, so a
    failed command leaves the previous one in place. The output folder is locked for this process
    (``relook.runlock``; ``lock`` defaults to ``writes``): a second relook writing there is refused.
    ``shared``: a shared lock instead (``--shard i/N``: the shards write part files of their own side by side,
    while a whole-run command there is still refused).
    ``announce``: the stage's name; its ``plan_line`` (what runs, on which data, with which weights, the
    rerankers in ``labels``) is printed first, from the config checked but for the parts' options, whose
    check imports every extractor and reranker (torch, timm, kornia: the seconds the line comes before)."""
    from relook.experiment import load_config, plan_line
    from relook.io import ensure_dir
    from relook.runlock import lock_run

    if announce:
        typer.echo(plan_line(load_config(config, overrides, check_options=False), announce, labels))
    conf = load_config(config, overrides)
    if writes:
        ensure_dir(conf["out"], "out")
    if writes if lock is None else lock:
        lock_run(conf["out"], exclusive=not shared)
    return conf


def save_conf(conf: dict) -> None:
    from relook.experiment import save_config

    save_config(conf, conf["out"])


# -- training commands (relook train rrt|global|dtop) -------------------------------------------------------
TRAIN_OUT_OPT = typer.Option(None, "--out", "-o", help="output folder (config key out)")
DEVICE_OPT = typer.Option(None, help="torch device (config key train.device)")
SEED_OPT = typer.Option(None, min=0, help="seed of initialisation and sampling (config key train.seed)")


def train_config(part: str, config: list[Path], overrides: list[str], **flags) -> dict:
    """The resolved config of ``relook train <part>`` (``relook.train.config``; ``flags``: dotted key -> the
    value of a per-run flag, None when not given), its output folder created (one-line error when it cannot
    be, before any work)."""
    from relook.io import ensure_dir
    from relook.train.config import load_train_config

    conf = load_train_config(part, config, overrides, flags)
    ensure_dir(conf["out"], "out")
    return conf


def training_dataset(conf: dict):
    """The dataset of a training config's ``dataset`` section: ``{name, root, ...reader options}``."""
    from relook.datasets.base import load_dataset

    options = {k: v for k, v in conf["dataset"].items() if k not in ("name", "root")}
    return load_dataset(conf["dataset"]["name"], Path(conf["dataset"]["root"]), **options)
