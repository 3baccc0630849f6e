"""The board wrapper: the accelerator's top (rtl_gen/top.py) inside a Verilog module whose ports
carry Xilinx interface attributes, so that IP Integrator (a module reference or the packaged IP)
infers every interface without manual mapping (UG994, "Inferring Control Signals in a RTL
Module"; X_INTERFACE_INFO = "<VLNV> <interface> <logical port>", X_INTERFACE_PARAMETER =
"XIL_INTERFACENAME <interface>, <NAME> <value>, ..." on one port of the interface):

    clk       clock (FREQ_HZ, ASSOCIATED_BUSIF every AXI interface, ASSOCIATED_RESET resetn)
    resetn    reset, active low (the core's reset is synchronous active high: inverted and
              registered here, so it also meets timing at the core's fan-out)
    s_axil    AXI4-Lite slave, 32-bit data, the register window's address bits
    m_axi<p>  AXI4 masters of axi_bits, 49-bit addresses (the ZynqMP HP ports'; the core's
              64-bit addresses are cut to them), ID width 1, m_axi0 read/write, the others read
              only; AxLOCK and AxQOS are driven 0
    irq       interrupt, level high

`interfaces(board)` is the one description: the Verilog text, the TCL connections and the tests
all read it. Port widths and directions come from the core's own signature (Accelerator(hw)).
"""
from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Shape
from amaranth.lib.wiring import In

from ..top import Accelerator, module_name
from .zynqmp import HP_ADDR_BITS, Board

AXI = "xilinx.com:interface:aximm:1.0"
CLOCK = "xilinx.com:signal:clock:1.0"
RESET = "xilinx.com:signal:reset:1.0"
INTERRUPT = "xilinx.com:signal:interrupt:1.0"
TIED_OFF = {"arlock": 1, "arqos": 4, "awlock": 1, "awqos": 4}     # AXI4 signals the DMA does not drive


@dataclass(frozen=True)
class Port:
    name: str              # wrapper port
    direction: str         # "input" | "output"
    width: int
    logical: str           # the interface's logical port (AWADDR, CLK, RST, INTERRUPT)
    core: str | None       # the core port it connects to (None: a constant 0 output)


@dataclass(frozen=True)
class Interface:
    name: str
    vlnv: str
    params: tuple          # ((NAME, value), ...) in X_INTERFACE_PARAMETER order
    ports: tuple

    @property
    def kind(self) -> str:
        return {AXI: "axi", CLOCK: "clock", RESET: "reset", INTERRUPT: "interrupt"}[self.vlnv]

    def param(self, name: str):
        return dict(self.params)[name]


def wrapper_name(board: Board) -> str:
    return module_name(board.hw) + "_top"


def core_ports(board: Board) -> dict:
    """Verilog port name -> (direction, width) of the core (Amaranth joins member names with "__")."""
    out = {"clk": ("input", 1), "rst": ("input", 1)}
    top = Accelerator(board.hw)
    top._MustUse__used = True         # only its signature is read here (no "unused elaboratable" warning)
    for path, member in top.signature.members.flatten():
        if member.is_port:
            out["__".join(map(str, path))] = ("input" if member.flow == In else "output",
                                             Shape.cast(member.shape).width)
    return out


def _axi(board: Board, name: str, core: dict, params: dict) -> Interface:
    ports = []
    members = [(k.split("__")[1], k) for k in core if k.startswith(name + "__")]
    for logical, core_name in members:
        direction, width = core[core_name]
        if logical.endswith("addr") and name != "s_axil":
            width = HP_ADDR_BITS
        ports.append(Port(f"{name}_{logical}", direction, width, logical.upper(), core_name))
    writes = any(lg == "awaddr" for lg, _ in members)
    if name != "s_axil":
        ports += [Port(f"{name}_{lg}", "output", w, lg.upper(), None) for lg, w in TIED_OFF.items()
                  if writes or lg.startswith("ar")]
    params = {**params, "READ_WRITE_MODE": "READ_WRITE" if writes else "READ_ONLY", "FREQ_HZ": board.clock_hz}
    return Interface(name, AXI, tuple(params.items()), tuple(ports))


def interfaces(board: Board) -> list[Interface]:
    """Every interface of the wrapper, in port order."""
    hw, core = board.hw, core_ports(board)
    masters = [f"m_axi{p}" for p in range(hw.axi_ports)]
    lite = _axi(board, "s_axil", core, {"PROTOCOL": "AXI4LITE", "DATA_WIDTH": core["s_axil__wdata"][1],
                                        "ADDR_WIDTH": core["s_axil__awaddr"][1]})
    axi = [_axi(board, m, core, {
        "PROTOCOL": "AXI4", "DATA_WIDTH": hw.axi_bits, "ADDR_WIDTH": HP_ADDR_BITS, "ID_WIDTH": core[f"{m}__arid"][1],
        "HAS_BURST": 1, "HAS_LOCK": 1, "HAS_PROT": 1, "HAS_CACHE": 1, "HAS_QOS": 1, "HAS_REGION": 0,
        "SUPPORTS_NARROW_BURST": 0, "MAX_BURST_LENGTH": 256}) for m in masters]
    clock = Interface("clk", CLOCK, (("ASSOCIATED_BUSIF", ":".join(["s_axil", *masters])),
                                     ("ASSOCIATED_RESET", "resetn"), ("FREQ_HZ", board.clock_hz)),
                      (Port("clk", "input", 1, "CLK", "clk"),))
    reset = Interface("resetn", RESET, (("POLARITY", "ACTIVE_LOW"),), (Port("resetn", "input", 1, "RST", None),))
    irq = Interface("irq", INTERRUPT, (("SENSITIVITY", "LEVEL_HIGH"),), (Port("irq", "output", 1, "INTERRUPT", "irq"),))
    return [clock, reset, lite, *axi, irq]


def _decl(p: Port) -> str:
    rng = f"[{p.width - 1}:0] " if p.width > 1 else ""
    return f"{p.direction:6s} wire {rng}{p.name}"


def wrapper_verilog(board: Board) -> str:
    """The wrapper module's Verilog text (see the module docstring)."""
    core = core_ports(board)
    ifs = interfaces(board)
    name, top = wrapper_name(board), module_name(board.hw)
    lines = [f"// {name}: the SPViT accelerator {top} with Xilinx IP Integrator interface attributes.",
             "// Generated by `spvit board` (rtl_gen/board/wrapper.py); do not edit, regenerate.",
             "`default_nettype none", f"module {name} ("]
    decls = []
    for itf in ifs:
        for i, p in enumerate(itf.ports):
            attrs = [f'(* X_INTERFACE_INFO = "{itf.vlnv} {itf.name} {p.logical}" *)']
            if i == 0:
                params = ", ".join(f"{k} {v}" for k, v in itf.params)
                attrs.append(f'(* X_INTERFACE_PARAMETER = "XIL_INTERFACENAME {itf.name}, {params}" *)')
            decls.append("\n".join(f"  {a}" for a in attrs) + f"\n  {_decl(p)}")
    lines.append(",\n".join(decls))
    lines += [");", "  // the core's reset is synchronous and active high: resetn inverted, registered once",
              "  reg rst = 1'b1;", "  always @(posedge clk) rst <= !resetn;", ""]
    wired = {p.core: p for itf in ifs for p in itf.ports if p.core}
    conns = []
    for port, (direction, width) in core.items():
        rng = f"[{width - 1}:0] " if width > 1 else ""
        if port in ("clk", "rst"):
            conns.append(f"    .{port}({port})")
            continue
        lines.append(f"  wire {rng}core_{port};")
        conns.append(f"    .{port}(core_{port})")
        p = wired.get(port)
        if p is None:
            continue                  # dbg_op: simulation only, left unconnected on the board
        if direction == "output":
            lines.append(f"  assign {p.name} = core_{port}" + (f"[{p.width - 1}:0];" if p.width < width else ";"))
        else:
            lines.append(f"  assign core_{port} = {p.name};")
    for itf in ifs:
        for p in itf.ports:
            if p.core is None and p.direction == "output":
                lines.append(f"  assign {p.name} = {p.width}'d0;")
    lines += ["", f"  {top} core (", ",\n".join(conns), "  );", "endmodule", "`default_nettype wire", ""]
    return "\n".join(lines)
