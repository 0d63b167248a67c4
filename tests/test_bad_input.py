"""Every command refuses bad input cleanly: exit status 2, one line on stderr, no traceback, and no file or folder
created or changed by the refused command (the tree is compared before and after).

The table holds, per command, typo'd names, zero / negative / non-numeric numbers, missing / non-dataset /
file-instead-of-folder paths; generated rows add ``--set FIELD=<a wrong value of the field's type>`` for every
field of every stage config a command takes ``--set`` for, and a negative value for every numeric flag. Each
command runs in this process through ``rl_laof.cli.run`` (what ``python -m`` runs), with ``$RL_LAOF_RUNS`` and
the working directory in a temporary folder.
"""

from __future__ import annotations

import dataclasses
import importlib
import signal
import types
import typing
from pathlib import Path

import pytest
from conftest import parser_of

from rl_laof import cli

pytestmark = pytest.mark.usefixtures("gl")

MAINS = {  # command (python -m <command>) -> module holding its main()
    **{f"rl_laof.{stage}": f"rl_laof.commands.{stage}"
       for stage in ("expert", "collect", "flow", "lam", "imitation", "skills", "train", "evaluate")},
    **{f"rl_laof.commands.{name}": f"rl_laof.commands.{name}" for name in ("inspect", "multitask", "demo")},
    "sweeps.tune": "sweeps.tune"}

# {dataset}: a real dataset (with flow); {file}: a plain file; {missing}: no such path; {empty}: an empty folder;
# {out}: a folder that does not exist yet (a refused command must not create it)
CASES: list[tuple[str, str, str]] = [  # (command, arguments, a part of the expected message)
    # expert
    ("rl_laof.expert", "--task cheeta-run", "cheetah-run"),
    ("rl_laof.expert", "--algo ppp", "ppo"),
    ("rl_laof.expert", "--steps 0", "total_steps"),
    ("rl_laof.expert", "--num-envs 0", "num_envs"),
    ("rl_laof.expert", "--net-arch 0", "net_arch"),
    ("rl_laof.expert", "--algo-kwargs notjson", "algo-kwargs"),
    ("rl_laof.expert", """--algo-kwargs {"learning_rate":"abc"} --out {out}""", "learning_rate"),
    ("rl_laof.expert", """--algo-kwargs {"n_stepz":8} --out {out}""", "n_stepz"),
    ("rl_laof.expert", """--algo-kwargs {"gamma":5} --out {out}""", "gamma=5"),
    ("rl_laof.expert", "--out {file}", "not a folder"),
    ("rl_laof.expert", "--preset huge", "invalid choice"),
    # collect
    ("rl_laof.collect", "--task cheeta-run --out {out}", "cheetah-run"),
    ("rl_laof.collect", "--episodes 0 --out {out}", "episodes"),
    ("rl_laof.collect", "--image-size 0 --out {out}", "image_size"),
    ("rl_laof.collect", "--workers 0 --out {out}", "workers"),
    ("rl_laof.collect", "--episode-steps 1 --out {out}", "episode_steps"),
    ("rl_laof.collect", "--distractors extreme --out {out}", "extreme"),
    ("rl_laof.collect", "--compression zip", "invalid choice"),
    ("rl_laof.collect", "--expert {missing} --out {out}", "missing"),
    ("rl_laof.collect", "--expert {empty} --out {out}", "empty"),
    ("rl_laof.collect", "--expert random --out {file}", "not a folder"),
    ("rl_laof.collect", "--expert random --out {dataset}", "another config"),
    # sizes past what the disk holds: refused before an expert is trained or an episode is listed
    ("rl_laof.collect", "--expert random --episodes 1000000000000 --out {out}", "of disk space"),
    ("rl_laof.collect", "--episodes 1000000000000 --out {out}", "of disk space"),
    # flow
    ("rl_laof.flow", "--dataset {missing}", "missing"),
    ("rl_laof.flow", "--dataset {empty}", "empty"),
    ("rl_laof.flow", "--dataset {file}", "file"),
    ("rl_laof.flow", "--dataset {dataset} --batch 0", "batch"),
    ("rl_laof.flow", "--dataset {dataset} --method magic", "invalid choice"),
    # data.inspect
    ("rl_laof.commands.inspect", "{missing}", "missing"),
    ("rl_laof.commands.inspect", "{empty}", "empty"),
    ("rl_laof.commands.inspect", "{file}", "file"),
    ("rl_laof.commands.inspect", "{dataset} --samples 0", "samples"),
    # data.multitask
    ("rl_laof.commands.multitask", "--sources {missing} {dataset} --out {out}", "missing"),
    ("rl_laof.commands.multitask", "--sources {empty} {dataset} --out {out}", "empty"),
    ("rl_laof.commands.multitask", "--sources {dataset} --out {out}", "two"),
    ("rl_laof.commands.multitask", "--sources {dataset} {dataset} --out {file}", "not a folder"),
    # lam
    ("rl_laof.lam", "--dataset {missing}", "missing"),
    ("rl_laof.lam", "--dataset {empty} --out {out}", "empty"),
    ("rl_laof.lam", "--dataset {file} --out {out}", "file"),
    ("rl_laof.lam", "--dataset {dataset} --steps 0 --out {out}", "steps"),
    ("rl_laof.lam", "--dataset {dataset} --batch-size 0 --out {out}", "batch_size"),
    ("rl_laof.lam", "--dataset {dataset} --width 0 --out {out}", "width"),
    ("rl_laof.lam", "--dataset {dataset} --method laof-action --labels 2 --out {out}", "labels"),
    ("rl_laof.lam", "--dataset {dataset} --method lapa", "did you mean 'lapo'"),
    ("rl_laof.lam", "--task walker-walk --dataset {dataset} --out {out}", "cheetah-run"),
    ("rl_laof.lam", "--dataset {dataset} --config {missing}", "missing"),
    ("rl_laof.lam", "--dataset {dataset} --config {file}", "JSON"),
    ("rl_laof.lam", "--dataset {dataset} --out {file}", "not a folder"),
    ("rl_laof.lam", "--dataset {dataset} --stpes 5", "did you mean '--steps'"),
    # sizes past what the data or the machine hold (the fixture has 120 training windows)
    ("rl_laof.lam", "--dataset {dataset} --batch-size 100000 --out {out}", "120 training windows"),
    ("rl_laof.lam", "--dataset {dataset} --width 1000000 --out {out}", "of memory"),
    # imitation
    ("rl_laof.imitation", "--dataset {missing} --out {out}", "missing"),
    ("rl_laof.imitation", "--dataset {empty} --out {out}", "empty"),
    ("rl_laof.imitation", "--dataset {dataset} --steps 0 --out {out}", "steps"),
    ("rl_laof.imitation", "--dataset {dataset} --set eval_backgrounds= --out {out}", "eval_backgrounds"),
    ("rl_laof.imitation", "--dataset {dataset} --labels 0 --out {out}", "labels"),
    ("rl_laof.imitation", "--dataset {dataset} --seeds 0 --out {out}", "seeds"),
    ("rl_laof.imitation", "--dataset {dataset} --euler-steps 0 --out {out}", "euler_steps"),
    ("rl_laof.imitation", "--dataset {dataset} --labels 0.1 --lam {missing} --out {out}", "missing"),
    ("rl_laof.imitation", "--dataset {dataset} --labels 0.1 --lam {empty} --out {out}", "model.pt"),
    ("rl_laof.imitation", "--task walker-walk --dataset {dataset} --latent none --out {out}", "cheetah-run"),
    ("rl_laof.imitation", "--dataset {dataset} --latent none --out {file}", "not a folder"),
    # skills
    ("rl_laof.skills", "pretrian --dataset {dataset}", "did you mean 'pretrain'"),
    ("rl_laof.skills", "pretrain --dataset {missing} --out {out}", "missing"),
    ("rl_laof.skills", "pretrain --dataset {empty} --out {out}", "empty"),
    ("rl_laof.skills", "pretrain --dataset {dataset} --out {file}", "not a folder"),
    ("rl_laof.skills", "pretrain --dataset {dataset} --out {out} --set chunk=0", "chunk"),
    ("rl_laof.skills", "pretrain --dataset {dataset} --out {out} --set eval_backgrounds=bogus", "eval_backgrounds"),
    ("rl_laof.skills", "pretrain --dataset {dataset} --out {out} --set fsq_levels=[100000,100000,100000,100000]",
     "codes"),
    # every stage's config and data checked before the first stage trains (``all`` trained three stages first)
    ("rl_laof.skills", "evaluate --dataset {dataset} --out {out} --set eval_backgrounds=bogus", "eval_backgrounds"),
    ("rl_laof.skills", "all --dataset {dataset} --out {out} --set eval_backgrounds=bogus", "eval_backgrounds"),
    ("rl_laof.skills", "all --dataset {dataset} --out {out} --set eval_backgrounds=", "eval_backgrounds"),
    ("rl_laof.skills", "all --dataset {dataset} --out {out} --set label_trajectories=64", "traj-64"),
    ("rl_laof.skills", "all --dataset {dataset} --out {out} --set chunk=64", "64 steps"),
    ("rl_laof.skills", "pretrain --dataset {dataset} --out {out} --set flow_size=64", "flow_size=64 must divide"),
    ("rl_laof.skills", "pretrain --dataset {dataset} --out {out} --set flow_size=12", "power of two"),
    # train
    ("rl_laof.train", "--task cheeta-run --out {out}", "cheetah-run"),
    ("rl_laof.train", "--latent laoff --out {out}", "laof"),
    ("rl_laof.train", "--steps 0 --out {out}", "total_steps"),
    ("rl_laof.train", "--num-envs 0 --out {out}", "num_envs"),
    ("rl_laof.train", "--set gamma=5 --out {out}", "gamma=5"),
    ("rl_laof.train", "--set gae_lambda=2 --out {out}", "gae_lambda=2"),
    ("rl_laof.train", "--set clip_range=0 --out {out}", "clip_range=0"),
    ("rl_laof.train", """--set algo_kwargs={"gamma":2} --out {out}""", "gamma=2"),
    # the env's and the algorithm's arguments checked before the run folder (and its config.json) exists
    ("rl_laof.train", "--set image_size=7 --out {out}", "image_size=7"),
    ("rl_laof.train", "--latent none --set image_size=7 --out {out}", "image_size=7"),
    ("rl_laof.train", """--latent none --set algo_kwargs={"policy_kwargs":{"net_arch":[32]}} --out {out}""",
     "policy_kwargs is set by the run"),
    ("rl_laof.train", """--latent none --set algo_kwargs={"learning_rate":0.1} --out {out}""",
     "--set learning_rate="),
    # sizes past what the machine holds: CPU cores for the envs, memory for envs and rollouts
    ("rl_laof.train", "--num-envs 100000 --out {out}", "num_envs=100000"),
    ("rl_laof.train", "--set final_eval_episodes=100000 --out {out}", "final_eval_episodes=100000"),
    ("rl_laof.train", "--latent none --num-envs 32 --set n_steps=100000000 --out {out}", "of memory"),
    ("rl_laof.train", "--kl-coef -1 --latent sof --out {out}", "kl_coef"),
    ("rl_laof.train", "--distractors extreme --out {out}", "extreme"),
    ("rl_laof.train", "--latent-policy {missing} --out {out}", "missing"),
    ("rl_laof.train", "--latent-policy {empty} --out {out}", "policy.pt"),
    ("rl_laof.train", "--latent-policy lafp --out {out}", "--policy lafp"),
    ("rl_laof.train", "--latent sof --skills {missing} --out {out}", "missing"),
    ("rl_laof.train", "--set normalize_reward=maybe --out {out}", "normalize_reward"),
    ("rl_laof.train", "--set n_steps=1.5 --out {out}", "n_steps"),
    ("rl_laof.train", "--set learning_rate=abc --out {out}", "learning_rate"),
    ("rl_laof.train", "--out {file}", "not a folder"),
    ("rl_laof.train", "--config {missing} --out {out}", "missing"),
    ("rl_laof.train", "--resume --fresh --out {out}", "--fresh"),
    ("rl_laof.train", "--algo drq --out {out}", "--latent none"),  # DrQ-v2: raw actions only
    ("rl_laof.train", "--algo drq --latent lapo --out {out}", "--latent none"),
    ("rl_laof.train", "--algo drq --latent none --obs state --out {out}", "--obs pixels"),
    ("rl_laof.train", "--algo drq --latent none --set drq=batch_size=0 --out {out}", "batch_size=0"),
    ("rl_laof.train", "--algo drq --latent none --set drq=bogus=1 --out {out}", "bogus"),
    ("rl_laof.train", "--algo drq --latent none --set learning_rate=1e-3 --out {out}", "--set drq=lr="),
    ("rl_laof.train", "--set drq=lr=1e-3 --out {out}", "--algo drq only"),
    # evaluate
    ("rl_laof.evaluate", "{missing}", "missing"),
    ("rl_laof.evaluate", "{empty}", "empty"),
    ("rl_laof.evaluate", "{file}", "file"),
    ("rl_laof.evaluate", "{empty} --episodes 0", "episodes"),
    ("rl_laof.evaluate", "{empty} --which worst", "invalid choice"),
    # demo
    ("rl_laof.commands.demo", "--task cheeta-run --out {out}", "cheetah-run"),
    ("rl_laof.commands.demo", "--size 0 --out {out}", "size"),
    ("rl_laof.commands.demo", "--steps 1 --out {out}", "steps"),
    ("rl_laof.commands.demo", "--distractors extreme --out {out}", "invalid choice"),
    ("rl_laof.commands.demo", "--out {file}", "not a folder"),
    # sweeps.tune
    ("sweeps.tune", "--target laoff", "did you mean 'laof'"),
    ("sweeps.tune", "--target laof --n-trials 0 --dataset {dataset}", "n_trials"),
    ("sweeps.tune", "--target laof --workers 0 --dataset {dataset}", "workers"),
    ("sweeps.tune", "--target laof --dataset {dataset} --storage {file}/journal.log", "file"),
    ("sweeps.tune", "--target laof --dataset {missing}", "missing"),
    ("sweeps.tune", "--target sof", "--dataset"),
    ("sweeps.tune", "--target laof --dataset {dataset} --set bogus=1", "bogus"),
    ("sweeps.tune", "--target laof --dataset {dataset} --space flow_weight=high:low", "flow_weight"),
]

# the config class a command's --set fills, and the arguments that make the rest of the command valid
SET_TARGETS = {
    "rl_laof.lam": ("rl_laof.lam.config", "LAMConfig", "--dataset {dataset} --out {out}"),
    "rl_laof.imitation": ("rl_laof.imitation.config", "ImitationConfig", "--dataset {dataset} --out {out}"),
    "rl_laof.skills": ("rl_laof.skills.config", "SkillsConfig", "pretrain --dataset {dataset} --out {out}"),
    "rl_laof.train": ("agents.config", "TrainConfig", "--out {out}"),
    "sweeps.tune": ("rl_laof.lam.config", "LAMConfig", "--target laof --dataset {dataset}"),
}


def wrong_value(tp) -> str | None:
    """Command-line text that is not a value of the type ``tp`` (None where every text is one: strings)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return wrong_value(inner[0]) if len(inner) == 1 else None
    if tp is bool:
        return "maybe"
    if tp is int:
        return "1.5"
    if tp is float:
        return "abc"
    if origin in (tuple, list):
        return '["a"]' if args and args[0] in (int, float) else "[1, "
    if origin is dict or tp is dict:
        return "notjson"
    if dataclasses.is_dataclass(tp):
        return "extreme"
    return None


def set_cases() -> list[tuple[str, str, str]]:
    out = []
    for command, (module, name, rest) in SET_TARGETS.items():
        cls = getattr(importlib.import_module(module), name)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            value = wrong_value(hints[f.name])
            if value is not None:
                out.append((command, f"{rest} --set {f.name}={value}", f"{f.name} wants"))
    return out


def negative_cases() -> list[tuple[str, str, str]]:
    """``-1`` and ``abc`` for every numeric flag of every command (none of them means anything negative); the
    message for -1 is the config's (it may name the field rather than the flag)."""
    out = []
    for command in MAINS:
        parser = parser_of(command)
        for action in parser._actions:
            if action.type in (int, float) and action.option_strings and action.help != "==SUPPRESS==":
                flag = action.option_strings[0]
                base = {"rl_laof.flow": "--dataset {dataset} ", "rl_laof.commands.inspect": "{dataset} ",
                        "rl_laof.evaluate": "{empty} ", "rl_laof.skills": "pretrain --dataset {dataset} ",
                        "sweeps.tune": "--target laof --dataset {dataset} ", "rl_laof.commands.multitask": "",
                        "rl_laof.lam": "--dataset {dataset} ", "rl_laof.imitation": "--dataset {dataset} "
                        }.get(command, "")
                out_flag = " --out {out}" if "--out" in parser._option_string_actions else ""
                out.append((command, f"{base}{flag} -1{out_flag}", ""))
                out.append((command, f"{base}{flag} abc{out_flag}", f"invalid {action.type.__name__} value"))
    return out


ALL = CASES + set_cases() + negative_cases()


@pytest.fixture
def paths(lam_dataset, tmp_path):
    root = tmp_path
    (root / "notes.txt").write_text("not a dataset\n")
    (root / "empty").mkdir()
    (root / "cwd").mkdir()
    return {"dataset": str(lam_dataset), "file": str(root / "notes.txt"), "missing": str(root / "missing"),
            "empty": str(root / "empty"), "out": str(root / "out"), "root": root}


def tree(*roots: Path) -> dict[str, tuple]:
    """Every file and folder under ``roots``: (kind, size, modification time)."""
    out = {}
    for root in roots:
        for p in [root, *root.rglob("*")]:
            st = p.stat()
            out[str(p)] = ("dir" if p.is_dir() else "file", 0 if p.is_dir() else st.st_size, st.st_mtime_ns)
    return out


def fill(text: str, paths: dict) -> str:
    """``text`` with its {dataset}, {file}, {missing}, {empty}, {out} placeholders replaced."""
    for key in ("dataset", "file", "missing", "empty", "out"):
        text = text.replace("{" + key + "}", paths[key])
    return text


class _TookTooLong(BaseException):
    pass


def _alarm(signum, frame):
    raise _TookTooLong("a refused command must stop before any work starts (30 s)")


@pytest.mark.parametrize("command, args, message", ALL, ids=[f"{c}:{a}" for c, a, _ in ALL])
def test_bad_input_is_refused_in_one_line_and_changes_nothing(command, args, message, paths, monkeypatch, capsys):
    root = paths["root"]
    monkeypatch.chdir(root / "cwd")
    monkeypatch.setenv("RL_LAOF_RUNS", str(root / "runs"))
    argv = [fill(a, paths) for a in args.split()]
    main = importlib.import_module(MAINS[command]).main
    before = tree(root, Path(paths["dataset"]))
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(30)
    try:
        with pytest.raises(SystemExit) as exit_:
            cli.run(main, argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert fill(message, paths) in err, err
    assert tree(root, Path(paths["dataset"])) == before, "the refused command created or changed files"


# (command, arguments, the section, the field, a wrong JSON value for --config, a wrong text for --set (None: the
# command's --set does not fill that section), the message's part (--config's, --set's where they differ))
TYPED_CASES = [
    ("rl_laof.train", "", "train", "learning_rate", "fast", "fast", "learning_rate wants a number"),
    ("rl_laof.train", "", "train", "num_envs", 2.5, "2.5", "num_envs wants an integer"),
    ("rl_laof.train", "", "train", "num_envs", True, "true", "num_envs wants an integer"),  # a bool is no integer
    ("rl_laof.train", "", "train", "normalize_reward", 1, "maybe", "normalize_reward wants true or false"),
    ("rl_laof.train", "", "train", "distractors", {"kinds": 5}, '{"kinds":5}',
     ("distractors wants a string", "distractors='{\"kinds\":5}': Unknown distractor difficulty")),
    ("rl_laof.train", "", "train", "algo_kwargs", [1], "[1]", "algo_kwargs wants a JSON object"),
    # DrQ-v2's settings, a nested config: each of its fields typed the same way, the field named
    ("rl_laof.train", "--algo drq --latent none", "train", "drq", {"batch_size": "many"}, "batch_size=many",
     "batch_size wants an integer"),
    ("rl_laof.train", "--algo drq --latent none", "train", "drq", {"lr": True}, "lr=fast", "lr wants a number"),
    # train hands its lam / imitation sections on to the latent policy it builds: typed before anything runs
    ("rl_laof.train", "", "lam", "steps", "many", None, "steps wants none or an integer"),
    ("rl_laof.train", "", "imitation", "steps", 2.5, None, "steps wants an integer"),
    ("rl_laof.lam", "--dataset {dataset}", "lam", "steps", "many", "many", "steps wants none or an integer"),
    ("rl_laof.lam", "--dataset {dataset}", "lam", "lr", [1, 2], "[1,2]", "lr wants none or a number"),
    ("rl_laof.lam", "--dataset {dataset}", "lam", "batch_size", True, "true",
     "batch_size wants none or an integer"),
    ("rl_laof.lam", "--dataset {dataset}", "lam", "width", 2.5, "2.5", "width wants none or an integer"),
    ("rl_laof.skills", "pretrain --dataset {dataset}", "skills", "fsq_levels", 5, "[8,5.5]",
     "fsq_levels wants a list of integers"),
    ("rl_laof.skills", "pretrain --dataset {dataset}", "skills", "fsq_levels", [8, True], "[8,true]",
     "fsq_levels wants a list of integers"),
    ("rl_laof.skills", "pretrain --dataset {dataset}", "skills", "chunk", "eight", "eight", "chunk wants an integer"),
    ("rl_laof.skills", "pretrain --dataset {dataset}", "skills", "eval_backgrounds", "eval", "[1,",
     "eval_backgrounds wants a list of strings"),
]
TYPED = [(*case[:6], source, case[6]) for case in TYPED_CASES for source in ("--config", "--set")
         if source == "--config" or case[5] is not None]


@pytest.mark.parametrize("command, args, section, field, value, text, source, message", TYPED,
                         ids=[f"{c[0]}:{c[6]}:{c[2]}.{c[3]}={c[4]!r}" for c in TYPED])
def test_a_wrong_type_is_refused_alike_from_set_and_from_config(command, args, section, field, value, text, source,
                                                               message, paths, monkeypatch, capsys):
    """Every stage's typed fields pass one type check, from ``--set`` and from a ``--config`` section alike: exit
    2 and one line naming the field and the type it wants, nothing written, never a Python TypeError."""
    import json

    root = paths["root"]
    monkeypatch.chdir(root / "cwd")
    monkeypatch.setenv("RL_LAOF_RUNS", str(root / "runs"))
    argv = [fill(a, paths) for a in args.split()] + ["--out", paths["out"]]
    if source == "--config":
        cfg = root / "bad.json"
        cfg.write_text(json.dumps({"format": "rl_laof-config/1", section: {field: value}}))
        argv += ["--config", str(cfg)]
    else:
        argv += ["--set", f"{field}={text}"]
    before = tree(root, Path(paths["dataset"]))
    with pytest.raises(SystemExit) as exit_:
        cli.run(importlib.import_module(MAINS[command]).main, argv)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert (message if isinstance(message, str) else message[source == "--set"]) in err, err
    assert tree(root, Path(paths["dataset"])) == before, "the refused command created or changed files"
