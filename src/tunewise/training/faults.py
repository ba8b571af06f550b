"""Faults a long run must survive: a non-finite step, and a request to stop (SIGTERM, SIGINT).

A step whose loss or gradient norm is NaN or infinite is skipped (no optimizer update), logged
as a `split: "fault"` record in history.jsonl, and kept out of the averaged training loss; after
`train.max_nonfinite_steps` such steps the run aborts (exit 1) and `nonfinite.json` names the step
and the training rows of the batch. SIGTERM and SIGINT let the current step finish, then the loop
writes a checkpoint and raises `TrainingInterrupted` (exit 143 / 130); `--resume` continues. A
second SIGINT stops at once, as Python normally does.

    watch = Watch.start(cfg.max_nonfinite_steps, out_dir, reduce, log)  # reduce: DDP only
    if watch.step_is_finite(loss, grad_norm):  # one host sync, agreed by every process
        optimizer.step()
    else:
        watch.skip(state, rows, loss, grad_norm)  # after state.step += 1
"""

from __future__ import annotations

import json
import math
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunewise.core import rundir
from tunewise.core.errors import BlockingFinding, TrainingInterrupted

if TYPE_CHECKING:
    import torch

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class NonFiniteAbort(BlockingFinding):
    """Too many steps with a NaN or infinite loss or gradient (exit 1)."""


@dataclass
class Watch:
    """Per-run fault state: skipped steps so far, and a pending stop request."""

    limit: int
    out_dir: Path | None = None
    reduce: Callable[[torch.Tensor, str], torch.Tensor] | None = None  # across DDP processes
    log: Callable[[dict[str, Any]], None] | None = None
    skipped_: list[dict[str, Any]] = field(default_factory=list)
    signum_: int = 0
    stopping_: bool = False
    previous_: dict[int, Any] = field(default_factory=dict)

    @classmethod
    def start(cls, limit: int, out_dir: Path | None = None, reduce=None, log=None) -> Watch:
        """A watch with SIGTERM/SIGINT handlers installed (main thread only; `stop` removes).
        A signal the process was started ignoring (a background job's SIGINT) stays ignored."""
        watch = cls(limit, out_dir, reduce, log)
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    watch.previous_[sig] = signal.signal(sig, watch._on_signal)
        return watch

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.signum_ and signum == signal.SIGINT:  # asked twice: stop now
            self.stop()
            raise KeyboardInterrupt
        self.signum_ = signum

    def stop(self) -> None:
        """Put back the handlers that were there before `start`."""
        for sig, handler in self.previous_.items():
            signal.signal(sig, handler)
        self.previous_.clear()

    @property
    def stopping(self) -> bool:
        """A stop was asked: at once alone, as agreed at the last step's sync under DDP."""
        return self.stopping_ or (self.reduce is None and self.signum_ > 0)

    def step_is_finite(self, loss: torch.Tensor, grad_norm: torch.Tensor | float) -> bool:
        """Whether every process saw a finite loss and gradient norm; also agree on stopping."""
        import torch

        norm = torch.as_tensor(grad_norm, dtype=torch.float32, device=loss.device)
        bad = (~torch.isfinite(loss.float()) | ~torch.isfinite(norm)).float()
        flags = torch.stack([bad, bad.new_tensor(float(self.signum_ > 0))])
        if self.reduce is not None:
            flags = self.reduce(flags, "sum")
        bad_any, stop_any = flags.tolist()
        self.stopping_ = stop_any > 0
        return bad_any == 0

    def skip(self, state: Any, rows: list[int], loss: torch.Tensor, grad_norm: Any) -> None:
        """Log a skipped step (`state.step` is its number); past the limit write
        nonfinite.json and abort. `state.nonfinite_steps` counts them across a resume."""
        state.nonfinite_steps += 1
        step = state.step
        record = {
            "step": step,
            "split": "fault",
            "event": "nonfinite_step_skipped",
            "loss": float(loss),
            "grad_norm": float(grad_norm),
            "rows": list(rows),
        }
        self.skipped_.append(record)
        if self.log is not None:
            self.log(record)
        if state.nonfinite_steps > self.limit:
            self.stop()
            raise NonFiniteAbort(self._abort_message(step, rows))

    def _abort_message(self, step: int, rows: list[int]) -> str:
        text = (
            f"{len(self.skipped_)} steps this session had a NaN or infinite loss or gradient "
            f"(train.max_nonfinite_steps={self.limit}); the last was step {step}"
        )
        if self.out_dir is None:
            return f"{text}, training rows {rows}"
        path = self.out_dir / rundir.NONFINITE
        report = {"step": step, "rows": rows, "limit": self.limit, "skipped": self.skipped_}
        path.write_text(json.dumps(_finite_or_text(report), indent=1))
        return f"{text}; its batch's training rows are in {path}"

    def interrupted(self, checkpoint: Path | None) -> TrainingInterrupted:
        """The exception that ends training after the stop request's checkpoint."""
        self.stop()
        return TrainingInterrupted(self.signum_ or signal.SIGTERM, checkpoint)


def _finite_or_text(value: Any) -> Any:
    """JSON has no NaN: write non-finite numbers as the strings "nan", "inf", "-inf"."""
    if isinstance(value, dict):
        return {k: _finite_or_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_text(v) for v in value]
    return str(value) if isinstance(value, float) and not math.isfinite(value) else value
