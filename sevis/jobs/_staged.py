"""Resuming a forward pass part-way: a network whose pass is stem, stages in order, head
(timm's ResNet and SENet) can be run again from the input of any stage or block, kept from
a plain pass, so a knock-out pays only for the network after the first thing it changes.

Inside a block whose forward sevis knows (timm's ResNet bottleneck and basic block, and
SENet's bottlenecks: ``act(attention(x) + shortcut)`` at the end), a pass can resume right
at the attention module, from its input and the block's shortcut kept from a plain pass."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..hooks.capturing import HookSet

__all__ = ["AfterAttention", "InputsKept", "RunCounter", "Staged", "stage_inputs", "staged"]


@dataclass(frozen=True)
class AfterAttention:
    """The end of a block that a pass can resume at: ``act(module(x) + shortcut)``, the
    shortcut the block's input or, where the block has one, ``downsample`` of it."""

    stage: str
    block: int
    module: nn.Module
    act: nn.Module
    downsample: nn.Module | None

    def shortcut(self, block_input: torch.Tensor) -> torch.Tensor:
        """The shortcut the block adds, from the block's input."""
        return block_input if self.downsample is None else self.downsample(block_input)


def _known_ends() -> dict[object, tuple[str, str]]:
    """Block forwards whose last steps are ``act(attention(x) + shortcut)``: the forward
    function -> (the attention module's attribute, the activation's attribute). Matched by
    the forward function itself, so a subclass that rewrites it is not taken for one."""
    from timm.models import resnet, senet

    return {
        resnet.Bottleneck.forward: ("se", "act3"),
        resnet.BasicBlock.forward: ("se", "act2"),
        senet.Bottleneck.forward: ("se_module", "relu"),
    }


@dataclass(frozen=True)
class Staged:
    """A network's stage modules (``layer1`` …, in order) and its head."""

    model: nn.Module
    names: list[str]
    head: Callable[[torch.Tensor], torch.Tensor]

    def block_of(self, path: str) -> tuple[str, int] | None:
        """The stage and the block index (within the stage's ``nn.Sequential``) holding the
        module at ``path`` (``layer4.1.se`` -> ``("layer4", 1)``); None outside the blocks."""
        parts = path.split(".")
        if len(parts) < 2 or parts[0] not in self.names or not parts[1].isdigit():
            return None
        stage = getattr(self.model, parts[0])
        if not isinstance(stage, nn.Sequential) or int(parts[1]) >= len(stage):
            return None
        return parts[0], int(parts[1])

    def module(self, stage: str, block: int | None = None) -> nn.Module:
        """A stage module, or one block of it."""
        found = getattr(self.model, stage)
        return found if block is None else found[block]

    def after_attention(self, path: str) -> AfterAttention | None:
        """Where a pass can resume at the attention module at ``path``; None where the
        block's forward is not one sevis knows, or the model is training (then
        :meth:`run_from` the block's input serves)."""
        where = self.block_of(path)
        if where is None or self.model.training:
            return None
        block = self.module(*where)
        names = _known_ends().get(type(block).forward)
        if names is None or path != f"{where[0]}.{where[1]}.{names[0]}":
            return None
        downsample = getattr(block, "downsample", None)
        return AfterAttention(where[0], where[1], getattr(block, names[0]), getattr(block, names[1]), downsample)

    def run_after(self, end: AfterAttention, attention_input: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        """Logits from the attention module's input and the block's shortcut on."""
        return self.run_from(end.stage, end.block + 1, end.act(end.module(attention_input) + shortcut))

    def run_from(self, stage: str, block: int, h: torch.Tensor) -> torch.Tensor:
        """Logits from the input ``h`` of ``block`` of ``stage`` on (``block`` may be one past
        the stage's last: ``h`` is then the stage's output)."""
        if block == 0:
            h = self.module(stage)(h)  # the stage itself: its hooks see the pass
        else:
            for module in list(self.module(stage).children())[block:]:
                h = module(h)
        for name in self.names[self.names.index(stage) + 1 :]:
            h = self.module(name)(h)
        return self.head(h)


def staged(model: nn.Module) -> Staged | None:
    """The stages of a timm ResNet or SENet, whose forward pass is exactly stem, stages in
    order, head; None for any other network (it is then run whole)."""
    from timm.models.resnet import ResNet
    from timm.models.senet import SENet

    if not isinstance(model, ResNet | SENet) or getattr(model, "grad_checkpointing", False):
        return None
    # NOTE a subclass that rewrites the pass between the stages (PytorchInsight's BAM-ResNet-50
    # puts BAM after three of them) is not stem, stages, head: it runs whole.
    if type(model).forward_features is not (ResNet if isinstance(model, ResNet) else SENet).forward_features:
        return None
    names = [f"layer{i}" for i in range(1, 5)]
    if not all(isinstance(getattr(model, n, None), nn.Module) for n in names):
        return None
    return Staged(model, names, model.forward_head)


class InputsKept(HookSet):
    """Forward pre-hooks keeping the input of each given module during the passes of the
    thread that entered the block (``with InputsKept(modules) as kept: model(x)``;
    ``kept.inputs[key]``, the last pass's)."""

    def __init__(self, modules: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self.modules = dict(modules)
        self.inputs: dict[str, torch.Tensor] = {}

    def attach(self) -> None:
        for key, module in self.modules.items():
            self.keep(module.register_forward_pre_hook(self._hook(key)))

    def _hook(self, key: str) -> Callable[[nn.Module, tuple], None]:
        def hook(module: nn.Module, args: tuple) -> None:
            if threading.get_ident() == self.owner:  # never another thread's images
                self.inputs[key] = args[0]

        return hook


def stage_inputs(
    model: nn.Module, names: Sequence[str], x: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The plain pass's logits and the input of each named stage module on the way."""
    with InputsKept({n: getattr(model, n) for n in names}) as kept:
        return model(x), kept.inputs


class RunCounter(HookSet):
    """Counts the images each given module runs in the thread that entered the block
    (forward pre-hooks), the work a job did: ``runs[key]``."""

    def __init__(self, modules: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self.modules = dict(modules)
        self.runs = dict.fromkeys(self.modules, 0)

    def attach(self) -> None:
        for key, module in self.modules.items():
            self.keep(module.register_forward_pre_hook(self._hook(key)))

    def _hook(self, key: str) -> Callable[[nn.Module, tuple], None]:
        def hook(module: nn.Module, args: tuple) -> None:
            if threading.get_ident() == self.owner:  # a model shared with other threads
                self.runs[key] += int(args[0].shape[0])

        return hook
