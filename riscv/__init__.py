"""Stage 3 of cloudcover: run the compiled model under qemu-riscv64, measure parity and cost, report."""
