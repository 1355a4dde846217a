"""Training speed: ssd_core's engine against the book's own training loop, in one process.

Both sides run in the same process with the same settings (glibc allocator tuned by
``ssd_core.device.tune_cpu_allocator``, one intra-op thread per core by
``configure_cpu_threads``), interleaved step by step so that other load on the machine hits
both alike; img/s are medians over the timed rounds, whole steps (data included).

- ``book loop``: ssd_core/book_train.py, the book's PyTorch edition as written (BookTinySSD in
  NCHW with anchors recomputed every forward, tests/book.book_multibox_target, calc_loss, SGD
  lr 0.2 wd 5e-4, cls_eval/bbox_eval as Python floats every step), fed as the book feeds it:
  every image held in memory as one uint8 tensor (its banana loader), batches cut from it.
- ``engine, same images``: ssd_core.Trainer on the same pre-rendered images
  (device_data="on": one uint8 tensor on the device, batches indexed there).
- ``engine, real data path``: the Trainer on the SyntheticDetection dataset itself
  (device_data="off": every image drawn with PIL in the DataLoader, as a first epoch pays).

Then a profile of one engine step and one book step (ms and share per phase), the compute limit
(FLOP per image counted by torch's FlopCounterMode over forward + backward; this machine's fp32
matmul GFLOP/s measured here), and the other things tried, each on the network step alone
(forward + backward + SGD step on one fixed batch), interleaved with the shipped setting.

Run: ``python bench/bench_train.py [--device cuda] [--steps 6] [--batch 32] [--no-extras]``.
On CUDA the steps are timed in blocks of ``--block`` with one synchronize per block.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from ssd_core import device as devmod
from ssd_core.book_train import BookTinySSD, book_train_step, book_trainer
from ssd_core.config import TrainConfig
from ssd_core.data import SyntheticDetection
from ssd_core.data.device_data import DeviceData
from ssd_core.engine import Trainer
from ssd_core.engine import trainer as trainer_module
from ssd_core.model import TinySSD

PHASES = ("data", "forward", "target", "loss", "backward", "optimizer", "metrics", "logging")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- the two loops as step sources


class BookLoop:
    """The book's loop over batches cut from the in-memory image tensor."""

    def __init__(self, data: DeviceData, batch: int, device):
        torch.manual_seed(0)
        self.net = BookTinySSD(num_classes=len(data.class_names)).to(device)
        self.trainer = book_trainer(self.net)
        self.data, self.batch, self.device = data, batch, device
        self.metric = [0.0] * 4
        self.i = 0
        self.net.train()

    def batch_at(self):
        n = len(self.data)
        idx = torch.arange(self.i, self.i + self.batch) % n
        self.i = (self.i + self.batch) % n
        # The banana dataset's __getitem__: features[idx].float(); the loader stacks them.
        return self.data.images[idx.to(self.data.device)].float() / 255, self.data.targets[
            idx.to(self.data.device)]

    def step(self, timer=None):
        X, Y = self.batch_at()
        book_train_step(self.net, self.trainer, X, Y, self.device, self.metric, timer)


class EngineLoop:
    """ssd_core.Trainer's fit() advanced one step at a time (log_every=1: a record a step)."""

    def __init__(self, ds, batch: int, device, steps: int, rendered=None, **cfg):
        config = TrainConfig(batch_size=batch, epochs=10**6, log_every=1, device=str(device),
                             input_size=ds.image_size, **cfg)
        self.trainer = Trainer(config, ds)
        self.fit = self.trainer.fit()
        self.rendered = rendered

    def _setup(self):
        # The Trainer renders the set in its setup; hand it the copy rendered already.
        real = trainer_module.device_data
        if self.rendered is not None:
            trainer_module.device_data = lambda config, data, device, **kw: self.rendered
        try:
            return next(self.fit)
        finally:
            trainer_module.device_data = real

    def step(self, timer=None):
        self.trainer.on_phase = timer
        rec = self._setup() if self.trainer.step == 0 else next(self.fit)
        while rec["kind"] != "step":
            rec = next(self.fit)
        self.trainer.on_phase = None


def time_rounds(loops: dict, rounds: int, block: int, device) -> dict:
    """Interleaved: each round runs ``block`` steps of every loop in turn -> img/s lists."""
    times = {k: [] for k in loops}
    for r in range(rounds + 1):
        for name, (loop, batch) in loops.items():
            sync(device)
            t = time.perf_counter()
            for _ in range(block):
                loop.step()
            sync(device)
            if r:  # round 0 warms up (and sets the engine up)
                times[name].append(batch * block / (time.perf_counter() - t))
    return times


class PhaseTimer:
    """Wall time per phase name (synchronizing a GPU at each boundary)."""

    def __init__(self, device):
        self.device, self.ms = device, {p: [] for p in PHASES}
        self.reset()

    def reset(self):
        sync(self.device)
        self.t = time.perf_counter()
        self.cur = {p: 0.0 for p in PHASES}

    def __call__(self, name):
        sync(self.device)
        now = time.perf_counter()
        self.cur[name] += (now - self.t) * 1000
        self.t = now

    def close(self):
        for p in PHASES:
            self.ms[p].append(self.cur[p])

    def medians(self):
        return {p: statistics.median(v) for p, v in self.ms.items()}


def profile(loop, device, steps: int, first_phase: str) -> dict:
    """Median ms per phase over ``steps`` steps; the time before the loop's first phase mark
    (fetching the batch, the consumer's turn) goes to ``first_phase``."""
    timer = PhaseTimer(device)
    for _ in range(steps):
        timer.reset()
        loop.step(timer)
        timer.close()
    return timer.medians()


# ---------------------------------------------------------------- compute limit


def kernel_seconds(fn, device, warmup: int, reps: int) -> list[float]:
    """Seconds of each of ``reps`` calls of ``fn`` after ``warmup`` calls, synchronized."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        ts.append(time.perf_counter() - t)
    return ts


def matmul_gflops(device, n=2048, reps=10, dtype=torch.float32) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    ts = kernel_seconds(lambda: a @ b, device, 3, reps)
    return 2 * n**3 / statistics.median(ts) / 1e9


def conv_gflops(device, channels=64, side=64, batch=32, reps=5, dtype=torch.float32) -> float:
    """GFLOP/s of one 3x3 convolution forward (channels_last), TinySSD's own kind of kernel:
    oneDNN's convolutions can run faster than a square matmul on the same cores."""
    x = torch.randn(batch, channels, side, side, device=device, dtype=dtype).contiguous(
        memory_format=torch.channels_last)
    w = torch.randn(channels, channels, 3, 3, device=device, dtype=dtype).contiguous(
        memory_format=torch.channels_last)
    ts = kernel_seconds(lambda: torch.nn.functional.conv2d(x, w, padding=1), device, 2, reps)
    return 2 * batch * side * side * channels * channels * 9 / min(ts) / 1e9


def gflop_per_image(num_classes, size, device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    net = TinySSD(num_classes).to(device)
    X = torch.rand(4, 3, size, size, device=device)
    with FlopCounterMode(display=False) as fc:
        _, c, b = net(X)
        (c.mean() + b.mean()).backward()
    return fc.get_total_flops() / 4 / 1e9


# ---------------------------------------------------------------- other things tried


class NetStep:
    """Forward + backward + SGD step of TinySSD on one fixed batch, in a given setting."""

    def __init__(self, num_classes, X, device, channels_last=True, inplace=False,
                 bf16=False, compiled=False, strip=()):
        torch.manual_seed(0)
        net = TinySSD(num_classes)
        for m in net.modules():
            if isinstance(m, torch.nn.ReLU):
                m.inplace = inplace
        # A floor, not a setting: layers of these types replaced by identities.
        for m in list(net.modules()):
            for name, child in list(m.named_children()):
                if isinstance(child, strip):
                    setattr(m, name, torch.nn.Identity())
        net.to(device)
        if channels_last:
            net.to(memory_format=torch.channels_last)
            X = X.contiguous(memory_format=torch.channels_last)
        self.X, self.device, self.bf16 = X, device, bf16
        self.opt = torch.optim.SGD(net.parameters(), lr=0.2, weight_decay=5e-4)
        self.net = torch.compile(net) if compiled else net

    def step(self, timer=None):
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            _, c, b = self.net(self.X)
        (c.float().mean() + b.float().mean()).backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)


def floor(num_classes, batch, size, device, rounds, block) -> dict:
    """img/s of the network step as shipped and with BatchNorm, then BatchNorm and ReLU, taken
    out (interleaved): what the convolutions (and pooling) alone cost, the part of the step
    that no change to the loop around them can make faster in fp32."""
    X = torch.rand(batch, 3, size, size, device=device)
    bn, relu = torch.nn.BatchNorm2d, torch.nn.ReLU
    loops = {
        "network step as shipped (channels_last fp32)": (NetStep(num_classes, X, device), batch),
        "  BatchNorm taken out": (NetStep(num_classes, X, device, strip=(bn,)), batch),
        "  BatchNorm and ReLU taken out: convolutions + pooling": (
            NetStep(num_classes, X, device, strip=(bn, relu)), batch),
    }
    return {k: statistics.median(v) for k, v in time_rounds(loops, rounds, block, device).items()}


def extras(ds, data, batch, size, device, rounds, block, compile_too) -> list[tuple]:
    """Rows (what, img/s of it, img/s of the shipped setting, ratio, note)."""
    C = len(ds.class_names)
    X = torch.rand(batch, 3, size, size, device=device)
    loops = {
        "shipped: channels_last fp32": (NetStep(C, X, device), batch),
        "NCHW (the book's format)": (NetStep(C, X, device, channels_last=False), batch),
        "in-place ReLU": (NetStep(C, X, device, inplace=True), batch),
        "bf16 autocast": (NetStep(C, X, device, bf16=True), batch),
    }
    t = time_rounds(loops, rounds, block, device)
    base = statistics.median(t["shipped: channels_last fp32"])
    rows = [(k, statistics.median(v), base, "network step alone") for k, v in t.items()
            if not k.startswith("shipped")]
    # Loop-level variants: one fewer host sync per step, DataLoader workers.
    eng = {
        "engine, real data path": (EngineLoop(ds, batch, device, rounds, device_data="off"),
                                   batch),
        "  + 1 DataLoader worker": (EngineLoop(ds, batch, device, rounds, device_data="off",
                                               num_workers=1), batch),
        "engine, same images": (EngineLoop(ds, batch, device, rounds, device_data="on",
                                           rendered=data), batch),
    }
    deferred = EngineLoop(ds, batch, device, rounds, device_data="on", rendered=data)
    eng["  step sums read every 10 steps, not every step"] = (deferred, batch)
    deferred.step()  # sets the trainer up; then read the sums like the one-GPU loop does
    deferred.trainer._sync_every = 10
    t = time_rounds(eng, rounds, block, device)
    real, same = statistics.median(t["engine, real data path"]), statistics.median(
        t["engine, same images"])
    rows.append(("1 DataLoader worker, persistent (started once for every epoch)",
                 statistics.median(t["  + 1 DataLoader worker"]), real,
                 "vs real data path, 0 workers"))
    rows.append(("render once (uint8 tensor) vs PIL per step", same, real,
                 "vs real data path"))
    rows.append(("host read of step sums every 10 steps",
                 statistics.median(t["  step sums read every 10 steps, not every step"]), same,
                 "vs every step"))
    for loop, _ in eng.values():
        loop.fit.close()
    if compile_too:
        net = NetStep(C, X, device, compiled=True)
        t0 = time.perf_counter()
        net.step()
        sync(device)
        cold = time.perf_counter() - t0
        eager = loops["shipped: channels_last fp32"][0]
        t = time_rounds({"compiled": (net, batch), "eager": (eager, batch)},
                        rounds, block, device)
        rows.append((f"torch.compile (cold first step {cold:.0f} s)",
                     statistics.median(t["compiled"]), statistics.median(t["eager"]),
                     "warm, vs eager"))
    return rows


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--steps", type=int, default=6, help="timed rounds (+1 warm-up)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--block", type=int, default=0,
                    help="steps per timed block (default: 1 on CPU, 20 on CUDA)")
    ap.add_argument("--images", type=int, default=0,
                    help="images rendered (default: batch * (steps + 2), at most 4096)")
    ap.add_argument("--no-extras", action="store_true", help="skip the other things tried")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile")
    args = ap.parse_args()
    # The book's bbox_eval calls float() on a tensor that requires grad; it warns every step.
    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")

    device = devmod.resolve_device(args.device)
    if device.type == "cpu":
        devmod.tune_cpu_allocator()
        devmod.configure_cpu_threads()
    block = args.block or (20 if device.type == "cuda" else 1)
    n = args.images or min(4096, args.batch * (args.steps + 2))
    ds = SyntheticDetection(n, seed=0, image_size=args.size, preset="default")
    t0 = time.perf_counter()
    data = DeviceData.from_dataset(ds, device)
    render_s = time.perf_counter() - t0
    print(f"training step, batch {args.batch}, {args.size}x{args.size}, {device_name(device)}, "
          f"{args.steps} timed rounds of {block} step(s), median; {n} synthetic images "
          f"(default preset) rendered once in {render_s:.1f} s\n")

    loops = {
        "book loop (in-memory images)": (BookLoop(data, args.batch, device), args.batch),
        "engine, same images": (EngineLoop(ds, args.batch, device, args.steps,
                                           device_data="on", rendered=data), args.batch),
        "engine, real data path": (EngineLoop(ds, args.batch, device, args.steps,
                                              device_data="off"), args.batch),
        "engine, same images, precision=bf16": (EngineLoop(
            ds, args.batch, device, args.steps, device_data="on", rendered=data,
            precision="bf16"), args.batch),
    }
    times = time_rounds(loops, args.steps, block, device)
    book_v = times["book loop (in-memory images)"]
    book = statistics.median(book_v)
    # Other load on the machine moves every figure; a step and the book step next to it see
    # about the same load, so the per-round ratio is the steadier comparison.
    print("| loop | img/s median | best | min-max | vs book (medians) | vs book (median of "
          "per-round ratios) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, v in times.items():
        med = statistics.median(v)
        paired = statistics.median(a / b for a, b in zip(v, book_v))
        print(f"| {name} | {med:.1f} | {max(v):.1f} | {min(v):.1f}-{max(v):.1f} | "
              f"{med / book:.2f}x | {paired:.2f}x |")

    prof_steps = max(2, min(args.steps, 4))
    eng_prof = profile(loops["engine, same images"][0], device, prof_steps, "data")
    book_prof = profile(loops["book loop (in-memory images)"][0], device, prof_steps, "data")
    print(f"\nprofile, one step (median of {prof_steps}; "
          f"{'synchronized at every phase' if device.type == 'cuda' else 'wall time'}):\n")
    print("| phase | engine ms | engine share | book ms | book share |")
    print("|---|---:|---:|---:|---:|")
    et, bt = sum(eng_prof.values()), sum(book_prof.values())
    for p in PHASES:
        print(f"| {p} | {eng_prof[p]:.1f} | {100 * eng_prof[p] / et:.1f}% | {book_prof[p]:.1f} |"
              f" {100 * book_prof[p] / bt:.1f}% |")
    print(f"| total | {et:.1f} | | {bt:.1f} | |")
    for name, prof, tot in (("engine", eng_prof, et), ("book", book_prof, bt)):
        print(f"{name}: data + target assignment = "
              f"{100 * (prof['data'] + prof['target']) / tot:.1f}% of the step")

    gflops = max(matmul_gflops(device), conv_gflops(device))
    per_img = gflop_per_image(len(ds.class_names), args.size, device)
    limit = gflops / per_img
    eng = statistics.median(times["engine, same images"])
    print(f"\ncompute limit: {per_img:.2f} GFLOP per image (forward + backward); the faster of an "
          f"fp32 2048^2 matmul and a 3x3 64-channel convolution runs at {gflops:.0f} GFLOP/s here "
          f"-> {limit:.1f} img/s; engine reaches {eng:.1f} img/s = {100 * eng / limit:.0f}% "
          f"(real data path {100 * statistics.median(times['engine, real data path']) / limit:.0f}"
          f"%), book loop {100 * book / limit:.0f}%; 1.5x the book loop would be "
          f"{1.5 * book:.1f} img/s = {150 * book / limit:.0f}% of the limit")
    bf16 = statistics.median(times["engine, same images, precision=bf16"])
    native = devmod.native_bf16(device)
    # Emulated bf16 (a CPU without AVX-512 BF16 / AMX, or ATEN_CPU_CAPABILITY=avx2) runs at a
    # few GFLOP/s: the full-size kernels would take minutes, so smaller ones measure its rate.
    small = {} if native else {"n": 512, "reps": 3}
    bf16_gflops = max(matmul_gflops(device, dtype=torch.bfloat16, **small),
                      conv_gflops(device, dtype=torch.bfloat16,
                                  **({} if native else {"batch": 2, "reps": 2})))
    bf16_limit = bf16_gflops / per_img
    print(f"bf16: {bf16_gflops:.1f} GFLOP/s here -> {bf16_limit:.1f} img/s; the engine in bf16 "
          f"reaches {bf16:.1f} img/s = {100 * bf16 / bf16_limit:.0f}% of that. Native bf16 on "
          f"this device: {native}; precision='fast' (the Classroom demo's) picks bf16 only then"
          + ("" if native else ", so here it trains in fp32 (bf16 is emulated and slow)"))
    print(f"goals: >= 25 img/s and >= 1.5x the book loop: fp32 {eng:.1f} img/s, "
          f"{eng / book:.2f}x (real data path "
          f"{statistics.median(times['engine, real data path']) / book:.2f}x); "
          f"bf16 {bf16:.1f} img/s, {bf16 / book:.2f}x; 25 img/s is {2500 / limit:.0f}% of "
          f"this machine's fp32 limit")
    for loop, _ in loops.values():
        if isinstance(loop, EngineLoop):
            loop.fit.close()

    fl = floor(len(ds.class_names), args.batch, args.size, device, max(2, args.steps // 2),
               block)
    print("\nwhat stands in the way (the network step alone, fp32, interleaved; the two lower "
          "rows are floors, not settings):\n")
    print("| network step | img/s | vs book loop | share of the compute limit |")
    print("|---|---:|---:|---:|")
    for name, v in fl.items():
        print(f"| {name} | {v:.1f} | {v / book:.2f}x | {100 * v / limit:.0f}% |")
    convs = fl["  BatchNorm and ReLU taken out: convolutions + pooling"]
    full = fl["network step as shipped (channels_last fp32)"]
    print(f"BatchNorm and ReLU cost {1000 * args.batch * (1 / full - 1 / convs):.0f} ms of a "
          f"{1000 * args.batch / full:.0f} ms network step; with both free, the convolutions "
          f"alone would give {convs / book:.2f}x the book loop")

    if not args.no_extras:
        rows = extras(ds, data, args.batch, args.size, device, max(2, args.steps // 2), block,
                      args.compile)
        print("\nother things tried (interleaved with the setting they replace):\n")
        print("| what | img/s | setting replaced, img/s | ratio | measured on |")
        print("|---|---:|---:|---:|---|")
        for what, v, base, note in rows:
            print(f"| {what} | {v:.1f} | {base:.1f} | {v / base:.2f}x | {note} |")


def device_name(device) -> str:
    return devmod.device_label(device)


if __name__ == "__main__":
    main()
