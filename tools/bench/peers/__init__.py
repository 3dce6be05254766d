"""The peer benchmark's parts: ONNX export, ONNX Runtime and PyTorch runners,
FLOP count, report."""
