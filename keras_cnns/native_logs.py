"""TensorFlow's C++ start-up lines, filtered out of the ``keras-cnns`` command's stderr.

Importing TensorFlow 2.21 writes lines straight to file descriptor 2 from C++, twice each
(once per shared library it loads): absl's "All log messages before absl::InitializeLog() is
called are written to STDERR" and "oneDNN custom operations are on ...". ``TF_CPP_MIN_LOG_LEVEL``
no longer reaches them (absl logs them before it is initialised), and neither says anything a
user can act on. The command line filters them while TensorFlow is first imported; a library
user who imports ``keras_cnns`` sees TensorFlow's output untouched.

Only lines matching ``NOISE`` are dropped. Every other byte written to stderr meanwhile (a
Python warning, an error from the import) is passed through as it arrives, by a thread reading
a pipe, so a crash during the import loses nothing that was written before it.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import threading
from collections.abc import Iterator

# What TensorFlow's import writes that no user can act on (matched against each line).
NOISE = (
    re.compile(r"All log messages before absl::InitializeLog\(\) is called are written to STDERR"),
    re.compile(r"port\.cc:\d+\] oneDNN custom operations are on"),
    re.compile(r"cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized"),
    re.compile(r"To enable the following instructions: .* in other operations, rebuild TensorFlow"),
)


def is_noise(line: str) -> bool:
    """Whether ``line`` is one of TensorFlow's start-up lines (``NOISE``)."""
    return any(p.search(line) for p in NOISE)


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Drop ``NOISE`` lines written to file descriptor 2 meanwhile; pass everything else on."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr: nothing to filter
        yield
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward() -> None:
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if not is_noise(line.decode("utf-8", "replace")):
                    os.write(saved, line)

    thread = threading.Thread(target=forward, name="keras-cnns-stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the thread sees the end
        thread.join(timeout=5)
        os.close(saved)


class _FilteringLoader(importlib.abc.Loader):
    """A module's own loader, its ``exec_module`` run under ``filtered_stderr``."""

    def __init__(self, loader, finder: _FirstImport):
        self._loader = loader
        self._finder = finder

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._finder.remove()
        with filtered_stderr():
            self._loader.exec_module(module)


class _FirstImport(importlib.abc.MetaPathFinder):
    """Finds ``name`` with ``_FilteringLoader`` around its loader, until the module is first
    executed (a mere ``importlib.util.find_spec``, as a check that it is installed, leaves it
    in place)."""

    def __init__(self, name: str):
        self.name = name
        self._searching = False

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name or self._searching:
            return None
        self._searching = True  # the search below asks every finder again, this one included
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._searching = False
        if spec is not None and spec.loader is not None and not isinstance(spec.loader, _FilteringLoader):
            spec.loader = _FilteringLoader(spec.loader, self)
        return spec

    def remove(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)


def quiet_first_import(name: str = "tensorflow") -> None:
    """Filter ``NOISE`` from stderr while module ``name`` is first imported in this process
    (whoever imports it: Keras' TensorFlow backend, tensorflow-datasets). Nothing happens if
    it is already imported."""
    if name in sys.modules or any(isinstance(f, _FirstImport) and f.name == name for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _FirstImport(name))
