"""Sessions: conversations whose next turn waits for the previous answer and a think time.

A turn's prompt holds the previous answer, so a session is sequential: send a turn, read its
answer, pause for a think time drawn around `--think-time`, send the next. Each turn is due at
the end of the previous one plus the pause; it is sent then (or late, if the in-flight cap holds
it back, which is counted and measured). `--users N` keeps N sessions going (a closed population:
a finished session's user starts a new one after a pause; the N first sessions start spread over
one mean think time so they do not all arrive at once); `--session-rate R` makes new sessions
arrive open-loop instead. A failed turn ends its session: the conversation cannot go on without
its answer.

With `--workers`, user u belongs to worker u mod N, and arrival i of the session schedule to
worker i mod N, so a session stays on one worker; session ids are the same as in one process.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from functools import partial
from itertools import count

from tmesh.bench.load.arrivals import Arrival, schedule, share, think_time
from tmesh.bench.load.openloop import ScheduledLoop
from tmesh.bench.load.runner import RecordFn, StopRules, TickFn, next_backoff
from tmesh.bench.workload.sessions import AnswerCosts, Conversations
from tmesh.results.records import RequestPlan, RequestRecord

TurnFn = Callable[[RequestPlan], Awaitable[tuple[RequestRecord, str]]]
"""Sends one turn; returns its record and the answer's text."""


class SessionLoop(ScheduledLoop):
    """The sessions of one process: its users, or its share of the session arrivals."""

    def __init__(
        self, conversations: Conversations, send: TurnFn, answer_costs: AnswerCosts,
        on_record: RecordFn, on_tick: TickFn, cap: int, rules: StopRules, origin: float,
        interval_s: float, arrival: Arrival, worker: int = 0, workers: int = 1,
    ) -> None:  # fmt: skip
        spec = conversations.texts.spec
        super().__init__(on_record, on_tick, cap, rules, origin, interval_s, None)
        self._conversations = conversations
        self._spec = spec
        self._seed = conversations.texts.seed
        self._send = send
        self._answer_costs = answer_costs
        self._arrival = arrival
        self._worker, self._workers = worker, workers
        self._indices = count(worker, workers)

    async def _drive(self) -> None:
        if self._spec.session_rate:
            self._spawn(self._arrivals(self._spec.session_rate))
        else:
            for user in range(self._worker, self._spec.users, self._workers):
                self._spawn(self._user(user))
        await self._wind_down_spawned()

    async def _arrivals(self, rate: float) -> None:
        times = schedule(self._arrival, rate, self._seed, "sessions")
        for session, due in share(enumerate(times), self._worker, self._workers):
            if not (self._may_issue() and await self._until(due)):
                return
            self._spawn(self._session_task(session, due))

    async def _session_task(self, session: int, due: float) -> None:
        await self._session(session, due, 0.0)

    async def _user(self, user: int) -> None:
        """A user's sessions, one after another: the j-th is session j * users + user. After a
        failed turn the user backs off (`next_backoff`) before a new session, so a server that is
        down is probed gently."""
        users = self._spec.users
        due: float | None = user * self._spec.think_time / users
        backoff = 0.0
        for number in count():
            if due is None:
                return
            due, backoff = await self._session(number * users + user, due, backoff)

    async def _session(
        self, session: int, due: float, backoff: float
    ) -> tuple[float | None, float]:
        """Run one session from `due`: when its user may start another (None once the run
        stopped), and the backoff after a failure (0 after a completed session)."""
        conversation = self._conversations.start(session)
        rng = random.Random(f"tmesh-think:{self._seed}:{session}")
        last_end: float | None = None
        for _ in range(self._spec.turns):
            if not (self._may_issue() and await self._until(due) and await self._slot(due)):
                return None, 0.0
            self.state.issued += 1
            plan = conversation.next_plan(next(self._indices))
            record, answer = await self._sent(due, partial(self._send, plan))
            record.t_intended = due
            if last_end is not None:
                record.idle_gap = max(0.0, record.t0 - last_end)
            self.account(record)
            if not record.ok or record.t_end is None:
                backoff = next_backoff(record, backoff)
                return self.now() + backoff, backoff
            if record.usage_reported and record.prompt_tokens != plan.expected_prompt_tokens:
                self._answer_costs.missed()
                conversation.rebase(record.prompt_tokens)
            cost = await self._answer_costs.cost(answer, record.completion_tokens)
            conversation.add_answer(answer, cost)
            last_end = record.t_end
            due = last_end + think_time(self._spec.think_time_dist, self._spec.think_time, rng)
        return due, 0.0
