"""The run record: one typed schema for the line every run appends to ``records.jsonl``.

The engine writes a ``RunRecord`` (``to_json``) when a run completes or diverges; every reader
(the runner's ledger, the reports, the tuner) reads records back through ``RunRecord.from_json``
and its fields, never through the raw dict. Records of every earlier schema still load:
``from_json`` migrates them (a missing ``model_revision`` is 1, a missing field is its default),
so the committed ``results/*/records.jsonl`` stay readable as the schema grows.

It lives beside the engine, in the library, because the engine writes it; the lab reads it.

What makes two records "the same run" is defined here once:

* ``run_id`` names the computation: a hash of the config (``TrainConfig.run_id``), with the
  model's revision. The same run_id trains the same net on the same data in the same way.
* ``tag_key`` is the place of a run in an experiment: its tags, less the informative ones
  (``INFORMATIVE_TAGS``: where it ran) and those left empty.
* ``same_run``: the same run_id under the same tags. A record of the same computation under
  other tags (a sweep run equal to a main run) is not the same run, though its result may be
  reused; a record under the same tags with another run_id (a re-run after a config change)
  supersedes the older one in a report (``slot``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from keras_cnns.errors import DataError

RECORDS_FILE = "records.jsonl"
SCHEMA_VERSION = 2
STATUSES = ("completed", "diverged")
# Tags that say where a run executed, not what it is: left out of its identity.
INFORMATIVE_TAGS = ("host",)


def tag_key(tags: Mapping[str, Any]) -> tuple:
    """The tags that identify a run, as a hashable tuple (``INFORMATIVE_TAGS`` and empty values
    left out: an absent ``overrides`` and an empty one are the same)."""
    return tuple(
        sorted(
            (k, json.dumps(v, sort_keys=True))
            for k, v in tags.items()
            if k not in INFORMATIVE_TAGS and v not in (None, [], (), {}, "")
        )
    )


@dataclass(frozen=True)
class EpochLog:
    """One epoch of a run's history: Keras' running training metrics over the epoch, the
    validation metrics after it (``None`` without a validation split), the learning rate of
    its last step and its seconds."""

    epoch: int
    loss: float | None = None
    accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    lr: float | None = None
    time: float | None = None

    @property
    def train_error(self) -> float | None:
        """Training error in percent, ``100 * (1 - accuracy)``."""
        return None if self.accuracy is None else 100.0 * (1.0 - self.accuracy)

    @property
    def val_error(self) -> float | None:
        """Validation error in percent."""
        return None if self.val_accuracy is None else 100.0 * (1.0 - self.val_accuracy)


@dataclass(frozen=True)
class DataInfo:
    """The data a run trained and was tested on."""

    name: str
    source: str | None = None
    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None


@dataclass(frozen=True)
class TestScores:
    """The selected weights on the test split: loss, accuracy, and error in percent."""

    loss: float | None
    accuracy: float
    error: float


@dataclass(frozen=True)
class RunRecord:
    """One run, as appended to ``records.jsonl`` (see the module docstring).

    Attributes:
        run_id: the computation's name (``TrainConfig.run_id``).
        status: ``"completed"`` or ``"diverged"``.
        tags: the caller's labels (the lab's: experiment, preset, variant, dataset, seed...).
        config: the ``TrainConfig`` as ``to_dict`` wrote it.
        model: registry name.
        model_revision: the model's revision when it trained (``registry.ModelEntry.revision``).
        params: every parameter (with batch norm's moving statistics), as Keras counts.
        trainable_params: the trainable ones.
        dataset: the data.
        history: one ``EpochLog`` per epoch trained.
        test: the test scores of the selected epoch's weights (``None`` for a diverged run).
        selected_epoch: the epoch whose weights were tested.
        wall_time: seconds of the run's own segments (resumes added up, pauses left out).
        started: when the run first started (ISO 8601, UTC).
        finished: when it ended.
        backend: the Keras backend.
        versions: library versions.
        device: where it trained (``cpu``, a GPU's name).
        git: the source revision, if it was a git checkout.
        seed: the config's seed.
        precision: the config's precision.
        preprocessing: what the preprocessing fitted (name, statistics).
        jit_compile: whether the training step was compiled with XLA.
        data_on_device: whether the splits were kept on the accelerator.
        stopped_early: whether a stopping rule ended the run before its last epoch.
        distribution: how the run was placed on devices.
        divergence: for a diverged run, the epoch and batch where the loss became non-finite.
        reused_from: the tags of the record whose result this one reuses (the same run_id).
        schema: the schema version the record was written with.
    """

    run_id: str
    status: str
    tags: Mapping[str, Any]
    config: Mapping[str, Any]
    model: str
    dataset: DataInfo
    history: tuple[EpochLog, ...]
    model_revision: int = 1
    params: int | None = None
    trainable_params: int | None = None
    test: TestScores | None = None
    selected_epoch: int | None = None
    wall_time: float = 0.0
    started: str | None = None
    finished: str | None = None
    backend: str | None = None
    versions: Mapping[str, str] = field(default_factory=dict)
    device: str | None = None
    git: str | None = None
    seed: int | None = None
    precision: str | None = None
    preprocessing: Mapping[str, Any] | None = None
    jit_compile: bool | None = None
    data_on_device: bool | None = None
    stopped_early: bool = False
    distribution: Mapping[str, Any] | None = None
    divergence: Mapping[str, Any] | None = None
    reused_from: Mapping[str, Any] | None = None
    schema: int = SCHEMA_VERSION

    # --- identity -----------------------------------------------------------------------------

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    def same_run(self, run_id: str, tags: Mapping[str, Any]) -> bool:
        """Whether this record is the run ``run_id`` under ``tags`` (see the module docstring)."""
        return self.run_id == run_id and tag_key(self.tags) == tag_key(tags)

    @property
    def slot(self) -> tuple:
        """A run's place in an experiment: its tags and its model's revision. A later record
        in the same slot supersedes an earlier one (a re-run after a config change); a record
        of another model revision has a slot of its own, never averaged with this one."""
        return (tag_key(self.tags), self.model_revision)

    def with_tags(self, tags: Mapping[str, Any], *, reused: bool = False) -> RunRecord:
        """The same record under ``tags`` (``reused``: noting the tags it was found under)."""
        extra = {"reused_from": dict(self.tags)} if reused else {}
        return dataclasses.replace(self, tags=dict(tags), **extra)

    # --- reading what a run measured -------------------------------------------------------------

    @property
    def train_errors(self) -> list[float]:
        """Training error per epoch, percent (NaN where an epoch has none)."""
        return [_nan(e.train_error) for e in self.history]

    @property
    def val_errors(self) -> list[float]:
        """Validation error per epoch, percent (NaN without a validation split)."""
        return [_nan(e.val_error) for e in self.history]

    @property
    def selected_val_error(self) -> float | None:
        """The validation error of the epoch whose weights were tested, if it has one."""
        if not self.selected_epoch or self.selected_epoch > len(self.history):
            return None
        return self.history[self.selected_epoch - 1].val_error

    # --- JSON -----------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The record as the JSON object appended to ``records.jsonl``."""
        out = _as_json(dataclasses.asdict(self))
        # Absent rather than null: what a reader of a completed record has no use for.
        for key in ("divergence", "reused_from"):
            if out[key] is None:
                del out[key]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, where: str = "a record") -> RunRecord:
        """A record read back, from any schema version (missing fields take their defaults).

        Raises:
            DataError: not a run record (``where`` names it, e.g. ``file:line``).
        """
        try:
            history = tuple(EpochLog(**_known(EpochLog, h)) for h in data.get("history") or ())
            test = data.get("test")
            dataset = data.get("dataset")
            if not isinstance(dataset, Mapping):  # never written so, but say what is wrong
                dataset = {"name": (data.get("config") or {}).get("dataset") or str(dataset)}
            fields = _known(cls, data)
            fields.update(
                tags=dict(data.get("tags") or {}),
                config=dict(data.get("config") or {}),
                dataset=DataInfo(**_known(DataInfo, dataset)),
                history=history,
                test=TestScores(**_known(TestScores, test)) if test else None,
                model_revision=int(data.get("model_revision") or 1),
                versions=dict(data.get("versions") or {}),
                schema=int(data.get("schema") or 1),
            )
            return cls(**fields)
        except (TypeError, ValueError, KeyError) as err:
            raise DataError(f"{where} is not a run record ({err})") from None


def _as_json(value: Any) -> Any:
    """``value`` as the JSON types a line holds: mappings as dicts, tuples as lists."""
    if isinstance(value, Mapping):
        return {k: _as_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_json(v) for v in value]
    return value


def _known(cls, data: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def records_from_json(items: Sequence[Mapping[str, Any]], *, where: str = "records") -> list[RunRecord]:
    """``RunRecord.from_json`` of each item (``where`` names them in an error)."""
    return [RunRecord.from_json(d, where=f"{where}:{i}") for i, d in enumerate(items, start=1)]
