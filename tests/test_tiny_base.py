"""The default profile's base model: names and options, the pretraining data (generic, nothing of the
keyphrase task), and a small pretraining run that is deterministic and lowers its loss."""
import json

import pytest
import torch

from mmkp_helpers import synthetic, tiny_base


def test_names_and_options():
    family, options = tiny_base.parse_name("tiny-qwen2_vl")
    assert family == "qwen2_vl" and options == tiny_base.OPTIONS
    family, options = tiny_base.parse_name("tiny-qwen2_5_vl?tokenizer=qwen&pretrain_steps=0&hidden=64")
    assert family == "qwen2_5_vl" and (options["tokenizer"], options["pretrain_steps"], options["hidden"]) == ("qwen", 0, 64)
    assert tiny_base.folder_name(*tiny_base.parse_name("tiny-qwen2_vl")) == "tiny-qwen2_vl"
    assert tiny_base.folder_name(family, options) == "tiny-qwen2_5_vl-tokenizer_qwen-hidden_64-pretrain_steps_0"
    with pytest.raises(ValueError, match="valid options"):
        tiny_base.parse_name("tiny-qwen2_vl?width=64")
    with pytest.raises(ValueError, match="unknown tokenizer 'bpe'"):
        tiny_base.parse_name("tiny-qwen2_vl?tokenizer=bpe")
    with pytest.raises(ValueError, match="must be an integer"):
        tiny_base.parse_name("tiny-qwen2_vl?layers=two")
    with pytest.raises(ValueError, match="pretraining task"):
        tiny_base.parse_name("tiny-qwen2_vl?tasks=caption+keyphrases")
    with pytest.raises(ValueError, match="unknown tiny model"):
        tiny_base.parse_name("tiny-llama")
    with pytest.raises(ValueError, match="multiple of 64"):
        tiny_base.size_of(tiny_base.OPTIONS | {"hidden": 96, "heads": 4})
    with pytest.raises(ValueError, match="unknown tokenizer"):
        tiny_base.build_tokenizer("words")


def test_pretraining_turns_are_generic_and_not_the_benchmarks_posts():
    turns = tiny_base.pretraining_turns(400)
    bench = synthetic.generate(seed=0)
    bench_texts = {ex.text for part in bench.values() for ex in part}
    heldout = {f"{c} {t}" for c, t in synthetic.heldout_pairs(synthetic.SyntheticConfig(seed=0))}
    tasks = {t["user"].split(":")[0] for t in turns}
    repeated = [t["answer"] for t in turns if t["user"].startswith(tiny_base.REPEAT_PROMPT)]
    assert {tiny_base.CAPTION_PROMPT, tiny_base.LIST_PROMPT} <= {t["user"] for t in turns} and len(tasks) >= 4
    for t in turns:
        answer = t["answer"]
        assert not any(scene in answer.split() for scene in synthetic.SCENES)  # no scene name is ever a target
        assert not any(pair in answer for pair in heldout) and "keyphrases" not in answer.lower()
        if t["image"]:  # the picture is described plainly: no mixed colour, no object
            assert not any(topic in answer.split() for topic in synthetic.TOPICS)
    # The posts to repeat are drawn with the generator's own seed, not the benchmark's; a short
    # templated post can still coincide with one of the benchmark's by chance (1 of 100 here, 13 of
    # 1,000 in the 4,000-post recipe), never most of them. Copying a text teaches no keyphrase.
    assert repeated and sum(a in bench_texts for a in repeated) <= 0.03 * len(repeated)


def test_the_facts_task_states_the_mixes_in_words_and_is_a_default_task():
    assert "facts" in tiny_base.OPTIONS["tasks"].split("+")
    default = tiny_base.pretraining_turns(200)
    assert tiny_base.pretraining_turns(200, tasks=tuple(tiny_base.OPTIONS["tasks"].split("+"))) == default
    mixes = [t for t in default if " make " in t["answer"]]  # only the facts turns state a mix
    assert mixes and all(t["image"] is None for t in mixes)
    former = tiny_base.pretraining_turns(200, tasks=("caption", "continue", "repeat", "list"))
    assert not any(" make " in t["answer"] for t in former)  # the former default's tasks: no mix at all
    turns = tiny_base.pretraining_turns(200, tasks=("facts",))
    facts = set()
    for t in turns:
        assert t["image"] is None and t["user"].startswith(tiny_base.CONTINUE_PROMPT)
        a, b = (w for w in t["user"].split() if w in synthetic.PRIMARIES)
        assert a != b and t["answer"] == f"{a} and {b} make {synthetic.mix(a, b)}."
        assert not any(topic in t["answer"].split() for topic in synthetic.TOPICS)
        facts.add((a, b))
    assert len(facts) == 6  # every ordered pair of two different primaries
    assert tiny_base.parse_name("tiny-qwen2_vl?tasks=caption+facts")[1]["tasks"] == "caption+facts"


def test_the_pick_and_postcaption_tasks_and_they_are_off_by_default():
    """pick: the facts prompt answered with the two colours it names (no mix); postcaption: the
    caption task with the post's text beside the picture. Neither is a default task."""
    default_tasks = tiny_base.OPTIONS["tasks"].split("+")
    assert "pick" not in default_tasks and "postcaption" not in default_tasks
    for t in tiny_base.pretraining_turns(60, tasks=("pick",)):
        a, b = (w for w in t["user"].split() if w in synthetic.PRIMARIES)
        assert t["image"] is None and t["user"].startswith(tiny_base.CONTINUE_PROMPT)
        assert a != b and t["answer"] == f"{a} and {b}." and " make " not in t["answer"]
    turns = tiny_base.pretraining_turns(60, tasks=("postcaption",))
    for t in turns:
        prompt, post = t["user"].split("\nPost: ")
        assert prompt == tiny_base.POST_CAPTION_PROMPT and post.strip() and t["image"] is not None
        assert t["answer"].endswith("background.") and " make " not in t["answer"]  # a plain description
    with pytest.raises(ValueError, match="unknown pretraining task"):
        tiny_base.parse_name("tiny-qwen2_vl?tasks=caption+pik")


def test_a_small_base_pretrains_deterministically(tmp_path):
    options = tiny_base.OPTIONS | {"hidden": 64, "layers": 1, "heads": 2, "pretrain_steps": 40}

    def build(folder):
        torch.set_num_threads(1)
        path = tiny_base.build_tiny_base(tmp_path / folder, options=options, progress=False)
        from safetensors.torch import load_file
        return path, load_file(str(path / "model.safetensors"))

    path, weights = build("a")
    _, again = build("b")
    assert weights.keys() == again.keys() and all(torch.equal(weights[k], again[k]) for k in weights)
    record = json.loads((path / "mmkp_tiny.json").read_text())
    curve = [loss for _, loss in record["pretraining"]["losses"]]
    assert curve[-1] < 0.6 * curve[0]  # the loss falls
    assert record["vocab_size"] % 64 == 0 and record["vocab_size"] < 1300 and record["benchmark"] == synthetic.VERSION
    from mmkp_helpers import modeling

    model, processor = modeling.load_vlm(str(path), quantize_4bit=True, lora=True, verbose=False)
    assert len(processor.tokenizer) <= record["vocab_size"]


def test_ensure_builds_once_and_rebuilds_on_change(tmp_path, monkeypatch):
    monkeypatch.setenv("MMKP_CACHE", str(tmp_path))
    calls = []

    def fake_build(path, family, options, seed, progress=True):
        calls.append((family, options["hidden"], seed))
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text("{}")
        (path / "mmkp_tiny.json").write_text(json.dumps(tiny_base._marker(family, options, seed)))
        return path

    monkeypatch.setattr(tiny_base, "build_tiny_base", fake_build)
    first = tiny_base.ensure_tiny_base("tiny-qwen2_vl")
    assert tiny_base.ensure_tiny_base("tiny-qwen2_vl") == first == tmp_path / "models" / "tiny-qwen2_vl"
    assert len(calls) == 1
    tiny_base.ensure_tiny_base("tiny-qwen2_vl", seed=1)  # another seed: rebuilt
    tiny_base.ensure_tiny_base("tiny-qwen2_vl?hidden=64&heads=2")  # other options: another folder
    assert len(calls) == 3 and (tmp_path / "models" / "tiny-qwen2_vl-hidden_64-heads_2").is_dir()


def test_a_cached_base_is_rebuilt_when_the_code_that_made_it_changed(tmp_path, monkeypatch):
    """The record holds a fingerprint of the code that makes the base's data; a cached folder
    built by other code (here: a record saying so) is rebuilt, an up-to-date one is reused."""
    monkeypatch.setenv("MMKP_CACHE", str(tmp_path))
    name = "tiny-qwen2_vl?hidden=64&layers=1&heads=2&pretrain_steps=0"
    path = tiny_base.ensure_tiny_base(name, progress=False)
    record = path / "mmkp_tiny.json"
    made = json.loads(record.read_text())
    assert made["sources"] == tiny_base.sources_fingerprint() and len(made["sources"]) == 64
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert tiny_base.ensure_tiny_base(name, progress=False) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp  # reused
    record.write_text(json.dumps(made | {"sources": "0" * 64}))  # built by other code
    tiny_base.ensure_tiny_base(name, progress=False)
    assert json.loads(record.read_text())["sources"] == tiny_base.sources_fingerprint()
    assert (path / "model.safetensors").stat().st_mtime_ns != stamp  # rebuilt
