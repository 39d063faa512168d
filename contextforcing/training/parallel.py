"""Scaling out: FSDP2 sharding, activation checkpointing, sharded and full state for checkpoints.

The only module of the library that touches torch.distributed: the process group (joined under
torchrun, left cleanly), sharding, and the collectives of the trainer. A single CPU process is the
default; under torchrun every block and then the whole model of every role, frozen ones included, are
wrapped with `fully_shard` (FSDP2), with bf16 parameters and fp32 gradient reductions when training in
bf16. Checkpoints of several processes are written with torch.distributed.checkpoint (DCP): each
process writes its own shards, none gathers the whole state, and DCP reshards on load, so a checkpoint
resumes on any number of processes. `full_model_state` gathers one model on rank 0 for export.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from contextforcing.model.dit import CausalDiT
from contextforcing.runtime import Precision

__all__ = [
    "all_finite",
    "barrier",
    "distributed_info",
    "full_model_state",
    "full_optimizer_state",
    "full_tensor",
    "gather_rows",
    "init_distributed",
    "load_model_state",
    "load_optimizer_state",
    "load_sharded",
    "mean_over_processes",
    "parallelize",
    "save_sharded",
    "shard_like",
    "shard_model",
    "sharded_model_state",
    "sharded_optimizer_state",
    "shutdown_distributed",
]

_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def distributed_info() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside torchrun."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the torchrun process group (NCCL on CUDA, gloo on CPU) when launched by torchrun."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1:
        return 0, 1
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(backend=backend)
    return distributed_info()


def shutdown_distributed() -> None:
    """Leave the process group, after every rank has arrived, so no rank exits while another still talks."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def parallelize(
    model: CausalDiT, *, world_size: int, activation_checkpointing: bool, precision: Precision = "fp32"
) -> CausalDiT:
    """Shard the model with FSDP2 when running on several processes; enable recomputation."""
    model.activation_checkpointing = activation_checkpointing
    if world_size > 1:
        shard_model(model, precision=precision)
    return model


def shard_model(model: CausalDiT, *, precision: Precision = "fp32") -> CausalDiT:
    """`fully_shard` every block, then the model, over the default process group. Under bf16 the
    parameters are all-gathered in bf16 and gradients reduced in fp32; the shards stay fp32."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

    policy = MixedPrecisionPolicy()
    if precision == "bf16":
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for block in model.blocks:
        fully_shard(block, mp_policy=policy)
        register_fsdp_forward_method(block, "text_kv")
    fully_shard(model, mp_policy=policy)
    register_fsdp_forward_method(model, "encode_text")
    return model


def barrier(world_size: int) -> None:
    """Wait until every process arrives (nothing to do for one process)."""
    if world_size > 1:
        torch.distributed.barrier()


def gather_rows(value: Tensor, world_size: int) -> Tensor:
    """Every process's `value` [N, ...] (equal shapes) concatenated in rank order, on every process."""
    if world_size == 1:
        return value
    parts = [torch.empty_like(value) for _ in range(world_size)]
    torch.distributed.all_gather(parts, value.contiguous())
    return torch.cat(parts)


def sharded_model_state(model: nn.Module) -> dict[str, Tensor]:
    """The model's state as this process holds it (DTensor shards under FSDP2), for `save_sharded`."""
    return get_model_state_dict(model)


def sharded_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's state keyed by parameter name, as this process holds it."""
    return get_optimizer_state_dict(model, optimizer)


def save_sharded(folder: Path, state: dict) -> None:
    """Write `state` (nested dicts of sharded or plain tensors and Python values) with DCP: every
    process writes its own shards of `folder` (collective)."""
    import torch.distributed.checkpoint as dcp

    dcp.save(state, checkpoint_id=str(folder))


def load_sharded(folder: Path, state: dict) -> None:
    """Fill `state` (the structure `save_sharded` wrote, as this run shards it) from `folder` in place;
    DCP reshards to this run's processes (collective)."""
    import torch.distributed.checkpoint as dcp

    dcp.load(state, checkpoint_id=str(folder))


def all_finite(value: Tensor, world_size: int) -> bool:
    """Whether `value` is finite on every process (all decide together, so none hangs in a collective)."""
    flag = torch.tensor([float(torch.isfinite(value).all())])
    if world_size > 1:
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
    return bool(flag.item())


def mean_over_processes(metrics: dict[str, float], world_size: int) -> dict[str, float]:
    """Average scalar metrics over all processes (each logs its own share of the batch)."""
    if world_size == 1 or not metrics:
        return metrics
    values = torch.tensor(list(metrics.values()), dtype=torch.float64)
    torch.distributed.all_reduce(values)
    return dict(zip(metrics, (values / world_size).tolist(), strict=True))


def full_tensor(value: Tensor) -> Tensor:
    """The whole tensor behind a (possibly sharded) DTensor."""
    return value.full_tensor() if hasattr(value, "full_tensor") else value


def shard_like(full: Tensor, like: Tensor) -> Tensor:
    """Distribute a full tensor with the placements of `like` (identity for plain tensors)."""
    if hasattr(like, "device_mesh"):
        from torch.distributed.tensor import distribute_tensor

        return distribute_tensor(full.to(like.device), like.device_mesh, like.placements)
    return full.to(like.device)


def full_model_state(model: nn.Module) -> dict[str, Tensor]:
    return get_model_state_dict(model, options=_FULL)


def load_model_state(model: nn.Module, state: dict[str, Tensor], *, full: bool = True) -> None:
    """Load a full state (every tensor whole), or with `full=False` the state `sharded_model_state` gave."""
    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=full, strict=True))


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    return get_optimizer_state_dict(model, optimizer, options=_FULL)


def load_optimizer_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, state: dict, *, full: bool = True
) -> None:
    """Load a full optimizer state, or with `full=False` the state `sharded_optimizer_state` gave."""
    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=full))
