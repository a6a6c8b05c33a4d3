"""Tether's agent SDK for Python: the standard library only.

Tether starts one process per conversation and speaks JSON lines with it
over stdin and stdout (docs/agents.md). This module speaks that contract so
that an agent is a function of a turn:

    import tether_agent

    def handle(turn):
        plan = turn.step("plan", lambda key: call_the_model(turn.input))
        if turn.ask("go", f"Do {plan}?", ["yes", "no"]) == "yes":
            turn.send("done")

    tether_agent.run(handle)

A turn cut short by a move to another pod is run again, from its start, in
a new process on the new pod. What the turn did before is replayed, not
redone: a step whose result was recorded returns it without calling its
function; send and ask are matched with what was recorded (the same text,
the same question), and the answer the human gave is returned for the very
question they saw. Anything that is not a step must therefore come out the
same on a re-run given the same step results: put every call to a model or
a tool, and every random choice, in a step. A step that was running when
its owner was lost runs again, with the same idempotency key.

turn.history lists the conversation's earlier events (user messages, the
agent's messages, questions, answers, step results, checkpoints), so a
process started on a new pod knows what was said before.
"""
import json
import sys

__all__ = ["run", "Turn", "Finish", "Fail"]


class Finish(Exception):
    """Raise to end the conversation as Succeeded after this turn."""


class Fail(Exception):
    """Raise to fail the conversation with a message."""


class _Channel:
    def __init__(self, inp, out):
        self._in, self._out = inp, out

    def say(self, **message):
        self._out.write(json.dumps(message, separators=(",", ":")) + "\n")
        self._out.flush()

    def read(self):
        line = self._in.readline()
        if not line:  # Tether closed our input: the conversation moved or ended
            sys.exit(0)
        return json.loads(line)


class Turn:
    """One turn of the conversation, started by a user message."""

    def __init__(self, channel, line, history):
        self._ch = channel
        self.input = line.get("input", "")
        self.seq = line.get("seq", 0)
        self.conversation = line.get("conversation", "")
        self.history = history
        # What this turn records, for the next turn's history.
        self._events = [{"seq": self.seq, "type": "user_message", "data": {"text": self.input}}]

    def _note(self, event_type, data):
        self._events.append({"seq": None, "type": event_type, "data": data})

    def send(self, text):
        """Records a message from the agent."""
        self._ch.say(type="send", text=text)
        self._note("assistant_message", {"text": text})

    def delta(self, text):
        """Streams ephemeral output (not recorded; send the whole text after)."""
        self._ch.say(type="delta", text=text)

    def ask(self, prompt_id, text, options=None):
        """Asks a human and returns the answer to exactly this question."""
        message = {"type": "ask", "id": prompt_id, "text": text}
        if options:
            message["options"] = list(options)
        self._ch.say(**message)
        answer = self._ch.read()
        if answer.get("type") != "answer":
            raise RuntimeError(f"expected an answer, got {answer.get('type')!r}")
        self._note("prompt", {"id": prompt_id, "text": text, "options": list(options or [])})
        self._note("answer", {"promptId": prompt_id, "text": answer["text"]})
        return answer["text"]

    def review(self, prompt_id, text, action, args=None, description="", allowed=("accept", "edit", "respond", "ignore")):
        """Puts an action (a tool call with its arguments) before a human.

        Returns the decision, a dict: {"decision": "accept" | "edit" |
        "respond" | "ignore", "args": the edited arguments (edit), "text":
        the human's reply (respond)}. allowed limits the decisions.
        """
        review = {"action": action, "allowed": list(allowed)}
        if args is not None:
            review["args"] = args
        if description:
            review["description"] = description
        self._ch.say(type="ask", id=prompt_id, text=text, review=review)
        answer = self._ch.read()
        if answer.get("type") != "answer":
            raise RuntimeError(f"expected an answer, got {answer.get('type')!r}")
        decision = {"decision": answer.get("decision"), "args": answer.get("args"), "text": answer.get("text", "")}
        self._note("prompt", {"id": prompt_id, "text": text, "review": review})
        self._note("answer", {"promptId": prompt_id, **decision})
        return decision

    def step(self, name, fn, shown=None):
        """Runs fn(key) once per conversation and returns its result.

        The result (anything JSON can hold, at most 32 KiB) is recorded
        before step returns; on a re-run of the turn the recorded result is
        returned and fn is not called. key is the same on every run of this
        step: give it to the side effect as an idempotency key. shown, a
        text safe for clients ("calling the refund API"), shows the step to
        them while it runs; otherwise they see only that it ran.
        """
        message = {"type": "step", "name": name}
        if shown:
            message["shown"] = shown
        self._ch.say(**message)
        reply = self._ch.read()
        if reply.get("type") == "step_run":
            try:
                result = fn(reply["key"])
            except Exception as e:  # the step failed: so does the turn
                self._ch.say(type="fail", message=f"step {name}: {e}")
                raise
            self._ch.say(type="step_done", name=name, result=result)
            reply = self._ch.read()
        if reply.get("type") != "step_result":
            raise RuntimeError(f"expected step_result for {name!r}, got {reply.get('type')!r}")
        self._note("step", {"name": name, "key": reply.get("key"), "result": reply.get("result")})
        return reply.get("result")

    def checkpoint(self, state):
        """Records state; the newest checkpoint is in history after a move."""
        self._ch.say(type="checkpoint", state=state)
        self._note("checkpoint", state)

    def last_checkpoint(self):
        """The newest checkpoint in the history, or None."""
        for event in reversed(self.history):
            if event["type"] == "checkpoint":
                return event.get("data")
        return None


class History(list):
    """The conversation's events before the current turn, oldest first:
    dicts with seq, type and data (a step's data holds its name, key and
    result).

    complete is False when older events were left out (the window is
    bounded) or trimmed by retention.
    """

    complete = True

    def texts(self, event_type):
        """The texts of the events of a type (user_message, assistant_message)."""
        return [e["data"]["text"] for e in self if e["type"] == event_type and "data" in e]


def run(handle, inp=None, out=None):
    """Serves turns with handle(turn) until Tether closes the input."""
    ch = _Channel(inp or sys.stdin, out or sys.stdout)
    history = History()
    while True:
        line = ch.read()
        kind = line.get("type")
        if kind == "history":
            history = History(line.get("events") or [])
            history.complete = line.get("complete", True)
            continue
        if kind != "turn":
            continue
        turn = Turn(ch, line, History(history))
        try:
            handle(turn)
        except Finish:
            ch.say(type="finish")
            return
        except Fail as e:
            ch.say(type="fail", message=str(e))
            return
        ch.say(type="done")
        # What this turn recorded is history for the next one (events of
        # this process's own turns carry seq None, but the user message's).
        history.extend(turn._events)
