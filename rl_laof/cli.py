"""The command-line base every command (``rl_laof.commands``) is built on.

Every command's parser is a :class:`CommandParser` (:func:`command_parser`): a bad flag is one line and exit
status 2. A stage command is three functions: ``build_parser()`` (:func:`stage_parser` with ``--task`` and
``--preset``, the stage's own flags, then :func:`add_run_flags`: ``--set``, ``--config``, ``--out``, ``--no-progress``),
``config_from_args(args)`` (:func:`stage_config`: the preset, then the config file, then the flags, then
``--set``) and ``main(argv)`` (config -> ``rl_laof.pipeline`` -> the stage's library -> :func:`print_summary`),
run by :func:`run`, which turns bad input and a full disk into a one-line error and Ctrl-C into one line saying
where the work stopped (:func:`rl_laof.progress.position`) and the command that resumes it. ``--set`` values
(:func:`parse_sets`: text read by :func:`from_text`) and ``--config`` values (:func:`parse_file_values`: JSON) pass
one type check, :func:`typed`, against their config field's type. The parser and :func:`run` live in ``envs.cli``
(the lowest layer, which imports nothing of ``rl_laof``) and are taken from there.
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

# the parser and runner every command shares (re-exported: the commands take them here)
from envs import cli as envs_cli
from envs.cli import CommandParser, Default, command_parser  # noqa: F401
from rl_laof.presets import from_preset
from rl_laof.progress import position

#: the commands that also run as ``python -m rl_laof.<name>`` (``rl_laof/<name>.py`` or ``rl_laof/<name>/__main__.py``,
#: beside ``python -m rl_laof.commands.<name>``)
STAGE_COMMANDS = ("expert", "collect", "flow", "lam", "imitation", "skills", "train", "evaluate")


def command_module(main) -> str:
    """The module a message names for ``main``'s command where it runs in-process: ``rl_laof.<stage>`` for a
    stage command (the short name of ``rl_laof.commands.<stage>``), else the module holding ``main``."""
    package, _, name = main.__module__.rpartition(".")
    return f"rl_laof.{name}" if package == "rl_laof.commands" and name in STAGE_COMMANDS else main.__module__


def run(main, argv: list[str] | None = None) -> None:
    """``envs.cli.run`` (bad input, a full disk: one line, exit 2; Ctrl-C: one line, exit 130) with where the
    work stood when Ctrl-C stopped it: the newest progress bar's stage, step or episode and run folder."""
    envs_cli.run(main, argv, where=position, name=command_module(main))


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
    """``--set FIELD=VALUE`` items as config overrides for the dataclass ``cls``: each text read as the value it
    stands for under its field's type (:func:`from_text`), then checked by :func:`typed`, the check a config
    file's values pass too; a value of the wrong type is refused with the field and the type it wants, before
    anything runs."""
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"--set {item!r}: use FIELD=VALUE with a {cls.__name__} field "
                             f"({', '.join(sorted(fields))})")
        try:
            out[key] = typed(from_text(value, hints[key]), hints[key])
        except ValueError as exc:
            raise ValueError(f"--set {item}: {key} wants {describe(hints[key])} ({exc})") from None
    return out


def parse_file_values(cls, values: dict[str, Any]) -> dict[str, Any]:
    """A config file section's values for the dataclass ``cls``, each checked by its field's type with
    :func:`typed`, as ``--set`` values are (JSON's own types count: ``"num_envs": 2.5`` or ``true``,
    ``"learning_rate": "fast"``, ``"fsq_levels": 5`` are refused with the field and the type it wants; a
    nested config's object is checked field by field). ``null`` leaves the field unset (the preset's)."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for key, value in values.items():
        tp = hints.get(key)
        if tp is None:  # not a field: read_config_file refuses those, with the fields listed
            out[key] = value
            continue
        try:
            out[key] = None if value is None else typed(value, tp)
        except ValueError as exc:
            raise ValueError(f"--config: {cls.__name__}.{key} wants {describe(tp)} ({exc})") from None
    return out


_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _field_types(cls: type) -> dict[str, Any]:
    """The dataclass ``cls``'s fields -> their types (its ClassVars, e.g. ``SET_FORM``, are no fields)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _nested(tp: Any) -> bool:
    """A nested config that names itself (``DistractorConfig``: a level's name, or an object of its fields)."""
    return dataclasses.is_dataclass(tp) and hasattr(tp, "parse")


def describe(tp: Any) -> str:
    """A type annotation in words: "an integer", "none or a number", "a list of strings"..."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if _is_union(tp):
        inner = [describe(a) for a in args if a is not type(None)]
        return ("none or " if type(None) in args else "") + " or ".join(inner)
    if origin in (tuple, list):
        return f"a list of {_PLURAL.get(args[0], 'values') if args else 'values'}"
    if origin is dict or tp is dict:
        return 'a JSON object, e.g. {"key": 1}'
    if _nested(tp):  # a nested config: how --set writes it (its SET_FORM: DrQConfig's FIELD=VALUE,...), else by name
        return getattr(tp, "SET_FORM", None) or f"a name (see --help) or a JSON object of {tp.__name__} fields"
    return _WORDS.get(tp, "a value")


_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_PLURAL = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}


def shown(value: Any) -> str:
    """A value as a message quotes it: text in quotes, anything else as JSON (true, 2.5, [1, 2])."""
    if isinstance(value, str):
        return repr(value)
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def typed(value: Any, tp: Any) -> Any:
    """``value`` (a config file's JSON value, or what :func:`from_text` read) checked against the field type
    ``tp`` and made that type: the one type check of ``--set`` and ``--config``. A bool is not a number, an
    integer field takes whole numbers only (2.0, 1e5; not 2.5), a number must be finite, a list field takes a
    list of its items' type (a tuple field gets a tuple), a nested config (``DistractorConfig``, ``DrQConfig``)
    a name or an object of its own fields, each checked the same way (an optional nested config's refusal gives
    its own reason: the field and what it wants). ValueError saying what it got otherwise."""
    if _is_union(tp):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        reason = None
        for a in args:
            if a is not type(None):
                try:
                    return typed(value, a)
                except ValueError as exc:
                    if _nested(a) and isinstance(value, (str, dict)):  # a nested config's own reason says more
                        reason = str(exc)
        if reason is not None:
            raise ValueError(reason)
    elif tp is Any:
        return value
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int or tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"got {shown(value)}, not a finite number")
            if tp is int and (isinstance(value, int) or value.is_integer()):
                return int(value)
            if tp is float and abs(value) < 1e308:  # a JSON integer past a double's range is not a number here
                return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif typing.get_origin(tp) in (tuple, list):
        if isinstance(value, (list, tuple)):
            elem = (typing.get_args(tp) or (Any,))[0]
            items = [typed(v, elem) for v in value]
            return tuple(items) if typing.get_origin(tp) is tuple else items
    elif typing.get_origin(tp) is dict or tp is dict:
        if isinstance(value, dict):
            return value
    elif _nested(tp):
        return _typed_config(value, tp)
    else:
        return value
    raise ValueError(f"got {shown(value)}")


def _typed_config(value: Any, cls: type) -> Any:
    """A nested config from its name (``cls.parse``) or from an object of its fields, each field checked by
    :func:`typed` (an unknown field is named, with the fields there are)."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, (str, dict)):
        raise ValueError(f"got {shown(value)}")
    if isinstance(value, dict):
        hints = _field_types(cls)
        bad = sorted(set(value) - set(hints))
        if bad:
            raise ValueError(f"{cls.__name__} has no field(s) {bad}; fields: {', '.join(hints)}")
        fields = {}
        for key, v in value.items():
            try:
                fields[key] = typed(v, hints[key])
            except ValueError as exc:
                raise ValueError(f"its {key} wants {describe(hints[key])}, {exc}") from None
        value = fields
    try:
        return cls.parse(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None


def from_text(text: str, tp: Any) -> Any:
    """Command-line text as the value it stands for under the field type ``tp``, for :func:`typed` to check:
    ``none`` for an optional field, true / yes / 1 / on (false / no / 0 / off) for a bool, a number, a JSON list
    or comma-separated items for a list, a JSON object for a dict or for a nested config's fields, or a nested
    config's ``FIELD=VALUE,...`` (``--set drq=batch_size=128,lr=3e-4``) as that object. Text that is
    none of these stays text (and :func:`typed` refuses it where the field wants something else)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    word = text.strip().lower()
    if _is_union(tp):
        if type(None) in args and word == "none":
            return None
        for a in args:
            if a is not type(None):
                try:
                    return typed(from_text(text, a), a)
                except ValueError:
                    pass
        return text
    if tp is bool:
        return True if word in _TRUE else False if word in _FALSE else text
    if tp is int or tp is float:
        for cast in (int, float):  # int first: a long integer keeps its digits
            try:
                return cast(text)
            except ValueError:
                pass
        return text
    if tp is Any:
        return parse_value(text)
    if origin in (tuple, list):
        if text.strip().startswith("["):
            return _json(text)
        elem = args[0] if args else Any
        return [from_text(i.strip(), elem) for i in text.split(",") if i.strip()]
    if origin is dict or tp is dict or (_nested(tp) and text.strip().startswith("{")):
        return _json(text)
    if _nested(tp) and "=" in text:  # FIELD=VALUE,... (DrQConfig's SET_FORM): its fields, each read by its type
        return _fields_from_text(text, tp) or text
    return text


def _fields_from_text(text: str, cls: type) -> dict[str, Any] | None:
    """``FIELD=VALUE,...`` as an object of the nested config ``cls``'s fields, each value read by
    :func:`from_text` under its field's type (an unknown field stays text: :func:`_typed_config` names it); None
    where an item is not FIELD=VALUE."""
    hints = _field_types(cls)
    out: dict[str, Any] = {}
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            return None
        key = key.strip()
        out[key] = from_text(value.strip(), hints[key]) if key in hints else value.strip()
    return out


def _json(text: str) -> Any:
    """``text`` as JSON; ValueError where it is not valid JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None


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
