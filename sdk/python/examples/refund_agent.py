#!/usr/bin/env python3
"""A refund agent that behaves like an LLM agent: not deterministic.

Each real run of its "propose" step picks a random amount, as a model
would; the human approves or rejects; an approved refund is a step too, with
the step's idempotency key. Only the steps' results are recorded, so a turn
run again after a move refunds exactly what the human approved.

Other messages are chat: the reply quotes the conversation's first message,
which it knows from turn.history even in a process started after a move.

For tests, TETHER_EXAMPLE_LEDGER names a file the agent appends a line to
for every real model call ("propose") and every refund ("refund KEY
AMOUNT"): the outside world, which a replay must not touch again.
"""
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import tether_agent  # noqa: E402

LEDGER = os.environ.get("TETHER_EXAMPLE_LEDGER")
# For tests: while the file TETHER_EXAMPLE_HOLD names exists, a refund waits
# (the owner can be lost while it runs).
HOLD = os.environ.get("TETHER_EXAMPLE_HOLD")


def world(line):
    if LEDGER:
        with open(LEDGER, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def propose(_key):
    world("propose")
    return random.choice([120, 150, 180, 200, 250])


def handle(turn):
    if not turn.input.startswith("refund"):
        earlier = turn.history.texts("user_message")
        first = earlier[0] if earlier else turn.input
        turn.send(f"you said {turn.input!r}; your first message was {first!r}")
        return
    amount = turn.step("propose", propose)
    turn.send(f"I propose refunding {amount} EUR")
    decision = turn.ask("refund", f"Refund {amount} EUR?", ["approve", "reject"])
    if decision != "approve":
        turn.send("rejected: nothing refunded")
        return

    def refund(key):
        while HOLD and os.path.exists(HOLD):
            time.sleep(0.02)
        world(f"refund {key} {amount}")
        return {"refunded": amount}

    done = turn.step("refund", refund, shown=f"refunding {amount} EUR")
    turn.send(f"approved: refunded {done['refunded']} EUR")


if __name__ == "__main__":
    tether_agent.run(handle)
