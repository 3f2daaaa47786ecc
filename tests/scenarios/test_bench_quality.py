"""benchmarks/bench_quality.py: its metrics give the known answers on hand-made edits, and its rows run end to end
on `tiny` (random weights: the figures are not judged, only that each is computed and the rows share their work)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from v2vz.world.scene import BACKGROUNDS, COLOURS, OBJECTS, parse_caption

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_quality.py"


@pytest.fixture(scope="module")
def bench_quality():
    spec = importlib.util.spec_from_file_location("bench_quality", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_quality"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def spec(bench_quality):
    return bench_quality.clip_specs(1)[0]


def test_an_edit_equal_to_the_source_keeps_everything(bench_quality, spec):
    source = spec.source(8)
    figures = bench_quality.measure(source.frames, source, source, "colour")
    assert figures["bg_psnr_db"] == math.inf
    assert figures["centroid_px"] < 0.5  # the classifier's mask is the truth's but for a grain pixel or two
    assert figures["iou"] > 0.97
    assert figures["temporal"] == 1.0
    assert figures["reached"] == figures["caption"] == figures["found"] == 1.0  # "target" = source: it reads as such


def test_the_target_colour_painted_in_counts_as_reached_and_keeps_the_background(bench_quality, spec):
    source, target = spec.source(8), spec.target("colour", 8)
    painted = source.frames.copy()
    painted[source.masks] = COLOURS[target.scenes[0].colour]
    figures = bench_quality.measure(painted, source, target, "colour")
    assert figures["reached"] == figures["caption"] == 1.0
    assert figures["bg_psnr_db"] == math.inf and figures["iou"] > 0.97
    unchanged = bench_quality.measure(source.frames, source, target, "colour")
    assert unchanged["reached"] == 0.0 and unchanged["caption"] == 0.0


def test_the_ideal_edits_reach_their_targets_and_an_empty_frame_reaches_none(bench_quality, spec):
    source = spec.source(8)
    for kind in bench_quality.KINDS:
        target = spec.target(kind, 8)
        figures = bench_quality.measure(target.frames, source, target, kind)
        assert figures["reached"] == figures["caption"] == 1.0, kind
        assert (figures["iou"] is None) == (kind == "shape") and (figures["bg_psnr_db"] is None) == (
            kind == "background"
        )
    empty = np.broadcast_to(np.asarray(BACKGROUNDS[source.scenes[0].background], np.uint8), source.frames.shape)
    figures = bench_quality.measure(np.ascontiguousarray(empty), source, spec.target("colour", 8), "colour")
    assert figures["reached"] == 0.0 and figures["found"] == 0.0 and math.isnan(figures["centroid_px"])
    assert figures["iou"] == 0.0 and figures["temporal"] == 0.0


def test_psnr_pools_squared_errors_and_rows_summarize_by_kind(bench_quality):
    assert bench_quality.mean_psnr([math.inf, math.inf]) == math.inf
    assert bench_quality.mean_psnr([20.0, math.inf]) == pytest.approx(20 + 10 * math.log10(2))
    edits = [
        {"kind": "colour", "reached": 1.0, "caption": 1.0, "centroid_px": 1.0, "iou": 1.0, "bg_psnr_db": math.inf},
        {"kind": "background", "reached": 0.5, "caption": 0.0, "centroid_px": math.nan, "iou": 0.5},
        {"kind": "shape", "reached": 0.0, "caption": 0.0, "centroid_px": 3.0, "bg_psnr_db": 20.0},
    ]
    summary = bench_quality.summarize(edits)
    assert summary["reached"] == {"colour": 1.0, "background": 0.5, "shape": 0.0}
    assert summary["reached_overall"] == 0.5 and summary["caption"] == pytest.approx(1 / 3)
    assert summary["centroid_px"] == 2.0 and summary["iou"] == 0.75  # NaN (no object read) left out
    assert summary["bg_psnr_db"] == pytest.approx(20 + 10 * math.log10(2))


def test_the_clip_set_covers_the_world_and_each_edit_changes_one_word(bench_quality):
    specs = bench_quality.clip_specs()
    assert len(specs) >= 12 and len({s.seed for s in specs}) == len(specs)
    scenes = [parse_caption(s.caption) for s in specs]
    assert {c for c, _, _ in scenes} == set(COLOURS) and {b for _, _, b in scenes} == set(BACKGROUNDS)
    assert {(c, o) for c, o, _ in scenes} == {(c, o) for c in COLOURS for o in OBJECTS}
    assert 0 < sum(s.pan > 0 for s in specs) < len(specs)
    for s in specs:
        for slot, kind in enumerate(("colour", "shape", "background")):
            words = parse_caption(s.target_caption(kind))
            assert [i for i in range(3) if words[i] != parse_caption(s.caption)[i]] == [slot]
    assert specs[0].changed_words("background") == "green grass white snow"


def test_rows_are_chosen_by_name_or_group(bench_quality):
    names = [row.name for row in bench_quality.select_rows("inversion,matte")]
    assert names == ["direct", "null-text", "negative-prompt", "matte"]
    assert len(bench_quality.select_rows("all")) == len(bench_quality.ROWS)
    with pytest.raises(ValueError, match="unknown row"):
        bench_quality.select_rows("direct,fast")


def test_rows_run_on_tiny_sharing_inversions_and_edits(bench_quality, pipeline):
    bench = bench_quality.Bench(
        pipeline, "tiny", 2, bench_quality.clip_specs(1), long_frames=6, long_window=3, long_clips=1
    )
    rows = bench_quality.select_rows("direct,dense,matte,long-chained")
    heard = []
    results = bench_quality.run_rows(bench, rows, lambda row, summary: heard.append(row.name))
    assert heard == ["direct", "dense", "matte", "long-chained"]
    by_row = {result["row"]: result for result in results}
    assert by_row["dense"]["edits"] == by_row["direct"]["edits"]  # the same options: the same edits, run once
    assert len(bench._inversions) == 1 and len(bench._edits) == 6  # 3 kinds whole-frame, 3 with the matte
    matte = by_row["matte"]["summary"]
    assert matte["bg_psnr_db"] == math.inf  # outside the object the matte keeps the source's pixels exactly
    for result in results:
        summary = result["summary"]
        assert len(result["edits"]) == 3 and 0 <= summary["reached_overall"] <= 1, result["row"]
        assert summary["edit_s"] > 0 and math.isfinite(summary["temporal"])
    assert math.isfinite(by_row["long-chained"]["summary"]["seam"])
    assert bench_quality.estimate(rows, bench, bench_quality.Costs(1e-3, 4e-3, 2e-3, 1e-3)) > 0


def test_the_command_prints_rows_markdown_and_json(bench_quality, model_cache, tmp_path, capsys):
    figures = tmp_path / "quality.json"
    argv = ["--model", "tiny", "--device", "cpu", "--cache-dir", str(model_cache), "--clips", "1", "--steps", "2"]
    assert bench_quality.main([*argv, "--rows", "ideal,guidance-2", "--json", str(figures), "--markdown"]) == 0
    printed = capsys.readouterr().out
    assert "torch thread(s)" in printed and "estimate:" in printed
    assert "| ideal | 1.00 | 1.00 | 1.00 | 1.00 | 1.00 |" in printed
    rows = json.loads(figures.read_text())["rows"]
    assert [row["row"] for row in rows] == ["ideal", "guidance-2"] and rows[1]["changes"] == {"guidance": 2.0}
    with pytest.raises(SystemExit):
        bench_quality.main([*argv, "--rows", "nothing"])
