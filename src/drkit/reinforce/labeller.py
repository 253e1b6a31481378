"""The teacher's top-k for rendered uint8 batches, queued so that the host never waits for it.

On CUDA a full batch's forward pass is a captured CUDA graph (eager launches of two ResNet-50s cost ~10 ms
of host time a batch; the graph replays the same kernels, so labels do not change); other batch sizes and
routed ensembles run eagerly. The top-k is copied to pinned memory behind the forward pass."""
from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch


class Labels:
    """A batch's teacher top-k on its way to the host (ready at once on a CPU)."""

    def __init__(self, ids: torch.Tensor, probs: torch.Tensor):
        self.event = None
        if ids.device.type == "cuda":
            host = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True).copy_(t, non_blocking=True)
                    for t in (ids, probs)]
            self.event = torch.cuda.Event()
            self.event.record(torch.cuda.current_stream(ids.device))  # the copies' device, not the current one
            ids, probs = host
        self.ids, self.probs = ids, probs

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, probabilities) as numpy arrays, sorted by probability."""
        if self.event is not None:
            self.event.synchronize()
        return self.ids.numpy(), self.probs.numpy()


class Labeller:
    """``labeller(images, sample_ids, partners) -> Labels`` for uint8 batches (see the module)."""

    def __init__(self, teacher: torch.nn.Module, device: torch.device, topk: int, graphs: bool = True):
        self.teacher, self.device, self.topk = teacher, device, topk
        self.graphs = graphs and device.type == "cuda" and not getattr(teacher, "routed", False)
        self.captured: dict[tuple[int, ...], tuple[Any, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]] = {}

    @torch.inference_mode()
    def prepare(self, shape: tuple[int, ...]) -> None:
        """Capture the graph for batches of ``shape`` before another thread uses the device (capture
        forbids other work); a model that cannot be captured is labelled eagerly, with a warning."""
        if not self.graphs or shape in self.captured:
            return
        try:
            with torch.cuda.device(self.device):  # capture runs on the current device: make it the teacher's
                self.captured[shape] = self._capture(shape)
        except RuntimeError as error:
            self.graphs = False
            print(f"drkit: warning: the teacher could not be captured as a CUDA graph ({str(error).splitlines()[0]}); "
                  "labelling eagerly", file=sys.stderr)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor, sample_ids: np.ndarray | None = None,
                 partners: np.ndarray | None = None) -> Labels:
        from ..teachers import teacher_topk

        images = images.to(self.device, non_blocking=True)
        graph = self.captured.get(tuple(images.shape)) if self.graphs else None
        if graph is None:
            p, ids = teacher_topk(self.teacher, images, self.topk, sample_ids, partners)
            return Labels(ids, p)
        replay, static_in, (p, ids) = graph
        static_in.copy_(images)
        replay.replay()
        return Labels(ids, p)  # copied out in stream order, before the next replay overwrites them

    def _capture(self, shape: tuple[int, ...]) -> tuple[Any, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        from ..teachers import teacher_topk

        static_in = torch.zeros(shape, dtype=torch.uint8, device=self.device)
        side = torch.cuda.Stream(self.device)  # warm-up off the default stream, as capture requires
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                teacher_topk(self.teacher, static_in, self.topk)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            out = teacher_topk(self.teacher, static_in, self.topk)
        return graph, static_in, out
