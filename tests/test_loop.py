"""The torch stages' one training loop (rl_laof.loop): checkpoints keep the newest N with latest.json and a
checksum, the evaluation hook runs every eval_every steps and at the end, a stop then a resume ends on the
uninterrupted run's weights and history, and a non-finite loss stops the loop before anything non-finite is
written."""

from __future__ import annotations

import json

import pytest
import torch

from rl_laof.finite import Diverged
from rl_laof.loop import Checkpoints, TrainingLoop
from rl_laof.runs import torch_checksum


class Toy(TrainingLoop):
    """A linear regression with its own data generator: the smallest stage."""

    def __init__(self, run_dir, lr: float = 0.05, **kw):
        super().__init__("toy", 20, Checkpoints(run_dir / "checkpoints", keep=2), 4, eval_every=5, **kw)
        torch.manual_seed(0)
        self.net = torch.nn.Linear(3, 1)
        self.parameters = list(self.net.parameters())
        self.optimizer = torch.optim.SGD(self.parameters, lr)
        self.gen = torch.Generator().manual_seed(1)

    def loss(self):
        x = torch.randn(8, 3, generator=self.gen)
        return ((self.net(x) - x.sum(1, keepdim=True)) ** 2).mean(), {}

    def evaluate(self):
        return {"w0": float(self.net.weight[0, 0].detach())}

    def module_state(self):
        return self.net.state_dict()

    def state(self):
        return {"net": self.net.state_dict(), "opt": self.optimizer.state_dict(), "gen": self.gen.get_state()}

    def load_state(self, state):
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"])


def test_the_loop_checkpoints_evaluates_stops_and_resumes_exactly(tmp_path):
    seen = []
    full = Toy(tmp_path / "full", progress=False, on_eval=lambda step, m: seen.append((step, m["w0"])))
    assert full.run()
    assert [s for s, _ in seen] == [5, 10, 15, 20] == [h["step"] for h in full.history]
    assert all(h["train_loss"] >= 0 and h["w0"] == w for h, (_, w) in zip(full.history, seen, strict=True))
    folder = tmp_path / "full" / "checkpoints"
    assert sorted(p.name for p in folder.glob("step-*.pt")) == ["step-00000016.pt", "step-00000020.pt"]
    assert json.loads((folder / "latest.json").read_text()) == {"file": "step-00000020.pt", "step": 20}
    recorded, actual = torch_checksum(folder / "step-00000020.pt")
    assert recorded == actual and len(actual) == 64

    cut = Toy(tmp_path / "cut", progress=False, stop_after=7)
    assert not cut.run() and cut.step == 7
    assert Checkpoints(tmp_path / "cut" / "checkpoints").load()["step"] == 7  # the stop left a checkpoint
    resumed = Toy(tmp_path / "cut", progress=False)
    assert resumed.run() and resumed.start_step == 7
    assert torch.equal(resumed.net.weight, full.net.weight) and torch.equal(resumed.net.bias, full.net.bias)
    assert resumed.history == full.history


def test_a_non_finite_loss_stops_the_loop_and_nothing_non_finite_is_written(tmp_path):
    from conftest import assert_saved_values_finite

    loop = Toy(tmp_path / "run", lr=100.0, progress=False, hint="lower the learning rate (now 100)")
    with pytest.raises(Diverged, match=r"toy: (loss|grad norm) is (nan|inf|-inf) at step \d+; lower the learning "
                                       r"rate \(now 100\)"):
        loop.run()
    assert 4 <= loop.step < 20  # it ran past a checkpoint, and stopped at the first non-finite value
    assert assert_saved_values_finite(tmp_path / "run") >= 1
