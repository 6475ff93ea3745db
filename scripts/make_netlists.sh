#!/usr/bin/env bash
# Regenerate the example decks in netlists/ from the small trained model kept there.
#   bash scripts/make_netlists.sh            # decks from netlists/model.npz
#   bash scripts/make_netlists.sh --retrain  # train the small model again first
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--retrain" ] || [ ! -f netlists/model.npz ]; then
    .venv/bin/python - <<'PY'
from cosim import Model, SRNN
from cosim.crossbar import Compact
from cosim.data import EncodedImages, digits_images

(img, y), _ = digits_images()
net = SRNN(64, 16, 10, neuron="alif", n_adaptive=8, seed=0,
           crossbar=Compact(r_word=1.0, r_bit=1.0, read="nonlinear"))
# train on ideal arrays (fast), keep the memtransistor arrays as the saved backend
ideal = SRNN(64, 16, 10, neuron="alif", n_adaptive=8, seed=0)
Model(ideal, lr=3e-3).train(EncodedImages(img, T=50), y, epochs=20, progress=False)
net.set_weights(ideal.weights, bias_out=ideal.bias_out)
Model(net).save("netlists/model.npz")
PY
fi
rm -rf netlists/tran netlists/*.cir
.venv/bin/cosim netlist netlists/model.npz --out netlists --sample 0 --step 25
