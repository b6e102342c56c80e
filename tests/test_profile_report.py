"""The reader of Nsight Compute's CSV exports (rnnbench.harness.profile_report), on files shaped as
ncu 2025 writes them (a kernel line, quoted cells, thousands separators)."""

from __future__ import annotations

import pytest

from rnnbench.harness import profile_report

HEADER = ('"Address","Source","Warp Stall Sampling (All Samples)","Warp Stall Sampling (Not-issued Samples)",'
          '"Instructions Executed","stall_long_sb","stall_barrier","stall_long_sb (Not Issued)"')
ROWS = [
    ('0x7f00000010', '      @P4   ERRBAR', '200', '200', '49,152', '0', '10', '0'),
    ('0x7f00000000', '      LDC R1, c[0x0][0x28]', '5', '5', '192', '0', '0', '0'),
    ('0x7f00000020', '      CCTL.IVALL', '1,500', '1,490', '226,666', '1,480', '0', '1,470'),
    ('0x7f00000030', '      BAR.SYNC.DEFER_BLOCKING 0x0', '295', '290', '196,608', '5', '280', '5'),
]


def _write(tmp_path, rows=ROWS, first='"Kernel Name","lstm_forward_gluon_kernel",'):
    path = tmp_path / "profile-triton-gluon-h768-b16-fwd-sass.csv"
    path.write_text("\n".join([first, HEADER] + [",".join(f'"{cell}"' for cell in row) for row in rows]) + "\n")
    return path


def test_instructions_are_read_in_address_order_with_offsets_and_numbers(tmp_path):
    kernel, instructions = profile_report.read_source(_write(tmp_path))
    assert kernel == "lstm_forward_gluon_kernel"
    assert list(instructions.offset) == [0, 0x10, 0x20, 0x30]
    assert list(instructions.opcode) == ["LDC", "ERRBAR", "CCTL.IVALL", "BAR.SYNC.DEFER_BLOCKING"]
    assert list(instructions.samples) == [5, 200, 1500, 295] and instructions.executed[2] == 226666
    assert "stall_long_sb (Not Issued)" not in instructions.columns  # only the all-samples reasons


def test_shares_and_the_hottest_instructions(tmp_path):
    _, instructions = profile_report.read_source(_write(tmp_path))
    states = profile_report.stall_shares(instructions)
    assert list(states.index) == ["long_sb", "barrier"]
    assert states["long_sb"] == pytest.approx(100 * 1485 / 2000)
    assert profile_report.opcode_shares(instructions)["CCTL.IVALL"] == pytest.approx(75.0)
    top = profile_report.hottest(instructions, 2)
    assert list(top.instruction) == ["CCTL.IVALL", "BAR.SYNC.DEFER_BLOCKING 0x0"]
    assert list(top.share_pct) == [75.0, 14.8] and top.waiting_on[0] == "long_sb 99%"


def test_markdown_shows_the_details_beside_the_source_page(tmp_path, capsys):
    sass = _write(tmp_path)
    (tmp_path / "profile-triton-gluon-h768-b16-fwd-details.csv").write_text(
        '"ID","Section Name","Metric Name","Metric Unit","Metric Value"\n'
        '"0","GPU Speed Of Light Throughput","SM Frequency","Ghz","1.32"\n'
        '"0","Launch Statistics","Grid Size","","48"\n'
        '"0","Launch Statistics","Cluster Size","","0"\n')
    assert profile_report.main([str(sass), "--top", "1"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("## profile-triton-gluon-h768-b16-fwd: `lstm_forward_gluon_kernel`")
    assert "SM Frequency: 1.32 Ghz, Grid Size: 48\n" in text and "Cluster Size" not in text
    assert "| 0x0020 | CCTL.IVALL | 226666 | 75.0 | long_sb 99% |" in text


def test_a_file_that_is_not_a_source_export_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not an ncu source-page export"):
        profile_report.read_source(_write(tmp_path, first='"ID","Section Name"'))
    path = tmp_path / "narrow.csv"
    path.write_text('"Kernel Name","k",\n"Address","Source"\n"0x0","NOP"\n')
    with pytest.raises(ValueError, match="lacks the columns"):
        profile_report.read_source(path)
    with pytest.raises(SystemExit):
        profile_report.main([str(_write(tmp_path)), "--top", "0"])
