"""Where one call's peak memory goes (rnnbench.harness.memory_breakdown): the replay of allocation
events, the attribution to this project's lines, and the Triton LSTM's buffers on CPU (the
interpreter) and on CUDA (the caching allocator) against what its module docstring says it keeps."""

from __future__ import annotations

import csv

import pytest
import torch

from conftest import KERNEL_DEVICE
from rnnbench.harness import gemm_memory
from rnnbench.kernels import projections
from rnnbench.harness.memory_breakdown import (
    BLOCK, allocator_events, attribute, breakdown, label, main, peak_breakdown, render,
)


def _alloc(addr, size, frame="a.py:1 f"):
    return {"action": "alloc", "addr": addr, "size": size, "frame": frame}


def _free(addr):
    return {"action": "free", "addr": addr, "size": 0, "frame": ""}


def test_peak_is_the_first_moment_of_most_live_bytes_grouped_by_frame():
    events = [_free(99), _alloc(1, 100), _alloc(2, 300, "b.py:2 g"), _alloc(3, 50), _free(2), _alloc(4, 340, "b.py:2 g"),
              _free(1), _free(3), _free(4)]
    result = peak_breakdown(events)
    assert result["peak_bytes"] == 490
    assert result["blocks"] == [{"frame": "b.py:2 g", "bytes": 340, "count": 1, "sizes": [340]},
                                {"frame": "a.py:1 f", "bytes": 150, "count": 2, "sizes": [100, 50]}]


def test_no_events_no_peak():
    assert peak_breakdown([]) == {"peak_bytes": 0, "blocks": []}


def test_cuda_allocator_history_becomes_events():
    """The allocator's ``alloc`` and ``free_requested`` entries count (segments and completions do not)."""
    frame = {"filename": "/repo/kernels/lstm.py", "line": 73, "name": "forward"}
    trace = [{"action": "segment_alloc", "addr": 0, "size": 2 * 2**20, "frames": []},
             {"action": "alloc", "addr": 512, "size": 1024, "frames": [frame]},
             {"action": "alloc", "addr": 2048, "size": 512, "frames": [frame]},
             {"action": "free_requested", "addr": 512, "size": 1024, "frames": []},
             {"action": "free_completed", "addr": 512, "size": 1024, "frames": []}]
    events = allocator_events(trace)
    assert [event["action"] for event in events] == ["alloc", "alloc", "free"]
    assert events[0]["frame"] == "kernels/lstm.py:73 forward"
    assert peak_breakdown(events)["peak_bytes"] == 1536


def test_attribution_names_the_innermost_two_frames_of_our_code():
    frames = [("/x/harness/memory_breakdown.py", 5, "record"), ("/usr/lib/torch/functional.py", 10, "mm"),
              ("/repo/kernels/launch.py", 103, "output_buffer"), ("/repo/kernels/lstm.py", 73, "forward"),
              ("/repo/harness/workloads.py", 120, "_fwd_bwd")]
    assert attribute(frames) == "kernels/lstm.py:73 forward < kernels/launch.py:103 output_buffer"
    assert attribute([("/usr/lib/torch/functional.py", 10, "mm")]) == "torch/functional.py:10 mm"


def _bytes_per_step_and_row(H, I, element, mode):
    """What the Triton LSTM keeps per time step and batch row (kernels/lstm.py): the gate projection
    (4H) and the output (H) in the storage dtype; in training also the float32 cell state (4H bytes)
    and, at the backward's peak, the input gradient (I)."""
    kept = (4 * H + H) * element
    if mode == "fwd_bwd":
        kept += 4 * H + I * element
    return kept


@pytest.mark.parametrize("mode", ["fwd", "fwd_bwd"])
def test_triton_lstm_keeps_per_step_what_its_docstring_says(mode):
    """The interpreter's trace (CPU) or the caching allocator's (CUDA) of one call at two sequence
    lengths: the peak grows by the documented bytes per step and row (the fixed buffers, weights'
    gradients and the exchange, cancel), each buffer rounded to 512 bytes. An inference forward
    keeps no cell states; a training call keeps them in float32."""
    B, H, steps = 3, 40, (8, 24)
    dtype = "float32" if KERNEL_DEVICE == "cpu" else "bfloat16"
    element = torch.tensor([], dtype=getattr(torch, dtype)).element_size()
    peaks = [breakdown("triton", "lstm", H, B, T, mode, dtype, KERNEL_DEVICE)["peak_bytes"] for T in steps]
    expected = (steps[1] - steps[0]) * B * _bytes_per_step_and_row(H, H, element, mode)
    assert abs(peaks[1] - peaks[0] - expected) <= 4 * BLOCK, (peaks, expected)


@pytest.mark.cuda
@pytest.mark.parametrize("H, B", [(64, 16), (128, 64)])
def test_on_gpu_the_triton_lstm_trains_in_no_more_memory_than_torch_nn(H, B):
    """The issue's memory goal where it failed on the H200 (bf16, T=1024): one training call's peak,
    Triton <= torch.nn. At 7caf667 still 48 against 34 MiB at H=64 B=16 (273 against 228 MB at
    H=128 B=64) with the Triton GEMM for ``dW_hh``: the bias gradient's ``flat.sum(1)`` staged 32
    MiB of partial sums; now :func:`rnnbench.kernels.projections.bias_grad`."""
    peaks = {backend: breakdown(backend, "lstm", H, B, 1024, "fwd_bwd", "bfloat16", "cuda")["peak_bytes"]
             for backend in ("triton", "torch")}
    assert peaks["triton"] <= peaks["torch"], peaks


def test_cli_writes_the_breakdowns(tmp_path, capsys):
    out = tmp_path / "breakdown.json"
    assert main(["--device", "cpu", "--backend", "torch", "--family", "rnn", "--hidden-size", "8", "--batch", "2",
                 "--seq-len", "5", "--dtype", "float32", "--json", str(out)]) == 0
    import json

    results = json.loads(out.read_text())
    assert [result["mode"] for result in results] == ["fwd", "fwd_bwd"]
    assert all(result["peak_bytes"] > 0 for result in results)
    assert "torch rnn float32 fwd_bwd H=8 B=2 T=5 on cpu: peak" in capsys.readouterr().out
    assert main(["--render", str(out)]) == 0
    summary = capsys.readouterr().out
    peaks = [f"{result['peak_bytes'] / 2**20:.1f}" for result in results]
    assert f"| rnn | float32 | 8 | 2 | 5 | fwd | {peaks[0]} |" in summary
    assert f"| rnn | float32 | 8 | 2 | 5 | fwd_bwd | {peaks[1]} |" in summary


def test_a_group_of_several_blocks_shows_their_sizes():
    mib = 2**20
    result = {"backend": "triton", "family": "lstm", "dtype": "bfloat16", "mode": "fwd_bwd", "hidden_size": 64,
              "batch": 16, "seq_len": 1024, "device": "cuda", "peak_bytes": 50 * mib,
              "blocks": [{"frame": "x.py:81 f", "bytes": 32 * mib, "count": 3, "sizes": [16 * mib, 8 * mib, 8 * mib]},
                         {"frame": "y.py:2 g", "bytes": 18 * mib, "count": 1, "sizes": [18 * mib]},
                         {"frame": "z.py:3 h", "bytes": mib, "count": 2}]}  # a file from before sizes were kept
    lines = render(result).splitlines()
    assert lines[1].endswith("x.py:81 f  (16.00 + 8.00 + 8.00 MiB)")
    assert lines[2].endswith("y.py:2 g") and lines[3].endswith("z.py:3 h")


@pytest.mark.parametrize("formulation", sorted(gemm_memory.FORMULATIONS))
def test_every_weight_gradient_formulation_computes_the_shipped_product(formulation, monkeypatch, exact_matmul):
    """float64 to 1e-12, but the Triton GEMM's (float32 inputs, full float32 products: 1e-5)."""
    monkeypatch.setattr(projections, "WEIGHT_GRAD_CHUNK_ROWS", 5)  # several chunks, the last one short
    dtype, tolerance = (torch.float32, 1e-5) if formulation == "triton" else (torch.float64, 1e-12)
    generator = torch.Generator().manual_seed(3)

    def rand(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64).to(KERNEL_DEVICE, dtype)

    a, b, first = rand(13, 12), rand(13, 3), (rand(2, 12), rand(2, 3))
    out = torch.full((12, 3), float("nan"), dtype=dtype, device=KERNEL_DEVICE)
    gemm_memory.FORMULATIONS[formulation](out, first, a, b)
    expected = first[0].double().t() @ first[1].double() + a.double().t() @ b.double()
    torch.testing.assert_close(out.double(), expected, rtol=tolerance, atol=tolerance)


@pytest.mark.cuda
def test_the_weight_gradient_probe_measures_every_formulation_on_gpu(tmp_path):
    path = tmp_path / "gemm.csv"
    assert gemm_memory.main(["--csv", str(path), "--seq-len", "9"]) == 0
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == len(gemm_memory.SHAPES) * len(gemm_memory.FORMULATIONS)
    assert all(float(row["us"]) > 0 and float(row["extra_mib_warm"]) >= 0 for row in rows), rows
    assert all(float(row["max_abs_diff"]) < 1.0 for row in rows), rows  # bf16 sums of at most 8 x 64 products (about 22 in size)


def test_a_forced_weight_gradient_formulation_shows_in_the_breakdown_and_is_restored():
    """``weight_grad="contiguous"`` copies ``dpre^T`` to ``(4H, (T-1)*B)`` before the GEMM: a block the
    shipped formulation does not allocate, attributed to that formulation's line, in a breakdown
    labelled with it; the shipped formulation is back afterwards. On CUDA the call runs bf16."""
    B, H, T = 3, 40, 24
    dtype = "float32" if KERNEL_DEVICE == "cpu" else "bfloat16"
    element = torch.tensor([], dtype=getattr(torch, dtype)).element_size()
    forced = breakdown("triton", "lstm", H, B, T, "fwd_bwd", dtype, KERNEL_DEVICE, weight_grad="contiguous")
    assert projections.WEIGHT_GRAD == "auto"
    shipped = breakdown("triton", "lstm", H, B, T, "fwd_bwd", dtype, KERNEL_DEVICE)
    copy = [group for group in forced["blocks"] if "_weight_grad_contiguous" in group["frame"]]
    assert copy and copy[0]["sizes"][0] >= (T - 1) * B * 4 * H * element, forced["blocks"]
    assert not any("_weight_grad_contiguous" in group["frame"] for group in shipped["blocks"])
    assert render(forced).startswith("triton (contiguous) lstm")
    with pytest.raises(ValueError, match="weight_grad must be one of"):
        breakdown("triton", "lstm", H, B, T, "fwd_bwd", dtype, KERNEL_DEVICE, weight_grad="fastest")


def test_the_probes_csv_renders_as_a_table_with_times_against_the_shipped_formulation(tmp_path, capsys):
    path = tmp_path / "gemm.csv"
    rows = [{"device_name": "GPU", "dtype": "bfloat16", "hidden_size": 64, "batch": 16, "seq_len": 1024, "k": 16368,
             "m": 256, "n": 64, "formulation": name, "extra_mib_cold": cold, "extra_mib_warm": warm, "us": us,
             "max_abs_diff": 0.0} for name, cold, warm, us in (("addmm", 32.0, 32.0, 20.0), ("mm_out", 0.0, 0.0, 25.0))]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=gemm_memory.COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    assert gemm_memory.main(["--render", str(path)]) == 0
    table = capsys.readouterr().out
    assert "| 64 | 16 | 16368 | addmm | 32.0 | 32.0 | 20.0 | 1.00 | 0 |" in table
    assert "| 64 | 16 | 16368 | mm_out | 0.0 | 0.0 | 25.0 | 1.25 | 0 |" in table
    with pytest.raises(SystemExit):
        gemm_memory.main([])  # neither a CSV to write nor one to render


def test_the_probes_fresh_thread_returns_its_value_and_raises_its_error():
    assert gemm_memory._in_fresh_thread(lambda: 7) == 7
    with pytest.raises(ZeroDivisionError):
        gemm_memory._in_fresh_thread(lambda: 1 / 0)


def test_a_fused_input_breakdown_is_labelled_and_the_switch_restored():
    """``fused_input=True`` switches ``switches.GLUON_FUSED_INPUT`` on for that call only (no Gluon path
    is planned at H=40, so the peak is the unfused one) and labels the breakdown; on the kernels'
    device (the interpreter's CPU, or CUDA: a CPU tensor there is refused without the interpreter)."""
    from rnnbench.kernels import switches

    B, H, T = 3, 40, 6
    dtype = "float32" if KERNEL_DEVICE == "cpu" else "bfloat16"
    fused = breakdown("triton", "lstm", H, B, T, "fwd", dtype, KERNEL_DEVICE, fused_input=True)
    assert switches.GLUON_FUSED_INPUT is False
    assert fused["fused_input"] is True and render(fused).startswith("triton (fused input) lstm")
    assert label({"backend": "triton", "weight_grad": "addmm", "fused_input": True}) == "triton (addmm, fused input)"
    assert "fused_input" not in breakdown("triton", "lstm", H, B, T, "fwd", dtype, KERNEL_DEVICE)


@pytest.mark.cuda
@pytest.mark.fused_input
@pytest.mark.parametrize("H, B", [(768, 16), (512, 64)])
def test_on_gpu_the_fused_inference_forward_allocates_no_projection_buffer(H, B):
    """With the Gluon forward's input projection fused (sm_90 only), an inference call (bf16, T=1024)
    allocates no ``(T, B, 4H)`` projection: its peak is below the unfused one's by that buffer
    (T*B*4H*2 bytes, 96 MiB at H=768 B=16) less the summed float32 bias the fused kernel reads
    instead (4H*4 bytes, one 512-byte block at least; the unfused projection adds the biases in its
    GEMM), and no block comes from ``project_inputs``. The H200 run of 7caf667 saved exactly the
    projection less 4H*4 bytes at both shapes."""
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the Gluon path needs sm_90")
    unfused = breakdown("triton", "lstm", H, B, 1024, "fwd", "bfloat16", "cuda")
    fused = breakdown("triton", "lstm", H, B, 1024, "fwd", "bfloat16", "cuda", fused_input=True)
    assert any("project_inputs" in group["frame"] for group in unfused["blocks"]), unfused["blocks"][:4]
    assert not any("project_inputs" in group["frame"] for group in fused["blocks"]), fused["blocks"][:4]
    projection, fused_bias = 1024 * B * 4 * H * 2, max(4 * H * 4, BLOCK)
    assert unfused["peak_bytes"] - fused["peak_bytes"] >= projection - fused_bias, (unfused["peak_bytes"],
                                                                                  fused["peak_bytes"])
