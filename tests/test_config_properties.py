"""Property tests for every ``TrainConfig`` field: valid values are accepted and survive
``to_dict``/``from_dict`` (through JSON) and ``with_overrides``; invalid ones (wrong type, out
of range) are a one-line ``UserError`` that names the field.

The strategies are keyed by field name and the tests iterate over
``dataclasses.fields(TrainConfig)``: a new field without strategies fails
``test_every_field_has_strategies`` (add one to ``VALID`` and ``INVALID``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_cnns import data
from keras_cnns.errors import UserError
from keras_cnns.registry import list_models
from keras_cnns.training.config import (
    LOSSES,
    LR_SCALINGS,
    MONITORS,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    SELECTIONS,
    WEIGHT_DECAY_MODES,
    WEIGHT_DECAY_SCOPES,
    TrainConfig,
)

pytestmark = pytest.mark.smoke

FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]
BASE = TrainConfig(model="resnet20_cifar")
EXAMPLES = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- building blocks ----------------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
short_text = st.text(max_size=6)
not_a_number = st.one_of(short_text, st.booleans(), st.lists(st.integers(), max_size=2), non_finite)
not_an_int = st.one_of(
    short_text,
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    finite.filter(lambda x: not x.is_integer()),
    non_finite,
)
not_a_bool = st.one_of(st.integers(), short_text, finite)
not_text = st.one_of(st.integers(), finite, st.booleans(), st.lists(st.integers(), max_size=2))


def one(name: str, values: st.SearchStrategy, **companions) -> st.SearchStrategy[dict]:
    """``{name: value, **companions}`` for each drawn value."""
    return values.map(lambda v: {name: v, **companions})


def choice(name: str, choices) -> tuple[st.SearchStrategy, st.SearchStrategy]:
    """Valid and invalid strategies of a field that takes one of ``choices``."""
    valid = one(name, st.sampled_from(list(choices)))
    invalid = one(
        name, st.one_of(short_text.filter(lambda t: t not in choices), not_text, st.none())
    )
    return valid, invalid


def positive_int(name: str, *, optional: bool = False, **companions):
    valid = st.integers(1, 10**9)
    invalid = st.one_of(st.integers(max_value=0), not_an_int)
    if optional:
        valid = st.one_of(st.none(), valid)
    else:
        invalid = st.one_of(invalid, st.none())
    return one(name, valid, **companions), one(name, invalid, **companions)


def unit_interval(name: str, *, low_open: bool, high_open: bool):
    """A float in [0, 1) or (0, 1) (the bounds the config states)."""
    valid = st.floats(0.0, 1.0, exclude_min=low_open, exclude_max=high_open)
    outside = st.one_of(
        st.floats(max_value=0.0, exclude_max=not low_open), st.floats(min_value=1.0)
    )
    return one(name, valid), one(
        name, st.one_of(outside.filter(math.isfinite), not_a_number, st.none())
    )


def _loose_text(text: str) -> bool:
    """Text that ``model_kwargs.NAME=VALUE`` reads back as the same text (not a number...)."""
    if text != text.strip() or text.lower() in ("true", "false", "none", "null"):
        return False
    try:
        float(text)
    except ValueError:
        return True
    return False


kwarg_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    finite,
    st.text(string.ascii_letters + "-_ ./", max_size=8),
)
kwarg_names = st.text(string.ascii_lowercase + "_", min_size=1, max_size=8)
streamed = [n for n, info in data.DATASETS.items() if info.streamed]

# --- the strategies, one pair per field -----------------------------------------------------------

VALID: dict[str, st.SearchStrategy[dict]] = {}
INVALID: dict[str, st.SearchStrategy[dict]] = {}

VALID["model"] = one("model", st.sampled_from([e.name for e in list_models()]))
INVALID["model"] = one("model", st.one_of(st.text(" \t", max_size=3), not_text, st.none()))
VALID["dataset"], INVALID["dataset"] = choice("dataset", data.DATASETS)
VALID["model_kwargs"] = one(
    "model_kwargs",
    st.dictionaries(
        kwarg_names,
        st.one_of(kwarg_scalars, st.lists(kwarg_scalars, max_size=3).map(tuple)),
        max_size=3,
    ),
)
INVALID["model_kwargs"] = one(
    "model_kwargs",
    st.one_of(
        st.integers(),
        short_text,
        finite,
        st.lists(st.integers(), min_size=1, max_size=3),  # not (name, value) pairs
        st.dictionaries(kwarg_names, non_finite, min_size=1, max_size=2),
        st.dictionaries(kwarg_names, st.builds(object), min_size=1, max_size=2),
        st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=2),
        st.just({"": 1}),
    ),
)
for name in (
    "epochs",
    "batch_size",
    "plateau_patience",
    "steps_per_execution",
    "lr_reference_batch",
):
    VALID[name], INVALID[name] = positive_int(name)
for name in ("early_stopping_patience", "train_subset", "test_subset"):
    VALID[name], INVALID[name] = positive_int(name, optional=True)
VALID["optimizer"], INVALID["optimizer"] = choice("optimizer", OPTIMIZERS)
VALID["learning_rate"] = one(
    "learning_rate", st.floats(min_value=0.0, exclude_min=True, allow_infinity=False)
)
INVALID["learning_rate"] = one(
    "learning_rate", st.one_of(st.floats(max_value=0.0), not_a_number, st.none())
)
VALID["momentum"], INVALID["momentum"] = unit_interval("momentum", low_open=False, high_open=True)
VALID["nesterov"] = one("nesterov", st.booleans())
INVALID["nesterov"] = one("nesterov", st.one_of(not_a_bool, st.none()))
VALID["weight_decay"] = one("weight_decay", st.floats(min_value=0.0, allow_infinity=False))
INVALID["weight_decay"] = one(
    "weight_decay", st.one_of(st.floats(max_value=0.0, exclude_max=True), not_a_number, st.none())
)
VALID["weight_decay_mode"], INVALID["weight_decay_mode"] = choice(
    "weight_decay_mode", WEIGHT_DECAY_MODES
)
VALID["weight_decay_scope"], INVALID["weight_decay_scope"] = choice(
    "weight_decay_scope", WEIGHT_DECAY_SCOPES
)
VALID["schedule"], INVALID["schedule"] = choice("schedule", SCHEDULES)
VALID["lr_boundaries"] = one(
    "lr_boundaries",
    st.sets(st.integers(1, 10**6), max_size=4).map(lambda s: tuple(sorted(s))),
    schedule="step",
)
INVALID["lr_boundaries"] = st.one_of(
    one("lr_boundaries", st.lists(st.integers(-5, 5), min_size=1, max_size=4).filter(
        lambda b: any(x <= 0 for x in b) or b != sorted(set(b))), schedule="step"),
    one("lr_boundaries", st.just((10, 20))),  # schedule=constant has no boundaries
    one("lr_boundaries", st.one_of(st.integers(), short_text.filter(bool), st.lists(not_an_int, min_size=1, max_size=2)),
        schedule="step"),
)  # fmt: skip
VALID["lr_factor"], INVALID["lr_factor"] = unit_interval("lr_factor", low_open=True, high_open=True)
VALID["warmup_epochs"] = one("warmup_epochs", st.floats(min_value=0.0, max_value=1e6))
INVALID["warmup_epochs"] = st.one_of(
    one(
        "warmup_epochs",
        st.one_of(st.floats(max_value=0.0, exclude_max=True), not_a_number, st.none()),
    ),
    one("warmup_epochs", st.floats(0.1, 10.0), schedule="onecycle"),  # one-cycle has its own
)
VALID["warmup_lr"] = st.one_of(
    one("warmup_lr", st.none()),
    one(
        "warmup_lr",
        st.floats(min_value=0.0, exclude_min=True, allow_infinity=False),
        warmup_epochs=1.0,
    ),
)
INVALID["warmup_lr"] = st.one_of(
    one("warmup_lr", st.one_of(st.floats(max_value=0.0), not_a_number), warmup_epochs=1.0),
    one("warmup_lr", st.floats(0.001, 1.0)),  # without a warm-up to last for
)
VALID["monitor"] = st.one_of(
    one("monitor", st.sampled_from(MONITORS), early_stopping_patience=3),
    one("monitor", st.sampled_from(MONITORS), schedule="plateau"),
    one("monitor", st.just("val_loss")),
)
INVALID["monitor"] = st.one_of(
    one("monitor", st.one_of(short_text.filter(lambda t: t not in MONITORS), not_text, st.none()),
        early_stopping_patience=3),
    one("monitor", st.just("val_error")),  # nothing watches it: no plateau, no early stopping
)  # fmt: skip
VALID["preprocess"], INVALID["preprocess"] = choice("preprocess", data.PREPROCESSING)
VALID["augment"] = one(
    "augment", st.lists(st.sampled_from(data.AUGMENTATIONS), unique=True, max_size=4).map(tuple)
)
INVALID["augment"] = one(
    "augment",
    st.one_of(
        st.lists(st.sampled_from(data.AUGMENTATIONS), min_size=1, max_size=2).map(
            lambda a: (*a, a[0])
        ),  # twice
        st.lists(short_text.filter(lambda t: t not in data.AUGMENTATIONS), min_size=1, max_size=2),
        st.sampled_from(data.AUGMENTATIONS),  # a bare name, not a list
        st.integers(),
        st.lists(not_text, min_size=1, max_size=2),
    ),
)
VALID["val_size"] = one("val_size", st.integers(0, 10**6))
INVALID["val_size"] = one("val_size", st.one_of(st.integers(max_value=-1), not_an_int, st.none()))
VALID["allow_sample"] = one("allow_sample", st.booleans())
INVALID["allow_sample"] = one("allow_sample", st.one_of(not_a_bool, st.none()))
VALID["precision"], INVALID["precision"] = choice("precision", PRECISIONS)
VALID["seed"] = one("seed", st.integers(0, 2**32 - 1))
INVALID["seed"] = one(
    "seed",
    st.one_of(st.integers(max_value=-1), st.integers(min_value=2**32), not_an_int, st.none()),
)
VALID["deterministic"] = one("deterministic", st.booleans())
INVALID["deterministic"] = one("deterministic", st.one_of(not_a_bool, st.none()))
VALID["select"], INVALID["select"] = choice("select", SELECTIONS)
VALID["loss"], INVALID["loss"] = choice("loss", LOSSES)
VALID["label_smoothing"], INVALID["label_smoothing"] = unit_interval(
    "label_smoothing", low_open=False, high_open=True
)
VALID["lr_scaling"], INVALID["lr_scaling"] = choice("lr_scaling", LR_SCALINGS)
VALID["stop_at_train_error"] = one(
    "stop_at_train_error", st.one_of(st.none(), st.floats(0.0, 100.0, exclude_min=True, exclude_max=True))
)
INVALID["stop_at_train_error"] = one(
    "stop_at_train_error", st.one_of(st.floats(max_value=0.0), st.floats(min_value=100.0), not_a_number)
)
VALID["image_size"] = st.one_of(
    one("image_size", st.none()), one("image_size", st.integers(1, 4096), dataset=streamed[0])
)
INVALID["image_size"] = st.one_of(
    one("image_size", st.one_of(st.integers(max_value=0), not_an_int), dataset=streamed[0]),
    one("image_size", st.integers(1, 4096)),  # cifar10 is not streamed
)
VALID["devices"] = st.one_of(
    one("devices", st.just("all")),
    st.builds(
        lambda d, k: {"devices": d, "batch_size": d * k}, st.integers(1, 64), st.integers(1, 64)
    ),
)
INVALID["devices"] = st.one_of(
    one("devices", st.one_of(st.integers(max_value=0), st.booleans(), finite, st.none(), st.lists(st.integers(), max_size=2))),
    one("devices", short_text.filter(lambda t: t.strip().lower() != "all" and not t.strip().isdigit())),
    one("devices", st.just(3), batch_size=128),  # the global batch does not split over 3
)  # fmt: skip


# --- the tests ------------------------------------------------------------------------------------


def test_every_field_has_strategies():
    for table in (VALID, INVALID):
        missing = [f for f in FIELDS if f not in table]
        assert not missing, f"TrainConfig fields without strategies (add them here): {missing}"
        assert set(table) <= set(FIELDS), (
            f"strategies for fields that are gone: {set(table) - set(FIELDS)}"
        )


def _override_text(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, tuple):
        return ",".join(_override_text(v) for v in value)
    return str(value)


def _overrides(changes: dict) -> list[str] | None:
    """``key=value`` items for ``changes``, or ``None`` if one cannot be written that way."""
    items = []
    for key, value in changes.items():
        if key != "model_kwargs":
            items.append(f"{key}={_override_text(value)}")
            continue
        for option, v in dict(value).items():
            if isinstance(v, tuple) or (isinstance(v, str) and not _loose_text(v)):
                return None  # a list, or text that reads back as a number, cannot be written so
            items.append(f"model_kwargs.{option}={_override_text(v)}")
    return items


@pytest.mark.parametrize("name", FIELDS)
@EXAMPLES
@given(draw=st.data())
def test_valid_values_are_accepted_and_round_trip(name, draw):
    assert name in VALID, f"no valid-value strategy for TrainConfig.{name}: add one to VALID"
    changes = draw.draw(VALID[name], label=name)
    config = BASE.replace(**changes)
    assert config == TrainConfig(**{**dataclasses.asdict(BASE), **changes})
    # to_dict is JSON (records and state files hold it), and from_dict gives the config back.
    stored = json.loads(json.dumps(config.to_dict(), allow_nan=False))
    assert stored == config.to_dict()
    again = TrainConfig.from_dict(stored)
    assert again == config and again.run_id() == config.run_id()
    overrides = _overrides(changes)
    if overrides is not None:
        assert BASE.with_overrides(overrides) == config, overrides


@pytest.mark.parametrize("name", FIELDS)
@EXAMPLES
@given(draw=st.data())
def test_invalid_values_are_one_line_naming_the_field(name, draw):
    assert name in INVALID, f"no invalid-value strategy for TrainConfig.{name}: add one to INVALID"
    changes = draw.draw(INVALID[name], label=name)
    with pytest.raises(UserError) as info:
        BASE.replace(**changes)
    message = str(info.value)
    assert "\n" not in message and name in message, message
    with pytest.raises(UserError) as info:
        TrainConfig.from_dict({**BASE.to_dict(), **changes})
    assert "\n" not in str(info.value) and name in str(info.value)


@pytest.mark.parametrize("name", [f for f in FIELDS if f != "model"])  # any text names a model
def test_unparsable_override_text_is_one_line_naming_the_field(name):
    with pytest.raises(UserError) as info:
        BASE.with_overrides([f"{name}=@@"])
    message = str(info.value)
    assert "\n" not in message and name in message, message
