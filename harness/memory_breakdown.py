"""Where the peak memory of one call goes: the blocks alive at the peak, by the line that allocated them.

The memory experiment (:mod:`rnnbench.harness.memory`) gives one number per case; this module
explains it. It records every allocation and free of one call (after a warm-up call, as the
experiment measures), replays them, and lists the blocks alive at the moment the live bytes peak,
grouped by the first frame of this project's code on the allocating stack (``kernels/lstm.py:80
forward``), largest first.

Two recorders produce the same events (``{"action": "alloc" | "free", "addr", "size", "frame"}``):

* ``cuda``: PyTorch's caching-allocator history (``torch.cuda.memory._record_memory_history``):
  the block sizes the allocator hands out (rounded to 512 bytes), every allocation through it
  (kernels' outputs, cuDNN's and cuBLAS's workspaces obtained through it).
* ``cpu``: a ``TorchDispatchMode`` that sees every tensor a torch operator returns and a weak
  reference to each new storage (freed when the storage dies), sizes rounded to 512 bytes like
  the CUDA allocator's. On CPU the Triton kernels run in the interpreter (or not at all, see
  ``--skip-kernels``), which allocates nothing through torch, so the trace of a Triton workload
  is the allocation pattern the same code has on a GPU: a prediction of its CUDA breakdown that
  needs no GPU. Storages that exist before the call (inputs, parameters) are not counted, as the
  memory experiment subtracts what was allocated before.

``python -m rnnbench.harness.memory_breakdown --backend triton --family lstm --hidden-size 64
--batch 16 --mode fwd_bwd --device cuda`` prints the breakdown (``--json FILE`` writes it).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import traceback
import weakref
from pathlib import Path
from typing import Callable

from rnnbench.harness.backends import build_workload, shape_case
from rnnbench.harness.memory import MIB
from rnnbench.kernels import projections

#: the CUDA caching allocator's granularity (bytes); the CPU recorder rounds to it as well
BLOCK = 512
#: path fragments of this project's code (the frame a block is attributed to)
OWN_CODE = ("rnnbench", "/kernels/", "/harness/", "/baselines/")


def attribute(frames: list[tuple[str, int, str]]) -> str:
    """Where a block was allocated, from its stack ``frames`` (``(file, line, function)``, innermost
    first): the innermost two frames of this project's code, ``caller < allocating helper`` (so
    ``output_buffer`` calls are told apart by their callers), or the innermost frame when none is
    ours. This module's own frames are skipped."""
    frames = [frame for frame in frames if not frame[0].endswith("memory_breakdown.py")]
    ours = [frame for frame in frames if any(part in frame[0] for part in OWN_CODE)]
    chosen = (ours or frames or [("?", 0, "?")])[:2 if ours else 1]
    return " < ".join(f"{'/'.join(Path(filename).parts[-2:])}:{line} {name}" for filename, line, name in chosen[::-1])


def peak_breakdown(events: list[dict]) -> dict:
    """Replay ``events`` (in order): ``{"peak_bytes", "blocks": [{"frame", "bytes", "count", "sizes"}]}``
    of the blocks alive when the live bytes were highest (the first such moment), largest group
    first; ``sizes``: each block's bytes, largest first (which of a line's allocations is the big one).
    A free of an address never allocated in the trace (a block from before the call) is ignored."""
    live: dict[int, dict] = {}
    current = peak = 0
    at_peak: list[dict] = []
    for event in events:
        if event["action"] == "alloc":
            live[event["addr"]] = event
            current += event["size"]
            if current > peak:
                peak, at_peak = current, list(live.values())
        elif event["action"] == "free" and event["addr"] in live:
            current -= live.pop(event["addr"])["size"]
    groups: dict[str, dict] = {}
    for block in at_peak:
        group = groups.setdefault(block["frame"], {"frame": block["frame"], "bytes": 0, "count": 0, "sizes": []})
        group["bytes"] += block["size"]
        group["count"] += 1
        group["sizes"].append(block["size"])
    for group in groups.values():
        group["sizes"].sort(reverse=True)
    return {"peak_bytes": peak, "blocks": sorted(groups.values(), key=lambda group: -group["bytes"])}


def cuda_events(fn: Callable[[], object]) -> list[dict]:
    """Allocation events of one call of ``fn`` on the current CUDA device (after a warm-up call):
    the allocator's history with Python stacks, from an empty history (or from where it stood, on
    a torch whose recorder cannot clear it)."""
    import inspect

    import torch

    fn()
    gc.collect()
    torch.cuda.synchronize()
    device = torch.cuda.current_device()
    record = torch.cuda.memory._record_memory_history
    clears = "clear_history" in inspect.signature(record).parameters
    record(stacks="python", max_entries=1_000_000, **({"clear_history": True} if clears else {}))
    try:
        start = 0 if clears else len(torch.cuda.memory._snapshot()["device_traces"][device])
        result = fn()
        torch.cuda.synchronize()
        trace = torch.cuda.memory._snapshot()["device_traces"][device][start:]
    finally:
        record(enabled=None)
    del result
    return allocator_events(trace)


def allocator_events(trace: list[dict]) -> list[dict]:
    """Events of a CUDA allocator history (``torch.cuda.memory._snapshot()["device_traces"][d]``):
    its ``alloc`` and ``free_requested`` entries (when the caller frees, as ``memory_allocated``
    counts), segments and completions left out."""
    events = []
    for entry in trace:
        action = {"alloc": "alloc", "free_requested": "free"}.get(entry["action"])
        if action is not None:
            frames = [(frame["filename"], frame["line"], frame["name"]) for frame in entry.get("frames", [])]
            events.append({"action": action, "addr": entry["addr"], "size": entry["size"], "frame": attribute(frames)})
    return events


def cpu_events(fn: Callable[[], object]) -> list[dict]:
    """Allocation events of one call of ``fn`` on CPU tensors (after a warm-up call): see the module
    docstring."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    events: list[dict] = []
    tracked: dict[int, weakref.ref] = {}

    def freed(address: int) -> None:
        if tracked.pop(address, None) is not None:
            events.append({"action": "free", "addr": address, "size": 0, "frame": ""})

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if any(result.alias_info is not None for result in func._schema.returns):
                return out  # a view of an existing storage
            for tensor in tree_flatten(out)[0]:
                if not isinstance(tensor, torch.Tensor):
                    continue
                storage = tensor.untyped_storage()
                address = storage.data_ptr()
                if address in tracked or storage.nbytes() == 0:
                    continue
                tracked[address] = weakref.ref(storage, lambda _, address=address: freed(address))
                stack = traceback.extract_stack()[::-1]
                events.append({"action": "alloc", "addr": address, "size": BLOCK * math.ceil(storage.nbytes() / BLOCK),
                               "frame": attribute([(frame.filename, frame.lineno, frame.name) for frame in stack])})
            return out

    fn()
    gc.collect()
    with Recorder():
        result = fn()
    del result
    return events


def breakdown(backend: str, family: str, hidden_size: int, batch: int, seq_len: int, mode: str, dtype: str,
              device: str, input_size: int | None = None, weight_grad: str | None = None,
              fused_input: bool = False) -> dict:
    """The peak breakdown of one ``mode`` call of ``backend`` on the harness's problem of this shape;
    ``weight_grad``: the Triton layers' ``dW_hh`` formulation for this call
    (:data:`rnnbench.kernels.projections.WEIGHT_GRAD_FORMULATIONS`; default: the shipped one);
    ``fused_input``: the Gluon forward fuses its input projection where it can
    (:data:`rnnbench.kernels.switches.GLUON_FUSED_INPUT` switched on for this call)."""
    from rnnbench.kernels import switches

    if weight_grad is not None and weight_grad not in projections.WEIGHT_GRAD_FORMULATIONS:
        raise ValueError(f"weight_grad must be one of {sorted(projections.WEIGHT_GRAD_FORMULATIONS)}, got {weight_grad!r}")
    case = shape_case(backend, family, hidden_size, batch, seq_len, mode, dtype, device, input_size, "memory")
    fn = build_workload(case).callable(mode)
    shipped = projections.WEIGHT_GRAD
    projections.WEIGHT_GRAD = weight_grad or shipped
    try:
        with switches.fused_input_projection(True if fused_input else None):
            result = peak_breakdown(cuda_events(fn) if device == "cuda" else cpu_events(fn))
    finally:
        projections.WEIGHT_GRAD = shipped
    extra = {} if weight_grad is None else {"weight_grad": weight_grad}
    extra |= {"fused_input": True} if fused_input else {}
    return {"backend": backend, "family": family, "hidden_size": hidden_size, "batch": batch, "seq_len": seq_len,
            "input_size": case.input_size, "mode": mode, "dtype": dtype, "device": device, **extra, **result}


def label(result: dict) -> str:
    """The backend of a breakdown, with the ``dW_hh`` formulation it was forced to, if any, and
    whether its input projection was fused."""
    forced = [result["weight_grad"]] if "weight_grad" in result else []
    forced += ["fused input"] if result.get("fused_input") else []
    return result["backend"] + (f" ({', '.join(forced)})" if forced else "")


def render(result: dict, top: int = 12) -> str:
    lines = [f"{label(result)} {result['family']} {result['dtype']} {result['mode']} H={result['hidden_size']} "
             f"B={result['batch']} T={result['seq_len']} on {result['device']}: peak {result['peak_bytes'] / MIB:.2f} MiB"]
    lines += [f"  {group['bytes'] / MIB:9.2f} MiB  {group['count']:3d} x  {group['frame']}{_sizes(group)}"
              for group in result["blocks"][:top]]
    return "\n".join(lines)


def _sizes(group: dict, shown: int = 4) -> str:
    """`` (16.00 + 8.00 + ... MiB)``: the blocks of a group of several, largest first (files written
    before blocks had sizes have none)."""
    sizes = group.get("sizes", [])
    if len(sizes) < 2:
        return ""
    parts = [f"{size / MIB:.2f}" for size in sizes[:shown]] + (["..."] if len(sizes) > shown else [])
    return f"  ({' + '.join(parts)} MiB)"


def markdown(results: list[dict], top: int = 8) -> str:
    """A Markdown summary of breakdowns: the peaks side by side (one row per shape and mode, one column
    per backend), then each breakdown's largest groups."""
    shapes: dict[tuple, dict[str, float]] = {}
    for result in results:
        key = (result["family"], result["dtype"], result["hidden_size"], result["batch"], result["seq_len"], result["mode"])
        shapes.setdefault(key, {})[label(result)] = result["peak_bytes"] / MIB
    backends = sorted({label(result) for result in results})
    lines = ["| family | dtype | H | B | T | mode | " + " | ".join(f"{backend} (MiB)" for backend in backends) + " |",
             "|" + "---|" * (6 + len(backends))]
    for key, peaks in shapes.items():
        cells = [f"{peaks[backend]:.1f}" if backend in peaks else "-" for backend in backends]
        lines.append("| " + " | ".join(str(part) for part in key) + " | " + " | ".join(cells) + " |")
    for result in results:
        lines += ["", "```", render(result, top), "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rnnbench.harness.memory_breakdown", description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="triton")
    parser.add_argument("--family", default="lstm", choices=["lstm", "rnn"])
    parser.add_argument("--hidden-size", type=int, nargs="+", default=[64])
    parser.add_argument("--batch", type=int, nargs="+", default=[16])
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--mode", nargs="+", default=["fwd", "fwd_bwd"], choices=["fwd", "fwd_bwd"])
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--skip-kernels", action="store_true",
                        help="cpu: do not run the Triton kernels (their outputs are garbage; the allocations are the same)")
    parser.add_argument("--weight-grad", choices=list(projections.WEIGHT_GRAD_FORMULATIONS),
                        help="the Triton layers' dW_hh formulation for these calls (default: the shipped one, "
                        f"{projections.WEIGHT_GRAD})")
    parser.add_argument("--fused-input", action="store_true",
                        help="the Gluon forward fuses its input projection where it can (switches.GLUON_FUSED_INPUT)")
    parser.add_argument("--json", type=Path, help="write every breakdown to this file (a JSON list)")
    parser.add_argument("--render", type=Path, nargs="+", metavar="JSON",
                        help="measure nothing: print the Markdown summary of these --json files")
    args = parser.parse_args(argv)
    if args.render:
        print(markdown([result for path in args.render for result in json.loads(path.read_text())]), end="")
        return 0
    if args.skip_kernels:
        skip_kernel_launches()
    results = []
    for hidden_size in args.hidden_size:
        for batch in args.batch:
            for mode in args.mode:
                results.append(breakdown(args.backend, args.family, hidden_size, batch, args.seq_len, mode, args.dtype,
                                         args.device, weight_grad=args.weight_grad, fused_input=args.fused_input))
                print(render(results[-1]), flush=True)
                if args.json:
                    args.json.write_text(json.dumps(results, indent=1))
    return 0


def skip_kernel_launches() -> None:
    """Replace the Triton layers' kernel launches with no-ops (``--skip-kernels``): the recurrences
    and the weight-gradient GEMM (:mod:`rnnbench.kernels.weight_grad`)."""
    import rnnbench.kernels.lstm
    import rnnbench.kernels.rnn
    import rnnbench.kernels.weight_grad

    for module in (rnnbench.kernels.lstm, rnnbench.kernels.rnn):
        module.run_phases = lambda *args, **kwargs: None
    rnnbench.kernels.weight_grad._launch = lambda *args, **kwargs: None


if __name__ == "__main__":
    raise SystemExit(main())
