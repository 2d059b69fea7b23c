"""The Batch API path of the teacher against a local files + batches server (tests/batch_server.py):
the same cache as live calls, the limits (split files), the faults (a failed batch, an expired one
with part of its output, per-line errors, a client killed between create and download, a crash
between upload and create), the budget at batch prices, the CLI, and a key that reaches the server
and no file or log."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmkp_helpers.data import Example, read_jsonl, write_jsonl
from mmkp_helpers.teacher import (BATCH_DISCOUNT, OpenAITeacher, OracleTeacher, TeacherBudgetError, estimate_run,
                                  load_cache, run_batch, run_teacher)
from mmkp_helpers.teacher.batch import BatchState, batch_status, parse_result_line, state_path, write_batch_files

sys.path.insert(0, str(Path(__file__).resolve().parent))
from batch_server import BatchServer  # noqa: E402
from chat_server import ChatServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KEY = "fake-batch-key-" + "DO-NOT-LEAK-41c7e09b"  # made up; built so that no secret scanner takes it for one
KEY_ENV = "MMKP_TEST_BATCH_KEY"
FAST = dict(poll_interval=0.01, max_poll_interval=0.05, progress=False)


@pytest.fixture(scope="module")
def tiny_train(tmp_path_factory) -> list[Example]:
    """The tiny profile's training posts: the clean split of notebook 01 (seed 0), with images."""
    from mmkp_helpers import overlap

    splits = overlap.prepare_splits("synthetic", tmp_path_factory.mktemp("results"), seed=0)["clean"]
    return read_jsonl(splits["train"])


@pytest.fixture
def posts(tiny_train) -> list[Example]:
    return tiny_train[:24]


@pytest.fixture
def key(monkeypatch) -> str:
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


def teacher_for(server, **kw) -> OpenAITeacher:
    settings = dict(base_url=server.url, api_key_env=KEY_ENV, timeout=5.0, max_retries=1)
    settings.update(kw)
    return OpenAITeacher("fake-model", **settings)


def assert_no_key(folder: Path, *texts: str) -> None:
    files = [p for p in Path(folder).rglob("*") if p.is_file()]
    assert not [str(p) for p in files if KEY.encode() in p.read_bytes()]
    assert not [t for t in texts if KEY in t]


def assert_answered_once(server: BatchServer, examples) -> None:
    assert {ex.id for ex in examples} <= set(server.answered_per_id)
    assert max(server.answered_per_id.values()) == 1, server.answered_per_id.most_common(3)


def assert_adds_up(run, examples) -> None:
    s = run.stats
    assert s["examples"] == len(examples) == s["cache_hits"] + s["requests_sent"]
    assert s["requests_sent"] == s["answered"] + s["failures"] + s["pending"]
    assert s["kept"] + s["filtered"] + s["no_answer"] == s["cache_hits"] + s["answered"]


# ------------------------------------------------------------------------------------------------
# The same cache as live calls
# ------------------------------------------------------------------------------------------------
def test_batch_fills_the_cache_a_live_run_fills(tiny_train, key, tmp_path):
    with ChatServer() as chat:
        live = run_teacher(teacher_for(chat), tiny_train, tmp_path / "live", concurrency=8, prices=(2.5, 10.0),
                           progress=False)
    with BatchServer(polls_to_finish=3) as server:
        batch = run_batch(teacher_for(server), tiny_train, tmp_path / "batch", prices=(2.5, 10.0), **FAST)
        assert server.batch_auth_requests == server.batch_requests > 0  # the key went with every call
        assert_answered_once(server, tiny_train)
    assert len(tiny_train) >= 600 and batch.stats["answered"] == len(tiny_train) and batch.stats["failures"] == 0
    assert batch.stats["batches_submitted"] == 1 and batch.stats["batches_open"] == 0
    assert batch.rationales == live.rationales and batch.verdicts == live.verdicts and batch.f1 == live.f1
    for i, answer in live.answers.items():
        other = batch.answers[i]
        assert (other.raw, other.keyphrases, other.rationale, other.input_tokens, other.output_tokens) == (
            answer.raw, answer.keyphrases, answer.rationale, answer.input_tokens, answer.output_tokens)
        assert other.channel == "batch" and answer.channel == "live"
    assert batch.stats["cost_usd"] == pytest.approx(BATCH_DISCOUNT * live.stats["cost_usd"])
    # the cache a batch fills is the live run's cache: a live rerun sends nothing
    with ChatServer() as chat:
        again = run_teacher(teacher_for(chat), tiny_train, tmp_path / "batch", progress=False)
        assert chat.requests == 0 and again.stats["cache_hits"] == len(tiny_train)
    assert again.rationales == live.rationales
    assert_adds_up(batch, tiny_train)
    assert_no_key(tmp_path)


def test_a_live_run_then_a_batch_sends_only_the_missing(posts, key, tmp_path):
    with BatchServer() as server:  # one server: chat completions and batches
        teacher = teacher_for(server)
        run_teacher(teacher, posts[:10], tmp_path, progress=False)
        run = run_batch(teacher, posts, tmp_path, **FAST)
        assert server.requests == 10 and sum(server.lines_per_id.values()) == len(posts) - 10
        assert run.stats["cache_hits"] == 10 and run.stats["answered"] == len(posts) - 10
        assert sorted(server.answered_per_id) == sorted(ex.id for ex in posts[10:])


# ------------------------------------------------------------------------------------------------
# Faults: each ends with every example answered after at most two runs, none answered twice
# ------------------------------------------------------------------------------------------------
def test_failed_batch_is_sent_again_by_the_next_run(posts, key, tmp_path):
    with BatchServer(batch_faults=["failed"]) as server:
        teacher = teacher_for(server)
        first = run_batch(teacher, posts, tmp_path, **FAST)
        assert first.stats["failures"] == len(posts) and first.stats["answered"] == 0
        assert "no result: the batch ended failed (invalid_request: validation failed)" in next(iter(first.failed.values()))
        failures = [json.loads(x) for x in (tmp_path / f"{teacher.cache_key()}.failures.jsonl").read_text().splitlines()]
        assert len(failures) == len(posts) and {f["channel"] for f in failures} == {"batch"}
        second = run_batch(teacher, posts, tmp_path, **FAST)
        assert second.stats["answered"] == len(posts) and second.stats["failures"] == 0
        assert server.batches_created == 2
        assert_answered_once(server, posts)
    assert_adds_up(first, posts)
    assert_adds_up(second, posts)


def test_expired_batch_keeps_its_answered_part(posts, key, tmp_path):
    with BatchServer(batch_faults=["expired"], expired_share=0.5) as server:
        teacher = teacher_for(server)
        first = run_batch(teacher, posts, tmp_path, prices=(2.5, 10.0), **FAST)
        half = len(posts) // 2
        assert first.stats["answered"] == half and first.stats["failures"] == len(posts) - half
        assert all("batch_expired" in m for m in first.failed.values())
        assert len(load_cache(tmp_path / f"{teacher.cache_key()}.jsonl")) == half
        second = run_batch(teacher, posts, tmp_path, prices=(2.5, 10.0), **FAST)
        assert second.stats["cache_hits"] == half and second.stats["answered"] == len(posts) - half
        assert sum(server.lines_per_id.values()) == len(posts) + len(posts) - half
        assert_answered_once(server, posts)
        assert second.stats["all_cost_usd"] == pytest.approx(first.stats["cost_usd"] + second.stats["cost_usd"])


def test_line_errors_are_failures_retried_by_the_next_run(posts, key, tmp_path):
    faults = {posts[0].id: ["error_status"], posts[1].id: ["error_object"], posts[2].id: ["no_keyphrases"]}
    with BatchServer(line_faults=faults) as server:
        teacher = teacher_for(server)
        first = run_batch(teacher, posts, tmp_path, **FAST)
        assert set(first.failed) == {posts[0].id, posts[1].id}
        assert "status 500: server_error" in first.failed[posts[0].id]
        assert "server_error: internal error" in first.failed[posts[1].id]
        assert first.verdicts[posts[2].id] == "no_answer"  # answered (and cached), kept by no filter
        second = run_batch(teacher, posts, tmp_path, **FAST)
        assert second.stats["requests_sent"] == 2 and second.stats["answered"] == 2
        assert set(second.rationales) == {ex.id for ex in posts} - {posts[2].id}
        assert_answered_once(server, posts)


def test_every_fault_at_once_over_split_batches(posts, key, tmp_path):
    """Three batches (at most 8 requests a file): one fails, one expires half done, one has line
    errors; the second run answers every example; no example is answered twice."""
    faults = {posts[17].id: ["error_status"], posts[20].id: ["error_object"]}
    with BatchServer(batch_faults=["failed", "expired", "ok"], line_faults=faults, max_requests=8) as server:
        teacher = teacher_for(server)
        first = run_batch(teacher, posts, tmp_path, max_requests=8, **FAST)
        assert first.stats["batches_submitted"] == 3 and first.stats["answered"] == 4 + 6
        second = run_batch(teacher, posts, tmp_path, max_requests=8, **FAST)
        assert second.stats["failures"] == 0 and len(second.answers) == len(posts)
        assert second.stats["answered"] == len(posts) - 10
        assert_answered_once(server, posts)
        assert_adds_up(second, posts)
    assert_no_key(tmp_path)


def test_too_many_requests_for_one_batch_are_split(posts, key, tmp_path):
    with BatchServer(max_requests=5) as server:
        run = run_batch(teacher_for(server), posts, tmp_path, max_requests=5, **FAST)
        assert run.stats["batches_submitted"] == 5 and run.stats["answered"] == len(posts)
        assert server.uploads == 5


def test_files_are_split_by_bytes(posts, tmp_path):
    teacher = OpenAITeacher("m")
    one = len(json.dumps({"custom_id": posts[0].id, "method": "POST", "url": "/v1/chat/completions",
                          "body": teacher.request_body(posts[0])}, ensure_ascii=False).encode()) + 1
    files = write_batch_files(teacher, posts, tmp_path, "t", max_bytes=int(2.5 * one))
    assert len(files) > 8 and sum(len(ids) for _, ids in files) == len(posts)
    assert all(p.stat().st_size <= int(2.5 * one) for p, _ in files)
    assert [i for _, ids in files for i in ids] == [ex.id for ex in posts]
    line = json.loads(files[0][0].read_text().splitlines()[0])
    assert line["custom_id"] == posts[0].id and line["url"] == "/v1/chat/completions"
    assert line["body"]["max_tokens"] == 512 and line["body"]["messages"][1]["content"][1]["image_url"]["url"].startswith(
        "data:image/png;base64,")
    with pytest.raises(ValueError, match="alone is"):
        write_batch_files(teacher, posts[:1], tmp_path, "u", max_bytes=100)
    with BatchServer(max_file_bytes=10) as server:  # an upload the server refuses: nothing recorded as sent
        os.environ[KEY_ENV] = KEY
        try:
            with pytest.raises(Exception, match="too large"):
                run_batch(teacher_for(server), posts[:2], tmp_path / "c", **FAST)
        finally:
            del os.environ[KEY_ENV]
        assert server.batches_created == 0


# ------------------------------------------------------------------------------------------------
# Interrupted runs: resume the same batch, never pay twice
# ------------------------------------------------------------------------------------------------
_CHILD = """
import sys
from mmkp_helpers.teacher.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def test_client_killed_between_create_and_download_resumes_the_batch(posts, key, tmp_path):
    data = write_jsonl(posts, tmp_path / "posts.jsonl")
    cache = tmp_path / "cache"
    with BatchServer(polls_to_finish=10_000) as server:
        teacher = teacher_for(server)
        state = state_path(teacher, cache)
        env = {**os.environ, KEY_ENV: KEY}
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, "batch", "--examples", str(data), "--cache-dir", str(cache), "--model",
             "fake-model", "--base-url", server.url, "--api-key-env", KEY_ENV, "--poll-interval", "0.05",
             "--max-poll-interval", "0.1", "--max-retries", "1"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        try:
            deadline = time.time() + 60
            while time.time() < deadline and child.poll() is None:
                if state.is_file() and server.retrieves >= 3:  # created, recorded, being polled
                    break
                time.sleep(0.02)
            assert child.poll() is None, child.communicate()[1].decode()[-3000:]
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.kill()
            out, err = child.communicate()
        assert child.returncode == -signal.SIGKILL
        assert_no_key(tmp_path, out.decode(), err.decode())
        saved = json.loads(state.read_text())["batches"]
        assert len(saved) == 1 and saved[0]["batch_id"] == "batch_1" and not saved[0]["merged"]
        assert server.batches_created == 1 and not server.answered_per_id
        server.polls_to_finish = 0  # the batch finishes now
        run = run_batch(teacher, posts, cache, **FAST)
        assert server.batches_created == 1 and server.uploads == 1  # no new batch, nothing uploaded again
        assert run.stats["batches_submitted"] == 0 and run.stats["batches_collected"] == 1
        assert run.stats["answered"] == len(posts) and run.stats["failures"] == 0
        assert_answered_once(server, posts)
        assert batch_status(teacher, cache)[0]["merged"] is True
    assert_no_key(tmp_path)


def test_no_wait_then_collect(posts, key, tmp_path):
    with BatchServer(polls_to_finish=3) as server:
        teacher = teacher_for(server)
        submitted = run_batch(teacher, posts, tmp_path, wait=False, **FAST)
        assert submitted.stats["pending"] == len(posts) and submitted.stats["batches_open"] == 1
        assert set(submitted.verdicts.values()) == {"pending"} and not submitted.failed
        assert_adds_up(submitted, posts)
        collected = run_batch(teacher, posts, tmp_path, **FAST)
        assert collected.stats["batches_submitted"] == 0 and collected.stats["answered"] == len(posts)
        assert server.batches_created == 1
        assert_answered_once(server, posts)


def test_crash_between_upload_and_create(posts, key, tmp_path):
    """The state records the uploaded file before the batch is created. Resumed, a run finds the
    batch that was created (through batches.list) or creates it from the same file."""
    with BatchServer(polls_to_finish=5) as server:
        teacher = teacher_for(server)
        run_batch(teacher, posts[:12], tmp_path / "a", wait=False, **FAST)
        state = BatchState(state_path(teacher, tmp_path / "a"))
        state.batches[0].update(batch_id=None, status="uploaded")  # as if the process died before saving the id
        state.save()
        resumed = run_batch(teacher, posts[:12], tmp_path / "a", **FAST)
        assert server.batches_created == 1 and server.uploads == 1 and resumed.stats["answered"] == 12

        class Dying(OpenAITeacher):  # dies right after the upload
            def client(self):
                client = super().client()
                client.batches.create = lambda **kw: (_ for _ in ()).throw(KeyboardInterrupt())
                return client

        with pytest.raises(KeyboardInterrupt):
            run_batch(Dying("fake-model", base_url=server.url, api_key_env=KEY_ENV), posts[12:], tmp_path / "b", **FAST)
        assert server.uploads == 2 and server.batches_created == 1
        run = run_batch(teacher, posts[12:], tmp_path / "b", **FAST)
        assert server.uploads == 2 and server.batches_created == 2 and run.stats["answered"] == len(posts) - 12
        assert_answered_once(server, posts)


# ------------------------------------------------------------------------------------------------
# Budget, key, results, CLI
# ------------------------------------------------------------------------------------------------
def test_budget_is_checked_at_batch_prices(posts, key, tmp_path):
    teacher = OpenAITeacher("fake-model", base_url="http://127.0.0.1:9/v1", api_key_env=KEY_ENV)
    live = estimate_run(teacher, posts, prices=(2.5, 10.0))["cost_usd"]
    with pytest.raises(TeacherBudgetError, match=r"x0.5 \(batch\)"):
        run_batch(teacher, posts, tmp_path, prices=(2.5, 10.0), max_cost=0.4 * live, **FAST)
    assert not [p for p in tmp_path.iterdir()]  # nothing written, nothing sent (the port is closed anyway)
    with BatchServer() as server:
        run = run_batch(teacher_for(server), posts, tmp_path, prices=(2.5, 10.0), max_cost=0.6 * live, **FAST)
        assert run.stats["answered"] == len(posts)
        assert run.stats["estimated_cost_usd"] == pytest.approx(BATCH_DISCOUNT * live)


def test_the_key_reaches_the_server_and_no_file(posts, key, tmp_path, capsys):
    with BatchServer(batch_faults=["leaky_failed"]) as server:
        teacher = teacher_for(server)
        first = run_batch(teacher, posts, tmp_path, prices=(1.0, 1.0), poll_interval=0.01, progress=True)
        assert server.batch_auth_requests == server.batch_requests
        assert all("[REDACTED]" in m for m in first.failed.values())  # the server echoed the key: scrubbed
        second = run_batch(teacher, posts, tmp_path, prices=(1.0, 1.0), **FAST)
        assert second.stats["answered"] == len(posts)
        print(first, second, first.table())
    assert_no_key(tmp_path, *capsys.readouterr(), json.dumps(first.stats), json.dumps(second.stats), str(first.failed))


def test_offline_teachers_have_no_batches(posts, tmp_path):
    with pytest.raises(TypeError, match="run_teacher"):
        run_batch(OracleTeacher(), posts, tmp_path)


@pytest.mark.parametrize("record, expected", [
    ({"custom_id": "a", "response": {"status_code": 200, "body": {"choices": [{"message": {"content": "x"}}]}},
      "error": None}, ("a", True, None)),
    ({"custom_id": "b", "response": {"status_code": 429, "body": {"error": {"type": "rate_limit", "message": "m"}}},
      "error": None}, ("b", False, "status 429: rate_limit: m")),
    ({"custom_id": "c", "response": None, "error": {"code": "batch_expired", "message": "late"}},
     ("c", False, "batch_expired: late")),
    ({"custom_id": "d", "response": {"status_code": 200, "body": {"choices": []}}, "error": None},
     ("d", False, "the endpoint answered without choices")),
])
def test_result_lines(record, expected):
    custom_id, body, error = parse_result_line(record)
    assert (custom_id, body is not None, error) == expected


def test_cli_estimate_batch_status(posts, tmp_path):
    data = write_jsonl(posts, tmp_path / "posts.jsonl")
    cache = tmp_path / "cache"
    env = {**os.environ, KEY_ENV: KEY, "HF_HUB_OFFLINE": "1"}

    def cli(*args):
        proc = subprocess.run([sys.executable, "-m", "mmkp_helpers.teacher", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert KEY not in proc.stdout + proc.stderr
        return proc

    with BatchServer() as server:
        common = ["--cache-dir", str(cache), "--model", "fake-model", "--base-url", server.url, "--api-key-env", KEY_ENV]
        est = cli("estimate", "--examples", str(data), *common, "--prices", "2.5", "10", "--pilot", "3", "--json")
        assert est.returncode == 0, est.stderr[-2000:]
        report = json.loads(est.stdout)
        assert report["pilot"]["requests_sent"] == 3 and server.requests == 3
        assert report["estimate"]["output_tokens_source"].startswith("measured: mean of the 3 answers")
        assert report["estimate"]["to_send"] == len(posts) - 3 and report["estimate"]["cost_usd_batch"] > 0
        proc = cli("batch", "--examples", str(data), *common, "--poll-interval", "0.01", "--no-wait", "--json")
        assert proc.returncode == 3 and json.loads(proc.stdout)["pending"] == len(posts) - 3  # open: run again
        status = cli("status", *common)
        assert status.returncode == 3 and "batch_1: " in status.stdout and "open" in status.stdout
        proc = cli("batch", "--examples", str(data), *common, "--poll-interval", "0.01")
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert f"{len(posts)} examples, 3 from the cache" in proc.stdout
        assert cli("status", *common).returncode == 0
        assert len(server.answered_per_id) == len(posts) - 3 and max(server.answered_per_id.values()) == 1
        assert server.requests == 3 and sum(server.lines_per_id.values()) == len(posts) - 3
    offline = cli("estimate", "--examples", str(data), "--cache-dir", str(tmp_path / "o"), "--teacher", "oracle",
                  "--prices", "2.5", "10")
    assert offline.returncode == 0 and "max_tokens: 512 a request, an upper bound" in offline.stdout
    assert cli("live").returncode == 2  # usage error
    assert_no_key(tmp_path)
