"""Stage 2 of cloudcover: int8 TFLite / ONNX export with host parity, and TVM compilation for riscv64."""
