"""One module per family; importing this package registers every variant (data only)."""

from keras_cnns.models import (  # noqa: F401
    alexnet,
    cifar_nets,
    densenet,
    googlenet,
    lenet,
    resnet,
    resnet_cifar,
    vgg,
)
