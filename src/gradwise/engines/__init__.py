"""Inference engines behind the nn.Module interface, and the loader of optimised variants.

A variant folder (RUN/artifacts/<variant>/, written by `gradwise.deploy`) names its engine
in model.json's `backend` entry; `loader.load_variant_model` builds the module that runs it:

    onnxruntime   onnx_runtime.OnnxModule: an ONNX Runtime session
    openvino      openvino_runtime.OpenVINOModule: a compiled OpenVINO model
    torch-int8    torch_int8.torch_dynamic_int8: Linear / LSTM / GRU dynamically int8
    torch-bf16    torch_bf16.Bf16Module: bf16 weights, float in and out

This package sits below the Run (`Run.load` calls the loader); making a variant (export,
quantisation, the trade-off) is `gradwise.deploy`'s, above it. Nothing here is imported at
start-up: onnxruntime and openvino load only inside the functions that use them.
"""
