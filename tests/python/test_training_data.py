"""Data generator and evaluator checks (skipped without torch)."""
import os
import sys

import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "training"))
import data  # noqa: E402
import evaluate  # noqa: E402


def test_deterministic_by_seed():
    a = data.batch([3, 4], 5, 32, 32)
    b = data.batch([3, 4], 5, 32, 32)
    assert a[0] == b[0] and torch.equal(a[1], b[1])


def test_held_out_combinations_never_in_training():
    for seed in range(3000):
        it = data.sample_item(seed)
        for o in it["objects"]:
            if it["direction"] in data.CARDINAL and o is it["objects"][0]:
                assert (o["colour"], o["shape"], it["direction"]) not in data.HELD_OUT, it["caption"]
        assert it["background"] not in [o["colour"] for o in it["objects"]]


def test_evaluator_accepts_renders_and_rejects_mismatch():
    items = evaluate.heldout_items(8)
    frames = evaluate.reference_frames(items, 17, 96, 96)
    for fr, it in zip(frames, items):
        assert evaluate.score(fr, it, fr)["all"], it["caption"]
    # the frames of prompt 0 judged against prompt 1 must fail some check
    assert not evaluate.score(frames[0], items[1], frames[1])["all"]
    # a blank video has no object
    blank = frames[0] * 0
    assert evaluate.analyze(blank)["colour"] is None


def test_evaluator_scores_the_first_frames_on_their_own():
    """A video whose first 5 frames show the object in another colour passes
    the whole-video colour check but not the first-frames one, and its
    PSNR of frames 0-4 is the lower one."""
    item = evaluate.heldout_items(1)[0]
    ref = evaluate.reference_frames([item], 17, 96, 96)[0]
    clean = evaluate.score(ref, item, ref)
    assert clean["first_colour"] and clean["checks"]["colour"]
    bad = ref.copy()
    bg = bad[:5, 0, 0].astype(int)
    obj = (abs(bad[:5].astype(int) - bg[:, None, None, :]).sum(-1) > 80)
    wrong = [c for c in data.COLOURS if c not in (item["objects"][0]["colour"], item["background"])][0]
    bad[:5][obj] = data.COLOURS[wrong]
    s = evaluate.score(bad, item, ref)
    assert s["checks"]["colour"] and not s["first_colour"]
    assert s["psnr_first_db"] < s["psnr_rest_db"]
