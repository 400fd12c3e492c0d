"""keras-cnns: classic convolutional networks in Keras 3, and the experiments that made them famous.

Importing the package is cheap: Keras is only imported when a model is built or
a run starts.
"""

__version__ = "0.1.0"

from keras_cnns.registry import build_model, get_entry, list_models  # noqa: E402

__all__ = ["build_model", "get_entry", "list_models", "__version__"]
