"""A small training run for the data-parallel tests (tests/test_mpi.py).

``python _mpi_worker.py JSON`` trains a tiny conv net on 24 random 8 x 8
images (16 training, 8 validation) with batches of 8 and writes each
worker's final weights and validation statistics to
``<exp>/out-<rank>.npz``.  JSON keys: ``exp`` (expDir), ``epochs``,
``sub`` (numSubBatches, default 1), ``fail_rank`` (that worker's third
``get_batch`` call raises), ``verbose``, ``trainer`` (``'simplenn'``,
default, or ``'dagnn'``: the same net after ``DagNN.fromSimpleNN``,
trained with ``cnn_train_dag``).  ``run(config)`` does the same
in-process.
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from simplenn import cnn_train  # noqa: E402
from simplenn.training import get_communicator  # noqa: E402


def make_imdb():
    rng = np.random.default_rng(0)
    n = 24
    data = rng.standard_normal((8, 8, 1, n)).astype(np.float32)
    labels = rng.integers(1, 4, size=n).astype(np.float64)
    return {"images": {"data": data, "labels": labels,
                       "set": np.r_[np.ones(16), 2 * np.ones(8)]}}


def make_net():
    rng = np.random.default_rng(1)

    def conv(shape):
        return {"type": "conv",
                "weights": [0.1 * rng.standard_normal(shape).astype(np.float32),
                            np.zeros((1, shape[3]), np.float32)]}

    return {"layers": [conv((3, 3, 1, 4)), {"type": "relu"},
                       {"type": "pool", "pool": [2, 2], "stride": 2},
                       conv((3, 3, 4, 3)), {"type": "softmaxloss"}]}


def run(config):
    rank = get_communicator().rank
    calls = [0]

    def get_batch(imdb, batch):
        calls[0] += 1
        if config.get("fail_rank") == rank and calls[0] == 3:
            raise RuntimeError("get_batch broke on purpose")
        return imdb["images"]["data"][:, :, :, batch], imdb["images"]["labels"][batch]

    options = dict(expDir=config["exp"], numEpochs=config["epochs"], batchSize=8,
                   numSubBatches=config.get("sub", 1), learningRate=0.1, plotStatistics=False,
                   verbose=config.get("verbose", False))
    if config.get("trainer") == "dagnn":
        import dagnn

        def get_inputs(imdb, batch):
            images, labels = get_batch(imdb, batch)
            return ["input", images, "label", labels]

        net = dagnn.DagNN.fromSimpleNN(make_net(), canonicalNames=True)
        net, info = dagnn.cnn_train_dag(net, make_imdb(), get_inputs, **options)
        arrays = {f"p_{param.name}": np.asarray(param.value) for param in net.params}
        arrays["val_top1err"] = np.asarray(info.val.objective)  # no error layer here
    else:
        net, info = cnn_train(make_net(), make_imdb(), get_batch, **options)
        arrays = {f"w{l}_{j}": np.asarray(w) for l, layer in enumerate(net.layers)
                  for j, w in enumerate(layer.weights)}
        arrays["val_top1err"] = np.asarray(info.val.top1err)
    arrays["val_num"] = np.asarray(info.val.num)
    arrays["train_objective"] = np.asarray(info.train.objective)
    np.savez(os.path.join(config["exp"], f"out-{rank}.npz"), **arrays)
    return net, info


if __name__ == "__main__":
    run(json.loads(sys.argv[1]))
