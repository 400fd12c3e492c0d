"""TrainConfig: validation, typed overrides, the JSON round trip and run ids. No Keras needed."""

from __future__ import annotations

import dataclasses
import json

import pytest

from keras_cnns.errors import UserError
from keras_cnns.training.config import PLACEMENT_FIELDS, TrainConfig

pytestmark = pytest.mark.smoke


def base(**changes) -> TrainConfig:
    return TrainConfig(**{"model": "resnet20_cifar", **changes})


def test_defaults_are_valid_and_tuples_are_normalised():
    config = base(
        lr_boundaries=[82, 123], schedule="step", augment=["pad_crop", "flip"],
        model_kwargs={"shortcut": "none", "activation": "relu"},
    )  # fmt: skip
    assert config.lr_boundaries == (82, 123)
    assert config.augment == ("pad_crop", "flip")
    # Pairs sorted by name: the same options in any order are the same config and run.
    assert config.model_kwargs == (("activation", "relu"), ("shortcut", "none"))
    assert config == base(
        lr_boundaries=(82, 123), schedule="step", augment=("pad_crop", "flip"),
        model_kwargs=(("shortcut", "none"), ("activation", "relu")),
    )  # fmt: skip
    hash(config)  # frozen and hashable


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"dataset": "imagenet"}, ("dataset", "cifar10")),
        ({"batch_size": 0}, ("batch_size",)),
        ({"epochs": -1}, ("epochs",)),
        ({"epochs": 2.5}, ("epochs", "integer")),
        ({"precision": "float16"}, ("precision", "mixed_float16")),
        ({"optimizer": "rmsprop"}, ("optimizer", "sgd")),
        ({"schedule": "exponential"}, ("schedule", "cosine")),
        ({"preprocess": "whiten"}, ("preprocess", "standardize")),
        ({"augment": ("flip", "mixup")}, ("augment", "mixup")),
        ({"augment": ("flip", "flip")}, ("twice",)),
        ({"augment": "flip"}, ("augment", "list")),
        ({"learning_rate": 0.0}, ("learning_rate",)),
        ({"learning_rate": float("nan")}, ("learning_rate", "finite")),
        ({"momentum": 1.0}, ("momentum",)),
        ({"lr_factor": 10.0}, ("lr_factor", "divides by 10")),
        ({"lr_boundaries": (10, 5), "schedule": "step"}, ("lr_boundaries", "increasing")),
        ({"lr_boundaries": (10,)}, ("lr_boundaries", "schedule=step")),
        ({"warmup_lr": 0.01}, ("warmup_epochs",)),
        ({"warmup_epochs": 1.0, "schedule": "plateau"}, ("warm-up",)),
        ({"nesterov": True, "optimizer": "adam"}, ("nesterov",)),
        ({"nesterov": "yes"}, ("nesterov", "true or false")),
        ({"select": "best_val", "val_size": 0}, ("val_size",)),
        ({"schedule": "plateau", "val_size": 0}, ("val_size",)),
        ({"label_smoothing": 1.0}, ("label_smoothing",)),
        ({"weight_decay": -1e-4}, ("weight_decay",)),
        ({"weight_decay_mode": "adamw"}, ("weight_decay_mode", "decoupled")),
        ({"train_subset": 0}, ("train_subset",)),
        ({"model_kwargs": {"activation": {"a": 1}}}, ("model_kwargs.activation",)),
        ({"model": " "}, ("model",)),
    ],
)
def test_invalid_values_are_user_errors_naming_the_field(changes, words):
    with pytest.raises(UserError) as info:
        base(**changes)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_replace_validates_and_rejects_unknown_fields():
    config = base()
    assert config.replace(epochs=3).epochs == 3
    with pytest.raises(UserError, match="batch_size"):
        config.replace(batch_size=0)
    with pytest.raises(UserError, match="unknown config key 'epoch'.*did you mean epochs"):
        config.replace(epoch=3)


def test_overrides_are_parsed_by_field_type():
    config = base().with_overrides(
        [
            "epochs=164",
            "learning_rate=1e-1",
            "nesterov=true",
            "schedule=step",
            "lr_boundaries=82,123",
            "augment=pad_crop,flip",
            "early_stopping_patience=none",
            "warmup_epochs=1",
            "warmup_lr=0.01",
            "train_subset=512",
            "model_kwargs.activation=tanh",
            "model_kwargs.drop_path=0.5",
            "model_kwargs.depth=3",
            "model_kwargs.zero_init=True",
        ]
    )
    assert config.epochs == 164 and isinstance(config.epochs, int)
    assert config.learning_rate == 0.1 and config.nesterov is True
    assert config.lr_boundaries == (82, 123) and config.augment == ("pad_crop", "flip")
    assert config.early_stopping_patience is None and config.warmup_epochs == 1.0
    assert config.warmup_lr == 0.01 and config.train_subset == 512
    assert dict(config.model_kwargs) == {"activation": "tanh", "drop_path": 0.5, "depth": 3, "zero_init": True}
    # An empty list value clears a tuple field.
    assert config.with_overrides(["augment=", "schedule=constant", "lr_boundaries="]).augment == ()


@pytest.mark.parametrize(
    "item, words",
    [
        ("epochs=ten", ("epochs", "integer")),
        ("learning_rate=fast", ("learning_rate", "number")),
        ("nesterov=maybe", ("nesterov", "true or false")),
        ("epochs", ("key=value",)),
        ("epoch=3", ("unknown config key 'epoch'", "valid keys", "batch_size", "model_kwargs.NAME")),
        ("model_kwargs=x", ("unknown config key",)),
        ("batch_size=0", ("batch_size", "positive")),
        ("precision=fp16", ("precision", "mixed_bfloat16")),
        ("dataset=svhn", ("dataset", "cifar100")),
        ("monitor=val_acc", ("monitor", "val_error")),
        ("monitor=val_error", ("monitor", "schedule=plateau", "early_stopping_patience")),
    ],
)
def test_bad_overrides_are_one_line_user_errors(item, words):
    with pytest.raises(UserError) as info:
        base().with_overrides([item])
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_dict_round_trip_through_json():
    config = base(
        schedule="step", lr_boundaries=(82, 123), augment=("pad_crop", "flip"), warmup_epochs=0.5,
        warmup_lr=0.01, model_kwargs={"activation": "tanh", "widths": (16, 32)}, precision="mixed_bfloat16",
    )  # fmt: skip
    data = json.loads(json.dumps(config.to_dict()))
    assert data["model_kwargs"] == {"activation": "tanh", "widths": [16, 32]}
    assert TrainConfig.from_dict(data) == config
    assert TrainConfig.from_dict({"model": "lenet5"}) == TrainConfig(model="lenet5")
    with pytest.raises(UserError, match="unknown config key"):
        TrainConfig.from_dict({**data, "colour": "blue"})


def test_run_id_is_stable_and_changes_with_every_field():
    config = base()
    assert config.run_id() == base().run_id() == base(dataset="cifar10", epochs=10).run_id()
    assert config.run_id().startswith("resnet20_cifar-cifar10-")
    # Pinned: an id that drifts between versions orphans every checkpoint (no resume).
    assert TrainConfig(model="lenet5").run_id() == "lenet5-cifar10-b7bca42e7ca8"
    paper = base(schedule="step", lr_boundaries=(82, 123), epochs=164, weight_decay=5e-5)
    # resnet20_cifar is at model revision 2 (symmetric padding): its ids differ from revision
    # 1's ("...-6d8286d9263b" for this config), so no run of the earlier net is resumed.
    assert paper.run_id() == "resnet20_cifar-cifar10-6849b54dde3e"
    changed = {
        "model": "resnet32_cifar",
        "dataset": "cifar100",
        "model_kwargs": (("activation", "tanh"),),
        "epochs": 11,
        "batch_size": 64,
        "optimizer": "adam",
        "learning_rate": 0.05,
        "momentum": 0.95,
        "nesterov": True,
        "weight_decay": 5e-5,
        "weight_decay_mode": "decoupled",
        "weight_decay_scope": "all",
        "schedule": "cosine",
        "lr_boundaries": None,  # needs schedule=step: set below
        "lr_factor": 0.2,
        "warmup_epochs": 1.0,
        "warmup_lr": None,  # needs warmup_epochs: set below
        "plateau_patience": 3,
        "early_stopping_patience": 4,
        "monitor": None,  # needs a rule that watches it: set below
        "stop_at_train_error": 25.0,
        "preprocess": "pixel_mean",
        "augment": ("flip",),
        "val_size": 1000,
        "train_subset": 100,
        "test_subset": 100,
        "allow_sample": True,
        "precision": "mixed_float16",
        "seed": 1,
        "deterministic": True,
        "select": "best_val",
        "label_smoothing": 0.1,
        "loss": "rbf_map",
        "steps_per_execution": 4,  # a placement field too
        "lr_scaling": "linear",
        "lr_reference_batch": 512,
        "image_size": None,  # needs a streamed dataset: set below
        "devices": 4,  # a placement field: the same run id (checked below)
    }
    changed["lr_boundaries"] = {"lr_boundaries": (5,), "schedule": "step"}
    changed["warmup_lr"] = {"warmup_lr": 0.01, "warmup_epochs": 1.0}
    changed["image_size"] = {"image_size": 64, "dataset": "imagenet2012"}
    changed["monitor"] = {"monitor": "val_error", "early_stopping_patience": 4}
    assert set(changed) == {f.name for f in dataclasses.fields(TrainConfig)}
    for field in PLACEMENT_FIELDS:
        placed = config.replace(**{field: changed.pop(field)})
        assert placed.run_id() == config.run_id()
    ids = {config.run_id()}
    for name, value in changed.items():
        other = config.replace(**value) if isinstance(value, dict) else config.replace(**{name: value})
        ids.add(other.run_id())
    assert len(ids) == 1 + len(changed)
