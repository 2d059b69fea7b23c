"""Judging a CoT generation against the synthetic ground truth: a rationale can be well-formed and
still read the picture wrong, and an answer can be right while its rationale is not the reason."""
import json

from mmkp_helpers import synthetic
from mmkp_helpers.bench import rationale_reading
from mmkp_helpers.teacher.oracle import OracleTeacher


def _composition_post():
    posts = synthetic.generate(seed=0)["test_clean"]
    return next(ex for ex in posts if ex.meta["needs"] == "composition" and len(set(ex.meta["truth"]["primaries"])) == 2)


def test_a_true_reading_a_misread_and_an_answer_that_ignores_its_rationale(tmp_path):
    ex = _composition_post()
    truth = ex.meta["truth"]
    good = OracleTeacher(style="running").answer(ex).raw
    flags = rationale_reading.judge(good, ex, hit_limit=False)
    assert flags["reads_truly"] and flags["well_formed"] and flags["answer_gold"] and flags["concludes_gold"]
    assert not flags["answer_gold_without_true_reading"]
    # the left shape misread (its primary replaced), everything else kept: well-formed, but untrue
    first, shape = truth["primaries"][0], truth["shapes"][0]
    other = next(c for c in ("red", "blue", "yellow") if c not in truth["primaries"])
    misread = good.replace(f"a {first} {shape} on the left", f"a {other} {shape} on the left")
    assert misread != good
    flags = rationale_reading.judge(misread, ex, hit_limit=False)
    assert flags["well_formed"] and not flags["reads_truly"] and flags["answer_gold_without_true_reading"]
    # an answer that drops what the rationale concluded and adds what it never did
    kp = f"{truth['colour']} {truth['topic']}"
    ignored = good.split("</think>")[0] + "</think>\nKeyphrases: " + "; ".join(
        [k for k in ex.keyphrases if k != kp] + ["party"])
    flags = rationale_reading.judge(ignored, ex, hit_limit=False)
    assert flags["reads_truly"] and not flags["answer_follows"] and not flags["answer_gold"]
    assert flags["answer_adds"] and not flags["answer_drops"] and not flags["answer_is_final_list"]
    # how an answer departs: it drops a concluded keyphrase; it copies a last list that lost one
    rationale_text = good.split("</think>")[0]
    dropped = rationale_text + "</think>\nKeyphrases: " + "; ".join(k for k in ex.keyphrases if k != kp)
    flags = rationale_reading.judge(dropped, ex, hit_limit=False)
    assert flags["answer_drops"] and not flags["answer_adds"] and not flags["answer_is_final_list"]
    head, last = rationale_text.rsplit(": ", 1)
    first_kp = ex.keyphrases[0]
    kept = [k.strip() for k in last.rstrip(".").split(";") if k.strip() != first_kp]
    assert len(kept) == len(ex.keyphrases) - 1  # the running style's last list held every keyphrase
    final_only = f"{head}: {'; '.join(kept)}.</think>\nKeyphrases: {'; '.join(kept)}"
    flags = rationale_reading.judge(final_only, ex, hit_limit=False)
    assert flags["answer_is_final_list"] and not flags["answer_drops"] and not flags["answer_follows"]
    assert not any(rationale_reading.judge(good, ex, hit_limit=False)[k]
                   for k in ("answer_is_final_list", "answer_drops", "answer_adds"))
    # the summary counts per kind of post and over all
    gens = [{"id": ex.id, "raw": raw, "hit_limit": False} for raw in (good, misread, ignored)]
    s = rationale_reading.summarize(gens, {ex.id: ex})
    assert s["all"]["posts"] == s["needs:composition"]["posts"] == 3
    assert s["all"]["reads_truly"] == round(2 / 3, 4) and s["all"]["answer_follows"] == round(2 / 3, 4)
    json.dumps(s)


def test_every_record_of_a_synthetic_run_judges_its_rationales():
    """experiment.record adds the reading shares when it is given the scored synthetic posts and at
    least one generation reasoned; not for direct answers, nor for posts without a ground truth."""
    from mmkp_helpers import experiment, inference
    from mmkp_helpers.data import Example
    from mmkp_helpers.reading import summarize

    ex = _composition_post()
    good = OracleTeacher(style="verbose").answer(ex).raw
    gen = lambda raw: inference.Generation(id=ex.id, raw=raw, keyphrases=[], reasoning=None, parse_ok=True, n_tokens=9,
                                           seconds=0.1, hit_limit=False)
    scores = {"all": dict.fromkeys(("F1@M", "F1@1", "F1@3", "F1@5", "MAP@5"), 1.0)}
    r = experiment.record("04_fine_tune_cot", "fine_tune_cot", "free", "synthetic", "clean", [gen(good)], scores,
                          examples=[ex])
    assert r["rationale_reading"] == summarize([{"id": ex.id, "raw": good, "hit_limit": False}], {ex.id: ex})
    assert r["rationale_reading"]["needs:composition"]["reads_truly"] == 1.0
    direct = experiment.record("04_fine_tune_cot", "sft", "direct", "synthetic", "clean",
                               [gen("Keyphrases: " + "; ".join(ex.keyphrases))], scores, examples=[ex])
    assert "rationale_reading" not in direct and direct["well_formed_share"] is None
    plain = Example(id=ex.id, text=ex.text, keyphrases=ex.keyphrases)  # a CMKP-like post: no truth to judge by
    assert "rationale_reading" not in experiment.record("04_fine_tune_cot", "fine_tune_cot", "free", "cmkp", "clean",
                                                        [gen(good)], scores, examples=[plain])


def test_account_groups_split_the_posts_by_whether_training_saw_their_account():
    """Given the training posts' accounts, the summary adds signed:seen, signed:unseen and unsigned
    groups that partition the posts; without them it has only the kinds of post."""
    from mmkp_helpers import reading

    posts = synthetic.generate(seed=0)["train"]
    signed = [ex for ex in posts if ex.meta["truth"]["series"]]
    one, other = signed[0], next(ex for ex in signed if ex.meta["truth"]["series"] != signed[0].meta["truth"]["series"])
    plain = next(ex for ex in posts if not ex.meta["truth"]["series"])
    seen = reading.accounts([one])
    assert seen == {one.meta["truth"]["series"]}
    assert [reading.account_group(ex, seen) for ex in (one, other, plain)] == ["signed:seen", "signed:unseen", "unsigned"]
    raw = OracleTeacher(style="verbose").answer(one).raw
    gens = [{"id": ex.id, "raw": raw, "hit_limit": False} for ex in (one, other, plain)]
    by_id = {ex.id: ex for ex in (one, other, plain)}
    s = reading.summarize(gens, by_id, seen)
    assert {g: s[g]["posts"] for g in ("signed:seen", "signed:unseen", "unsigned")} == dict.fromkeys(
        ("signed:seen", "signed:unseen", "unsigned"), 1)
    assert s["signed:seen"]["answer_gold"] == 1.0 and s["signed:unseen"]["answer_gold"] == 0.0
    assert not any(k.startswith(("signed", "unsigned")) for k in reading.summarize(gens, by_id))


def test_every_record_says_which_well_formed_rationales_follow_from_themselves():
    """``coherent``: well-formed and its colour chain agrees with itself (reading.chain); a rule step
    over a colour it never read is well-formed but ``incoherent``; a text post is neither; the record
    of a synthetic run carries the shares per kind of post."""
    from mmkp_helpers import experiment, inference, reading

    ex = _composition_post()
    truth = ex.meta["truth"]
    good = OracleTeacher(style="verbose").answer(ex).raw
    left, right = truth["primaries"]
    assert f"{left} and {right} make {truth['colour']}" in good
    wrong = next(c for c in ("red", "blue", "yellow") if c not in (left, right))
    contradicts = good.replace(f"{left} and {right} make", f"{left} and {wrong} make")
    assert reading.judge(good, ex, False)["coherent"] and not reading.judge(good, ex, False)["incoherent"]
    flags = reading.judge(contradicts, ex, False)
    assert flags["well_formed"] and flags["incoherent"] and not flags["coherent"]
    looping = good.split("</think>")[0] + (" " + good.split("</think>")[0]) * 2 + "</think>\nKeyphrases: x"
    assert not any(reading.judge(looping, ex, False)[k] for k in ("coherent", "incoherent"))  # not well-formed
    text_post = next(p for p in synthetic.generate(seed=0)["test_clean"] if p.meta["needs"] == "text")
    flags = reading.judge(OracleTeacher(style="verbose").answer(text_post).raw, text_post, False)
    assert flags["well_formed"] and not flags["coherent"] and not flags["incoherent"]
    gen = lambda raw, i: inference.Generation(id=ex.id, raw=raw, keyphrases=[], reasoning=None, parse_ok=True,  # noqa: E731
                                              n_tokens=9 + i, seconds=0.1, hit_limit=False)
    scores = {"all": dict.fromkeys(("F1@M", "F1@1", "F1@3", "F1@5", "MAP@5"), 1.0)}
    r = experiment.record("04_fine_tune_cot", "fine_tune_cot", "free", "synthetic", "clean",
                          [gen(good, 0), gen(contradicts, 1)], scores, examples=[ex])
    comp = r["rationale_reading"]["needs:composition"]
    assert comp["well_formed"] == 1.0 and comp["coherent"] == 0.5 and comp["incoherent"] == 0.5


def test_a_rationale_that_names_the_wrong_shape_does_not_read_truly():
    """What the students write on image posts: the right colour and keyphrases after "a orange
    square in the centre" when the picture has an orange circle. Well-formed and answering gold,
    but it misread the picture: ``shapes_wrong``, not ``reads_truly``; the compact style names no
    shape and is neither ``shapes_right`` nor ``shapes_wrong``; a text post naming none is neither."""
    from mmkp_helpers import reading

    posts = synthetic.generate(seed=0)["test_clean"]
    ex = next(p for p in posts if p.meta["needs"] == "image")
    truth = ex.meta["truth"]
    shape, other = truth["shapes"][0], next(s for s in ("circle", "square") if s != truth["shapes"][0])
    good = OracleTeacher(style="running").answer(ex).raw
    flags = reading.judge(good, ex, False)
    assert flags["reads_truly"] and flags["shapes_right"] and not flags["shapes_wrong"]
    wrong = good.replace(f"{truth['colour']} {shape} in the centre", f"{truth['colour']} {other} in the centre")
    assert wrong != good
    flags = reading.judge(wrong, ex, False)
    assert flags["well_formed"] and flags["answer_gold"] and flags["concludes_gold"]
    assert not flags["reads_truly"] and flags["answer_gold_without_true_reading"]
    assert flags["shapes_wrong"] and not flags["shapes_right"]
    compact = reading.judge(OracleTeacher(style="compact").answer(ex).raw, ex, False)
    assert compact["reads_truly"] and not compact["shapes_right"] and not compact["shapes_wrong"]
    text = next(p for p in posts if p.meta["needs"] == "text")
    flags = reading.judge(OracleTeacher(style="running").answer(text).raw, text, False)
    assert not flags["shapes_right"] and not flags["shapes_wrong"]
    s = reading.summarize([{"id": ex.id, "raw": raw, "hit_limit": False} for raw in (good, wrong)], {ex.id: ex})
    assert s["needs:image"]["shapes_right"] == s["needs:image"]["shapes_wrong"] == 0.5


def test_own_answers_counts_a_baselines_answer_and_copied_texts():
    """reading.own_answers: per kind of post and over all, on how many posts the answer is the
    baseline's (same keyphrases, same order), how many different texts were written, and how many
    posts share the most frequent one; generation objects and generation-file dicts read alike."""
    from types import SimpleNamespace

    from mmkp_helpers import reading

    ex = lambda i, needs: SimpleNamespace(id=i, meta={"needs": needs})  # noqa: E731
    examples = {e.id: e for e in (ex("a", "text"), ex("b", "text"), ex("c", "composition"), ex("d", "composition"),
                                  ex("e", "composition"))}
    template = "<think>the picture shows a circle: red hat.</think>\nKeyphrases: red hat"
    cot = [SimpleNamespace(id="a", raw="<think>the text names a bike: bike.</think>\nKeyphrases: bike", keyphrases=["bike"]),
           SimpleNamespace(id="b", raw="<think>the text names a trip: trip.</think>\nKeyphrases: trip", keyphrases=["trip"]),
           SimpleNamespace(id="c", raw=template, keyphrases=["red hat"]),
           SimpleNamespace(id="d", raw=template, keyphrases=["red hat"]),
           SimpleNamespace(id="e", raw=template, keyphrases=["red hat"])]
    sft = [{"id": "a", "prediction": ["bike"]}, {"id": "b", "prediction": ["trip", "snow"]},
           {"id": "c", "prediction": ["red hat"]}, {"id": "d", "prediction": ["blue hat"]},
           {"id": "e", "prediction": ["red hat"]}]
    got = reading.own_answers(cot, sft, examples)
    assert got["needs:text"] == {"posts": 2, "same_answer": 1, "distinct": 2, "largest": 1}
    assert got["needs:composition"] == {"posts": 3, "same_answer": 2, "distinct": 1, "largest": 3}
    assert got["all"] == {"posts": 5, "same_answer": 3, "distinct": 3, "largest": 3}
    # the order of the keyphrases counts: the same set in another order is another answer line
    sft[1]["prediction"] = ["trip"]
    cot[0].keyphrases = ["bike", "trip"]
    sft[0]["prediction"] = ["trip", "bike"]
    assert reading.own_answers(cot, sft, examples)["needs:text"]["same_answer"] == 1


def test_each_generation_gets_the_verdict_of_the_first_check_it_fails():
    """reading.verdicts, on constructed generations of real posts: no rationale, a loop (not
    well-formed), a misread shape (reads wrongly), a true reading whose answer ignores / follows a
    changed reading, and a text post with nothing to change; beside it the copies of each text,
    whether the answer is the baseline's, and the shape named."""
    from types import SimpleNamespace

    from mmkp_helpers import reading

    posts = synthetic.generate(seed=0)["test_clean"]
    images = [p for p in posts if p.meta["needs"] == "image"][:5]
    text = next(p for p in posts if p.meta["needs"] == "text")
    oracle = OracleTeacher(style="running")
    gen = lambda ex, raw, kps: SimpleNamespace(id=ex.id, raw=raw, hit_limit=False, keyphrases=kps)  # noqa: E731
    good = {ex.id: oracle.answer(ex).raw for ex in images + [text]}
    a, b, c, d, e = images
    truth = b.meta["truth"]
    other = next(s for s in ("circle", "square") if s != truth["shapes"][0])
    misread = good[b.id].replace(f"{truth['colour']} {truth['shapes'][0]} in the centre", f"{truth['colour']} {other} in the centre")
    assert misread != good[b.id]
    loop = "<think>" + "the text names a hat. " * 4 + "</think>\nKeyphrases: hat"
    gens = [gen(a, "Keyphrases: " + "; ".join(a.keyphrases), a.keyphrases),
            gen(b, misread, b.keyphrases), gen(c, loop, ["hat"]),
            gen(d, good[d.id], d.keyphrases), gen(e, good[e.id], e.keyphrases), gen(text, good[text.id], text.keyphrases)]
    baseline = [{"id": g.id, "prediction": g.keyphrases} for g in gens]
    baseline[4]["prediction"] = ["something else"]
    rows = {r["id"]: r for r in reading.verdicts(gens, baseline, {p.id: p for p in posts},
                                                 followed={d.id: False, e.id: True, b.id: True})}
    assert [rows[p.id]["verdict"] for p in (a, b, c, d, e, text)] == [
        "no rationale", "reads the post wrongly", "not well-formed",
        "ignores a changed reading", "follows a changed reading", "reads truly, nothing changed"]
    assert rows[c.id]["kind"] == "loop" and rows[a.id]["kind"] == "-"
    assert rows[b.id]["shape"] == "wrong" and rows[d.id]["shape"] == "right" and rows[text.id]["shape"] == "-"
    assert rows[d.id]["answer_is_baseline"] and not rows[e.id]["answer_is_baseline"]
    assert rows[b.id]["follows_changed"] is True and rows[text.id]["follows_changed"] is None
    assert all(r["copies"] == 1 for r in rows.values())
    twice = reading.verdicts(gens + [SimpleNamespace(**{**vars(gens[3]), "id": e.id})], baseline, {p.id: p for p in posts})
    assert twice[3]["copies"] == twice[-1]["copies"] == 2 and twice[3]["verdict"] == "reads truly, nothing changed"
    assert set(reading.VERDICTS) >= {r["verdict"] for r in rows.values()}
