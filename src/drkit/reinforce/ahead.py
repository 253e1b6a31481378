"""Render ahead: on an accelerator a thread renders batches while the main thread labels the
previous one. Rendering is host work (hundreds of small kernel launches) and torch releases the
GIL in its ops, so the two overlap; a batch's pixels depend only on the batch, never on the order.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable, Iterator

_END, _FAILED = object(), object()  # markers: the items are done; (_FAILED, error) raised in the render thread

def render_ahead(items: Iterable[Any], render: Callable[[Any], Any], threaded: bool,
                 depth: int = 2) -> Iterator[tuple[Any, Any]]:
    """``(item, render(item))`` for every item in order; with ``threaded`` up to ``depth`` rendered
    ahead in a second thread (its errors raised here, in order)."""
    if not threaded:
        for item in items:
            yield item, render(item)
        return
    out: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(value: Any) -> bool:
        while not stop.is_set():
            try:
                out.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put((item, render(item))):
                    return
        except BaseException as error:  # noqa: BLE001 - handed over and raised by the consumer
            put((_FAILED, error))
            return
        put(_END)

    thread = threading.Thread(target=work, name="drkit-render-ahead", daemon=True)
    thread.start()
    try:
        while (got := out.get()) is not _END:
            if got[0] is _FAILED:
                raise got[1]
            yield got
    finally:
        stop.set()
        thread.join()
