"""keras-cnns: classic convolutional networks in Keras 3, and the experiments that made them famous.

Importing the package is cheap: Keras is only imported when a model is built or
a run starts.
"""

import os
import platform

# TensorFlow's C++ start-up lines (cpu_feature_guard, oneDNN, absl::InitializeLog) say nothing
# a user can act on; they are read when TensorFlow is first imported, so this must come before
# any import of it. A value already set (TF_CPP_MIN_LOG_LEVEL=0 to see them) wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# TensorFlow turns its oneDNN kernels on by default only on CPUs with AVX512_VNNI, AVX512_BF16
# or AMX; on other x86-64 CPUs (AVX2: most laptops, AMD Zen 3) it runs its older Eigen kernels.
# Measured on 2 AMD EPYC (Zen 3) cores, ResNet-20 training at batch 128: about 240 img/s
# without oneDNN, about 390 with it. Like the line above, read at TensorFlow's first import,
# and a value already set (TF_ENABLE_ONEDNN_OPTS=0 to turn them off) wins.
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"

from keras_cnns.registry import build_model, get_entry, list_models  # noqa: E402

__all__ = ["build_model", "get_entry", "list_models", "__version__"]
