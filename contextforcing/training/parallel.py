"""Scaling out: FSDP2 sharding, activation checkpointing, and full (unsharded) state for checkpoints.

The only module of the library that touches torch.distributed: the process group (joined under
torchrun, left cleanly), sharding, and the collectives of the trainer. A single CPU process is the default;
under torchrun every block and then the whole model are wrapped with `fully_shard` (FSDP2), and
checkpoints gather full tensors on rank 0 so they load anywhere, sharded or not.
"""

from __future__ import annotations

import os

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

__all__ = [
    "all_finite",
    "barrier",
    "distributed_info",
    "full_model_state",
    "full_optimizer_state",
    "full_tensor",
    "init_distributed",
    "load_model_state",
    "load_optimizer_state",
    "mean_over_processes",
    "parallelize",
    "shard_like",
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


def barrier(world_size: int) -> None:
    """Wait for every process (nothing to wait for in a single process)."""
    if world_size > 1:
        torch.distributed.barrier()


def parallelize(model: CausalDiT, *, world_size: int, activation_checkpointing: bool) -> CausalDiT:
    """Shard the model with FSDP2 when running on several processes; enable recomputation."""
    model.activation_checkpointing = activation_checkpointing
    if world_size > 1:
        from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

        for block in model.blocks:
            fully_shard(block)
            register_fsdp_forward_method(block, "text_kv")
        fully_shard(model)
        register_fsdp_forward_method(model, "encode_text")
    return model


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


def load_model_state(model: nn.Module, state: dict[str, Tensor]) -> None:
    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, strict=True))


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    return get_optimizer_state_dict(model, optimizer, options=_FULL)


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
