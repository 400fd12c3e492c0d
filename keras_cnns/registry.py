"""One registry of every architecture: ``register`` / ``build_model`` / ``list_models``.

Each family module in ``keras_cnns.models`` holds a table of frozen spec dataclasses and
one builder; it registers every variant by name at import. Registration stores data only:
nothing is built until ``build_model`` is called.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from keras_cnns.errors import UserError


@dataclass(frozen=True)
class ModelEntry:
    """A registered model variant.

    Attributes:
        name: registry name, for example ``"resnet20_cifar"``.
        family: family module name, for example ``"resnet_cifar"``.
        builder: ``builder(spec, *, input_shape, num_classes, name, **kwargs) -> keras.Model``.
        spec: the variant's frozen spec (from the family's table).
        paper: short citation, with table, for the variant.
        input_shape: default input shape (channels last).
        num_classes: default number of classes.
        defaults: default keyword arguments passed to the builder.
        description: one line for ``keras-cnns models``.
        small_input_shape: the smallest input the variant builds on, for quick tests
            (defaults to ``input_shape``).
        revision: the variant's model revision, raised whenever a change to the family alters
            what the net computes (not its name or parameter count): a run's identity and its
            record carry it, so results of an earlier revision are never taken for, or averaged
            with, runs of this one.
        revision_note: what the current revision changed (empty at revision 1).
    """

    name: str
    family: str
    builder: Callable[..., Any]
    spec: Any
    paper: str
    input_shape: tuple[int, ...]
    num_classes: int
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    small_input_shape: tuple[int, ...] | None = None
    revision: int = 1
    revision_note: str = ""


_REGISTRY: dict[str, ModelEntry] = {}
_FAMILIES_LOADED = False


def register(
    name: str,
    *,
    family: str,
    builder: Callable[..., Any],
    spec: Any,
    paper: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    description: str = "",
    small_input_shape: tuple[int, ...] | None = None,
    revision: int = 1,
    revision_note: str = "",
    **defaults: Any,
) -> None:
    """Register a model variant under ``name``. Names are unique."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    _REGISTRY[name] = ModelEntry(
        name=name,
        family=family,
        builder=builder,
        spec=spec,
        paper=paper,
        input_shape=tuple(input_shape),
        num_classes=num_classes,
        defaults=dict(defaults),
        description=description,
        small_input_shape=tuple(small_input_shape) if small_input_shape else None,
        revision=int(revision),
        revision_note=revision_note,
    )


def _load_families() -> None:
    global _FAMILIES_LOADED
    if not _FAMILIES_LOADED:
        importlib.import_module("keras_cnns.models")
        _FAMILIES_LOADED = True


def list_models(family: str | None = None) -> list[ModelEntry]:
    """All registered variants, in registration order, optionally of one family."""
    _load_families()
    return [e for e in _REGISTRY.values() if family is None or e.family == family]


def closest_names(name: str, names: list[str], n: int = 3) -> list[str]:
    """The registered names a mistyped ``name`` most likely meant: those it begins (``resnet20``
    -> ``resnet20_cifar``) before those spelled most alike (``vgg61`` -> ``vgg16``)."""
    key = name.strip().lower()
    starts = [m for m in names if key and m.lower().startswith(key)]
    alike = difflib.get_close_matches(key, names, n=n, cutoff=0.4)
    return list(dict.fromkeys([*starts, *alike]))[:n]


def get_entry(name: str) -> ModelEntry:
    """The entry for ``name``; an unknown name is a ``UserError`` naming the closest matches."""
    _load_families()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = closest_names(name, list(_REGISTRY))
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserError(
            f"unknown model {name!r}{hint} (run 'keras-cnns models' for the list)"
        ) from None


def model_revision(name: str) -> int:
    """The current revision of model ``name`` (see ``ModelEntry.revision``)."""
    return get_entry(name).revision


def check_options(name: str, options: Mapping[str, Any]) -> ModelEntry:
    """The entry of ``name``, after checking that its builder takes every option in ``options``.

    Cheap (nothing is built, Keras is not imported), so a bad option fails before any work.

    Raises:
        UserError: an unknown model, or an option its builder does not take.
    """
    entry = get_entry(name)
    accepted = inspect.signature(entry.builder).parameters
    unknown = sorted(set({**entry.defaults, **options}) - set(accepted))
    if unknown:
        allowed = sorted(k for k in accepted if k not in ("spec", "input_shape", "num_classes", "name"))
        raise UserError(
            f"model {name!r} takes no option {unknown[0]!r}; its options are: {', '.join(allowed)}"
        )
    return entry


def build_model(
    name: str,
    *,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
    **overrides: Any,
):
    """Build a registered model.

    Args:
        name: registry name (see ``list_models``).
        input_shape: channels-last input shape; defaults to the variant's own.
        num_classes: number of output logits; defaults to the variant's own.
        **overrides: builder keyword arguments (``activation``, ``dropout``, ``drop_path``, ...).

    Returns:
        A ``keras.Model`` that maps images to float32 logits.
    """
    entry = check_options(name, overrides)
    kwargs = {**entry.defaults, **overrides}
    return entry.builder(
        entry.spec,
        input_shape=tuple(input_shape or entry.input_shape),
        num_classes=int(num_classes or entry.num_classes),
        name=name,
        **kwargs,
    )
