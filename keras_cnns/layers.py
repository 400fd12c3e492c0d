"""The only home of custom layers.

Every layer here is Keras-serializable (registered under the ``keras_cnns`` package, with
``get_config`` chained to ``super()``), and uses ``keras.ops`` / ``keras.random`` only, so a
model that contains it saves to ``.keras``, reloads, and runs on TensorFlow, JAX and PyTorch.

Sections are owned by family: add a layer to the section of the family that needs it.
"""

from __future__ import annotations

import keras
from keras import ops

PACKAGE = "keras_cnns"

# --- LeNet-5 (LeCun et al. 1998) ------------------------------------------------------------

# --- AlexNet (Krizhevsky et al. 2012) -------------------------------------------------------

# --- ResNet / stochastic depth (He et al. 2016; Huang et al. 2016) -------------------------

# --- DenseNet / small CIFAR nets -------------------------------------------------------------
