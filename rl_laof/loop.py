"""The one training loop of the torch stages (latent action models, imitation, skills).

:class:`TrainingLoop` owns what every stage needs around its update, in the spirit of stable-baselines3's
``OnPolicyAlgorithm`` (whose subclasses supply only ``train``): resuming from the newest checkpoint with every
random state (an interrupted stage ends where an uninterrupted one would, bit for bit), the finite-value checks
(``rl_laof.finite``: the first non-finite loss or gradient stops the run, no non-finite state is ever written),
checkpoints (:class:`Checkpoints`: atomic, checksummed, the newest kept), periodic evaluation with a hook a sweep's
pruner listens to, the progress bar (a line per interval when the log is not a terminal) and the step timing.

A stage supplies its optimiser, its loss, what its checkpoint must hold and, if it has one, its evaluation::

    class MyStage(TrainingLoop):
        def loss(self):                       # one step's loss and the metrics to log
            ...
            return loss, {"loss": float(loss)}
        def state(self): ...                  # model, optimiser, random states (the loop adds step and history)
        def load_state(self, state): ...
        def evaluate(self): ...               # held-out metrics, every ``eval_every`` steps (optional)

``rl_laof.fit`` (one module on one loss: the imitation and skill stages) and ``rl_laof.lam.training`` (the latent
action models, data-parallel under ``torchrun``) are the two kinds of stage built on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from rl_laof import distributed as dist
from rl_laof.finite import check_state, check_step
from rl_laof.progress import progress_bar
from rl_laof.runs import load_torch, read_json, save_torch, write_json

Metrics = dict[str, float]


class Checkpoints:
    """The checkpoints of one stage in a run's ``checkpoints/`` folder, written atomically with a checksum
    (``rl_laof.runs.save_torch``).

    By default numbered ``step-<8 digits>.pt`` files with ``latest.json`` (``{"file", "step"}``) pointing to the
    newest; the newest ``keep`` are kept. With ``name``, one file ``<name>.pt`` that each checkpoint replaces (its
    own pointer): the stages that share a run folder (imitation's idm / policy / decoder, the skills' tokenizer /
    prior / translator) each keep theirs beside the others', as they always have."""

    def __init__(self, folder: str | Path, name: str | None = None, keep: int = 2):
        if keep < 1:
            raise ValueError(f"keep must be at least 1, not {keep}")
        self.folder, self.name, self.keep = Path(folder), name, keep

    def path(self, step: int) -> Path:
        return self.folder / (f"{self.name}.pt" if self.name else f"step-{step:08d}.pt")

    def latest(self) -> Path | None:
        """The newest checkpoint, if there is one."""
        if self.name:
            path = self.path(0)
            return path if path.exists() else None
        pointer = self.folder / "latest.json"
        path = self.folder / read_json(pointer)["file"] if pointer.exists() else None
        return path if path is not None and path.exists() else None

    def load(self) -> dict[str, Any] | None:
        path = self.latest()
        return load_torch(path) if path is not None else None

    def save(self, state: dict[str, Any]) -> Path:
        """Write ``state`` (it holds its ``step``) as the newest checkpoint; older ones beyond ``keep`` go."""
        path = self.path(state["step"])
        save_torch(state, path)
        if not self.name:
            write_json(self.folder / "latest.json", {"file": path.name, "step": state["step"]})
            for old in sorted(self.folder.glob("step-*.pt"))[:-self.keep]:
                old.unlink()
        return path

    def prune(self, keep: int = 1) -> None:
        """Keep only the newest ``keep`` numbered checkpoints (a finished run: the last one is what a longer run
        resumes from; the ones before it are dead weight, 1.3 GB each for LAOM)."""
        if not self.name:
            for old in sorted(self.folder.glob("step-*.pt"))[:-keep]:
                old.unlink()

    def clear(self) -> None:
        """Remove this stage's checkpoints (its finished model is kept elsewhere)."""
        if self.name:
            self.path(0).unlink(missing_ok=True)
            return
        for old in self.folder.glob("step-*.pt"):
            old.unlink()
        (self.folder / "latest.json").unlink(missing_ok=True)


class TrainingLoop:
    """A resumable training loop of ``steps`` updates; a stage subclasses it (see the module's docstring).

    ``checkpoint_every``: steps between checkpoints (and one at ``stop_after``, where the loop stops early as a
    kill would: the tests of exact resumption use it). ``eval_every``: steps between evaluations (0: none), and
    one at the last step; ``on_eval(step, metrics)`` sees each (a sweep's pruner; what it raises ends the run).
    Under ``torchrun`` every process runs the loop; only the first evaluates and writes, the others wait.
    """

    #: also checkpoint the last step (a stage whose finished model is kept elsewhere, rl_laof.fit's, says False)
    checkpoint_at_end = True
    #: evaluate the untrained model at step 0 (the first point of the curve, and the floor training must beat)
    evaluate_at_start = False
    #: the optimiser and the parameters it updates, set by the stage
    optimizer: torch.optim.Optimizer
    parameters: list[torch.nn.Parameter]
    #: gradient-norm clip (inf: none)
    grad_clip: float = float("inf")

    def __init__(self, stage: str, steps: int, checkpoints: Checkpoints, checkpoint_every: int, *,
                 eval_every: int = 0, hint: str = "lower the learning rate", desc: str | None = None,
                 progress: bool = True, on_eval: Callable[[int, Metrics], None] | None = None,
                 stop_after: int | None = None):
        self.stage, self.steps, self.hint, self.desc = stage, steps, hint, desc or stage
        self.checkpoints, self.checkpoint_every, self.eval_every = checkpoints, checkpoint_every, eval_every
        self.progress, self.on_eval = progress, on_eval
        self.limit = steps if stop_after is None else min(steps, stop_after)
        self.main = dist.is_main()
        self.distributed = dist.world_size() > 1
        self.step, self.history = 0, []
        self.start_step = 0  # where this invocation started (a resumed run: its checkpoint's step)
        self.train_seconds = 0.0  # seconds of updates in this invocation (no evaluation, no checkpoints)

    # ------------------------------------------------------------------ what a stage supplies
    def loss(self) -> tuple[torch.Tensor, Metrics]:
        """One step's loss (a scalar with a gradient) and the metrics to log (its value as ``loss`` by default)."""
        raise NotImplementedError

    def learning_rate(self, step: int) -> float:
        """The learning rate of update ``step`` (0-based): a function of the step, so a resumed run continues the
        schedule exactly. Default: the optimiser's own."""
        return self.optimizer.param_groups[0]["lr"]

    def after_update(self) -> None:
        """After each optimiser step (e.g. an EMA target's update)."""

    def module_state(self) -> dict[str, Any]:
        """The trained weights: checked finite before every checkpoint."""
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """What a checkpoint holds besides the loop's ``step`` and ``history``: weights, optimiser, random states."""
        raise NotImplementedError

    def load_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def evaluate(self) -> Metrics:
        """Held-out metrics of the model now (on the first process only)."""
        return {}

    def start(self) -> None:
        """Before this invocation's first update."""

    def log(self, metrics: Metrics) -> None:
        """After each update (TensorBoard, the bar's postfix); ``metrics`` hold ``grad_norm`` too."""

    def record(self, metrics: Metrics, evaluation: Metrics) -> None:
        """Keep an evaluation: by default a history entry with the step's training loss."""
        self.history.append({"step": self.step, "train_loss": metrics["loss"], **evaluation})

    # ------------------------------------------------------------------ the loop
    def run(self) -> bool:
        """Train from the newest checkpoint to the last step (or ``stop_after``); whether the stage is finished."""
        self.resume()
        self.bar = progress_bar(total=self.steps, initial=self.step, unit="step", desc=self.desc,
                                enabled=self.progress and self.main, folder=self.checkpoints.folder.parent)
        if self.step == 0 and self.evaluate_at_start and self.main:
            self.history.append({"step": 0, **self.evaluate()})
        self.start()
        while self.step < self.limit:
            t0 = time.perf_counter()
            metrics = self.update()
            self.step += 1
            self.train_seconds += time.perf_counter() - t0
            self.bar.update(1)
            self.log(metrics)
            if self.eval_every and (self.step % self.eval_every == 0 or self.step == self.steps):
                self.periodic_evaluation(metrics)
            if self.checkpoint_due():
                self.save_checkpoint()
        self.bar.close()
        return self.step >= self.steps

    def checkpoint_due(self) -> bool:
        """Every ``checkpoint_every`` steps, and where this invocation stops (at the last step only where
        :attr:`checkpoint_at_end`)."""
        if self.step == self.limit:
            return self.checkpoint_at_end or self.step < self.steps
        return self.step % self.checkpoint_every == 0

    def resume(self) -> None:
        state = self.checkpoints.load()
        if state is not None:
            self.load_state(state)
            self.step, self.history = state["step"], state["history"]
        self.start_step = self.step

    def update(self) -> Metrics:
        """One step: the stage's loss, then :meth:`optimise`; the step's metrics (the stage's, else the loss) and its
        gradient norm."""
        loss, metrics = self.loss()
        grad_norm = self.optimise(loss)
        self.after_update()
        return {"loss": float(loss.detach()), **metrics, "grad_norm": float(grad_norm)}

    def optimise(self, loss: torch.Tensor) -> torch.Tensor:
        """Back-propagate ``loss`` and update, stopping at a non-finite loss or gradient norm (the loss is checked
        on one process only when there is one: under ``torchrun`` one process must not stop alone, and the
        all-reduced gradient norm, the same on every process, stops them all)."""
        if not self.distributed:
            check_step(self.stage, self.step + 1, self.hint, loss=loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.grad_clip)
        check_step(self.stage, self.step + 1, self.hint, grad_norm=grad_norm)
        lr = self.learning_rate(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        return grad_norm

    def periodic_evaluation(self, metrics: Metrics) -> None:
        if self.main:
            evaluation = self.evaluate()
            self.record(metrics, evaluation)
            if self.on_eval is not None:
                self.on_eval(self.step, evaluation)
        dist.barrier()

    def save_checkpoint(self) -> None:
        """The loop's step and history and the stage's :meth:`state`, refused while a weight is not finite."""
        if self.main:
            check_state(self.stage, self.module_state(), self.step, self.hint)
            self.checkpoints.save({"step": self.step, "history": self.history, **self.state()})
        dist.barrier()

    def check_finite(self) -> None:
        """Raise before a finished model is written if a weight is not finite."""
        check_state(self.stage, self.module_state(), self.step, self.hint)


def trainable(module: torch.nn.Module) -> Iterable[torch.nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]
