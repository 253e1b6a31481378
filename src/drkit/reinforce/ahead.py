"""Render ahead: on an accelerator a thread takes batches from the loader and renders them while
the main thread runs the teacher on the previous batch and hands its records to the writer.

Why a thread: rendering a batch is host work (grouping views, launching a few hundred small
kernels, and the small synchronising copies inside torchvision's ops). torch releases the GIL
inside its ops, so a second thread overlaps that work with the teacher's launches and the writer;
on the device the render runs on its own stream (:func:`drkit.device.on_side_stream`). The pixels
of a batch depend only on the batch, so the order of work cannot change a byte.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable, Iterator

_END = object()


class _Failed:
    """An exception raised in the render thread, re-raised in the consumer's."""

    def __init__(self, error: BaseException):
        self.error = error


def render_ahead(items: Iterable[Any], render: Callable[[Any], Any], threaded: bool,
                 depth: int = 2) -> Iterator[tuple[Any, Any]]:
    """``(item, render(item))`` for every item in order; with ``threaded`` up to ``depth`` batches
    are rendered ahead in a second thread (errors there are raised here, in order)."""
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
            put(_Failed(error))
            return
        put(_END)

    thread = threading.Thread(target=work, name="drkit-render-ahead", daemon=True)
    thread.start()
    try:
        while (got := out.get()) is not _END:
            if isinstance(got, _Failed):
                raise got.error
            yield got
    finally:
        stop.set()
        thread.join()
