"""remote/fence.py on a real spool directory: the highest epoch heard, and the order of acts
around a newer melond's first request."""
from __future__ import annotations

import threading
import time

import pytest

from melon_remote.fence import Fence, Stale


def test_the_highest_epoch_is_kept_and_older_ones_refused(tmp_path) -> None:
    fence = Fence(str(tmp_path))
    with fence.admit(0):  # a melond that fences nothing, while none does
        pass
    assert fence.seen() == 0 and not (tmp_path / "epoch").exists()
    with fence.admit(3):
        pass
    with fence.admit(3):
        pass
    assert Fence(str(tmp_path)).seen() == 3  # on disk, for the next helper
    for older in (2, 0):
        with pytest.raises(Stale, match="epoch 3 leads this node"):
            with fence.admit(older):
                pytest.fail("an older melond's act was let through")
    assert fence.seen() == 3


def test_a_newer_epoch_is_recorded_only_once_an_act_in_progress_is_done(tmp_path) -> None:
    """An older melond's act under way finishes before a newer melond's epoch is recorded (so
    the newer one's listing, made after, sees it); after, the older one is refused."""
    fence = Fence(str(tmp_path))
    order: list[str] = []
    acting, raised = threading.Event(), threading.Event()

    def newer() -> None:
        acting.wait()
        with fence.admit(2):
            order.append("epoch 2 recorded")
        raised.set()

    thread = threading.Thread(target=newer)
    thread.start()
    with fence.admit(1):
        acting.set()
        time.sleep(0.3)  # the newer melond's request waits meanwhile
        order.append("epoch 1 act done")
    raised.wait(5)
    thread.join(5)
    assert order == ["epoch 1 act done", "epoch 2 recorded"]
    with pytest.raises(Stale):
        with fence.admit(1):
            pass
