"""The cost estimate says what it assumes: output lengths measured on the cache (after a pilot, or a
earlier run) or max_tokens as the upper bound; offline teachers priced "as if paid" by counting
their tokens with the estimate's counter; the estimate against the measured cost of a run."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mmkp_helpers.data import read_jsonl
from mmkp_helpers.teacher import (BATCH_DISCOUNT, OpenAITeacher, TeacherBudgetError, estimate_run, make_teacher,
                                  pilot_run, run_teacher)
from mmkp_helpers.teacher.estimate import measured_output_tokens
from mmkp_helpers.teacher.tokens import count_text_tokens

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chat_server import ChatServer  # noqa: E402

KEY_ENV = "MMKP_TEST_ESTIMATE_KEY"
PRICES = (2.5, 10.0)


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    from mmkp_helpers.synthetic import make_synthetic

    return read_jsonl(make_synthetic(tmp_path_factory.mktemp("syn"), seed=5, n_train=120, n_valid=4,
                                     n_test=4)["train"])


def test_without_answers_the_upper_bound_is_named(train):
    teacher = OpenAITeacher("m", max_tokens=512)
    est = estimate_run(teacher, train, prices=PRICES)
    assert est["output_tokens_source"].startswith("max_tokens: 512 a request, an upper bound")
    assert est["output_tokens_per_request"] == est["output_tokens_upper_bound"] == 512
    assert est["cost_usd_upper_bound"] == pytest.approx(est["cost_usd"])
    assert est["cost_usd_batch"] == pytest.approx(BATCH_DISCOUNT * est["cost_usd"])
    assert est["cached"] is None and est["to_send"] is None
    given = estimate_run(teacher, train, prices=PRICES, output_tokens=40)
    assert given["output_tokens_source"] == "given: 40 a request" and given["output_tokens"] == 40 * len(train)


def test_a_pilot_measures_the_length_and_is_not_paid_twice(train, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "k")
    with ChatServer() as server:
        teacher = OpenAITeacher("m", base_url=server.url, api_key_env=KEY_ENV, max_retries=0)
        pilot = pilot_run(teacher, train, tmp_path, n=6, prices=PRICES, seed=1)
        assert server.requests == 6 and pilot.stats["cost_usd"] > 0
        est = estimate_run(teacher, train, prices=PRICES, cache_dir=tmp_path)
        mean = pilot.stats["output_tokens"] / 6
        assert est["output_tokens_source"] == f"measured: mean of the 6 answers in the cache ({mean:.1f} a request)"
        assert est["output_tokens_per_request"] == pytest.approx(mean, abs=0.05) and est["output_tokens_measured_on"] == 6
        assert est["cached"] == 6 and est["to_send"] == len(train) - 6
        assert est["cost_usd_to_send"] < est["cost_usd"] < est["cost_usd_upper_bound"]
        run = run_teacher(teacher, train, tmp_path, prices=PRICES, progress=False)
        assert server.requests == len(train) and run.stats["cache_hits"] == 6
        # the guard now prices what is missing with the measured length, and says so
        more = train + [train[0].__class__(id="extra", text="one more post", keyphrases=["more"])]
        with pytest.raises(TeacherBudgetError, match="output length measured: mean of the"):
            run_teacher(teacher, more, tmp_path, prices=PRICES, max_cost=1e-9, progress=False)


def test_offline_teacher_counts_tokens_as_if_paid(train, tmp_path):
    free = make_teacher("oracle")
    counted = make_teacher("oracle", count_tokens=True)
    assert free.cache_key() == counted.cache_key()  # the same answers
    assert estimate_run(free, train, prices=PRICES)["cost_usd"] == 0.0
    est = estimate_run(counted, train, prices=PRICES)
    assert est["priced_as"] == "as if paid" and est["cost_usd"] > 0
    run = run_teacher(counted, train, tmp_path, prices=PRICES, progress=False)
    answer = run.answers[train[0].id]
    assert answer.output_tokens == count_text_tokens(answer.raw) and answer.input_tokens > 85
    assert run.stats["priced_as"] == "as if paid" and run.stats["cost_usd"] > 0
    # a cache written without counts gets them counted when a counting teacher reads it
    run_teacher(free, train, tmp_path / "old", progress=False)
    again = run_teacher(counted, train, tmp_path / "old", prices=PRICES, progress=False)
    assert again.stats["requests_sent"] == 0 and again.stats["all_cost_usd"] == pytest.approx(run.stats["all_cost_usd"])


def test_estimate_within_20_percent_of_the_measured_cost(train, tmp_path):
    """What notebook 04 shows: a 5-request pilot, then the run; the estimate from measured lengths
    is within 20% of what the run would have cost, the max_tokens bound several times over."""
    teacher = make_teacher("oracle", count_tokens=True)
    bound = estimate_run(teacher, train, prices=PRICES)
    pilot_run(teacher, train, tmp_path, n=5, prices=PRICES)
    est = estimate_run(teacher, train, prices=PRICES, cache_dir=tmp_path)
    run = run_teacher(teacher, train, tmp_path, prices=PRICES, progress=False)
    measured = run.stats["all_cost_usd"]
    assert abs(est["cost_usd"] / measured - 1) <= 0.2
    assert bound["cost_usd"] > 2 * measured
    assert run.stats["requests_sent"] == len(train) - 5


def test_measured_lengths_count_offline_text():
    from mmkp_helpers.teacher import TeacherAnswer

    answers = [TeacherAnswer("a", "r", ["k"], "<think>r</think>\nKeyphrases: k", "rationalize", 0, 0, 0.0),
               TeacherAnswer("b", "r", ["k"], "x", "rationalize", 10, 30, 0.0),
               TeacherAnswer("c", None, [], None, "rationalize", 0, 0, 0.0)]
    mean, n = measured_output_tokens(answers)
    assert n == 2 and mean == pytest.approx((count_text_tokens(answers[0].raw) + 30) / 2)
    assert measured_output_tokens([]) == (None, 0)
    assert json.dumps(estimate_run(OpenAITeacher("m"), [], prices=PRICES))  # an empty run estimates to JSON
