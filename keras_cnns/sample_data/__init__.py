"""Data files shipped in the package: a small real MNIST sample (see README.md here).

Nothing to import: ``keras_cnns.data`` reads ``mnist_sample.npz`` through
``importlib.resources``. This folder is a package so that setuptools installs its files as
package data.
"""
