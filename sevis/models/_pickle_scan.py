"""The pickle scanner: a weights file's pickle walked opcode by opcode against
:class:`~sevis.limits.Limits` before ``torch.load`` sees it."""

from __future__ import annotations

import io
import pickletools
import zipfile
from dataclasses import dataclass, field
from typing import BinaryIO

import torch

from ..data._zipcheck import check_members, count_entries
from ..limits import Limits

__all__ = []


_MB = 1024**2


# The storage types a weights file may hold; complex, quantized and float8 tensors are
# no part of these networks and are refused by name before anything is materialised.
_STORAGES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}


_REAL = frozenset(_STORAGES.values())


_IN_PLACE = frozenset({"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"})


_LEGACY_PICKLES = 5  # magic number, protocol, system info, the object, storage keys


class _Refused(Exception):
    """A checkpoint beyond the limits; the message says which, in a person's words."""


@dataclass
class _Scan:
    """What walking a checkpoint's pickles found: opcodes and each storage's type and size."""

    limits: Limits
    ops: int = 0
    storages: dict[str, tuple[str, int]] = field(default_factory=dict)  # key -> (type, bytes)

    @property
    def tensor_bytes(self) -> int:
        return sum(nbytes for _, nbytes in self.storages.values())


class _Node:
    """An object the pickle builds: its nesting depth, its size with shared references
    unfolded, and its value when it is a small literal (for storage references)."""

    __slots__ = ("depth", "size", "value")

    def __init__(self, depth: int, size: int, value: object = None) -> None:
        self.depth, self.size, self.value = depth, size, value


_MARK = _Node(-1, 0)


def _scan(f: BinaryIO, scan: _Scan) -> None:
    """Walk one pickle of ``f`` (from its position to its STOP) without building it."""
    limits = scan.limits
    stack: list[_Node] = []
    memo: dict[object, _Node] = {}
    for op, arg, _ in pickletools.genops(f):
        scan.ops += 1
        if scan.ops > limits.pickle_objects:
            raise _Refused(f"the pickle has more than {limits.pickle_objects:,} objects")
        name = op.name
        if name in ("PROTO", "FRAME", "STOP", "PUT", "BINPUT", "LONG_BINPUT"):
            if name.endswith("PUT"):
                memo[arg] = _top(stack)
            continue
        if name == "MEMOIZE":
            memo[len(memo)] = _top(stack)
            continue
        if name in ("GET", "BINGET", "LONG_BINGET"):
            if arg not in memo:
                raise ValueError("a pickle that refers to an object it never made")
            stack.append(memo[arg])
            continue
        if name == "MARK":
            stack.append(_MARK)
            continue
        if name == "DUP":
            stack.append(_top(stack))
            continue
        before = op.stack_before
        if pickletools.markobject in before:
            below = before.index(pickletools.markobject)  # the list, dict or set being filled
            items = _pop_to_mark(stack)
            popped = [_pop(stack) for _ in range(below)][::-1] + items
        else:
            popped = [_pop(stack) for _ in range(len(before))][::-1]
        if not op.stack_after:  # POP, POP_MARK
            continue
        if name in _IN_PLACE:
            node, items = popped[0], popped[1:]
            node.depth = max(node.depth, 1 + max((i.depth for i in items), default=-1))
            node.size += sum(i.size for i in items)
        else:
            node = _Node(1 + max((i.depth for i in popped), default=-1), 1 + sum(i.size for i in popped))
            node.value = _value(name, arg, popped)
            if name in ("BINPERSID", "PERSID"):
                _storage(scan, popped[0].value if name == "BINPERSID" else None)
        if node.depth > limits.pickle_depth:
            raise _Refused(f"its objects are nested more than {limits.pickle_depth} deep")
        if node.size > limits.pickle_unfolded:
            raise _Refused(
                f"its objects unfold into more than {limits.pickle_unfolded:,} (shared references "
                "nested in one another, which printing, hashing or comparing would expand)"
            )
        stack.append(node)


def _top(stack: list[_Node]) -> _Node:
    if not stack:
        raise ValueError("a malformed pickle (empty stack)")
    return stack[-1]


def _pop(stack: list[_Node]) -> _Node:
    node = _top(stack)
    stack.pop()
    if node is _MARK:
        raise ValueError("a malformed pickle (unexpected mark)")
    return node


def _pop_to_mark(stack: list[_Node]) -> list[_Node]:
    items: list[_Node] = []
    while True:
        if not stack:
            raise ValueError("a malformed pickle (no mark)")
        node = stack.pop()
        if node is _MARK:
            return items[::-1]
        items.append(node)


def _value(name: str, arg: object, popped: list[_Node]) -> object:
    """Small literals, globals and tuples of them: enough to read a storage reference."""
    if isinstance(arg, (int, bool)) or (isinstance(arg, str) and len(arg) <= 256 and name != "GLOBAL"):
        return arg
    if name == "GLOBAL" and isinstance(arg, str):
        return ("global", *arg.split(" ", 1))
    if name == "STACK_GLOBAL" and all(isinstance(p.value, str) for p in popped):
        return ("global", *(p.value for p in popped))
    if name.startswith("TUPLE") and len(popped) <= 8:
        return tuple(p.value for p in popped)
    return None


def _storage(scan: _Scan, pid: object) -> None:
    """Count one tensor storage reference: ``('storage', torch.XStorage, key, location, numel, ...)``."""
    limits = scan.limits
    if not (
        isinstance(pid, tuple)
        and len(pid) >= 5
        and pid[0] == "storage"
        and isinstance(pid[1], tuple)
        and isinstance(pid[2], str)
        and isinstance(pid[4], int)
        and pid[4] >= 0
    ):
        raise _Refused("it refers to data in a way PyTorch checkpoints do not")
    kind = pid[1]
    type_name = kind[2] if len(kind) == 3 and kind[1] == "torch" and isinstance(kind[2], str) else ""
    if type_name not in _STORAGES:
        shown = type_name[:40] if type_name.isidentifier() else "an unknown type"
        why = "not real numbers" if "Complex" in shown else "not a type these networks use"
        raise _Refused(f"it holds tensors stored as {shown} ({why})")
    if pid[2] not in scan.storages:
        scan.storages[pid[2]] = (type_name, pid[4] * _STORAGES[type_name].itemsize)
        if len(scan.storages) > limits.tensors:
            raise _Refused(f"it holds more than {limits.tensors:,} tensors")
        if scan.tensor_bytes > limits.checkpoint_bytes:
            raise _Refused(f"its tensors claim more than {limits.checkpoint_bytes / _MB:,.0f} MB")


def _check_archive(data: bytes, limits: Limits) -> None:
    """A PyTorch zip checkpoint: entries counted before listing, the pickle walked, every
    storage present in the archive with at least the bytes it claims."""
    raw = io.BytesIO(data)
    count_entries(raw, limits.tensors + 16)
    archive = zipfile.ZipFile(raw)
    infos = archive.infolist()
    check_members(raw, infos, archive.start_dir)
    if sum(i.file_size for i in infos) > limits.checkpoint_bytes:
        raise _Refused(f"it unpacks to more than {limits.checkpoint_bytes / _MB:,.0f} MB")
    # NOTE torch.load does not check the archive's CRCs: flipped bytes inside a
    # tensor would load as silently wrong weights.
    bad = archive.testzip()
    if bad is not None:
        raise ValueError("bad CRC in one of its entries")
    pickles = [i for i in infos if i.filename.endswith("/data.pkl") or i.filename == "data.pkl"]
    if len(pickles) != 1:
        raise ValueError("no data.pkl in the archive" if not pickles else "more than one data.pkl")
    scan = _Scan(limits)
    with archive.open(pickles[0]) as f:
        _scan(io.BytesIO(f.read()), scan)
    prefix = pickles[0].filename[: -len("data.pkl")]
    sizes = {i.filename: i.file_size for i in infos}
    for key, (_, nbytes) in scan.storages.items():
        if sizes.get(f"{prefix}data/{key}", -1) < nbytes:
            raise ValueError("a tensor whose data is missing or shorter than it claims")


def _check_legacy(data: bytes, limits: Limits) -> None:
    """A legacy (pre-1.6) checkpoint: five pickles walked, then the raw storages, which
    must fit in what is left of the file."""
    f = io.BytesIO(data)
    scan = _Scan(limits)
    for _ in range(_LEGACY_PICKLES):
        _scan(f, scan)
    left = len(data) - f.tell()
    if scan.tensor_bytes > left:
        raise _Refused(
            f"its tensors claim {scan.tensor_bytes / _MB:,.1f} MB but the file holds {left / _MB:,.1f} MB after them"
        )
