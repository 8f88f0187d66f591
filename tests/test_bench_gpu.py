"""benchmarks/bench_gpu.py without a GPU: its plan, and every kind of case run on the CPU with
CUDA stubbed (the figures mean nothing; the code path is the one a CUDA machine runs)."""

from __future__ import annotations

from benchmarks import bench_gpu


def test_the_dry_run_lists_every_case_and_the_budget(capsys):
    assert bench_gpu.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    cases = bench_gpu.plan(("hinet", "shared_bottom", "mmoe"), (4096, 16384, 65536), bench_gpu.TRAIN_MODES,
                           bench_gpu.INFER_MODES)
    # HiNet: 3 batches x 4 training modes; baselines: 2 modes at 16384; every model: 2 batches x 4 inference modes
    assert len(cases) == 1 + 12 + 2 * 2 + 3 * 2 * 4
    assert f"bench_gpu would measure {len(cases)} cases" in out and "within a 540 s budget" in out
    assert "train hinet          65536 compiled" in out and "infer mmoe           65536 graphs" in out
    assert "data  reader          4096 stream" in out


def test_every_kind_of_case_runs_with_cuda_stubbed(tmp_path, capsys):
    out = tmp_path / "gpu.md"
    assert bench_gpu.main(["--device", "cpu", "--models", "hinet,mmoe", "--batches", "64,128",
                           "--train-modes", "fp32,bf16", "--infer-modes", "fp32,bf16", "--seconds", "0.2",
                           "--out", str(out)]) == 0
    table = out.read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| kind")]
    assert len(rows) == 1 + 4 + 2 + 2 * 2 * 2  # data; hinet train 2x2; mmoe train 2 modes at one size; infer
    assert not any("failed" in r or "skipped" in r for r in rows), table
    for r in rows:
        rate = r.split("|")[5].strip().replace(",", "")
        assert float(rate) > 0, r
    assert "x faster" in table  # HiNet's inference rows stand against the paper's 0.1731 ms/sample
    assert "keeps_up=" in table and "CUDA stubbed" in table


def test_a_past_budget_skips_the_rest_and_says_so(tmp_path):
    out = tmp_path / "gpu.md"
    assert bench_gpu.main(["--device", "cpu", "--models", "shared_bottom", "--batches", "64",
                           "--train-modes", "fp32", "--infer-modes", "fp32", "--seconds", "0.1", "--budget", "0",
                           "--out", str(out)]) == 0
    table = out.read_text()
    assert table.count("skipped: past the 0 s budget") == 3  # data, train, infer: all after the deadline
