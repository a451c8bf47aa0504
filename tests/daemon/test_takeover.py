"""A request for a session another daemon holds, when that daemon cannot be reached: tried here
again until the session is free to take (``sharing.after_refusal``), never when the owner answered."""

from __future__ import annotations

import pytest

from acpd.daemon import sharing
from acpd.errors import StoreLocked

pytestmark = pytest.mark.anyio

HELD = StoreLocked("session 's' is served by another daemon", data={"url": "http://127.0.0.1:9"})
GONE = StoreLocked("the daemon at http://127.0.0.1:9 does not answer", owner_gone=True)


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sharing, "TAKEOVER_PAUSES", (0.0,))


class Attempts:
    """``here`` refuses until the owner's lock has gone (``free_after`` tries); ``there`` is the
    owner, which cannot be reached unless ``answers``."""

    def __init__(self, free_after: int, *, answers: bool = False) -> None:
        self.free_after = free_after
        self.answers = answers
        self.here_tries = 0
        self.there_tries = 0

    async def here(self) -> str:
        self.here_tries += 1
        if self.here_tries <= self.free_after:
            raise HELD
        return "served here"

    async def there(self, refusal: StoreLocked) -> str:
        self.there_tries += 1
        if self.answers:
            return f"answered at {refusal.data['url']}"
        raise GONE


async def test_a_request_whose_owner_cannot_be_reached_is_served_here_once_its_lock_goes() -> None:
    attempts = Attempts(free_after=2)
    assert await sharing.after_refusal(HELD, attempts.here, attempts.there) == "served here"
    assert (attempts.here_tries, attempts.there_tries) == (3, 3)


async def test_an_owner_that_answers_is_asked_once_and_nothing_runs_here() -> None:
    attempts = Attempts(free_after=0, answers=True)
    assert await sharing.after_refusal(HELD, attempts.here, attempts.there) == "answered at http://127.0.0.1:9"
    assert (attempts.here_tries, attempts.there_tries) == (0, 1)


async def test_an_owner_that_refuses_is_not_tried_again() -> None:
    async def refused(refusal: StoreLocked) -> str:
        raise HELD  # reached, and it said no (a request it refused, or one sent on once already)

    attempts = Attempts(free_after=0)
    with pytest.raises(StoreLocked) as raised:
        await sharing.after_refusal(HELD, attempts.here, refused)
    assert raised.value is HELD and attempts.here_tries == 0


async def test_an_owner_unreachable_for_longer_than_the_takeover_time_is_store_locked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sharing, "TAKEOVER_SECONDS", 0.0)
    attempts = Attempts(free_after=1_000)
    with pytest.raises(StoreLocked) as raised:
        await sharing.after_refusal(HELD, attempts.here, attempts.there)
    assert raised.value.owner_gone and attempts.there_tries == 1


class DyingOwner:
    """A shared store whose session's owner lets its lock go between a refused claim and the
    question who holds it."""

    def __init__(self) -> None:
        self.claims = 0

    async def claim(self, session_id: str) -> bool:
        self.claims += 1
        return self.claims > 1

    async def owner_of(self, session_id: str) -> dict[str, object] | None:
        return None


async def test_a_session_whose_owner_is_gone_by_the_time_it_is_asked_for_is_claimed_again() -> None:
    store = DyingOwner()
    await sharing.hold(store, "s")  # type: ignore[arg-type]  # what hold uses of a shared store
    assert store.claims == 2
