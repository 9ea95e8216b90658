"""Device-to-host copies that do not stop the device.

Reading a CUDA tensor on the host (`.cpu()`, `.tolist()`, `bool(...)`) waits until every kernel
launched so far has run: the GPU then idles while Python prepares the next ones. A `HostCopy`
queues the copies into page-locked memory and records an event after them; `wait()` blocks only
until that event, while the kernels launched after it keep the GPU busy. The runner resolves a
chain step's copies one step later (runner.py), so a step costs no sync at all.
On a CPU the tensors already are host tensors and nothing is copied.
"""

from __future__ import annotations

import torch


class HostCopy:
    """Host copies of `tensors`, started now; `wait()` returns them once they have landed."""

    def __init__(self, tensors: list[torch.Tensor]):
        self._event = None
        cuda = [t.device for t in tensors if t.device.type == "cuda"]
        if cuda:
            self._host = [
                torch.empty(t.shape, dtype=t.dtype, pin_memory=True).copy_(t, non_blocking=True)
                if t.device.type == "cuda"
                else t
                for t in tensors
            ]
            # On the stream the copies went to: that of the tensors' device, which need not be
            # the current device (a model on cuda:1).
            self._event = torch.cuda.Event()
            self._event.record(torch.cuda.current_stream(cuda[0]))
        else:
            self._host = [t.cpu() for t in tensors]

    def wait(self) -> list[torch.Tensor]:
        if self._event is not None:
            self._event.synchronize()
            self._event = None
        return self._host
