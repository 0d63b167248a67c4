"""``--set FIELD=VALUE`` parses every value by its config field's type and refuses a wrong one by name; a config
file's values pass the same type check."""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing

import pytest

from agents.config import TrainConfig
from envs.config import DistractorConfig
from rl_laof.cli import describe, parse_file_values, parse_sets
from rl_laof.config_file import SECTIONS
from rl_laof.data.config import CollectConfig
from rl_laof.imitation.config import ImitationConfig
from rl_laof.lam.config import LAMConfig
from rl_laof.skills.config import SkillsConfig


@pytest.mark.parametrize("cls, item, expected", [
    (TrainConfig, "normalize_reward=false", False),
    (TrainConfig, "normalize_reward=True", True),
    (TrainConfig, "n_steps=512", 512),
    (TrainConfig, "total_steps=1e5", 100_000),
    (TrainConfig, "learning_rate=1e-4", 1e-4),
    (TrainConfig, "learning_rate=3", 3.0),
    (TrainConfig, "distractors=none", "none"),  # a str field: "none" is the level's name
    (TrainConfig, "action_repeat=none", None),
    (TrainConfig, "action_repeat=2", 2),
    (TrainConfig, "algo_kwargs={\"target_kl\": 0.02}", {"target_kl": 0.02}),
    (LAMConfig, "flow_sigma=None", None),
    (LAMConfig, "flow_sigma=0.05", 0.05),
    (ImitationConfig, "eval_backgrounds=train,eval", ("train", "eval")),
    (ImitationConfig, "eval_backgrounds=[\"train\"]", ("train",)),
    (SkillsConfig, "fsq_levels=[8,5,5]", (8, 5, 5)),
    (CollectConfig, "distractors=laom", DistractorConfig(difficulty="laom")),
])
def test_values_are_parsed_by_the_field_type(cls, item, expected):
    key = item.partition("=")[0]
    assert parse_sets(cls, [item])[key] == expected


@pytest.mark.parametrize("cls, item, wants", [
    (TrainConfig, "normalize_reward=maybe", "normalize_reward wants true or false"),
    (TrainConfig, "n_steps=1.5", "n_steps wants an integer"),
    (TrainConfig, "batch_size=2.5", "batch_size wants an integer"),
    (TrainConfig, "learning_rate=abc", "learning_rate wants a number"),
    (TrainConfig, "learning_rate=nan", "learning_rate wants a number"),
    (TrainConfig, "action_repeat=two", "action_repeat wants none or an integer"),
    (TrainConfig, "algo_kwargs=[1]", "algo_kwargs wants a JSON object"),
    (LAMConfig, "lr=abc", "lr wants none or a number"),  # none: the method's
    (ImitationConfig, "lr=abc", "lr wants a number"),
    (SkillsConfig, "fsq_levels=[8,x]", "fsq_levels wants a list of integers"),
    (CollectConfig, "distractors=harder", "distractors wants"),
    (TrainConfig, "no_such_field=1", "use FIELD=VALUE with a TrainConfig field"),
    (TrainConfig, "n_steps", "use FIELD=VALUE"),
])
def test_a_wrong_value_names_the_field_and_the_type(cls, item, wants):
    with pytest.raises(ValueError, match=wants):
        parse_sets(cls, [item])


def _wrong(tp) -> tuple[object, str | None]:
    """(a JSON value, a command-line text) that are not values of the field type ``tp``; the text is None where
    every text is one (a string)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _wrong(next(a for a in args if a is not type(None)))
    if tp is bool:
        return 1, "maybe"  # JSON's 1 is a number, not a bool
    if tp is int:
        return 2.5, "2.5"
    if tp is float:
        return "fast", "fast"
    if tp is str:
        return 5, None
    if origin in (tuple, list):
        return (5, '["a"]') if args[0] in (int, float) else (["a", 1], "[1, ")
    if origin is dict:
        return [1], "[1]"
    if dataclasses.is_dataclass(tp):  # a nested config (DrQConfig): 5 is neither its name nor its fields
        return 5, "5"
    raise AssertionError(f"no wrong value for {tp}")


FIELDS = [(cls, f.name, typing.get_type_hints(cls)[f.name]) for cls, _ in SECTIONS.values()
          for f in dataclasses.fields(cls)]


@pytest.mark.parametrize("cls, name, tp", FIELDS, ids=[f"{c.__name__}.{n}" for c, n, _ in FIELDS])
def test_every_field_of_every_section_is_typed_alike_from_set_and_from_a_file(cls, name, tp):
    """One type check for both ways in: a wrong value names the field and the type it wants."""
    value, text = _wrong(tp)
    wants = re.escape(f"{name} wants {describe(tp)}")
    with pytest.raises(ValueError, match=wants):
        parse_file_values(cls, {name: value})
    if text is not None:
        with pytest.raises(ValueError, match=wants):
            parse_sets(cls, [f"{name}={text}"])


@pytest.mark.parametrize("value, expected", [
    (1e5, 100_000), (3.0, 3), ("x", None), (True, None), (2.5, None)])
def test_an_integer_field_takes_whole_numbers_and_no_bool(value, expected):
    if expected is None:
        with pytest.raises(ValueError, match="total_steps wants an integer"):
            parse_file_values(TrainConfig, {"total_steps": value})
    else:
        out = parse_file_values(TrainConfig, {"total_steps": value})["total_steps"]
        assert out == expected and type(out) is int


def test_a_config_file_gives_the_values_set_gives():
    from_file = parse_file_values(SkillsConfig, {"fsq_levels": [8, 5, 5], "eval_backgrounds": ["train", "eval"],
                                                "execute": None, "lr": 1})
    from_set = parse_sets(SkillsConfig, ["fsq_levels=8,5,5", "eval_backgrounds=train,eval", "execute=none", "lr=1"])
    assert from_file == from_set == {"fsq_levels": (8, 5, 5), "eval_backgrounds": ("train", "eval"),
                                     "execute": None, "lr": 1.0}
    assert type(from_file["lr"]) is float


@pytest.mark.parametrize("value, text, wants", [
    ({"batch_size": 2.5}, "batch_size=2.5", "batch_size wants an integer, got 2.5"),
    ({"lr": "fast"}, "lr=fast", "lr wants a number, got 'fast'"),
    ({"batch_size": 0}, "batch_size=0", r"DrQConfig.batch_size=0: must be >= 1"),
    ({"bogus": 1}, "bogus=1", "DrQConfig has no field"),
    (5, "lr", "(got 5|drq settings are FIELD=VALUE)"),
])
def test_drq_settings_are_checked_field_by_field(value, text, wants):
    """TrainConfig.drq is a DrQConfig: a config file's object of its fields or --set's FIELD=VALUE,..., each field
    checked by its own type (the one check of rl_laof.cli.typed), the field named."""
    with pytest.raises(ValueError, match=f"drq wants .*{wants}"):
        parse_file_values(TrainConfig, {"drq": value})
    with pytest.raises(ValueError, match=f"drq wants .*{wants}"):
        parse_sets(TrainConfig, [f"drq={text}"])


def test_drq_settings_from_set_and_from_a_file_are_alike():
    from_set = parse_sets(TrainConfig, ["drq=batch_size=128,lr=3e-4"])
    from_file = parse_file_values(TrainConfig, {"drq": {"batch_size": 128, "lr": 3e-4}})
    assert from_set == from_file == {"drq": {"batch_size": 128, "lr": 3e-4}}
    assert type(from_set["drq"]["batch_size"]) is int and type(from_set["drq"]["lr"]) is float


@pytest.mark.parametrize("value, wants", [
    ({"kinds": 5}, "its kinds wants a list of strings, got 5"),
    ({"difficulty": "hard", "kinds": ["background", 1]}, "its kinds wants a list of strings, got 1"),
    ({"difficulty": "hard", "bogus": 1}, r"DistractorConfig has no field\(s\) \['bogus'\]"),
    ({"difficulty": "hard", "scale": "high"}, "its scale wants none or a number"),
    ({"difficulty": "hard", "dynamic": 0}, "its dynamic wants true or false"),
    ({"difficulty": "harder"}, "Unknown distractor difficulty 'harder'"),
    (5, "(got 5|Unknown distractor difficulty '5')"),  # JSON's 5 is no name; --set's text 5 names no level
])
def test_a_nested_config_is_checked_field_by_field(value, wants):
    """CollectConfig.distractors is a DistractorConfig: its name, or a JSON object of its fields, each checked by
    its own type, from a file and from --set alike."""
    with pytest.raises(ValueError, match=f"distractors wants .*{wants}"):
        parse_file_values(CollectConfig, {"distractors": value})
    with pytest.raises(ValueError, match=f"distractors wants .*{wants}"):
        parse_sets(CollectConfig, [f"distractors={json.dumps(value)}"])


def test_a_nested_config_from_its_fields():
    want = DistractorConfig(difficulty="hard", kinds=("camera",), scale=0.5)
    fields = {"difficulty": "hard", "kinds": ["camera"], "scale": 0.5}
    assert parse_file_values(CollectConfig, {"distractors": fields})["distractors"] == want
    assert parse_sets(CollectConfig, [f"distractors={json.dumps(fields)}"])["distractors"] == want


def test_a_message_names_the_command_as_it_was_started(monkeypatch):
    """The command a Ctrl-C or full-disk line says to run again is the one the user ran: a stage's short
    ``python -m rl_laof.<stage>``, the same command under ``rl_laof.commands``, a console script by its name, and
    in-process the stage's short name."""
    import sys

    from envs import cli as envs_cli
    from rl_laof import cli
    from rl_laof.commands import inspect, lam, train

    def started_as(spec_name, argv0="-m", **attrs):
        top = types.ModuleType("__main__")
        top.__spec__ = types.SimpleNamespace(name=spec_name) if spec_name else None
        top.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, "__main__", top)
        monkeypatch.setattr(sys, "argv", [argv0])

    started_as("rl_laof.train", main=train.main)  # python -m rl_laof.train: the shim rl_laof/train.py
    assert envs_cli._command(train.main, cli.command_module(train.main)) == "python -m rl_laof.train"
    started_as("rl_laof.lam.__main__", main=lam.main)  # python -m rl_laof.lam: the package's __main__.py
    assert envs_cli._command(lam.main) == "python -m rl_laof.lam"
    started_as("rl_laof.commands.lam")  # python -m rl_laof.commands.lam: main is __main__'s own
    main = types.FunctionType(lam.main.__code__, lam.main.__globals__)
    main.__module__ = "__main__"
    assert envs_cli._command(main) == "python -m rl_laof.commands.lam"
    monkeypatch.setattr(envs_cli.shutil, "which", lambda name: f"/venv/bin/{name}")
    started_as(None, "/venv/bin/rl-laof-lam", main_entry=lam.main_entry)  # the console script, on the PATH
    assert envs_cli._command(lam.main, cli.command_module(lam.main)) == "rl-laof-lam"
    monkeypatch.setattr(envs_cli.shutil, "which", lambda name: None)
    assert envs_cli._command(lam.main, cli.command_module(lam.main)) == "/venv/bin/rl-laof-lam"
    started_as("pytest.__main__")  # in-process (a test, a script): the stage's short name, else the module's
    assert envs_cli._command(lam.main, cli.command_module(lam.main)) == "python -m rl_laof.lam"
    assert envs_cli._command(inspect.main, cli.command_module(inspect.main)) == "python -m rl_laof.commands.inspect"
