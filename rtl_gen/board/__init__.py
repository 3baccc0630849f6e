"""From Verilog to a ZCU102: the board directory `spvit board` writes.

    zynqmp.py    the target: part, board preset, PS ports and names, what the PS can connect
    wrapper.py   the top wrapper with Xilinx interface attributes (the one interface description)
    vivado.py    build.tcl, package_ip.tcl (heads generated, bodies in tcl/), constraints.xdc
    readme.py    the directory's README.md
    files.py     every file of the directory and its manifest
    c/driver.c   the C example driver (Linux UIO; a socket variant runs it against the simulated RTL)
"""
