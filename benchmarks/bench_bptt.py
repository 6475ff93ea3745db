"""ms per BPTT iteration: cosim vs snnTorch's RLeaky, measured in the same run.

Setting (the project's BPTT reference size): 64 inputs, 100 recurrent units, 10 outputs,
T = 50, batch 32, one thread, one iteration = forward + backward + Adam update; cosim in
float64 and in float32 (SRNN(dtype="float32"); snnTorch computes in float32). snnTorch runs
in the interpreter given by --snntorch-python (a venv with `pip install torch==2.13.0
snntorch`), in a subprocess so the two never share a process; it is skipped with a note when that interpreter is absent.

    OMP_NUM_THREADS=1 python benchmarks/bench_bptt.py --snntorch-python /path/to/venv/bin/python
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

N_IN, N_REC, N_OUT, T, BATCH = 64, 100, 10, 50, 32

SNNTORCH_SCRIPT = r"""
import json, sys, time
import torch, snntorch as snn
torch.set_num_threads(1)
N_IN, N_REC, N_OUT, T, BATCH, ITERS = map(int, sys.argv[1:7])
class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc_in = torch.nn.Linear(N_IN, N_REC)
        self.rlif = snn.RLeaky(beta=0.95, linear_features=N_REC)
        self.fc_out = torch.nn.Linear(N_REC, N_OUT)
    def forward(self, x):
        spk, mem = self.rlif.init_rleaky()
        outs = []
        for t in range(x.shape[0]):
            spk, mem = self.rlif(self.fc_in(x[t]), spk, mem)
            outs.append(self.fc_out(spk))
        return torch.stack(outs).mean(0)
torch.manual_seed(0)
net = Net()
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
x = (torch.rand(T, BATCH, N_IN) < 0.15).float()
y = torch.randint(0, N_OUT, (BATCH,))
loss_fn = torch.nn.CrossEntropyLoss()
def step():
    opt.zero_grad(); loss = loss_fn(net(x), y); loss.backward(); opt.step()
for _ in range(5): step()
t0 = time.perf_counter()
for _ in range(ITERS): step()
print(json.dumps({"ms": (time.perf_counter() - t0) / ITERS * 1e3,
                  "torch": torch.__version__, "snntorch": snn.__version__}))
"""


def cosim_ms(neuron, n_adaptive, iters, rule_name="bptt", dtype="float64"):
    from cosim import Model
    from cosim.network import SRNN

    rng = np.random.default_rng(0)
    x = (rng.random((BATCH, T, N_IN)) < 0.15).astype(float)
    y = rng.integers(0, N_OUT, BATCH)
    net = SRNN(N_IN, N_REC, N_OUT, neuron=neuron, n_adaptive=n_adaptive, seed=0, dtype=dtype)
    model = Model(net, rule=rule_name, lr=1e-3, batch_size=BATCH)
    model.train(x, y, epochs=5, progress=False)           # warm-up, same code path
    t0 = time.perf_counter()
    model.train(x, y, epochs=iters, progress=False)       # one iteration per epoch (N = batch)
    return (time.perf_counter() - t0) / iters * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--snntorch-python", default=os.environ.get("SNNTORCH_PYTHON"))
    args = parser.parse_args()
    print(f"threads: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}; "
          f"{N_IN} in, {N_REC} rec, {N_OUT} out, T={T}, batch {BATCH}, {args.iters} iterations")
    results = {}
    for label, neuron, n_ad, rule, dtype in [
            ("cosim BPTT LIF float64", "lif", None, "bptt", "float64"),
            ("cosim BPTT ALIF/LIF float64", "alif", 50, "bptt", "float64"),
            ("cosim BPTT LIF float32", "lif", None, "bptt", "float32"),
            ("cosim BPTT ALIF/LIF float32", "alif", 50, "bptt", "float32"),
            ("cosim BP   ALIF/LIF float32", "alif", 50, "bp", "float32")]:
        results[label] = cosim_ms(neuron, n_ad, args.iters, rule, dtype)
        print(f"{label:32s} {results[label]:7.2f} ms/iteration")
    peer = None
    if args.snntorch_python and os.path.exists(args.snntorch_python):
        proc = subprocess.run([args.snntorch_python, "-c", SNNTORCH_SCRIPT, str(N_IN), str(N_REC),
                               str(N_OUT), str(T), str(BATCH), str(args.iters)],
                              capture_output=True, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        if proc.returncode == 0:
            peer = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{'snnTorch RLeaky (torch ' + peer['torch'] + ')':32s} {peer['ms']:7.2f} ms/iteration")
            for label in results:
                if "BPTT" in label:
                    print(f"speed-up of {label} over snnTorch: {peer['ms'] / results[label]:.2f}x "
                          f"(goal >= 2x)")
        else:
            print("snnTorch run failed:\n" + proc.stderr[-2000:])
    else:
        print("snnTorch: not measured (pass --snntorch-python PATH to a venv with torch and snntorch)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
