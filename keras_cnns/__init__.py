"""keras-cnns: classic convolutional networks in Keras 3, and the experiments that made them famous.

Importing the package is cheap: Keras is only imported when a model is built or
a run starts.
"""

import os

# TensorFlow's C++ start-up lines (cpu_feature_guard, oneDNN, absl::InitializeLog) say nothing
# a user can act on; they are read when TensorFlow is first imported, so this must come before
# any import of it. A value already set (TF_CPP_MIN_LOG_LEVEL=0 to see them) wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

from keras_cnns.registry import build_model, get_entry, list_models  # noqa: E402

__all__ = ["build_model", "get_entry", "list_models", "__version__"]
