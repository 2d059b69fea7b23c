"""The mode decision at inference: q from one forward pass, auto decoding that thinks exactly where
q reaches the threshold, the threshold chosen on validation (best F1@M, ties to fewer tokens), the
curve over thresholds, per-post F1 and the AUC."""
import pytest
from PIL import Image

from mmkp_helpers import decision, inference, modeling
from mmkp_helpers.data import Example


@pytest.fixture(scope="module")
def posts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("decision")
    out = []
    for i in range(12):
        path = folder / f"{i}.png"
        Image.new("RGB", (56, 56), ((37 * i) % 255, (91 * i) % 255, (53 * i) % 255)).save(path)
        out.append(Example(f"d{i}", f"post {i} about a car and a trip number {i}", ["car", "trip"], image=str(path)))
    return out


@pytest.mark.slow
def test_auto_thinks_exactly_where_q_reaches_the_threshold(tiny_model_dir, posts):
    model, processor = modeling.load_vlm(str(tiny_model_dir), verbose=False)
    q = decision.decision_q(model, processor, posts, batch_size=5)
    assert len(q) == len(posts) and all(0.0 <= v <= 1.0 for v in q)
    assert q == pytest.approx(decision.decision_q(model, processor, posts, batch_size=12), abs=1e-5)  # batching aside
    threshold = sorted(q)[len(q) // 2]
    gens = decision.generate_auto(model, processor, posts, threshold, max_new_tokens=6, batch_size=5, progress=False)
    openings = decision.opening_tokens(processor.tokenizer)
    for g, v in zip(gens, q):
        assert g.mode == "auto" and g.q == pytest.approx(v)
        assert inference.opened_think(g) == (v >= threshold)  # exactly the posts whose q passes
        assert g.raw.startswith("Keyphrases:") == (v < threshold)
        assert g.n_tokens >= openings["think" if v >= threshold else "direct"] + 1
    assert sum(inference.opened_think(g) for g in gens) == sum(v >= threshold for v in q)
    always = decision.generate_auto(model, processor, posts, 0.0, max_new_tokens=4, q=q, progress=False)
    never = decision.generate_auto(model, processor, posts, 1.5, max_new_tokens=4, q=q, progress=False)
    assert all(inference.opened_think(g) for g in always) and not any(inference.opened_think(g) for g in never)


def _gen(i, kps, n, mode):
    return inference.Generation(id=f"p{i}", raw=("<think>x</think>\n" if mode == "think" else "") + "Keyphrases: "
                                + "; ".join(kps), keyphrases=kps, reasoning=None, parse_ok=True, n_tokens=n,
                                seconds=0.0, mode=mode, hit_limit=False)


def test_curve_choice_f1_and_auc():
    examples = [Example(f"p{i}", "a post", ["car", "red car"]) for i in range(4)]
    q = [0.9, 0.7, 0.2, 0.1]
    think = [_gen(i, ["car", "red car"], 20, "think") for i in range(4)]
    direct = [_gen(0, ["car"], 5, "direct"), _gen(1, ["car"], 5, "direct"), _gen(2, ["car", "red car"], 5, "direct"),
              _gen(3, ["car", "red car"], 5, "direct")]
    curve = decision.threshold_curve(q, think, direct, examples, openings={"think": 1, "direct": 4})
    assert [round(r["threshold"], 2) for r in curve] == [0.1, 0.2, 0.7, 0.9, 1.0]
    best = decision.choose_threshold(curve)
    assert best["F1@M"] == pytest.approx(1.0) and best["threshold"] == pytest.approx(0.7)  # ties: the fewest tokens
    assert best["think_share"] == 0.5 and best["tokens"] == pytest.approx((21 + 21 + 9 + 9) / 4)
    combined = decision.combine(q, think, direct, 0.7, {"think": 1, "direct": 4})
    assert [g.mode for g in combined] == ["auto"] * 4 and [g.n_tokens for g in combined] == [21, 21, 9, 9]
    helps = decision.thinking_helps(think, direct, examples)
    assert helps == [True, True, False, False] and decision.auc(q, helps) == 1.0
    assert decision.auc(q, [True] * 4) is None and decision.post_f1([], examples[0]) == 0.0
    assert decision.post_f1(["car"], examples[0]) == pytest.approx(2 / 3)
    assert decision.q_summary(q)["median"] in q and decision.q_summary([]) == {"n": 0}
    with pytest.raises(ValueError):
        decision.choose_threshold([])
