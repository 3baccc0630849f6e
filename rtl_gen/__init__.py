"""Amaranth components implementing exactly what golden/ specifies, grouped as the block diagram
of docs/accelerator.md draws them:

    top.py        the accelerator: one per hardware configuration
    host/         host interface: AXI4-Lite CSR block and its register table, the DMA (AXI4 masters)
    control/      controller (header and program fetch, checks, dispatch), stream loader, descriptor decode
    buffers/      buffer fabric (B0..B3, KB, VB), weight ring, activation table, LOAD/STORE, shared ports
    array/        the MAC array unit: operand fetch, MAC array, drain, epilogue, softmax, MATMUL/ATTENTION sequencing
    norm/         the LayerNorm unit
    selector/     selector units: GMEAN, DECIDE, PACKAGE, COMPACT, the selection state and its STORE
    primitives/   rounding and saturation, reciprocal, square roots, exp, PWL, block RAM, FIFOs, gearbox, pipeline
    tools/        Verilog conversion, Yosys synthesis, the cycle model, generated doc sections
"""
