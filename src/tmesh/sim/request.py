"""One request inside the simulated engine: its state, its tokens as they are emitted, its end."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Callable

from tmesh.sim.blocks import Block


class EngineStopped(RuntimeError):
    """The engine stopped while the request was still in it."""


class State(enum.Enum):
    PENDING = "pending"  # in the frontend (API overhead), not yet seen by the scheduler
    WAITING = "waiting"
    LOADING = "loading"  # holds GPU blocks, waits for its prefix to arrive from the CPU tier
    RUNNING = "running"
    FINISHED = "finished"
    ABORTED = "aborted"


DONE = (State.FINISHED, State.ABORTED)


class SimRequest:
    """One generation request; its tokens are consumed with `stream()`."""

    def __init__(
        self,
        on_cancel: Callable[[SimRequest], None],
        request_id: int,
        prompt_tokens: int,
        max_tokens: int,
        block_hashes: list[int],
        arrival_time: float,
    ) -> None:
        self._on_cancel = on_cancel
        self.request_id = request_id
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.block_hashes = block_hashes
        self.arrival_time = arrival_time
        self.state = State.PENDING
        self.cached_tokens = 0
        self.local_hit = 0
        self.external_hit = 0
        self.loading_tokens = 0
        self.num_output = 0
        self.num_computed = 0
        self.num_cached_blocks = 0
        self.num_preemptions = 0
        self.blocks: list[Block] = []
        self.looked_up = False
        self.first_token_time: float | None = None
        self.finish_time: float | None = None
        self._pending = 0
        self._event = asyncio.Event()
        self._error: BaseException | None = None

    @property
    def num_tokens(self) -> int:
        """Tokens whose KV the request needs before it can emit the next one."""
        return self.prompt_tokens + self.num_output

    @property
    def ttft(self) -> float | None:
        """Model-time TTFT from arrival (the value the TTFT histogram records)."""
        if self.first_token_time is None:
            return None
        return self.first_token_time - self.arrival_time

    @property
    def done(self) -> bool:
        return self.state in DONE

    async def stream(self) -> AsyncIterator[int]:
        """Tokens emitted per engine step, merged if the consumer falls behind (as vLLM does).

        Ends after the last token or after `cancel()`; raises `EngineStopped` if the engine stops.
        """
        while True:
            if self._pending:
                n, self._pending = self._pending, 0
                yield n
                continue
            if self._error is not None:
                raise self._error
            if self.state in DONE:
                return
            self._event.clear()
            await self._event.wait()

    def cancel(self) -> None:
        """The client went away: stop generating and free the KV blocks. Idempotent."""
        self._on_cancel(self)

    def emit(self) -> None:
        """The engine produced one token for this request."""
        self._pending += 1
        self._event.set()

    def end(self, error: BaseException | None) -> None:
        """The engine is done with this request (finished, aborted, or stopped with `error`)."""
        self._error = error
        self._event.set()
