"""Make keras_cnns/sample_data/mnist_sample.npz: a small, real MNIST sample shipped in the package.

The sample lets ``load_dataset("mnist", allow_sample=True)`` run (tests, demos, smoke runs)
on a machine with neither the full archive nor a network. It is 5,000 training and 1,000 test
images drawn uniformly without replacement, with a fixed seed, from the full MNIST archive,
kept in their original order and in the archive's layout (uint8 ``x_train`` N x 28 x 28,
``y_train``, ``x_test``, ``y_test``). MNIST is by Y. LeCun, C. Cortes and C. Burges and may
be redistributed with credit (see keras_cnns/sample_data/README.md).

    python scripts/make_mnist_sample.py                      # from .data/mnist.npz
    python scripts/make_mnist_sample.py --source PATH --out PATH

The output is byte-for-byte reproducible (numpy's zip members carry a fixed timestamp);
the script prints its SHA-256.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SEED = 20240501
N_TRAIN = 5000
N_TEST = 1000


def draw(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` sorted indices of ``range(n)``, without replacement."""
    return np.sort(rng.choice(n, size=k, replace=False))


def make_sample(source: Path, out: Path, *, seed: int = SEED) -> str:
    """Write the sample; return its SHA-256."""
    with np.load(source, allow_pickle=False) as full:
        arrays = {k: full[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    rng = np.random.default_rng(seed)
    train = draw(len(arrays["x_train"]), N_TRAIN, rng)
    test = draw(len(arrays["x_test"]), N_TEST, rng)
    sample = {
        "x_train": arrays["x_train"][train],
        "y_train": arrays["y_train"][train],
        "x_test": arrays["x_test"][test],
        "y_test": arrays["y_test"][test],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **sample)
    return hashlib.sha256(out.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ROOT / ".data" / "mnist.npz")
    parser.add_argument("--out", type=Path, default=ROOT / "keras_cnns" / "sample_data" / "mnist_sample.npz")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    digest = make_sample(args.source, args.out, seed=args.seed)
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size:,} bytes, {N_TRAIN} train + {N_TEST} test), sha256 {digest}")


if __name__ == "__main__":
    main()
