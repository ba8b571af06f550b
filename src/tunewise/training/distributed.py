"""Data-parallel training through Accelerate: who writes, which rows each process trains on,
and how `tunewise train --nproc N` starts itself N times.

Why Accelerate rather than our own process group: the same loop then runs under DDP (gloo on CPU,
NCCL on GPU), FSDP or DeepSpeed, chosen by `accelerate launch` flags or an Accelerate config file,
on one machine or many, with no code path of its own here:

    tunewise train configs/banking77.yaml --nproc 2           # DDP on this machine
    accelerate launch -m tunewise train configs/banking77.yaml  # whatever `accelerate config` says

Every process reads the same data and draws the same global batches (same seed); each takes a
disjoint slice of every micro-batch, and DDP averages the gradients, so a step over N processes
equals one process's step over the whole batch. Only the main process writes files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

from tunewise.core.errors import InputError, Problem

_RANK_VARS = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def _first_int(names: Sequence[str], default: int) -> int:
    for name in names:
        if os.environ.get(name, "").strip():
            return int(os.environ[name])
    return default


def rank() -> int:
    """This process's global rank as set by the launcher (torchrun, accelerate, MPI); 0 alone.

    Read from the environment rather than from Accelerate's state, so asking does not start a
    process group before the training loop chooses CPU or GPU.
    """
    return _first_int(_RANK_VARS, 0)


def world_size() -> int:
    """How many processes train together (1 without a launcher)."""
    return _first_int(_SIZE_VARS, 1)


def is_main() -> bool:
    """True in the one process that writes history, checkpoints, the model and reports."""
    return rank() == 0


def shard(part: list[int], index: int, count: int) -> tuple[list[int], float]:
    """This process's rows of one micro-batch and the weight that keeps the step exact.

    Process `index` takes rows index, index + count, ...; its mean loss is scaled by
    len(mine) * count / len(part), so the mean over processes (what DDP averages) equals the mean
    over the whole micro-batch even when it does not split evenly. A process left with no row
    still runs one row at weight 0: every process must join each gradient all-reduce.
    """
    if count <= 1:
        return part, 1.0
    mine = part[index::count]
    if not mine:
        return part[:1], 0.0
    return mine, len(mine) * count / len(part)


def launch_command(argv: Sequence[str], nproc: int, port: int | None = None) -> list[str]:
    """`accelerate launch` for `python -m tunewise ARGV` on `nproc` local processes.

    `--multi_gpu` is Accelerate's flag for several local processes; on a machine without CUDA
    each process asks for the CPU and Accelerate forms a gloo group instead of NCCL.
    """
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(nproc),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",  # the loop's own train.precision decides autocast
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(port if port is not None else _free_port()),
        "-m",
        "tunewise",
        *argv,
    ]


def relaunch(argv: Sequence[str], nproc: int) -> int:
    """Run `tunewise ARGV` as `nproc` data-parallel processes and wait; their exit code."""
    if nproc < 1:
        raise InputError([Problem("--nproc", None, "nproc", "must be >= 1", "e.g. --nproc 2")])
    env = {**os.environ, "TUNEWISE_LAUNCHED": "1"}  # the children must not launch again
    return subprocess.call(launch_command(argv, nproc), env=env)


def launched() -> bool:
    """True inside a process that a launcher started (so `--nproc` must not launch again)."""
    return bool(os.environ.get("TUNEWISE_LAUNCHED")) or world_size() > 1


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def finish() -> None:
    """Wait for every process (the main one may still be saving), then leave the group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
