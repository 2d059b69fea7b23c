"""Teacher runs outside a notebook: ``python -m mmkp_helpers.teacher {estimate,live,batch,status}``.

Each command reads the examples (``--examples``: a JSONL file such as
``results/<profile>/data/splits/<dataset>/clean/train.jsonl``, or anything
:func:`mmkp_helpers.data.load_examples` reads), builds the teacher (``--teacher openai`` with
``--model``, ``--base-url``, ``--api-key-env``: the NAME of the variable holding the key) and
uses the answer cache in ``--cache-dir`` that notebook 04 uses (``results/<profile>/data/teacher``
for a paid teacher), so a batch run here and the notebook's live run share their answers::

    python -m mmkp_helpers.teacher estimate --examples train.jsonl --cache-dir cache --model gpt-4o \\
        --prices 2.5 10 --pilot 5            # 5 real requests measure the answer length
    python -m mmkp_helpers.teacher batch --examples train.jsonl --cache-dir cache --model gpt-4o \\
        --prices 2.5 10 --max-cost 40        # at half price; waits, polling with backoff
    python -m mmkp_helpers.teacher batch ... --no-wait   # submit and return; run again to collect
    python -m mmkp_helpers.teacher status --cache-dir cache --model gpt-4o

It prints a summary line (``--json``: the stats as JSON) and exits with 0 when every example is
answered, 3 when some failed or are still in open batches (run the same command again), 2 on a
usage error.
"""
from __future__ import annotations

import argparse
import json
import sys

from . import make_teacher
from .batch import MAX_BYTES, MAX_REQUESTS, batch_status, run_batch
from .estimate import estimate_run
from .run import pilot_run, run_teacher

INCOMPLETE = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mmkp_helpers.teacher", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache-dir", required=True, help="the answer cache folder (shared by live and batch runs)")
    common.add_argument("--teacher", default="openai", choices=("openai", "oracle", "template"))
    common.add_argument("--model", default="", help="the endpoint's model (teacher openai), e.g. gpt-4o")
    common.add_argument("--base-url", default=None, help="an OpenAI-compatible base URL; default api.openai.com")
    common.add_argument("--api-key-env", default="OPENAI_API_KEY", help="NAME of the variable holding the key")
    common.add_argument("--mode", default="rationalize", choices=("rationalize", "predict"))
    common.add_argument("--max-tokens", type=int, default=512, help="answer budget of a request")
    common.add_argument("--temperature", type=float, default=0.0)
    common.add_argument("--image-detail", default="low", choices=("low", "high", "auto"))
    common.add_argument("--timeout", type=float, default=60.0, help="seconds per API call before the client retries")
    common.add_argument("--max-retries", type=int, default=3, help="the openai client's retries per call")
    common.add_argument("--json", action="store_true", help="print the stats as JSON")
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--examples", required=True, help="JSONL of examples (or a folder load_examples reads)")
    data.add_argument("--split", default=None, help="the split, for folders that hold several")
    data.add_argument("--limit", type=int, default=0, help="only the first N examples (0: all)")
    data.add_argument("--prices", type=float, nargs=2, metavar=("IN", "OUT"), default=None,
                      help="live USD per million input and output tokens (batch: half of it)")
    data.add_argument("--max-cost", type=float, default=None, help="USD: send nothing when the estimate is above")
    data.add_argument("--min-f1", type=float, default=0.5, help="predict mode: keep rationales reaching this F1")

    est = sub.add_parser("estimate", parents=[common, data], help="what a run would cost (nothing sent without --pilot)")
    est.add_argument("--pilot", type=int, default=0, help="send N real requests first to measure answer lengths")
    est.add_argument("--sample", type=int, default=20, help="requests rendered to count input tokens")
    live = sub.add_parser("live", parents=[common, data], help="live chat-completions calls")
    live.add_argument("--concurrency", type=int, default=4)
    batch = sub.add_parser("batch", parents=[common, data], help="the Batch API (half price, within 24 h)")
    batch.add_argument("--no-wait", action="store_true", help="submit and return; run again to collect")
    batch.add_argument("--poll-interval", type=float, default=30.0, help="first pause between polls (s)")
    batch.add_argument("--max-poll-interval", type=float, default=600.0, help="longest pause between polls (s)")
    batch.add_argument("--max-wait", type=float, default=None, help="stop polling after this many seconds")
    batch.add_argument("--max-requests", type=int, default=MAX_REQUESTS, help="requests per batch file")
    batch.add_argument("--max-bytes", type=int, default=MAX_BYTES, help="bytes per batch file")
    sub.add_parser("status", parents=[common], help="the batches recorded in the cache folder")
    return parser


def _teacher(args):
    if args.teacher == "openai":
        if not args.model:
            raise SystemExit("--model is required with --teacher openai")
        return make_teacher("openai", model=args.model, base_url=args.base_url, api_key_env=args.api_key_env,
                            mode=args.mode, max_tokens=args.max_tokens, temperature=args.temperature,
                            image_detail=args.image_detail, timeout=args.timeout, max_retries=args.max_retries)
    return make_teacher(args.teacher, mode=args.mode, count_tokens=True)


def _examples(args):
    from ..data import load_examples

    examples = load_examples(args.examples, **({"split": args.split} if args.split else {}))
    return examples[:args.limit] if args.limit and args.limit > 0 else examples


def _show(args, payload: dict, line: str) -> None:
    if args.json:
        print(json.dumps(payload, indent=1, default=str))
    else:
        print(line)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    teacher = _teacher(args)
    prices = tuple(args.prices) if getattr(args, "prices", None) else None
    if args.command == "status":
        batches = batch_status(teacher, args.cache_dir)
        lines = [f"{b.get('batch_id') or '(not created)'}: {b.get('status')}, {b.get('requests')} requests, "
                 f"{'merged' if b.get('merged') else 'open'}" for b in batches] or ["no batches recorded"]
        _show(args, {"teacher": teacher.cache_key(), "batches": batches}, "\n".join(lines))
        return INCOMPLETE if any(not b.get("merged") for b in batches) else 0
    examples = _examples(args)
    if args.command == "estimate":
        pilot = None
        if args.pilot > 0:
            pilot = pilot_run(teacher, examples, args.cache_dir, n=args.pilot, prices=prices, max_cost=args.max_cost)
        est = estimate_run(teacher, examples, prices=prices, sample=args.sample, cache_dir=args.cache_dir)
        money = lambda v: "n/a (no prices)" if v is None else f"${v:.2f}"  # noqa: E731
        line = (f"{est['requests']} requests ({est['to_send']} not in the cache): {est['input_tokens']} input + "
                f"{est['output_tokens']} output tokens, output length {est['output_tokens_source']}; "
                f"live {money(est['cost_usd'])}, batch {money(est['cost_usd_batch'])}, upper bound (max_tokens) "
                f"{money(est['cost_usd_upper_bound'])}")
        if pilot is not None:
            line += f"; the pilot sent {pilot.stats['requests_sent']} requests for {money(pilot.stats['cost_usd'])}"
        _show(args, {"estimate": est, "pilot": None if pilot is None else pilot.stats}, line)
        return 0
    if args.command == "live":
        run = run_teacher(teacher, examples, args.cache_dir, concurrency=args.concurrency, prices=prices,
                          max_cost=args.max_cost, min_f1=args.min_f1)
    else:
        run = run_batch(teacher, examples, args.cache_dir, prices=prices, max_cost=args.max_cost, min_f1=args.min_f1,
                        wait=not args.no_wait, poll_interval=args.poll_interval,
                        max_poll_interval=args.max_poll_interval, max_wait=args.max_wait,
                        max_requests=args.max_requests, max_bytes=args.max_bytes)
    _show(args, run.stats, run.summary())
    return INCOMPLETE if run.stats["failures"] or run.stats.get("pending") else 0


if __name__ == "__main__":
    sys.exit(main())
