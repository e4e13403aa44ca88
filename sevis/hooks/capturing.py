"""Record the attention values a forward pass used.

    with sevis.capture(model) as cap:
        logits = model(x)
    cap.excitations["SE_2_1"]   # (N, C): the SE gate s = sigmoid(W2 relu(W1 z))
    cap.masks["SGE_3_4"]        # (N, G, H, W): the SGE spatial masks sigmoid(a)

A forward hook on each layer's gate child stores the gate's output, detached and
reshaped (a view, no copy), so the values are the very tensors the forward pass
multiplied by: nothing is recomputed. Hooks live exactly as long as the ``with``
block.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Self

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from ..attention.registry import AttentionLayer, find_attention
from ..errors import UnknownLayerError

__all__ = ["Capture", "HookSet", "capture"]


class HookSet:
    """Hooks that live exactly as long as a ``with`` block, also when it raises, and act only
    on forward passes of the thread that entered it. Subclasses override :meth:`attach`,
    registering each hook through :meth:`keep`, and compare ``threading.get_ident()``
    with :attr:`owner` in their hooks."""

    def __init__(self) -> None:
        self._handles: list[RemovableHandle] = []
        self._owner: int | None = None

    @property
    def owner(self) -> int | None:
        """The thread that entered the block (``threading.get_ident()``); None outside it."""
        return self._owner

    def keep(self, handle: RemovableHandle) -> None:
        """Remove ``handle`` when the block is left (or :meth:`attach` fails)."""
        self._handles.append(handle)

    def attach(self) -> None:
        """Register the hooks (called on entering the block), each through :meth:`keep`."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        if self._handles:
            raise RuntimeError(f"this {type(self).__name__} is already active; make a new one to nest")
        self._owner = threading.get_ident()
        try:
            self.attach()
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._remove()  # returns None: an exception inside the block propagates

    def _remove(self) -> None:
        handles, self._handles = self._handles, []
        for handle in handles:
            handle.remove()


class Capture(HookSet):
    """Context manager that captures SE excitations and SGE masks of ``model`` (and the
    values of any other registered kind of attention, see :mod:`sevis.attention.kinds`).

    Only forward passes run by the thread that entered the block are recorded, so
    several threads may capture on one shared model at the same time, each getting
    its own images' values. Several forward passes inside one block are concatenated
    along the batch dimension.

    Args:
        model: any network with registered attention layers (see
            :func:`sevis.attention.register_attention`).
        layers: names of the layers to record (default: all).
        module_values: also record what each kind takes from its whole module (SGE: the
            group feature norms before it, see :attr:`extras`); costs one more hook and some
            arithmetic per layer, so it is off unless asked for.
    """

    def __init__(self, model: nn.Module, layers: Iterable[str] | None = None, *, module_values: bool = False) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        self.model = model
        found = find_attention(model)
        if not found:
            raise ValueError(
                f"{type(model).__name__} has no attention layers sevis knows; "
                "register the attention class with sevis.register_attention"
            )
        if layers is not None:
            wanted = list(layers)
            known = {layer.name for layer in found}
            unknown = [name for name in wanted if name not in known]
            if unknown:
                raise UnknownLayerError(f"layers {unknown} not in the model; it has {[x.name for x in found]}")
            found = [layer for layer in found if layer.name in set(wanted)]
        super().__init__()
        self.layers: list[AttentionLayer] = found
        self._chunks: dict[str, list[torch.Tensor]] = {layer.name: [] for layer in found}
        self._extra_chunks: dict[str, dict[str, list[torch.Tensor]]] = {
            layer.name: {} for layer in found if module_values and layer.spec.module_fields
        }

    def attach(self) -> None:
        for layer in self.layers:
            self.keep(layer.gate.register_forward_hook(self._make_hook(layer)))
            if layer.name in self._extra_chunks:
                self.keep(layer.module.register_forward_hook(self._make_module_hook(layer)))

    def _make_hook(self, layer: AttentionLayer) -> Callable[[nn.Module, object, torch.Tensor], None]:
        store = self._chunks[layer.name]
        owner = self.owner
        kind, module = layer.spec, layer.module

        def hook(gate: nn.Module, args: object, output: torch.Tensor) -> None:
            if threading.get_ident() == owner:
                store.append(kind.per_image(module, output))  # a view: (N, ...) per image

        return hook

    def _make_module_hook(self, layer: AttentionLayer) -> Callable[[nn.Module, tuple, torch.Tensor], None]:
        store = self._extra_chunks[layer.name]
        owner = self.owner
        kind = layer.spec

        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if threading.get_ident() == owner:
                for name, value in kind.module_values(module, inputs, output).items():
                    store.setdefault(name, []).append(value)

        return hook

    @property
    def extras(self) -> dict[str, dict[str, torch.Tensor]]:
        """Layer name -> name -> what its kind records from the whole module's input and
        output (:meth:`sevis.attention.kinds.AttentionKind.module_values`; SGE: ``norm_before``,
        (N, G, H, W)), when the capture was made with ``module_values=True``."""
        return {
            layer: {name: chunks[0] if len(chunks) == 1 else torch.cat(chunks) for name, chunks in per_name.items()}
            for layer, per_name in self._extra_chunks.items()
            if per_name
        }

    def _gather(self, kind: str | None) -> dict[str, torch.Tensor]:
        out = {}
        for layer in self.layers:
            chunks = self._chunks[layer.name]
            if kind in (None, layer.kind) and chunks:
                out[layer.name] = chunks[0] if len(chunks) == 1 else torch.cat(chunks)
        return out

    @property
    def excitations(self) -> dict[str, torch.Tensor]:
        """SE layer name -> excitation s, shape (N, C), in depth order."""
        return self._gather("se")

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """SGE layer name -> spatial masks sigmoid(a), shape (N, G, H, W), in depth order."""
        return self._gather("sge")

    def of_kind(self, kind: str) -> dict[str, torch.Tensor]:
        """Layer name -> recorded values of every layer of ``kind``, in depth order."""
        return self._gather(kind)

    def clear(self) -> None:
        """Forget what was recorded so far (e.g. between batches of a long run)."""
        for chunks in self._chunks.values():
            chunks.clear()
        for per_name in self._extra_chunks.values():
            per_name.clear()

    @property
    def values(self) -> Mapping[str, torch.Tensor]:
        """Every recorded layer, of every kind, in depth order."""
        return self._gather(None)


def capture(model: nn.Module, layers: Iterable[str] | None = None, *, module_values: bool = False) -> Capture:
    """Capture the attention values of every SE and SGE layer of ``model``.

    See :class:`Capture`.
    """
    return Capture(model, layers, module_values=module_values)
