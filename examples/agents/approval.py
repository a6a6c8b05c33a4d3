#!/usr/bin/env python3
"""An approval agent for Tether, in Python, speaking JSON lines over stdio.

Tether starts one process per conversation. For each turn it writes
{"type": "turn", "seq": N, "input": "..."}; the agent writes what it says
({"type": "send"}), asks a human ({"type": "ask"}) and reads the answer
({"type": "answer"}), then ends the turn ("done", "finish" or "fail").
See docs/agents.md.
"""
import json
import sys


def say(**message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def read():
    line = sys.stdin.readline()
    if not line:  # Tether closed our input: the conversation moved or ended.
        sys.exit(0)
    return json.loads(line)


while True:
    turn = read()
    if turn["type"] != "turn":
        continue
    request = turn["input"]
    say(type="send", text=f"I can do that: {request}. I need a human to approve it first.")
    say(type="ask", id=f"approve-{turn['seq']}", text=f"Approve: {request}?", options=["approve", "reject"])
    answer = read()
    if answer["text"] == "approve":
        say(type="send", text=f"Approved and done: {request}.")
    else:
        say(type="send", text="Rejected; nothing was done.")
    say(type="finish")
