"""The ``keras-cnns`` command.

Every sub-command is a pair: ``_add_<name>(subparsers)`` declares its arguments and
``_cmd_<name>(args)`` does the work. Keras is imported only after the arguments are parsed,
so ``--backend`` can choose the Keras backend and bad arguments fail before any heavy import.

User mistakes raise ``keras_cnns.errors.UserError``; ``main`` prints them as one line on
stderr and exits non-zero. Only genuine bugs show a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from keras_cnns.errors import DivergedError, UserError

BACKENDS = ("tensorflow", "jax", "torch")


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are one line and exit 2 (argparse prints usage first otherwise)."""

    def error(self, message):  # noqa: D401
        self.exit(2, f"keras-cnns: error: {message} (see '{self.prog} --help')\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _shape(text: str) -> tuple[int, ...]:
    """Parse ``32x32x3`` or ``32,32,3`` into a tuple of positive ints."""
    parts = text.replace("x", ",").split(",")
    try:
        dims = tuple(int(p) for p in parts if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a shape such as 32x32x3, got {text!r}"
        ) from None
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"expected positive dimensions such as 32x32x3, got {text!r}")
    return dims


# --- models ------------------------------------------------------------------------------------


def _add_models(sub):
    p = sub.add_parser("models", help="list every registered architecture with its parameter count")
    p.add_argument("--family", help="only this family")
    p.add_argument("--no-params", action="store_true", help="skip building models to count parameters")


def _cmd_models(args) -> int:
    raise UserError("'keras-cnns models' is not implemented yet")


# --- summary -----------------------------------------------------------------------------------


def _add_summary(sub):
    p = sub.add_parser("summary", help="per-layer table: output shape, parameters, memory, multiply-adds, receptive field")
    p.add_argument("model")
    p.add_argument("--input-shape", type=_shape, help="for example 224x224x3 (default: the model's own)")
    p.add_argument("--classes", type=_positive_int, help="number of classes (default: the model's own)")


def _cmd_summary(args) -> int:
    raise UserError("'keras-cnns summary' is not implemented yet")


# --- shape -------------------------------------------------------------------------------------


def _add_shape(sub):
    p = sub.add_parser("shape", help="the lecture's output-size arithmetic for one convolution or pooling")
    p.add_argument("--input", type=int, required=True, help="input size (height or width)")
    p.add_argument("--kernel", type=int, required=True)
    p.add_argument("--stride", type=int, default=1)
    p.add_argument("--padding", default="0", help="an integer, 'valid' or 'same'")
    p.add_argument("--dilation", type=int, default=1)


def _cmd_shape(args) -> int:
    raise UserError("'keras-cnns shape' is not implemented yet")


# --- main --------------------------------------------------------------------------------------

_COMMANDS = ("models", "summary", "shape")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="keras-cnns",
        description="Classic CNNs in Keras 3 and the experiments that made them famous.",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        help="Keras backend (default: $KERAS_BACKEND, else tensorflow)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for command in _COMMANDS:
        globals()[f"_add_{command}"](sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.backend:
        if "keras" in sys.modules and os.environ.get("KERAS_BACKEND") != args.backend:
            raise SystemExit("keras-cnns: error: --backend must be chosen before Keras is imported")
        os.environ["KERAS_BACKEND"] = args.backend
    handler = globals()[f"_cmd_{args.command.replace('-', '_')}"]
    try:
        return int(handler(args) or 0)
    except UserError as err:
        print(f"keras-cnns: error: {err}", file=sys.stderr)
        return err.exit_code
    except DivergedError as err:
        print(f"keras-cnns: diverged: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("keras-cnns: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
