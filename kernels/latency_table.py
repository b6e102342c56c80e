"""What the latency probes say the cost model's latency table should be: the probes' CSV
(:mod:`rnnbench.kernels.latency_probe`) turned into table entries (:func:`table_entries`), the
entries the model takes written where it reads them (:func:`adopt`,
:func:`rnnbench.kernels.cost.latencies`), and the Markdown the GPU report includes
(:func:`render`), and the TMA probes' box they share with the probes. Needs no GPU: it reads a CSV
measured on one.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from rnnbench.kernels.cost import DEVICES, LATENCIES, MEASURED_ENTRIES, measured_latencies

#: the TMA probes' box: ``(tiles, TMA_ROWS, K_TILE)`` bf16, tiles of 16 rows and 64 columns as the
#: Gluon forward's state copies at B=16 (``tma_<tiles>`` in the probes' CSV)
TMA_ROWS = 16
K_TILE = 64


def tma_box(tiles: int) -> list[int]:
    """The box of the TMA probe of ``tiles`` tiles."""
    return [tiles, TMA_ROWS, K_TILE]


def tma_copy_bytes(probe: str) -> int:
    """Bytes one copy of the TMA probe named ``probe`` (``tma_<tiles>``) brings."""
    return math.prod(tma_box(int(probe.removeprefix("tma_")))) * 2


def _number(value) -> float | None:
    return None if value in (None, "") else float(value)


def table_entries(rows: list[dict], arch: int = 90) -> list[dict]:
    """What the cost model's table entries would have to be for its estimate to match the probes
    (``rows`` as read back from the CSV; each entry solved from its probe with every other entry as
    the prior table (:data:`rnnbench.kernels.cost.LATENCIES`, which the CSV's estimates used) has it,
    so an entry's excess is the probe's measured minus estimated cycles; ``store`` and ``atomic``,
    round trips to L2 as well, scale with ``l2``, and ``membar`` is the release's excess net of
    that change):
    ``{"entry", "table", "measured", "source", "field"}`` (``field``: the :class:`~rnnbench.kernels.cost.Latencies`
    entry, for those :func:`adopt` may write; else empty) in SM cycles (bytes per cycle for the TMA's
    bandwidth). What the release takes beyond the store's new round trip is put on ``membar`` (the
    probe cannot split the fence from the acknowledgements it waits for otherwise); the TMA's fixed
    cost and bandwidth are the least-squares line through the copies' cycles against their bytes."""
    lat, device = LATENCIES[arch], DEVICES[arch]
    by_name = {row["probe"]: row for row in rows}

    def excess(name: str) -> float | None:
        row = by_name.get(name)
        if row is None or _number(row.get("model_cycles")) is None:
            return None
        return float(row["cycles_per_iteration"]) - float(row["model_cycles"])

    entries = []

    def add(entry: str, table: float, measured: float | None, source: str, field: str = "") -> None:
        if measured is not None:
            entries.append({"entry": entry, "table": round(float(table), 1), "measured": round(float(measured), 1),
                            "source": source, "field": field})

    relaxed, acquire = excess("load_relaxed"), excess("load_acquire")
    # a store's acknowledgement and an atomic are L2 round trips too: they scale with the load's
    round_trip = None if relaxed is None else (lat.l2 + relaxed) / lat.l2
    add("l2 (coherent load round trip)", lat.l2, None if relaxed is None else lat.l2 + relaxed, "load_relaxed", "l2")
    add("store (until acknowledged)", lat.store, None if round_trip is None else lat.store * round_trip,
        "load_relaxed, as l2", "store")
    add("atomic (L2 atomic round trip)", lat.atomic, None if round_trip is None else lat.atomic * round_trip,
        "load_relaxed, as l2", "atomic")
    add("fence (an acquire's invalidation)", lat.fence,
        None if None in (relaxed, acquire) else lat.fence + acquire - relaxed, "load_acquire - load_relaxed", "fence")
    barrier = excess("cta_barrier")
    add("bar (CTA barrier)", lat.bar, None if barrier is None else lat.bar + barrier, "cta_barrier", "bar")
    release = excess("release_s0")
    # the release's fence waits for the previous release add's acknowledgement (``store``), then
    # ``membar``: its excess net of the store's new round trip
    store_change = 0.0 if round_trip is None else lat.store * (round_trip - 1)
    add("membar (a release's fence)", lat.membar, None if release is None else lat.membar + release - store_change,
        "release_s0 - the store's change", "membar")
    # the tagged loader's hand-over (shared stores, the proxy fence's MEMBAR.ALL.CTA, a CTA barrier, an
    # mbarrier): the model charges its CTA-scope fence a release's ``membar`` (the GPU-scope fence's);
    # what the hand-over takes beyond the estimate, put on that fence, says what a CTA-scope one
    # costs (no entry of its own: KERNELS2.md, the twentieth session's section, why not yet)
    handover = excess("handover")
    add("membar as a CTA-scope fence after shared stores (no entry: charged membar)", lat.membar,
        None if handover is None else lat.membar + handover, "handover, its whole excess")
    if "release_s1" in by_name and "release_s4" in by_name:
        extra = (float(by_name["release_s4"]["cycles_per_iteration"])
                 - float(by_name["release_s1"]["cycles_per_iteration"])) / 3
        add("each store more before a release", 0.0, extra, "(release_s4 - release_s1) / 3")
    copies = [(tma_copy_bytes(name), float(row["cycles_per_iteration"]))
              for name, row in by_name.items() if name.startswith("tma_")]
    if len(copies) >= 2 and len({size for size, _ in copies}) >= 2:
        mean_x = statistics.fmean(size for size, _ in copies)
        mean_y = statistics.fmean(cycles for _, cycles in copies)
        slope = (sum((size - mean_x) * (cycles - mean_y) for size, cycles in copies)
                 / sum((size - mean_x) ** 2 for size, _ in copies))
        add("TMA copy, fixed cycles (table: l2)", lat.l2, mean_y - slope * mean_x, "tma_* line, intercept")
        if slope > 0:
            add("TMA copy, bytes per cycle into one SM", device.sm_l2_bytes_per_clock, 1.0 / slope, "tma_* line, slope")
    for name, row in by_name.items():
        if name.startswith("hgmma_") and _number(row.get("model_cycles")) is not None:
            ops = float(row["ops_per_iteration"])
            add(f"cycles per wgmma, {name[len('hgmma_'):]}", float(row["model_cycles"]) / ops,
                float(row["cycles_per_iteration"]) / ops, name)
    # the plain kernels' mma.sync (HMMA.16816): its dependent latency, and the tensor pipe's cycles an
    # HMMA a scheduler with one warp and with two on it (no field: the B=64 question, KERNELS2.md's
    # twenty-second session)
    if "hmma_chain" in by_name:
        add("mma (HMMA.16816 dependent latency)", lat.mma,
            float(by_name["hmma_chain"]["cycles_per_iteration"]) / float(by_name["hmma_chain"]["ops_per_iteration"]),
            "hmma_chain")
    for name, warps in (("hmma_w4_c8", 4), ("hmma_w8_c8", 8)):
        if name in by_name:
            row = by_name[name]
            add(f"tensor-pipe cycles an HMMA.16816 a scheduler, {warps // 4} warp(s) on it",
                16 * 8 * 16 / device.mma_fma_per_clock,
                float(row["cycles_per_iteration"]) / (float(row["ops_per_iteration"]) * warps / 4), name)
    if "ping_pong" in by_name:
        add("one-way signal between SMs (no entry: release + poll)", lat.store + lat.membar + lat.l2,
            float(by_name["ping_pong"]["cycles_per_iteration"]) / 2, "ping_pong / 2")
    return entries


def adopt(rows: list[dict], path, arch: int = 90) -> dict:
    """Write the measured entries of :func:`table_entries` that the model takes
    (:data:`rnnbench.kernels.cost.MEASURED_ENTRIES`) as the JSON :func:`rnnbench.kernels.cost.latencies`
    reads (``path``: :func:`rnnbench.kernels.cost.latency_table_path` normally), leaving out any
    beyond :data:`~rnnbench.kernels.cost.MEASURED_RANGE` times the prior (reported under
    ``rejected``); returns what was written. The cost tables and the calibration computed after it
    use the measured entries."""
    adopted, rejected = {}, {}
    for entry in table_entries(rows, arch):
        if entry["field"] in MEASURED_ENTRIES:
            try:
                measured_latencies(LATENCIES[arch], {entry["field"]: entry["measured"]})
                adopted[entry["field"]] = entry["measured"]
            except ValueError as error:
                rejected[entry["field"]] = str(error)
    if not adopted:
        raise ValueError("no probe measured an entry the model takes (load_relaxed, load_acquire, cta_barrier, "
                         "release_s0, with their estimates)" + (f"; rejected: {rejected}" if rejected else ""))
    data = {"device_name": str(rows[0].get("device_name", "")), "entries": adopted, "rejected": rejected,
            "prior": {name: getattr(LATENCIES[arch], name) for name in MEASURED_ENTRIES}}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return data


def render(rows: list[dict]) -> str:
    """The Markdown tables of probe rows (as read back from the CSV): the probes, then what the
    model's table entries would have to be (:func:`table_entries`)."""
    header = ("| probe | what | ns / iteration (q25-q75) | cycles / iteration | clock GHz | model cycles | "
              "measured / model | cycles / op |")
    lines = [header, "|" + "---|" * 8]
    for row in rows:
        lines.append(f"| {row['probe']} | {row['what']} | {row['ns_per_iteration']} ({row['q25_ns']}-{row['q75_ns']}) | "
                     f"{row['cycles_per_iteration']} | {row['clock_ghz']} | {row['model_cycles'] or '-'} | "
                     f"{row['measured_over_model'] or '-'} | {row['cycles_per_op']} |")
    entries = table_entries(rows)
    if entries:
        lines += ["", "What the cost model's latency table would have to say (SM cycles) for its estimate to match "
                  "each probe, every other entry as it is:", "", "| entry | table | this GPU | from |", "|---|---|---|---|"]
        lines += [f"| {e['entry']} | {e['table']} | {e['measured']} | {e['source']} |" for e in entries]
    return "\n".join(lines) + "\n"
