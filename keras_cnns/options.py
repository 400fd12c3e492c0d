"""Checks of builder options shared by every family: a bad option is a one-line ``UserError``.

Keras is imported only inside ``check_activation``, so importing a family module (which
registers its variants) stays cheap.
"""

from __future__ import annotations

from keras_cnns.errors import UserError


def check_choice(option: str, value, choices) -> None:
    """Raise ``UserError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise UserError(
            f"{option}={value!r} is not valid; choose one of: {', '.join(map(repr, choices))}"
        )


def check_activation(activation, *, extra: tuple[str, ...] = ()) -> None:
    """Raise ``UserError`` unless Keras knows the activation (or it is one of ``extra``)."""
    if activation in extra:
        return
    import keras

    try:
        keras.activations.get(activation)
    except (ValueError, TypeError):
        also = "".join(f"{e!r}, " for e in extra)
        raise UserError(
            f"activation={activation!r} is not a Keras activation; use {also}'relu', 'tanh' "
            "or another Keras activation"
        ) from None


def check_rate(option: str, rate: float) -> None:
    """Raise ``UserError`` unless ``rate`` is a probability in [0, 1)."""
    if not 0.0 <= rate < 1.0:
        raise UserError(f"{option}={rate} must be in [0, 1)")


# Stochastic depth's draw (Huang et al. 2016): "batch", one Bernoulli draw per block per
# mini-batch (the paper's); "sample", one per example (DropPath).
DROP_PATH_MODES = ("batch", "sample")


def check_drop_path(drop_path: float, drop_path_mode: str, shortcut: str) -> None:
    """Validate the stochastic-depth options against the shortcut type (``"none"``: a plain net)."""
    check_choice("drop_path_mode", drop_path_mode, DROP_PATH_MODES)
    if not 0.0 <= drop_path < 1.0:
        raise UserError(
            f"drop_path={drop_path} must be in [0, 1): the final block's drop probability "
            "(0 turns stochastic depth off; Huang et al. use 0.5)"
        )
    if drop_path > 0.0 and shortcut == "none":
        raise UserError(
            "drop_path needs a shortcut to fall back on; use drop_path=0 for plain nets"
        )
