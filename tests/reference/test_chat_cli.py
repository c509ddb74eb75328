"""`slm chat` end to end on SmolLM2-135M-Instruct ($SLM_TEST_MODELS), greedy, with stdin piped.

- two user turns then /exit: exit status 0, two replies on stdout, and with -v the per-turn counts on
  stderr show the history carried and the KV cache reused: turn 2's prompt holds turn 1 (prompt and reply),
  those tokens come from the cache and only the rest is evaluated;
- /exit ends the session by itself: stdin stays open after it (a hang means /exit was ignored), and a
  line after it gets no reply;
- a tiny context (-c 64) drops the oldest turn to make room, says so, and still answers;
- a reply that fills the context stops with a message saying so (not silently mid-sentence), after exactly
  the tokens that fit.

    python tests/reference/test_chat_cli.py --build BUILD_DIR

Exit: 0 pass, 1 fail, 77 skip (no slm binary or no SmolLM2 test model).
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"
TURN = re.compile(r"^slm: turn (\d+): prompt (\d+) tokens, (\d+) reused from the cache, (\d+) evaluated$")
REPLY = re.compile(r"^slm: turn (\d+): reply (\d+) tokens$")


def chat(slm, model, lines, *opts, close_stdin=True, timeout=120):
    """Runs `slm chat` with the lines on stdin; returns (rc, stdout, stderr, turns, replies) where turns[i] =
    (prompt, reused, evaluated) and replies[i] = generated tokens of turn i + 1. With close_stdin False the
    pipe stays open after the lines, so only /exit can end the session (subprocess.TimeoutExpired if not;
    the output is a few lines, far below a pipe's buffer, so waiting before reading cannot deadlock)."""
    cmd = [slm, "chat", "-m", model, "--greedy", "-v", "-t", "2", *opts]
    data = "".join(ln + "\n" for ln in lines).encode()
    if close_stdin:
        r = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout)
        rc, out, err = r.returncode, r.stdout, r.stderr
    else:
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        p.stdin.write(data)
        p.stdin.flush()
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise
        finally:
            p.stdin.close()
        out, err = p.stdout.read(), p.stderr.read()
        p.stdout.close()
        p.stderr.close()
    out, err = out.decode(errors="replace"), err.decode(errors="replace")
    turns, replies = [], []
    for ln in err.splitlines():
        m = TURN.match(ln)
        if m:
            turns.append(tuple(int(x) for x in m.groups()[1:]))
        m = REPLY.match(ln)
        if m:
            replies.append(int(m.group(2)))
    return rc, out, err, turns, replies


def main():
    ap = common.build_arg_parser(__doc__)
    args = ap.parse_args()
    slm = common.build_binary(args.build, "slm")
    if not slm:
        common.skip(f"{args.build}/bin/slm not built")
    d = common.models_dir()
    model = os.path.join(d, MODEL) if d else None
    if not model or not os.path.isfile(model):
        common.skip(f"no {MODEL} in $SLM_TEST_MODELS")
    tally = common.Tally()

    # two turns, history and cache reuse
    rc, out, err, turns, replies = chat(slm, model, ["Hi!", "What is 2+2?", "/exit"], "-n", "48", "-c", "512")
    reply_lines = [ln for ln in out.split("\n") if ln.strip()]
    tally.check(rc == 0, f"two turns: exit status {rc}")
    tally.check(len(turns) == 2 and len(replies) == 2 and len(reply_lines) >= 2 and all(replies),
                f"two turns: two replies ({len(turns)} turns, replies of {replies} tokens, stdout {out!r})")
    if len(turns) == 2 and len(replies) == 2:
        (p1, r1, e1), (p2, r2, e2) = turns
        tally.check(r1 == 0 and e1 == p1,
                    f"turn 1 evaluates its whole prompt ({p1} tokens: {r1} reused, {e1} evaluated)")
        # the turn-2 prompt is turn 1's prompt and reply plus the new user turn; all of turn 1 is in the cache
        tally.check(p2 > p1 + replies[0], f"turn 2's prompt ({p2}) holds turn 1 ({p1} + {replies[0]} tokens)")
        tally.check(r2 == p1 + replies[0] and e2 == p2 - r2,
                    f"turn 2 evaluates only the new tokens: {r2} reused (turn 1: {p1} + {replies[0]}), "
                    f"{e2} evaluated of {p2}")
    print(err, end="")

    # /exit ends the session while stdin is still open; the line after it gets no reply
    try:
        rc, out, err, turns, replies = chat(slm, model, ["Hi!", "/exit", "Are you still there?"], "-n", "16", "-c",
                                            "256", close_stdin=False, timeout=60)
    except subprocess.TimeoutExpired:
        tally.check(False, "/exit ends the session: still running 60 s after /exit")
    else:
        tally.check(rc == 0 and len(turns) == 1 and len(replies) == 1,
                    f"/exit ends the session with stdin open (exit {rc}, {len(turns)} turns answered)")

    # a tiny context: the oldest turn is dropped, with a message, and turn 2 is still answered
    rc, out, err, turns, replies = chat(slm, model, ["Hi!", "What is 2+2?", "/exit"], "-n", "48", "-c", "64")
    dropped = "the oldest turn was dropped" in err
    tally.check(rc == 0 and dropped and len(turns) == 2 and len(replies) == 2 and replies[1] > 0,
                f"-c 64: the oldest turn is dropped with a message (exit {rc}, message {dropped}, turns {turns}, "
                f"replies {replies})")
    if len(turns) == 2:
        tally.check(turns[1][0] < turns[0][0] + replies[0] + 4,
                    f"-c 64: turn 2's prompt ({turns[1][0]} tokens) no longer holds turn 1 "
                    f"({turns[0][0]} + {replies[0]})")
    print(err, end="")

    # a reply that fills the context says so
    rc, out, err, turns, replies = chat(slm, model, ["Write a long story about a dragon."], "-n", "200", "-c", "64")
    full = "the context is full" in err
    tally.check(rc == 0 and full, f"-c 64 -n 200: a full context is reported (exit {rc}, message {full})")
    if turns and replies:
        # every sampled token but the last is evaluated into the cache, so the reply is n_ctx - prompt + 1
        tally.check(replies[0] == 64 - turns[0][0] + 1,
                    f"-c 64: the reply stops when the context is full ({replies[0]} tokens after a "
                    f"{turns[0][0]}-token prompt)")
    print(err, end="")
    tally.finish()


if __name__ == "__main__":
    main()
