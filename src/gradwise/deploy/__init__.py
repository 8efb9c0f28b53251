"""What a model costs to run, and the levers that cut it, each with its measured price.

`cost.bench` measures parameters, size, FLOPs, memory, latency and throughput; the levers
(int8 through torch, ONNX Runtime or OpenVINO + NNCF; bf16 where the CPU multiplies it
natively; knowledge distillation) each write an optimised variant, itself a run directory
under RUN/artifacts/<variant>/ that `gradwise.load` reads like any other (model.json's
`backend` entry names the engine, which `gradwise.engines` runs; see `variants.py`);
`tradeoff` re-measures accuracy, calibration and robustness per variant, re-certifies
the run's abstention guarantee for each (`abstention.py`), and recommends one.

Nothing here is imported by `gradwise` at start-up: onnxruntime, openvino and nncf load
only inside the functions that use them.
"""
