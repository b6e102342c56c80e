"""rnnbench: fast recurrent kernels (Triton RNN/LSTM) measured against cuDNN, eager PyTorch and NumPy.

Subpackages: ``rnnbench.kernels`` (Triton kernels and the drop-in modules ``TritonLSTM`` /
``TritonRNN``), ``rnnbench.baselines`` (everything they are compared against) and
``rnnbench.harness`` (suites, measurement, results, reports and the ``rnnbench`` command).

In the repository the three subpackages are the folders ``kernels/``, ``baselines/`` and
``harness/`` beside this one; an installed wheel holds them inside ``rnnbench/`` (the mapping is in
``pyproject.toml``). So that a checkout also works without installing it (``PYTHONPATH=.``, as on
the GPU machine), the checkout's root is added to this package's search path when the subpackages
are not found inside it.
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.2.0"

_SUBPACKAGES = ("kernels", "baselines", "harness")


def _add_checkout_root() -> None:
    here = Path(__file__).resolve().parent
    if all((here / name).is_dir() for name in _SUBPACKAGES):
        return  # an installed wheel (or an editable install that maps them)
    root = here.parent
    if all((root / name / "__init__.py").is_file() for name in _SUBPACKAGES) and str(root) not in __path__:
        __path__.append(str(root))


_add_checkout_root()
