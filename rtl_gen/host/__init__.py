"""Host interface: the AXI4-Lite CSR block (one register table, rtl_gen/host/regmap.py) and the
DMA (P AXI4 read ports for the program and the data stream, a write path for STORE)."""
