"""Test-session setup shared by every test module.

Without a GPU, the Triton kernels run in the interpreter: ``TRITON_INTERPRET=1`` must be set before
``triton.jit`` decorates them, i.e. before anything imports ``kernels``, so it is set here.
Tests marked ``cuda`` are skipped on such machines with the reason. Tests marked ``slow`` run only
with ``--slow`` (each feature they check is also covered by a quicker test in the default run).
"""

import os

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")

#: where kernel tests run: the GPU if there is one, else CPU tensors in the Triton interpreter
KERNEL_DEVICE = "cuda" if HAS_CUDA else "cpu"


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="also run the tests marked slow")


def pytest_collection_modifyitems(config, items):
    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    skip_slow = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if not HAS_CUDA and item.get_closest_marker("cuda") is not None:
            item.add_marker(skip_cuda)
        if not config.getoption("--slow") and item.get_closest_marker("slow") is not None:
            item.add_marker(skip_slow)


@pytest.fixture
def exact_fp32():
    """TF32 off in cuDNN (so also in the Triton kernels) for fp32 results comparable at 1e-5; restored afterwards."""
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = previous


@pytest.fixture
def exact_matmul():
    """TF32 off for torch matmuls (so also in the weight-gradient GEMM); restored afterwards."""
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = previous


def replayed_in_graph(run):
    """``run()``'s results replayed from a CUDA graph: warmed up once on a side stream (what
    compiles and allocates stays out of the graph, as torch's graph docs ask, autograd included),
    captured, replayed once and synchronised. The caller compares them with eager results."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        run()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = run()
    graph.replay()
    torch.cuda.synchronize()
    return captured

