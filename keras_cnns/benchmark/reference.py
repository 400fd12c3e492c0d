"""The plain-PyTorch reference: He et al.'s CIFAR ResNets, written directly in PyTorch.

``reference_resnet(depth)`` has the shape and parameter count of ``resnet{depth}_cifar``
(ResNet-56: 853,018 trainable; option-A shortcuts); ``reference_augment`` is the same pad-crop
and flip on the device; ``measure_reference`` times the reference of a case's ResNet like the
Keras rows (eager, channels-last, ``torch.autocast`` for the mixed precisions), on the GPU when
there is one and on the CPU otherwise, so each CIFAR ResNet row shows its ratio to its own
depth's reference. ``Reference`` trains it pass by pass: on a CPU it takes turns with the
Keras rows of the worker process it joins.
"""

from __future__ import annotations

import math
import time

from keras_cnns.benchmark.cases import (
    IMAGE_SHAPE,
    L2,
    LEARNING_RATE,
    NUM_CLASSES,
    REFERENCE,
    Case,
    Sizes,
    reference_depth,
)
from keras_cnns.benchmark.measure import PeakMemory, device_label, throughput_row


def reference_resnet(depth: int = 56, num_classes: int = NUM_CLASSES):
    """He et al. 2016's CIFAR ResNet in plain PyTorch: option-A shortcuts (stride-2 subsampling
    and zero-padded channels), no conv bias, batch norm, 16/32/64 filters; the same layers and
    parameter count as ``build_model(f"resnet{depth}_cifar")``."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.pad = cout - cin
            self.stride = stride

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            shortcut = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
            if self.pad:
                shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.pad))  # zero channels at the end
            return F.relu(out + shortcut)

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            n = (depth - 2) // 6
            self.stem = nn.Sequential(
                nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
            )
            blocks, cin = [], 16
            for cout, stride in ((16, 1), (32, 2), (64, 2)):
                for i in range(n):
                    blocks.append(Block(cin, cout, stride if i == 0 else 1))
                    cin = cout
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(64, num_classes)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

        def forward(self, x):
            x = self.blocks(self.stem(x))
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    return ResNet()


def reference_augment(x, generator):
    """``pad_crop`` (4 px of zeros, a random 32x32 crop) and ``flip`` of an NCHW batch, on its device."""
    import torch
    from torch.nn import functional as F

    n, _, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4)).permute(0, 2, 3, 1)  # NHWC
    dy = torch.randint(0, 9, (n, 1), device=x.device, generator=generator)
    dx = torch.randint(0, 9, (n, 1), device=x.device, generator=generator)
    rows = dy + torch.arange(h, device=x.device)
    cols = dx + torch.arange(w, device=x.device)
    out = padded[
        torch.arange(n, device=x.device)[:, None, None], rows[:, :, None], cols[:, None, :]
    ]
    flip = torch.rand(n, device=x.device, generator=generator) < 0.5
    out = torch.where(flip[:, None, None, None], out.flip(2), out)
    return out.permute(0, 3, 1, 2)  # an NCHW view of NHWC memory: channels-last


def measure_reference(case: Case, sizes: Sizes, *, isolated: bool) -> dict:
    """Time the plain-PyTorch twin of ``case.model`` on ``case`` (eager, channels-last, autocast)."""
    reference = Reference(case, sizes, isolated=isolated)
    for _ in range(sizes.warmup + sizes.repeats):
        reference.take_turn()
    (row,) = reference.rows()
    return row


class Reference:
    """The plain-PyTorch twin of ``case.model``, built and fed, ready to train pass by pass
    (``take_turn``): alone in its worker (``measure_reference``), or taking turns with the
    Keras rows of a worker on a CPU (``runner.measure_in_turns``)."""

    def __init__(self, case: Case, sizes: Sizes, *, isolated: bool):
        import torch

        self.case, self.sizes = case, sizes
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        torch.manual_seed(0)
        self.memory = PeakMemory(REFERENCE, isolated)
        self.model = reference_resnet(reference_depth(case.model)).to(
            self.device, memory_format=torch.channels_last
        )
        self.params = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        # The paper's "weight decay 1e-4" is torch SGD's weight_decay, the engine's L2 5e-5.
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=LEARNING_RATE, momentum=0.9, weight_decay=2 * L2
        )
        self.dtype = {"mixed_bfloat16": torch.bfloat16, "mixed_float16": torch.float16}.get(
            case.precision
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype is torch.float16)
        self.steps = math.ceil(sizes.images / case.batch_size)
        n = self.steps * case.batch_size
        self.generator = torch.Generator(device=self.device).manual_seed(0)
        x = torch.randn(n, 3, *IMAGE_SHAPE[:2], device=self.device, generator=self.generator)
        self.x = x.contiguous(memory_format=torch.channels_last)
        self.y = torch.randint(0, NUM_CLASSES, (n,), device=self.device, generator=self.generator)
        self.losses: list[float] = []
        self.seconds: list[float] = []
        self.model.train()

    def take_turn(self) -> None:
        """Train one pass over the images, timed."""
        self.seconds.append(self.timed_pass())

    def rows(self) -> list[dict]:
        """The one row of the passes taken (``take_turn``)."""
        return [self.row(self.seconds)]

    def timed_pass(self) -> float:
        """Train one pass over the images; its seconds."""
        import torch
        from torch.nn import functional as F

        case, dtype, batch = self.case, self.dtype, self.case.batch_size
        start = time.perf_counter()
        loss = None
        for i in range(self.steps):
            xb, yb = self.x[i * batch : (i + 1) * batch], self.y[i * batch : (i + 1) * batch]
            if case.augment:
                xb = reference_augment(xb, self.generator)
            with torch.autocast(
                self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None
            ):
                loss = F.cross_entropy(self.model(xb), yb)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.losses.append(float(loss.detach()))  # waits for the last step, as Keras' logs do
        return time.perf_counter() - start

    def row(self, seconds: list[float]) -> dict:
        """The table row of the passes timed in ``seconds`` (the first ``sizes.warmup`` untimed)."""
        peak, note = self.memory.peak()
        row = throughput_row(
            self.case,
            seconds[self.sizes.warmup :],
            seconds[0],
            self.steps,
            data="device",
            jit_compile=False,
            peak_memory_mib=peak,
            memory_note=note,
            trainable_params=self.params,
            device=device_label(REFERENCE),
        )
        if not all(math.isfinite(v) for v in self.losses):
            row["status"] = "diverged: the loss went non-finite"
        return row
