"""The command-line base every ``python -m rl_laof.<stage>`` command is built on.

Every command's parser is a :class:`CommandParser` (:func:`command_parser`): a bad flag is one line and exit
status 2. A stage command is three functions: ``build_parser()`` (:func:`stage_parser` with ``--task`` and
``--preset``, the stage's own flags, then :func:`add_run_flags`: ``--set``, ``--config``, ``--out``, ``--no-progress``),
``config_from_args(args)`` (:func:`stage_config`: the preset, then the config file, then the flags, then
``--set``) and ``main(argv)`` (config -> ``rl_laof.pipeline`` -> the stage's library -> :func:`print_summary`),
run by :func:`run`, which turns bad input into a one-line error. ``--set`` values are parsed by their config
field's type (:func:`parse_sets`). The parser and :func:`run` live in ``envs.cli`` (``envs``' own command,
``python -m envs.demo``, uses them without importing ``rl_laof``) and are taken from there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# the parser and runner every command shares, envs' own included (re-exported: rl_laof's commands take them here)
from envs.cli import CommandParser, Default, command_parser, run  # noqa: F401
from rl_laof.presets import from_preset


def given(args: argparse.Namespace, name: str) -> bool:
    """Whether the flag ``name`` (its dest) was typed on the command line rather than left at its
    :class:`Default`."""
    return getattr(args, name, None) is not None and name not in getattr(args, "defaulted", ())


def stage_parser(prog: str, doc: str | None, presets: dict[str, dict[str, Any]], preset_help: str,
                 task: bool = True) -> argparse.ArgumentParser:
    """A stage command's :func:`command_parser` with the flags every stage has (``--task`` where ``task``,
    ``--preset``)."""
    p = command_parser(prog, doc)
    if task:
        p.add_argument("--task", default=Default("cheetah-run"),
                       help="dm_control task, e.g. cheetah-run, walker-walk (a given --dataset's task must match)")
    p.add_argument("--preset", default="quick", choices=list(presets), help=preset_help)
    return p


def add_run_flags(p: argparse.ArgumentParser, out: str | None = None, config_cls: type | None = None,
                  set_example: str | None = None, config_help: str | None = None, progress: bool = True) -> None:
    """The flags a stage's run takes after its own: ``--set`` (fields of ``config_cls``), ``--config``
    (where ``config_help`` says what the file gives), ``--out`` (``out``: what it names by default) and
    ``--no-progress``."""
    if config_cls is not None:
        name = config_cls.__name__
        p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                       help=f"any other {name} field, e.g. --set {set_example} (repeatable)" if set_example
                       else f"any {name} field")
    if config_help is not None:
        p.add_argument("--config", type=Path, default=None, metavar="FILE", help=config_help)
    if out is not None:
        p.add_argument("--out", type=Path, default=None, help=out)
    if progress:
        p.add_argument("--no-progress", action="store_true", help="no progress bar")


def stage_config(cls, presets: dict[str, dict[str, Any]], preset: str, file: dict[str, Any] | None = None,
                 flags: dict[str, Any] | None = None, sets: Iterable[str] = ()):
    """A stage's config: the ``preset``, then ``file`` (a config file's section), then the command's ``flags``
    (None: not given), then the ``--set FIELD=VALUE`` items, each overriding the one before."""
    overrides: dict[str, Any] = parse_file_values(cls, file or {})
    overrides.update({k: v for k, v in (flags or {}).items() if v is not None})
    overrides.update(parse_sets(cls, list(sets)))
    return from_preset(cls, presets, preset, **overrides)


def print_summary(summary: dict[str, Any]) -> None:
    """A command's one-line JSON result on stdout (what a script reads)."""
    print(json.dumps(summary, default=str))


def parse_sets(cls, items: list[str]) -> dict[str, Any]:
    """``--set FIELD=VALUE`` items as config overrides for the dataclass ``cls``, each value parsed by its
    field's type (bool, int, float, str, optional, tuple / list, dict, a nested config): a value of the wrong
    type is refused with the field and the type it wants, before anything runs."""
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"--set {item!r}: use FIELD=VALUE with a {cls.__name__} field "
                             f"({', '.join(sorted(fields))})")
        try:
            out[key] = convert(value, hints[key])
        except ValueError as exc:
            raise ValueError(f"--set {item}: {key} wants {describe(hints[key])} ({exc})") from None
    return out


def parse_file_values(cls, values: dict[str, Any]) -> dict[str, Any]:
    """A config file section's values for the dataclass ``cls``, each checked and converted by its field's type
    exactly as ``--set`` does (a JSON value is read as the text ``--set`` would get): ``"num_envs": 2.5`` or
    ``true``, ``"learning_rate": "fast"`` are refused with the field and the type it wants."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for key, value in values.items():
        tp = hints.get(key)
        if tp is None:  # not a field: read_config_file refuses those, with the fields listed
            out[key] = value
            continue
        if value is None:  # null: not set (the preset's value), as an unset flag
            out[key] = None
            continue
        nested = [a for a in (typing.get_args(tp) or (tp,)) if dataclasses.is_dataclass(a) and hasattr(a, "parse")]
        try:
            if isinstance(value, dict) and nested:  # a nested config written out as its fields
                try:
                    out[key] = nested[0].parse(parse_file_values(nested[0], value))
                except TypeError as exc:
                    raise ValueError(str(exc)) from None
            elif isinstance(value, (dict, list)) and not _holds_json(tp):
                raise ValueError(f"got the JSON {type(value).__name__} {json.dumps(value)}")
            else:
                out[key] = convert(value if isinstance(value, str) else json.dumps(value), tp)
        except ValueError as exc:
            raise ValueError(f"--config: {cls.__name__}.{key} wants {describe(tp)} ({exc})") from None
    return out


def _holds_json(tp: Any) -> bool:
    """Whether a field of type ``tp`` takes a JSON list or object (a tuple, list, dict, nested config or Any)."""
    union = typing.get_origin(tp) in (typing.Union, types.UnionType)
    kinds = [a for a in (typing.get_args(tp) if union else (tp,)) if a is not type(None)]
    return any(a is Any or a in (dict, list, tuple) or typing.get_origin(a) in (tuple, list, dict)
               or dataclasses.is_dataclass(a) for a in kinds)


_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def describe(tp: Any) -> str:
    """A type annotation in words: "an integer", "none or a number", "a list of strings"..."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [describe(a) for a in args if a is not type(None)]
        return ("none or " if type(None) in args else "") + " or ".join(inner)
    if origin in (tuple, list):
        return f"a list of {_PLURAL.get(args[0], 'values') if args else 'values'}"
    if origin is dict or tp is dict:
        return 'a JSON object, e.g. {"key": 1}'
    if dataclasses.is_dataclass(tp):  # a nested config: how --set writes it (its SET_FORM), else by name
        return getattr(tp, "SET_FORM", "a name (see --help)")
    return _WORDS.get(tp, "a value")


_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_PLURAL = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}


def convert(value: str, tp: Any) -> Any:
    """``value`` (command-line text) as the type ``tp``; ValueError when it is not one."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and value.strip().lower() == "none":
            return None
        reason = None
        for a in args:
            if a is type(None):
                continue
            try:
                return convert(value, a)
            except ValueError as exc:
                if dataclasses.is_dataclass(a):  # a nested config's own reason says more than the value
                    reason = str(exc)
        raise ValueError(reason or f"got {value!r}")
    if tp is bool:
        if value.strip().lower() in _TRUE:
            return True
        if value.strip().lower() in _FALSE:
            return False
        raise ValueError(f"got {value!r}")
    if tp is int:
        try:
            x = float(value)  # 1e5 and 100000 alike; 1.5 is not an integer
        except ValueError:
            raise ValueError(f"got {value!r}") from None
        if not x.is_integer():
            raise ValueError(f"got {value!r}")
        return int(x)
    if tp is float:
        try:
            x = float(value)
        except ValueError:
            raise ValueError(f"got {value!r}") from None
        if not math.isfinite(x):
            raise ValueError(f"got {value!r}, not a finite number")
        return x
    if tp is str or tp is Any:
        return parse_value(value) if tp is Any else value
    if origin in (tuple, list):
        text = value.strip()
        if text.startswith("["):
            items = [i if isinstance(i, str) else json.dumps(i) for i in _json(value, list)]
        else:  # comma-separated
            items = [i.strip() for i in text.split(",") if i.strip()]
        elem = args[0] if args else Any
        converted = [convert(str(i), elem) for i in items]
        return tuple(converted) if origin is tuple else converted
    if origin is dict or tp is dict:
        return _json(value, dict)
    if dataclasses.is_dataclass(tp) and hasattr(tp, "parse"):  # e.g. distractors=laom
        try:
            return tp.parse(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None
    return parse_value(value)


def _json(value: str, kind: type) -> Any:
    """``value`` as JSON of type ``kind`` (list or dict); ValueError otherwise."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(parsed, kind):
        raise ValueError(f"got {value!r}")
    return parsed


def parse_value(v: str) -> Any:
    """Untyped command-line text: a JSON list / object, a bool, None, an int, a float, else the string."""
    if v.startswith("[") or v.startswith("{"):  # a list or dict in JSON, e.g. fsq_levels=[8,5,5,5]
        try:
            return json.loads(v)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{v!r}: not valid JSON ({exc})") from None
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    if v.lower() == "none":
        return None
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v
