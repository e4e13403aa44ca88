"""Bounds on what reading a user's file may cost: checkpoints, zips, parsing workers.

Every reader of untrusted input takes a :class:`Limits` (the defaults when none is
given); an operator sets them for a whole server through environment variables, read
by :meth:`Limits.from_env`:

=============================  ==============================================  =========
variable                       bounds                                          default
=============================  ==============================================  =========
``SEVIS_MAX_CHECKPOINT_MB``    a weights file's size, checked before reading   1024
``SEVIS_PARSE_TIMEOUT_S``      seconds a worker may spend reading a checkpoint 120
``SEVIS_PARSE_MEMORY_MB``      memory of that worker (its data segment)        4096
``SEVIS_PARSE_NICE``           steps of niceness that worker runs below the    10
                               server (0 to 19): how far it yields the CPU
``SEVIS_ZIP_MAX_FILES``        entries of a zip (checked before listing them)  20000
``SEVIS_ZIP_MAX_MEMBER_MB``    one file in a zip, unpacked                     64
``SEVIS_ZIP_MAX_MB``           all files of a zip, unpacked                    1024
``SEVIS_MAX_IMAGE_MB``         one image file of a dataset, checked before     64
                               reading it (``sevis extract``, ``ablate``)
=============================  ==============================================  =========

The pickle inside a checkpoint is bounded too (objects, nesting depth, objects once
shared references are unfolded, tensors); those are not meant to be tuned.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

__all__ = ["Limits"]

_MB = 1024**2

# field -> (environment variable, factor from the variable's unit to the field's)
_ENV = {
    "checkpoint_bytes": ("SEVIS_MAX_CHECKPOINT_MB", _MB),
    "parse_seconds": ("SEVIS_PARSE_TIMEOUT_S", 1),
    "parse_memory_bytes": ("SEVIS_PARSE_MEMORY_MB", _MB),
    "parse_nice": ("SEVIS_PARSE_NICE", 1),
    "zip_files": ("SEVIS_ZIP_MAX_FILES", 1),
    "zip_member_bytes": ("SEVIS_ZIP_MAX_MEMBER_MB", _MB),
    "zip_total_bytes": ("SEVIS_ZIP_MAX_MB", _MB),
    "image_bytes": ("SEVIS_MAX_IMAGE_MB", _MB),
}


@dataclass(frozen=True)
class Limits:
    """What reading one untrusted file may cost.

    Attributes:
        checkpoint_bytes: largest weights file read (ResNet-50 checkpoints are
            100–300 MB with their optimizer state).
        parse_seconds: wall time of the worker that reads an uploaded checkpoint.
        parse_memory_bytes: that worker's data segment (``RLIMIT_DATA``): heap and
            anonymous mappings, not the shared libraries it maps.
        parse_nice: steps of niceness that worker runs below the server, 0 (as the
            server) to 19: at 10 a busy server's sessions come first, and the reading
            waits while anything else runs.
        pickle_objects: pickle opcodes in a checkpoint (ResNet-50: about 10,000).
        pickle_depth: nesting of containers (a wrapped state dict: about 8).
        pickle_unfolded: objects counted once per reference, which is what printing,
            hashing or comparing a value costs (a tuple holding itself twice, 60 deep,
            is a 1 KB file and 2**60 objects).
        tensors: tensors (storages) in a checkpoint.
        zip_files: entries of a zip archive.
        zip_member_bytes: one member of a zip, unpacked.
        zip_total_bytes: all members of a zip, unpacked.
        image_bytes: one image file of a dataset (a folder's file or a zip's member),
            checked before it is read.
    """

    checkpoint_bytes: int = 1024 * _MB
    parse_seconds: float = 120.0
    parse_memory_bytes: int = 4096 * _MB
    parse_nice: int = 10
    pickle_objects: int = 2_000_000
    pickle_depth: int = 32
    pickle_unfolded: int = 10_000_000
    tensors: int = 50_000
    zip_files: int = 20_000
    zip_member_bytes: int = 64 * _MB
    zip_total_bytes: int = 1024 * _MB
    image_bytes: int = 64 * _MB

    def __post_init__(self) -> None:
        for field in fields(self):
            if field.name != "parse_nice" and not getattr(self, field.name) > 0:
                raise ValueError(f"Limits.{field.name} must be positive, got {getattr(self, field.name)!r}")
        if self.parse_nice not in range(20):
            raise ValueError(f"Limits.parse_nice must be a whole number from 0 to 19, got {self.parse_nice!r}")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Limits:
        """The defaults, overridden by the ``SEVIS_*`` variables set in ``environ``
        (``os.environ`` when None).

        Raises:
            ValueError: a variable that is not a positive number, named.
        """
        environ = dict(os.environ) if environ is None else environ
        values: dict[str, float] = {}
        for name, (variable, unit) in _ENV.items():
            text = environ.get(variable, "").strip()
            if not text:
                continue
            try:
                number = float(text)
            except ValueError:
                raise ValueError(f"{variable} must be a number, got {text[:40]!r}") from None
            if name == "parse_nice":
                if number not in range(20):
                    raise ValueError(f"{variable} must be a whole number from 0 to 19, got {text[:40]!r}")
            elif not number > 0:
                raise ValueError(f"{variable} must be positive, got {text[:40]!r}")
            values[name] = number * unit
        typed = {k: v if k == "parse_seconds" else int(v) for k, v in values.items()}
        return cls(**typed)  # type: ignore[arg-type]  # the keys are field names
