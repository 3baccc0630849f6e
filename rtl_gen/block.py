"""Block wrapper: attention engine -> MLP engine -> optional token selector (one DeiT block and,
when the next block has an SPViT selector in front of it, that selector), one weight stream.

i_w (int16[mac_cols]) carries per job: the selector's words (rtl_gen.selector.weight_stream,
each int16[head_dim] word split into head_dim / mac_cols beats, lanes 0..mac_cols-1 first),
then the attention engine's words (rtl_gen.attention.weight_stream), then the MLP engine's
(rtl_gen.mlp.weight_stream); a counter routes them. The selector takes all its words at the
start of a job, so one in-order stream never deadlocks. i_x / n as the attention engine; the
MLP engine takes the attention engine's output tiles directly and feeds the selector. Without
a selector o_y carries the block's output; with one, o_y carries the selector's output tiles
([CLS, kept tokens in input order, earlier packages, new package]) and o_sel / o_kept the
decisions (rtl_gen.selector).

With `instances` (engine kind -> Verilog module name) the wrapper instantiates engines generated
as separate files (what `spvit generate` writes) instead of containing their logic."""
from __future__ import annotations

from amaranth.hdl import ClockSignal, Instance, Module, Mux, ResetSignal, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out, connect

from .arith import WORD
from .attention import AttentionEngine, AttnFormats
from .config import HardwareConfig
from .layernorm import lanes_layout
from .mlp import MlpEngine, MlpFormats


def attn_words(d: int, cols: int) -> int:
    mp = d // cols
    return 4 * mp + 4 * mp * (3 + d)


def mlp_words(d: int, hidden: int, cols: int) -> int:
    return 4 * (d // cols) + (hidden // cols) * (3 + d) + (d // cols) * (3 + hidden)


def sel_words(sf, cols: int) -> int:
    """Beats of i_w that carry the selector's weight stream (int16[head_dim] words)."""
    from .selector import layout
    lay = layout(sf)
    return (lay["nw"] + 3 * lay["nb"]) * (sf.head_dim // cols)


def split_words(words: list[list[int]], cols: int) -> list[list[int]]:
    """int16[k * cols] words -> k beats of int16[cols] each, lanes 0..cols-1 first."""
    return [w[i:i + cols] for w in words for i in range(0, len(w), cols)]


def block_weight_stream(blk, cols: int, sel=None) -> list[list[int]]:
    """The words of i_w for one job: the selector's (if any, split to mac_cols lanes), then the
    attention and MLP engines'."""
    from . import attention, mlp, selector
    head = split_words(selector.weight_stream(sel), cols) if sel is not None else []
    return head + attention.weight_stream(blk, cols) + mlp.weight_stream(blk, cols)


class Gearbox(wiring.Component):
    """Collects `k` int16[cols] beats into one int16[k * cols] word (lanes of the first beat
    lowest). One output word every k + 1 cycles at most; k == 1 passes through a register."""
    def __init__(self, cols: int, k: int):
        self.cols, self.k = cols, k
        super().__init__({
            "i_w": In(stream.Signature(data.ArrayLayout(signed(WORD), cols))),
            "o_w": Out(stream.Signature(data.ArrayLayout(signed(WORD), cols * k))),
        })

    def elaborate(self, platform):
        m = Module()
        C, k = self.cols, self.k
        cnt = Signal(range(k + 1))
        full = Signal()
        m.d.comb += [full.eq(cnt == k), self.i_w.ready.eq(~full), self.o_w.valid.eq(full)]
        with m.If(self.o_w.valid & self.o_w.ready):
            m.d.sync += cnt.eq(0)
        with m.If(self.i_w.valid & self.i_w.ready):
            m.d.sync += cnt.eq(cnt + 1)
            with m.Switch(cnt):
                for i in range(k):
                    with m.Case(i):
                        m.d.sync += [self.o_w.payload[i * C + c].eq(self.i_w.payload[c]) for c in range(C)]
        return m


def instance_of(engine, module: str) -> Instance:
    """An Instance of Verilog module `module` (engine converted with that top name) whose ports
    are `engine`'s own port signals, which the caller then connects like a submodule's."""
    engine._MustUse__used = True            # a port holder here: its logic lives in another file
    ports = {"i_clk": ClockSignal(), "i_rst": ResetSignal()}
    for path, member, value in engine.signature.flatten(engine):
        ports[("i_" if member.flow == In else "o_") + "__".join(map(str, path))] = Value.cast(value)
    return Instance(module, **ports)


class BlockEngine(wiring.Component):
    def __init__(self, attn: AttnFormats, mlp: MlpFormats, hw: HardwareConfig, sel=None,
                 instances: dict[str, str] | None = None):
        """sel: rtl_gen.selector.SelFormats of a selector behind the MLP, or None.
        instances: {"attention": module, "mlp": module[, "selector": module]} to instantiate
        separately generated engines, None to contain them."""
        self.attn_fmt, self.mlp_fmt, self.sel_fmt, self.hw = attn, mlp, sel, hw
        self.instances = instances
        R, C = hw.mac_rows, hw.mac_cols
        ports = {
            "n": In(range(hw.n_max + 1)),
            "i_x": In(stream.Signature(lanes_layout(R, "x"))),
            "i_w": In(stream.Signature(data.ArrayLayout(signed(WORD), C))),
            "o_y": Out(stream.Signature(lanes_layout(R, "y"))),
        }
        if sel is not None:
            from .selector import sel_layout
            if sel.head_dim % C:
                raise ValueError(f"mac_cols must divide the selector's head_dim ({sel.head_dim} % {C} != 0)")
            nm = hw.n_max
            ports.update({
                "n_pkg": In(range(nm + 1)), "cap_en": In(1), "cap": In(range(nm + 1)), "mode": In(2),
                "o_sel": Out(stream.Signature(sel_layout())),
                "o_kept": Out(stream.Signature(unsigned(nm.bit_length()))),
            })
        super().__init__(ports)

    @classmethod
    def from_block(cls, blk, hw, sel=None, instances=None):
        """sel: a golden QSelector to place behind the block (the one before the next block)."""
        from .selector import SelFormats
        return cls(AttnFormats.from_block(blk), MlpFormats.from_block(blk), hw,
                   SelFormats.from_selector(sel) if sel is not None else None, instances)

    def engines(self) -> dict:
        """The engine components this wrapper uses, by kind."""
        from .selector import SelectorEngine
        out = {"attention": AttentionEngine(self.attn_fmt, self.hw), "mlp": MlpEngine(self.mlp_fmt, self.hw)}
        if self.sel_fmt is not None:
            out["selector"] = SelectorEngine(self.sel_fmt, self.hw)
        return out

    def elaborate(self, platform):
        m = Module()
        C = self.hw.mac_cols
        eng = self.engines()
        for kind, e in eng.items():
            m.submodules[kind] = instance_of(e, self.instances[kind]) if self.instances else e
        attn, mlp = eng["attention"], eng["mlp"]
        sf = self.sel_fmt
        ns = sel_words(sf, C) if sf is not None else 0
        na = attn_words(self.attn_fmt.dim, C)
        nm = mlp_words(self.mlp_fmt.dim, self.mlp_fmt.hidden, C)

        # weight routing: [selector | attention | MLP] words, counted modulo one job
        cnt = Signal(range(ns + na + nm))
        to_sel = Signal()
        to_attn = Signal()
        to_mlp = Signal()
        if ns:
            m.d.comb += to_sel.eq(cnt < ns)
        m.d.comb += [to_attn.eq(~to_sel & (cnt < ns + na)), to_mlp.eq(~to_sel & ~to_attn)]
        m.d.comb += [attn.n.eq(self.n), attn.i_w.payload.eq(self.i_w.payload), mlp.i_w.payload.eq(self.i_w.payload),
                     attn.i_w.valid.eq(self.i_w.valid & to_attn), mlp.i_w.valid.eq(self.i_w.valid & to_mlp)]
        ready = Mux(to_mlp, mlp.i_w.ready, attn.i_w.ready)
        if sf is not None:
            m.submodules.gearbox = gear = Gearbox(C, sf.head_dim // C)
            sel = eng["selector"]
            m.d.comb += [gear.i_w.payload.eq(self.i_w.payload), gear.i_w.valid.eq(self.i_w.valid & to_sel)]
            ready = Mux(to_sel, gear.i_w.ready, ready)
            connect(m, gear.o_w, sel.i_w)
        m.d.comb += self.i_w.ready.eq(ready)
        with m.If(self.i_w.valid & self.i_w.ready):
            m.d.sync += cnt.eq(Mux(cnt == ns + na + nm - 1, 0, cnt + 1))

        # tokens: attention -> MLP (-> selector)
        connect(m, wiring.flipped(self.i_x), attn.i_x)
        m.d.comb += [mlp.i_x.valid.eq(attn.o_y.valid), attn.o_y.ready.eq(mlp.i_x.ready),
                     mlp.i_x.payload.x.eq(attn.o_y.payload.y), mlp.i_x.payload.last.eq(attn.o_y.payload.last)]
        if sf is None:
            connect(m, mlp.o_y, wiring.flipped(self.o_y))
        else:
            m.d.comb += [sel.n.eq(self.n), sel.n_pkg.eq(self.n_pkg), sel.cap_en.eq(self.cap_en),
                         sel.cap.eq(self.cap), sel.mode.eq(self.mode),
                         sel.i_x.valid.eq(mlp.o_y.valid), mlp.o_y.ready.eq(sel.i_x.ready),
                         sel.i_x.payload.x.eq(mlp.o_y.payload.y), sel.i_x.payload.last.eq(mlp.o_y.payload.last)]
            connect(m, sel.o_y, wiring.flipped(self.o_y))
            connect(m, sel.o_sel, wiring.flipped(self.o_sel))
            connect(m, sel.o_kept, wiring.flipped(self.o_kept))
        return m
