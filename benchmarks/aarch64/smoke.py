"""A torch smoke test, one step at a time, for a process that an illegal instruction may kill.

Runs inside the arm64 venv under qemu-user. Before each step it prints ``STEP name`` and after it
``OK name seconds`` (flushed), so when SIGILL kills the process the host knows which step died.
The steps cover what the reported Raspberry Pi crashes hit: the import itself (2.4.0's
libarm_compute, 2.10.0's mimalloc constructor), GEMM and convolution with backward (the training
path), and TorchScript (2.6.0's crash was in ``torch.jit.script``). The last line is a JSON summary.
"""

import json
import sys
import time

info: dict = {}


def step(name, func):
    print(f"STEP {name}", flush=True)
    start = time.perf_counter()
    func()
    print(f"OK {name} {time.perf_counter() - start:.1f}", flush=True)


def do_import():
    global torch
    import torch
    info["torch"] = torch.__version__
    info["threads"] = torch.get_num_threads()
    capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    info["cpu_capability"] = capability() if capability else None  # the SIMD kernels torch picked


def do_matmul():
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    err = (a @ b - (a.double() @ b.double()).float()).abs().max().item()
    assert err < 1e-3, err
    info["matmul_max_err"] = err


def do_conv_backward():
    conv = torch.nn.Conv2d(3, 16, 3, padding=1)
    bn = torch.nn.BatchNorm2d(16)
    x = torch.randn(8, 3, 32, 32)
    loss = torch.nn.functional.relu(bn(conv(x))).mean()
    loss.backward()
    assert torch.isfinite(conv.weight.grad).all()


def do_jit_script():
    def f(x):
        return x.sin() + x.cos()
    scripted = torch.jit.script(f)
    x = torch.randn(10)
    assert torch.allclose(scripted(x), f(x))


def do_torchvision():
    import torchvision
    info["torchvision"] = torchvision.__version__


def main():
    steps = [("import", do_import), ("matmul", do_matmul), ("conv_backward", do_conv_backward),
             ("jit_script", do_jit_script), ("torchvision", do_torchvision)]
    failed = None
    for name, func in steps:
        try:
            step(name, func)
        except Exception as exc:  # a Python-level failure; SIGILL never gets here
            print(f"FAIL {name} {type(exc).__name__}: {exc}", flush=True)
            failed = failed or name
    info["failed_step"] = failed
    print("SUMMARY " + json.dumps(info), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
