"""``--set FIELD=VALUE`` parses every value by its config field's type and refuses a wrong one by name."""

from __future__ import annotations

import pytest

from agents.config import TrainConfig
from envs.config import DistractorConfig
from rl_laof.cli import parse_sets
from rl_laof.data.config import CollectConfig
from rl_laof.imitation.config import ImitationConfig
from rl_laof.lam.config import LAMConfig
from rl_laof.sof.config import SkillConfig


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
    (SkillConfig, "fsq_levels=[8,5,5]", (8, 5, 5)),
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
    (SkillConfig, "fsq_levels=[8,x]", "fsq_levels wants a list of integers"),
    (CollectConfig, "distractors=harder", "distractors wants"),
    (TrainConfig, "no_such_field=1", "use FIELD=VALUE with a TrainConfig field"),
    (TrainConfig, "n_steps", "use FIELD=VALUE"),
])
def test_a_wrong_value_names_the_field_and_the_type(cls, item, wants):
    with pytest.raises(ValueError, match=wants):
        parse_sets(cls, [item])
