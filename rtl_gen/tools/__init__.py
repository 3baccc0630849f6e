"""Tools around the design: Verilog conversion, Yosys synthesis (per unit), the cycle model and
the generated sections of the docs."""
